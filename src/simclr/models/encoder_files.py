"""The files of an exported encoder (``python -m simclr.export``'s ``torchvision`` format) and of
its projection head (``--head``); their readers, which read Lightning checkpoints too, and
their writers.

- ``encoder.pt``: the encoder's weights as a plain ``state_dict`` (no Lightning, no
  ``encoder.`` prefix). For the torchvision backbones the keys are torchvision's, so it loads
  into ``torchvision.models.resnet18()`` whose ``fc`` is ``nn.Identity()`` (and, for a
  small-stem encoder, ``conv1`` a 3x3 stride-1 convolution and ``maxpool`` an identity, as
  ``encoder.json`` says);
- ``encoder.json``: what builds the architecture again: the backbone arguments of
  :func:`simclr.models.backbones.build_backbone` (``small_stem`` written out as true/false),
  the image size it was trained at, and the feature dimension;
- ``head.pt``, ``head.json``: the projection head's ``state_dict`` (keys ``net.<i>...``) and
  its :class:`~simclr.models.heads.ProjectionHead` arguments, for ``from_head_layer``.

A Lightning checkpoint (pre-training or fine-tuning) holds its encoder in its
``hyper_parameters`` (``backbone``, ``image_size``) and the ``encoder.*`` entries of its
``state_dict``, and a pre-training one its head (``head``, ``projection.*``). What the readers
return, :class:`~simclr.models.pretrained.PretrainedEncoder` wraps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from simclr.errors import DataError

FORMAT = "simclr-encoder/1"
WEIGHTS_FILE = "encoder.pt"
DESCRIPTION_FILE = "encoder.json"
HEAD_FORMAT = "simclr-projection-head/1"
HEAD_WEIGHTS_FILE = "head.pt"
HEAD_DESCRIPTION_FILE = "head.json"
# Where the pre-training module keeps its encoder and its head, in its checkpoint's state_dict.
ENCODER_PREFIX = "encoder."
PROJECTION_PREFIX = "projection."


@dataclass(frozen=True)
class HeadWeights:
    """A pre-trained projection head: :class:`~simclr.models.heads.ProjectionHead`'s keyword
    arguments without ``input_dim`` (``config``), its ``state_dict`` (keys ``net.<i>...``), and
    the file it was read from."""

    config: dict
    state_dict: dict[str, Tensor]
    source: Path


def read_encoder_files(
    path: str | Path, head_required: bool = False
) -> tuple[dict, int, dict[str, Tensor], Path, HeadWeights | None]:
    """The encoder in a Lightning checkpoint or an export (``encoder.pt``, its folder, or
    ``encoder.json``) as stored, and the projection head stored with it (None: none; with
    ``head_required``, :func:`missing_head`'s error): ``(backbone, image_size, state_dict,
    file, head)``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"pretrained_ckpt {path} does not exist")
    if path.is_dir() or path.name == DESCRIPTION_FILE:
        path = (path if path.is_dir() else path.parent) / WEIGHTS_FILE
        if not path.exists():
            raise DataError(f"{path} does not exist: export with python -m simclr.export")
    description = path.parent / DESCRIPTION_FILE
    if path.name == WEIGHTS_FILE and description.exists():
        stored = (*_read_export(path, description), path, _read_exported_head(path.parent))
    else:
        stored = _read_checkpoint(path)
    if head_required and stored[-1] is None:
        raise missing_head(path)
    return stored


def missing_head(source: Path | None) -> DataError:
    """The error for ``source``, a file read without the projection head that a caller needs:
    it is kept in a pre-training checkpoint, or in an export written with ``--head``."""
    if source is not None and source.name == WEIGHTS_FILE:
        return DataError(
            f"{source.parent} holds no projection head ({HEAD_WEIGHTS_FILE}, "
            f"{HEAD_DESCRIPTION_FILE}); export it with python -m simclr.export <ckpt> "
            f"{source.parent} --head, or give the pre-training checkpoint"
        )
    return DataError(
        f"{source} holds no projection head (it is not a pre-training checkpoint); "
        "from_head_layer > 0 needs the pre-training checkpoint, or an export made with --head"
    )


