"""An encoder exported for use elsewhere, in one of four formats (``python -m simclr.export
CKPT OUT_DIR --format ...``), each checked when written.

- ``torchvision`` (the default): ``encoder.pt``, a plain state dict, and ``encoder.json``, its
  architecture (:mod:`simclr.models.encoder_files`); torchvision's keys for the torchvision
  ResNets, timm's for timm backbones; what ``finetune.py pretrained_ckpt=`` reads. With it, on
  request, the projection head (``head.pt``, ``head.json``: :func:`export_head`).
- ``timm``: ``model.safetensors`` and ``config.json`` as timm's ``save_for_hf`` writes them, for
  ``timm.create_model("local-dir:OUT_DIR", pretrained=True)``, or ``timm.create_model(<arch>,
  pretrained=True, pretrained_cfg_overlay=dict(file="OUT_DIR/model.safetensors"), num_classes=0)``
  with the architecture's arguments from ``config.json``. A timm backbone exports its own state
  dict; our ResNets export to the timm architecture with the same layers (:data:`TIMM_RESNETS`).
- ``torchscript``: ``encoder.torchscript.pt``, the encoder traced by ``torch.jit.trace``, for
  ``torch.jit.load`` (no Python class needed; PyTorch has deprecated TorchScript in favour of
  ``torch.export``, but it still loads in C++ and older runtimes).
- ``onnx``: ``encoder.onnx`` (torch's ``dynamo`` exporter), input ``images`` ``(batch, 3, S,
  S)`` with a dynamic batch size, output ``features`` ``(batch, feature_dim)``; the weights of
  an encoder over 2 GiB go to ``encoder.onnx.data`` beside it.

The check: the written files are loaded back as a user would load them
(:meth:`~simclr.models.pretrained.PretrainedEncoder.read` for torchvision, timm's
``local-dir`` loader, ``torch.jit.load``, ``onnxruntime``) and their features for
:data:`CHECK_IMAGES` random images (a batch size other than the one traced or exported with)
must equal the encoder's within the format's tolerance, elementwise ``|exported - encoder|
<= atol + rtol * |encoder|`` (:class:`Format`). A failed check removes the files and is an
:class:`~simclr.errors.ExportError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from simclr.errors import ConfigError, ExportError
from simclr.extras import ONNX_EXPORT
from simclr.models.backbones import BACKBONES
from simclr.models.encoder_files import write_encoder_files, write_head_files
from simclr.models.heads import ProjectionHead
from simclr.models.pretrained import PretrainedEncoder, load_strictly
from simclr.models.resnet_v2 import V2_BUILDERS
from simclr.models.timm_backbones import create_kwargs, timm_backbone
from simclr.registry import Registry

# Images in the check batch; exports are traced with TRACE_IMAGES, so the check also proves
# that the batch size is not baked in.
CHECK_IMAGES, TRACE_IMAGES = 3, 2
TORCHSCRIPT_FILE, ONNX_FILE = "encoder.torchscript.pt", "encoder.onnx"
ONNX_SINGLE_FILE_LIMIT = 2**31 - 2**26  # protobuf's 2 GiB, less room for the graph
TIMM_WEIGHTS_FILE, TIMM_CONFIG_FILE = "model.safetensors", "config.json"
# Our ResNets whose layers are those of a timm ResNet (same names, shapes and computation) when
# plain: width 1, the ImageNet 7x7 stem, no depth-wise or selective-kernel convolutions.
TIMM_RESNETS = {
    BACKBONES["resnet18"]: "resnet18",
    BACKBONES["resnet34"]: "resnet34",
    BACKBONES["resnet50"]: "resnet50",
    BACKBONES["resnet50_w1"]: "resnet50",
    BACKBONES["resnet18_slim"]: "resnet18",
    V2_BUILDERS[0]: "resnet101",
    V2_BUILDERS[1]: "resnet152",
}


@dataclass
class Encoder:
    """The encoder being exported, built from its weights, in eval mode."""

    module: nn.Module
    feature_dim: int


@dataclass(frozen=True)
class Format:
    """An export format: ``write(weights, encoder, out_dir) -> files`` and ``load(out_dir) ->
    features function``, and the tolerance of the check (``rtol``, ``atol``)."""

    write: Callable[[PretrainedEncoder, Encoder, Path], list[Path]]
    load: Callable[[Path], Callable[[Tensor], Tensor]]
    rtol: float
    atol: float


FORMATS: Registry[Format] = Registry("export format", "--format")


@dataclass
class Export:
    """What :func:`export` wrote, and how close its features came to the encoder's."""

    format: str
    files: list[Path]
    max_difference: float
    rtol: float
    atol: float


