"""The encoder a run starts from: one object for fine-tuning, export, the Python API and
``bench/``.

A :class:`PretrainedEncoder` is read (:meth:`PretrainedEncoder.read`) from a Lightning
checkpoint, of pre-training or fine-tuning (its ``hyper_parameters`` and the ``encoder.*``
entries of its ``state_dict``), or from an export (``encoder.pt``, its folder, or
``encoder.json``: :mod:`simclr.models.encoder_files`); or it is a freshly initialised encoder
of a chosen backbone (:meth:`PretrainedEncoder.fresh`, fine-tuning's ``pretrained_ckpt=null``).
It knows its architecture (the backbone description, with the stem written out, and the image
size) and the projection head stored with it; it checks a requested backbone and image size
against itself (:func:`~simclr.models.backbones.check_backbone`), and builds the encoder with
its weights (:meth:`PretrainedEncoder.build`), or the network fine-tuning trains, with the kept
layers of its projection head (:meth:`PretrainedEncoder.network`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from torch import Tensor, nn

from simclr.errors import ConfigError, DataError
from simclr.models.backbones import (
    build_backbone,
    check_backbone,
    describe_backbone,
    resolve_stem,
)
from simclr.models.encoder_files import HeadWeights, missing_head, read_encoder_files
from simclr.models.heads import head_layers
from simclr.rules import Joint, Rule, state

log = logging.getLogger(__name__)

# Fine-tuning's encoder, checked with the config (null, a fresh encoder, is not checked).
PRETRAINED_CKPT = state(
    Rule(
        "pretrained_ckpt",
        lambda v: isinstance(v, str) and Path(v).expanduser().exists(),
        "a pre-training checkpoint or an export that exists (or null: a freshly initialised "
        "encoder, with backbone=<name>)",
    )
)


def fresh_encoder_problem(pretrained_ckpt, backbone, from_head_layer) -> str | None:
    """What ``pretrained_ckpt=null`` (a freshly initialised encoder) lacks or cannot have: a
    ``backbone``, and a projection head for ``from_head_layer`` > 0; None if nothing."""
    if pretrained_ckpt is not None:
        return None
    if not backbone:
        return (
            "pretrained_ckpt=null (a randomly initialised encoder) needs a backbone: "
            "add backbone=<name>, e.g. backbone=resnet18_slim"
        )
    if from_head_layer:
        return (
            f"from_head_layer={from_head_layer} keeps layers of a pre-trained projection "
            "head: give pretrained_ckpt (pretrained_ckpt=null has no head)"
        )
    return None


FRESH_ENCODER = state(
    Joint("pretrained_ckpt", ("backbone", "from_head_layer"), fresh_encoder_problem)
)


def load_strictly(module: nn.Module, state_dict: dict, mismatch: str) -> None:
    """Load ``state_dict`` into ``module`` strictly; a mismatch is a :class:`DataError` that
    starts with ``mismatch`` and quotes the first lines of torch's report."""
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        first_lines = "\n".join(str(error).splitlines()[:4])
        raise DataError(f"{mismatch}:\n{first_lines}") from None


@dataclass(frozen=True)
class PretrainedNetwork:
    """What fine-tuning starts from (:meth:`PretrainedEncoder.network`): the encoder and the
    kept layers of its projection head (empty for ``from_head_layer=0``), built and loaded;
    ``output_dim``, the size of what the classifier sees; ``architecture``, what a fine-tuning
    checkpoint records of them (``backbone``, ``image_size``, ``head``, ``from_head_layer``),
    so that :meth:`PretrainedEncoder.read` can read the encoder back from it."""

    encoder: nn.Module
    head_layers: nn.Sequential
    output_dim: int
    architecture: dict

    @property
    def image_size(self) -> int:
        return self.architecture["image_size"]