def write_files(
    state_dict: dict[str, Tensor], description: dict, weights_path: Path, description_path: Path
) -> tuple[Path, Path]:
    """Write a copy of ``state_dict`` to ``weights_path`` and ``description`` as JSON to
    ``description_path`` (their folder made if missing); returns both paths."""
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone() for k, v in state_dict.items()}, weights_path)
    description_path.write_text(json.dumps(description, indent=2) + "\n")
    return weights_path, description_path


def write_encoder_files(
    state_dict: dict[str, Tensor], description: dict, out_dir: str | Path
) -> tuple[Path, Path]:
    """``encoder.pt`` and ``encoder.json`` in ``out_dir``; ``description`` holds ``backbone``,
    ``image_size``, ``feature_dim`` and ``source``."""
    out_dir = Path(out_dir)
    info = {"format": FORMAT, **description}
    return write_files(state_dict, info, out_dir / WEIGHTS_FILE, out_dir / DESCRIPTION_FILE)


def write_head_files(
    state_dict: dict[str, Tensor], description: dict, out_dir: str | Path
) -> tuple[Path, Path]:
    """``head.pt`` and ``head.json`` in ``out_dir``; ``description`` holds ``head``,
    ``input_dim`` and ``source``."""
    out_dir = Path(out_dir)
    info = {"format": HEAD_FORMAT, **description}
    return write_files(
        state_dict, info, out_dir / HEAD_WEIGHTS_FILE, out_dir / HEAD_DESCRIPTION_FILE
    )


def _load_file(path: Path) -> object:
    try:
        # Our own checkpoints; Lightning loads them the same way (they hold plain objects).
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # any unreadable file, whatever torch's reason
        raise DataError(
            f"{path} is not a PyTorch checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200] if str(error) else ''}); give a pre-training "
            f"checkpoint (.ckpt) or an exported encoder ({WEIGHTS_FILE} with {DESCRIPTION_FILE})"
        ) from None


def _read_export(path: Path, description: Path) -> tuple[dict, int, dict[str, Tensor]]:
    try:
        info = json.loads(description.read_text())
        backbone, image_size = dict(info["backbone"]), int(info["image_size"])
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{description} is not an encoder description: {error!r}") from None
    state = _load_file(path)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise DataError(f"{path} is not a state dict of tensors; export it again")
    return backbone, image_size, state


def _read_checkpoint(path: Path) -> tuple[dict, int, dict[str, Tensor], Path, HeadWeights | None]:
    checkpoint = _load_file(path)
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
    state = _entries(checkpoint["state_dict"], ENCODER_PREFIX)
    if not state:
        raise DataError(f"{path} holds no encoder weights (no '{ENCODER_PREFIX}*' entries)")
    projection = _entries(checkpoint["state_dict"], PROJECTION_PREFIX)
    # A fine-tuning checkpoint has none (its ``head`` is the one its classifier sat on).
    head = HeadWeights(dict(hparams["head"]), projection, path) if projection else None
    return hparams["backbone"], int(hparams["image_size"]), state, path, head


def _entries(state_dict: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of ``state_dict`` under ``prefix``, without it."""
    return {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}


def _read_exported_head(folder: Path) -> HeadWeights | None:
    """The projection head exported with ``--head`` into ``folder``, None if it was not."""
    weights, description = folder / HEAD_WEIGHTS_FILE, folder / HEAD_DESCRIPTION_FILE
    if not (weights.exists() and description.exists()):
        return None
    try:
        config = dict(json.loads(description.read_text())["head"])
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{description} is not a projection head description: {error!r}") from None
    return HeadWeights(config, torch.load(weights, map_location="cpu"), weights)