def timm_architecture(weights: PretrainedEncoder) -> tuple[str, dict]:
    """The timm model name and ``create_model`` arguments of the encoder's architecture; a
    :class:`ConfigError` for a backbone timm has no architecture for."""
    backbone = weights.backbone
    builder = BACKBONES[backbone["name"]]
    if builder is timm_backbone:
        kwargs = create_kwargs(backbone["model"], weights.image_size, backbone.get("model_args"))
        return backbone["model"], kwargs
    plain = (
        backbone.get("width", 1) == 1
        and not backbone.get("depthwise", False)
        and not weights.small_stem
        and not backbone.get("sk_ratio", 0)
    )
    if builder in TIMM_RESNETS and plain:
        return TIMM_RESNETS[builder], {"num_classes": 0}
    raise ConfigError(
        f"--format timm: the backbone {weights.describe()} has no timm architecture "
        "(timm's ResNets are torchvision's resnet18/34/50 and resnet101/152 at width 1 with the "
        "7x7 stem: no small 3x3 stem, width multiplier, depth-wise or selective-kernel "
        "convolutions); export it with --format torchvision, torchscript or onnx"
    )


def _write_torchvision(weights: PretrainedEncoder, encoder: Encoder, out_dir: Path) -> list[Path]:
    description = {
        "backbone": weights.backbone,
        "image_size": weights.image_size,
        "feature_dim": encoder.feature_dim,
        "source": str(weights.source),
    }
    return list(write_encoder_files(weights.weights, description, out_dir))


def _load_torchvision(out_dir: Path):
    return PretrainedEncoder.read(out_dir).build()[0].eval()


def _write_timm(weights: PretrainedEncoder, encoder: Encoder, out_dir: Path) -> list[Path]:
    import timm
    from timm.models import save_for_hf

    name, kwargs = timm_architecture(weights)
    model = timm.create_model(name, pretrained=False, **kwargs)
    load_strictly(model, encoder.module.state_dict(), f"the encoder does not fit timm's {name}")
    # Not timm's published weights: drop their tag and licence from the copied configuration.
    config = {"pretrained_cfg": {"tag": "simclr", "license": None}}
    save_for_hf(model.eval(), str(out_dir), model_config=config, safe_serialization=True)
    return [out_dir / TIMM_WEIGHTS_FILE, out_dir / TIMM_CONFIG_FILE]


def _load_timm(out_dir: Path):
    import timm

    return timm.create_model(f"local-dir:{out_dir}", pretrained=True, num_classes=0).eval()


def _write_torchscript(weights: PretrainedEncoder, encoder: Encoder, out_dir: Path) -> list[Path]:
    path = out_dir / TORCHSCRIPT_FILE
    # PyTorch's deprecation notice for TorchScript, and the tracer's warnings about values it
    # takes as constants (a ViT's shape checks): the check below tells whether the trace holds.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(encoder.module, _images(weights.image_size, TRACE_IMAGES))
        traced.save(str(path))
    return [path]


def _load_torchscript(out_dir: Path):
    with warnings.catch_warnings():  # the same notice, on loading
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(out_dir / TORCHSCRIPT_FILE), map_location="cpu").eval()