@dataclass(frozen=True)
class PretrainedEncoder:
    """An encoder's architecture and, unless fresh, its weights.

    ``backbone`` holds :func:`~simclr.models.backbones.build_backbone`'s keyword arguments except
    ``image_size``; for weights read from a file, as
    :func:`~simclr.models.backbones.resolve_stem` writes them out (``small_stem`` a plain bool:
    the stem the weights were made for; timm's ``pretrained`` false). ``weights`` is None for a
    fresh encoder, which has no ``source`` either; ``head`` is the projection head stored with
    the weights (None: none, or not kept).
    """

    backbone: dict
    image_size: int
    weights: dict[str, Tensor] | None = None
    source: Path | None = None
    head: HeadWeights | None = None

    @classmethod
    def read(cls, path: str | Path, head_required: bool = False) -> PretrainedEncoder:
        """The encoder in a Lightning checkpoint or an export (see the module docstring); with
        ``head_required``, a :class:`DataError` for a file without its projection head."""
        backbone, image_size, state_dict, source, head = read_encoder_files(path, head_required)
        return cls(resolve_stem(backbone, image_size), image_size, state_dict, source, head)

    @classmethod
    def fresh(cls, backbone: dict, image_size: int) -> PretrainedEncoder:
        """A randomly initialised encoder of ``backbone`` (as given: its initialisation options,
        timm's ``pretrained`` included, hold) for images of ``image_size`` px."""
        return cls(dict(backbone), image_size)

    @classmethod
    def for_finetuning(
        cls,
        pretrained_ckpt: str | None,
        backbone: dict | None,
        image_size: int | None,
        data_image_size: int,
        from_head_layer: int,
    ) -> PretrainedEncoder:
        """The encoder fine-tuning starts from: the one in ``pretrained_ckpt``, which a chosen
        ``backbone`` must match, at ``image_size`` if given (warned about) or its own; with
        ``from_head_layer`` > 0, with its projection head. ``pretrained_ckpt=None``: a fresh
        encoder of the chosen ``backbone``, at ``image_size`` or the data's."""
        if pretrained_ckpt is None:
            problem = fresh_encoder_problem(pretrained_ckpt, backbone, from_head_layer)
            if problem:
                raise ConfigError(problem)
            return cls.fresh(backbone, image_size or data_image_size)
        encoder = cls.read(pretrained_ckpt, head_required=from_head_layer > 0)
        check_backbone(backbone, encoder.backbone, encoder.image_size, encoder.source)
        if image_size and image_size != encoder.image_size:
            log.warning(
                "image_size=%d overrides the %d px the encoder was pre-trained at",
                image_size,
                encoder.image_size,
            )
            encoder = replace(encoder, image_size=image_size)
        return encoder if from_head_layer else replace(encoder, head=None)

    @property
    def small_stem(self) -> bool | None:
        """Whether the encoder has the small-image stem (None: its builder has no choice, or a
        fresh encoder that leaves it to the image size)."""
        return self.backbone.get("small_stem")

    @property
    def head_config(self) -> dict | None:
        """The projection head's arguments (without ``input_dim``), None without a head."""
        return self.head.config if self.head is not None else None

    def describe(self) -> str:
        return describe_backbone(self.backbone)

    def require_head(self) -> PretrainedEncoder:
        """This encoder, which must have the projection head stored beside it: in a pre-training
        checkpoint, or in an export written with ``--head`` (else
        :func:`~simclr.models.encoder_files.missing_head`'s :class:`DataError`)."""
        if self.head is None:
            raise missing_head(self.source)
        return self

    def build(self) -> tuple[nn.Module, int]:
        """A new encoder of this architecture, with these weights (loaded strictly) unless
        fresh: ``(encoder, feature_dim)``."""
        encoder, feature_dim = build_backbone(image_size=self.image_size, **self.backbone)
        if self.weights is not None:
            self._load_encoder(encoder)
        return encoder, feature_dim

    def network(self, from_head_layer: int = 0) -> PretrainedNetwork:
        """The network fine-tuning trains: this encoder and the first ``from_head_layer`` layers
        of its projection head, built and loaded strictly (a mismatch is a
        :class:`DataError`). A fresh encoder keeps its initialisation."""
        if from_head_layer and self.head is None:
            raise ConfigError(
                f"from_head_layer={from_head_layer} needs the pre-trained projection head: "
                "give a pre-training checkpoint as pretrained_ckpt"
            )
        encoder, feature_dim = self.build()
        if self.weights is None:
            log.info("encoder %s randomly initialised (baseline)", self.describe())
        else:
            log.info("encoder %s loaded from %s", self.describe(), self.source)
        layers, output_dim = head_layers(self.head_config or {}, feature_dim, from_head_layer)
        if from_head_layer:
            self._load_head(layers)
        architecture = {
            "backbone": self.backbone,
            "image_size": self.image_size,
            "head": self.head_config,
            "from_head_layer": from_head_layer,
        }
        return PretrainedNetwork(encoder, layers, output_dim, architecture)

    def _load_head(self, layers: nn.Sequential) -> None:
        kept = {str(index) for index in range(len(layers))}
        state = {
            key.removeprefix("net."): value
            for key, value in self.head.state_dict.items()
            if key.removeprefix("net.").split(".", 1)[0] in kept
        }
        load_strictly(
            layers,
            state,
            f"the projection head in {self.head.source} does not fit its description "
            f"{self.head.config}",
        )
        log.info(
            "classifier on layer %d of the projection head of %s",
            sum(isinstance(layer, nn.Linear) for layer in layers),
            self.head.source,
        )

    def _load_encoder(self, encoder: nn.Module) -> None:
        load_strictly(
            encoder,
            self.weights,
            f"the encoder weights in {self.source} do not fit the backbone {self.describe()}",
        )
