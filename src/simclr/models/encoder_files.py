"""Encoders stored on disk: the exported format, and the reader of it and of checkpoints.

:func:`export_encoder` writes, for the encoder of a checkpoint,

- ``encoder.pt``: the encoder's weights as a plain ``state_dict`` (no Lightning, no
  ``encoder.`` prefix). For the torchvision backbones the keys are torchvision's, so it loads
  into ``torchvision.models.resnet18()`` whose ``fc`` is ``nn.Identity()`` (and, for a
  small-stem encoder, ``conv1`` a 3x3 stride-1 convolution and ``maxpool`` an identity, as
  ``encoder.json`` says);
- ``encoder.json``: what builds the architecture again: the backbone arguments of
  :func:`simclr.models.backbones.build_backbone` (``small_stem`` resolved to true/false), the
  image size it was trained at, and the feature dimension.

:func:`read_encoder` reads either a Lightning checkpoint (pre-training or fine-tuning: its
``hyper_parameters`` and the ``encoder.*`` entries of its ``state_dict``) or an exported
encoder (``encoder.pt``, its folder, or ``encoder.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from simclr.errors import DataError
from simclr.models.backbones import build_backbone, describe_backbone, resolved

FORMAT = "simclr-encoder/1"
WEIGHTS_FILE = "encoder.pt"
DESCRIPTION_FILE = "encoder.json"
ENCODER_PREFIX = "encoder."


@dataclass
class EncoderWeights:
    """An encoder's architecture and weights, wherever they were read from.

    ``backbone`` holds :func:`~simclr.models.backbones.build_backbone`'s keyword arguments except
    ``image_size``, as :func:`~simclr.models.backbones.resolved` writes them out (``small_stem``
    a plain bool: the stem the weights were made for; timm's ``pretrained`` false).
    """

    backbone: dict
    image_size: int
    state_dict: dict[str, Tensor]
    source: Path

    def build(self) -> tuple[nn.Module, int]:
        """A fresh encoder of this architecture with these weights (loaded strictly)."""
        encoder, feature_dim = build_backbone(image_size=self.image_size, **self.backbone)
        load_encoder_weights(encoder, self)
        return encoder, feature_dim


def load_strictly(module: nn.Module, state_dict: dict, mismatch: str) -> None:
    """Load ``state_dict`` into ``module`` strictly; a mismatch is a :class:`DataError` that
    starts with ``mismatch`` and quotes the first lines of torch's report."""
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        first_lines = "\n".join(str(error).splitlines()[:4])
        raise DataError(f"{mismatch}:\n{first_lines}") from None


def load_encoder_weights(encoder: nn.Module, weights: EncoderWeights) -> None:
    """Load ``weights`` into ``encoder`` strictly; a mismatch is a :class:`DataError`."""
    load_strictly(
        encoder,
        weights.state_dict,
        f"the encoder weights in {weights.source} do not fit the backbone "
        f"{describe_backbone(weights.backbone)}",
    )


def _load(path: Path) -> object:
    try:
        # Our own checkpoints; Lightning loads them the same way (they hold plain objects).
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # any unreadable file, whatever torch's reason
        raise DataError(
            f"{path} is not a PyTorch checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200] if str(error) else ''}); give a pre-training "
            f"checkpoint (.ckpt) or an exported encoder ({WEIGHTS_FILE} with {DESCRIPTION_FILE})"
        ) from None


def read_encoder(path: str | Path) -> EncoderWeights:
    """The encoder in a Lightning checkpoint or an export (see the module docstring)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"pretrained_ckpt {path} does not exist")
    if path.is_dir() or path.name == DESCRIPTION_FILE:
        path = (path if path.is_dir() else path.parent) / WEIGHTS_FILE
        if not path.exists():
            raise DataError(f"{path} does not exist: export with python -m simclr.export")
    description = path.parent / DESCRIPTION_FILE
    if path.name == WEIGHTS_FILE and description.exists():
        return _read_export(path, description)
    return _read_checkpoint(path)


def _read_export(path: Path, description: Path) -> EncoderWeights:
    try:
        info = json.loads(description.read_text())
        backbone, image_size = dict(info["backbone"]), int(info["image_size"])
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{description} is not an encoder description: {error!r}") from None
    state = _load(path)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise DataError(f"{path} is not a state dict of tensors; export it again")
    return EncoderWeights(resolved(backbone, image_size), image_size, state, path)


def _read_checkpoint(path: Path) -> EncoderWeights:
    checkpoint = _load(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise DataError(
            f"{path} is not a Lightning checkpoint (no state_dict); give a pre-training "
            f"checkpoint (.ckpt) or an exported encoder ({WEIGHTS_FILE} with {DESCRIPTION_FILE})"
        )
    hparams = checkpoint.get("hyper_parameters") or {}
    if "backbone" not in hparams or "image_size" not in hparams:
        raise DataError(
            f"{path} does not say which backbone it holds (no backbone / image_size in its "
            "hyper_parameters): it is not a checkpoint of this framework"
        )
    state = {
        key.removeprefix(ENCODER_PREFIX): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(ENCODER_PREFIX)
    }
    if not state:
        raise DataError(f"{path} holds no encoder weights (no '{ENCODER_PREFIX}*' entries)")
    image_size = int(hparams["image_size"])
    return EncoderWeights(resolved(hparams["backbone"], image_size), image_size, state, path)


def export_encoder(checkpoint: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``encoder.pt`` and ``encoder.json`` for the encoder in ``checkpoint``."""
    weights = read_encoder(checkpoint)
    _, feature_dim = weights.build()  # refuses weights that do not fit their architecture
    return write_encoder(weights, feature_dim, out_dir)


def write_encoder(
    weights: EncoderWeights, feature_dim: int, out_dir: str | Path
) -> tuple[Path, Path]:
    """Write ``encoder.pt`` and ``encoder.json`` for ``weights`` (of an encoder of
    ``feature_dim`` features) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path, description_path = out_dir / WEIGHTS_FILE, out_dir / DESCRIPTION_FILE
    torch.save({k: v.detach().clone() for k, v in weights.state_dict.items()}, weights_path)
    info = {
        "format": FORMAT,
        "backbone": weights.backbone,
        "image_size": weights.image_size,
        "feature_dim": feature_dim,
        "source": str(weights.source),
    }
    description_path.write_text(json.dumps(info, indent=2) + "\n")
    return weights_path, description_path