def _write_onnx(weights: PretrainedEncoder, encoder: Encoder, out_dir: Path) -> list[Path]:
    for extra in ONNX_EXPORT:
        extra.require("--format onnx")
    path = out_dir / ONNX_FILE
    # One file, unless the weights pass protobuf's 2 GiB limit: then next to it, in
    # encoder.onnx.data (onnxruntime finds it there).
    size = sum(p.numel() * p.element_size() for p in encoder.module.parameters())
    torch.onnx.export(
        encoder.module,
        (_images(weights.image_size, TRACE_IMAGES),),
        str(path),
        input_names=["images"],
        output_names=["features"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        dynamo=True,
        external_data=size >= ONNX_SINGLE_FILE_LIMIT,
        verbose=False,
    )
    data = path.with_name(path.name + ".data")
    return [path, data] if data.exists() else [path]


def _load_onnx(out_dir: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(out_dir / ONNX_FILE), providers=["CPUExecutionProvider"]
    )

    def features(images: Tensor) -> Tensor:
        return torch.from_numpy(session.run(["features"], {"images": images.numpy()})[0])

    return features


# Same kernels on the same CPU: the copies compute the encoder's features up to rounding.
FORMATS.register("torchvision")(Format(_write_torchvision, _load_torchvision, 1e-5, 1e-6))
FORMATS.register("timm")(Format(_write_timm, _load_timm, 1e-5, 1e-6))
FORMATS.register("torchscript")(Format(_write_torchscript, _load_torchscript, 1e-5, 1e-6))
# onnxruntime fuses and reorders operations (convolution + BatchNorm, attention): a ViT-Tiny
# or ConvNeXt-Atto differs by about 3e-6 on features of size ~3, a ResNet-50 by ~1e-7.
FORMATS.register("onnx")(Format(_write_onnx, _load_onnx, 1e-4, 1e-5))


def _images(image_size: int, count: int) -> Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(count, 3, image_size, image_size, generator=generator)


def export(checkpoint: str | Path, out_dir: str | Path, format: str = "torchvision") -> Export:
    """Write the encoder of ``checkpoint`` (a Lightning checkpoint or an exported encoder) to
    ``out_dir`` in ``format``, load it back and compare its features with the encoder's; an
    :class:`ExportError` (files removed) if they differ beyond the format's tolerance."""
    chosen = FORMATS[format]
    weights = PretrainedEncoder.read(checkpoint)
    module, feature_dim = weights.build()  # refuses weights that do not fit their architecture
    encoder = Encoder(module.eval(), feature_dim)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        files = chosen.write(weights, encoder, out_dir)
        images = _images(weights.image_size, CHECK_IMAGES)
        expected = encoder.module(images)
        try:
            actual = chosen.load(out_dir)(images)
        except Exception as error:  # whatever the loader's reason, the export is unusable
            _remove(files)
            raise ExportError(
                f"the {format} export of {weights.source} does not load back "
                f"({type(error).__name__}: {str(error)[:300]}); nothing was kept"
            ) from error
    difference = (actual.float() - expected).abs()
    within = actual.shape == expected.shape and bool(
        (difference <= chosen.atol + chosen.rtol * expected.abs()).all()
    )
    largest = float(difference.max()) if actual.shape == expected.shape else float("inf")
    if not within:
        _remove(files)
        raise ExportError(
            f"the {format} export of {weights.source} computes other features than the encoder "
            f"(shape {tuple(actual.shape)} vs {tuple(expected.shape)}, largest difference "
            f"{largest:.3g}, allowed {chosen.atol:g} + {chosen.rtol:g} x |feature|); nothing "
            "was kept"
        )
    return Export(format, files, largest, chosen.rtol, chosen.atol)


def _remove(files: list[Path]) -> None:
    for path in files:
        path.unlink(missing_ok=True)


def export_head(checkpoint: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``head.pt`` (the projection head's ``state_dict``, keys ``net.<i>...``) and
    ``head.json`` (its :class:`ProjectionHead` arguments, ``input_dim`` included) for the
    head of a pre-training checkpoint, next to the exported encoder."""
    weights = PretrainedEncoder.read(checkpoint).require_head()
    feature_dim = weights.build()[1]
    head = ProjectionHead(feature_dim, **weights.head.config)
    head.load_state_dict(weights.head.state_dict, strict=True)  # refuses a head that does not fit
    description = {
        "head": weights.head.config,
        "input_dim": feature_dim,
        "source": str(weights.head.source),
    }
    return write_head_files(head.state_dict(), description, out_dir)
