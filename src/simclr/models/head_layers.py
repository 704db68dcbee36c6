"""Fine-tuning from a layer of the pre-trained projection head (SimCLR v2, section 2; the
official ``--ft_proj_selector``).

SimCLR v2 fine-tunes "from the middle layer of the projection head": ``from_head_layer = k``
keeps the first k layers of the pre-training head (each linear, BatchNorm if the head has it,
ReLU), with their pre-trained weights, between the encoder's h and the new classifier. k = 0
is h itself (SimCLR v1); k equal to the head's number of layers is its output z (the official
code allows it too).

The head's weights and its architecture come from a pre-training checkpoint (its ``head``
hyperparameters and ``projection.*`` weights) or from an export written with
``python -m simclr.export <ckpt> <out_dir> --head`` (``head.pt``, ``head.json`` next to
``encoder.pt``), read by :func:`read_head`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from simclr.errors import ConfigError, DataError
from simclr.models.encoder_files import (
    DESCRIPTION_FILE,
    WEIGHTS_FILE,
    load_strictly,
    read_encoder,
)
from simclr.models.heads import ProjectionHead
from simclr.rules import Rule, integer_at_least

FROM_HEAD_LAYER = Rule(
    "from_head_layer",
    integer_at_least(0),
    "an integer >= 0 (0: the classifier on h; k: on the k-th layer of the pre-trained head)",
)
# Where the pre-training module keeps its head, in its checkpoint's state_dict.
PROJECTION_PREFIX = "projection."
HEAD_WEIGHTS_FILE = "head.pt"
HEAD_DESCRIPTION_FILE = "head.json"
HEAD_FORMAT = "simclr-projection-head/1"


@dataclass
class HeadWeights:
    """A pre-trained projection head: :class:`ProjectionHead`'s keyword arguments without
    ``input_dim`` (``config``), its ``state_dict`` (keys ``net.<i>...``), and the file."""

    config: dict
    state_dict: dict[str, Tensor]
    source: Path


def _export_folder(path: Path) -> Path | None:
    """The folder of an export, if ``path`` names one (the folder, encoder.pt/.json)."""
    if path.is_dir():
        return path
    if path.name in (WEIGHTS_FILE, DESCRIPTION_FILE, HEAD_WEIGHTS_FILE, HEAD_DESCRIPTION_FILE):
        return path.parent
    return None


def read_head(path: str | Path) -> HeadWeights:
    """The projection head stored with an encoder: in a pre-training checkpoint, or in an
    export written with ``--head``. A file without one is a :class:`DataError` that says how
    to get one."""
    path = Path(path).expanduser()
    folder = _export_folder(path)
    if folder is not None:
        weights, description = folder / HEAD_WEIGHTS_FILE, folder / HEAD_DESCRIPTION_FILE
        if not (weights.exists() and description.exists()):
            raise DataError(
                f"{folder} holds no projection head ({HEAD_WEIGHTS_FILE}, "
                f"{HEAD_DESCRIPTION_FILE}); export it with python -m simclr.export <ckpt> "
                f"{folder} --head, or give the pre-training checkpoint"
            )
        config = json.loads(description.read_text())["head"]
        return HeadWeights(config, torch.load(weights, map_location="cpu"), weights)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    hparams = (checkpoint.get("hyper_parameters") or {}) if isinstance(checkpoint, dict) else {}
    state = {
        key.removeprefix(PROJECTION_PREFIX): value
        for key, value in (checkpoint.get("state_dict") or {}).items()
        if key.startswith(PROJECTION_PREFIX)
    }
    if "head" not in hparams or not state:
        raise DataError(
            f"{path} holds no projection head (it is not a pre-training checkpoint); "
            "from_head_layer > 0 needs the pre-training checkpoint, or an export made with --head"
        )
    return HeadWeights(dict(hparams["head"]), state, path)


def head_layers(config: dict, input_dim: int, count: int) -> tuple[nn.Sequential, int]:
    """The first ``count`` layers of a projection head of ``config`` on features of
    ``input_dim``, freshly built: ``(layers, output_dim)``. Module indices are the head's
    (``net.<i>`` becomes ``<i>``), so its weights load by name. ``count = 0``: no layers."""
    FROM_HEAD_LAYER.check(count)
    head = ProjectionHead(input_dim, **config)
    linear = [i for i, module in enumerate(head.net) if isinstance(module, nn.Linear)]
    if count > len(linear):
        raise ConfigError(
            f"from_head_layer={count}: the pre-trained projection head has {len(linear)} "
            f"layer(s) (model.head.num_layers); choose 0 to {len(linear)}"
        )
    if count == 0:
        return nn.Sequential(), input_dim
    # A hidden layer ends after its ReLU (the next linear layer's index); the last, at the end.
    end = linear[count] if count < len(linear) else len(head.net)
    layers = head.net[:end]
    return layers, layers[linear[count - 1]].out_features


def load_head_layers(layers: nn.Sequential, weights: HeadWeights) -> None:
    """Load the pre-trained weights of the kept layers into ``layers``, strictly."""
    kept = {str(index) for index in range(len(layers))}
    state = {
        key.removeprefix("net."): value
        for key, value in weights.state_dict.items()
        if key.removeprefix("net.").split(".", 1)[0] in kept
    }
    load_strictly(
        layers,
        state,
        f"the projection head in {weights.source} does not fit its description {weights.config}",
    )


def export_head(checkpoint: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``head.pt`` (the projection head's ``state_dict``, keys ``net.<i>...``) and
    ``head.json`` (its :class:`ProjectionHead` arguments, ``input_dim`` included) for the
    head of a pre-training checkpoint, next to the exported encoder."""
    weights = read_head(checkpoint)
    feature_dim = read_encoder(checkpoint).build()[1]
    head = ProjectionHead(feature_dim, **weights.config)
    head.load_state_dict(weights.state_dict, strict=True)  # refuses a head that does not fit
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path, description_path = out_dir / HEAD_WEIGHTS_FILE, out_dir / HEAD_DESCRIPTION_FILE
    torch.save({k: v.detach().clone() for k, v in head.state_dict().items()}, weights_path)
    info = {
        "format": HEAD_FORMAT,
        "head": weights.config,
        "input_dim": feature_dim,
        "source": str(weights.source),
    }
    description_path.write_text(json.dumps(info, indent=2) + "\n")
    return weights_path, description_path
