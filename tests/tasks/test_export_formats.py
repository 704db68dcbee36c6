"""``python -m simclr.export CKPT OUT --format torchvision|timm|torchscript|onnx``: every format
round-trips, loaded back as a user would load it (PretrainedEncoder.read, timm, torch.jit,
onnxruntime), with the encoder's features; a backbone timm has no architecture for is refused
with the formats that work; a copy that computes other features is an error and is not kept."""

from __future__ import annotations

import json
import re

import onnxruntime
import pytest
import timm
import torch

from conftest import ROOT, save_pretrain_checkpoint
from simclr.errors import ConfigError, ExportError
from simclr.models import PretrainedEncoder
from simclr.models.exports import FORMATS, export
from simclr.tasks.export import main

BACKBONES = {
    # torchvision's ResNet-18 with the 7x7 stem: timm's resnet18.
    "resnet18": ({"name": "resnet18", "small_stem": False}, 32),
    # The paper's ResNet-50 built here, at width 1 with the 7x7 stem: timm's resnet50.
    "resnet50_w1": ({"name": "resnet50_w1", "width": 1, "small_stem": False}, 32),
    # Width 1/8 and the small stem: no timm architecture.
    "resnet18_slim": ({"name": "resnet18_slim", "width": 0.125, "small_stem": None}, 32),
    "vit": (
        {"name": "timm", "model": "vit_tiny_patch16_224", "model_args": {"depth": 1}},
        32,
    ),
    "convnext": ({"name": "timm", "model": "convnext_atto", "model_args": {}}, 32),
}

# What each format writes (ONNX in one file: the weights stay below 2 GiB).
FILES = {
    "torchvision": {"encoder.pt", "encoder.json"},
    "timm": {"model.safetensors", "config.json"},
    "torchscript": {"encoder.torchscript.pt"},
    "onnx": {"encoder.onnx"},
}


def checkpoint(tmp_path, which: str):
    """A pre-training checkpoint as Lightning writes one, and its module in eval mode."""
    backbone, image_size = BACKBONES[which]
    path = tmp_path / f"{which}.ckpt"
    model = save_pretrain_checkpoint(path, backbone, image_size)
    return path, model.eval(), image_size


def load_as_a_user(format: str, folder) -> list:
    """The exported encoder as features functions, each a way a user loads it, without this
    framework's builders (except the torchvision format, which is finetune.py's input)."""
    if format == "torchvision":
        return [PretrainedEncoder.read(folder).build()[0].eval()]
    if format == "timm":
        config = json.loads((folder / "config.json").read_text())
        by_overlay = timm.create_model(
            config["architecture"],
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(folder / "model.safetensors"), num_classes=0),
            **config.get("model_args", {}),
        )
        by_folder = timm.create_model(f"local-dir:{folder}", pretrained=True)
        return [by_overlay.eval(), by_folder.eval()]
    if format == "torchscript":
        return [torch.jit.load(str(folder / "encoder.torchscript.pt")).eval()]
    session = onnxruntime.InferenceSession(str(folder / "encoder.onnx"))
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a dynamic batch dimension
    return [lambda x: torch.from_numpy(session.run(None, {"images": x.numpy()})[0])]


@pytest.mark.parametrize("format", ["torchvision", "timm", "torchscript", "onnx"])
@pytest.mark.parametrize(
    "which",
    # ResNet-18 in every format is slow (ONNX and TorchScript of a full ResNet); the fast suite
    # has its timm mapping below, and every format with the two timm models.
    [pytest.param("resnet18", marks=pytest.mark.slow), "vit", "convnext"],
)
def test_every_format_round_trips_with_the_encoders_features(tmp_path, capsys, format, which):
    path, model, image_size = checkpoint(tmp_path, which)
    folder = tmp_path / "out"
    assert main([str(path), str(folder), "--format", format]) == 0
    assert "checked: loaded back" in capsys.readouterr().out
    assert {p.name for p in folder.iterdir()} == FILES[format]
    images = torch.randn(5, 3, image_size, image_size)
    tolerance = FORMATS[format]
    for features in load_as_a_user(format, folder):
        with torch.no_grad():
            expected, actual = model(images), features(images)
        assert actual.shape == expected.shape == (5, model.feature_dim)
        torch.testing.assert_close(actual, expected, rtol=tolerance.rtol, atol=tolerance.atol)


def test_a_small_stem_slim_resnet_has_no_timm_export_and_says_what_works(tmp_path, capsys):
    path, _, _ = checkpoint(tmp_path, "resnet18_slim")
    with pytest.raises(ConfigError, match=r"export it with --format torchvision, torchscript or"):
        export(path, tmp_path / "out", "timm")
    assert main([str(path), str(tmp_path / "out"), "--format", "timm"]) == 2
    assert "has no timm architecture" in capsys.readouterr().err
    assert not list((tmp_path / "out").iterdir())
    # The other formats take it.
    assert export(path, tmp_path / "torchscript", "torchscript").max_difference < 1e-5


@pytest.mark.parametrize(
    "which,architecture",
    [
        ("resnet18", "resnet18"),
        # 24M parameters written, loaded and compared twice: outside the default suite.
        pytest.param("resnet50_w1", "resnet50", marks=pytest.mark.slow),
    ],
)
def test_our_plain_resnets_export_to_timms_resnets(tmp_path, which, architecture):
    path, model, image_size = checkpoint(tmp_path, which)
    export(path, tmp_path / "out", "timm")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architecture"] == architecture
    (loaded,) = load_as_a_user("timm", tmp_path / "out")[1:]
    images = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=1e-5, atol=1e-6)


def test_an_export_with_other_features_is_an_error_and_not_kept(tmp_path, monkeypatch):
    path, _, _ = checkpoint(tmp_path, "vit")
    load = torch.jit.load

    class Shifted(torch.nn.Module):  # what a wrong trace would compute: slightly off
        def __init__(self, traced):
            super().__init__()
            self.traced = traced

        def forward(self, x):
            return self.traced(x) + 1e-3

    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: Shifted(load(*a, **k)))
    with pytest.raises(ExportError, match="computes other features than the encoder"):
        export(path, tmp_path / "out", "torchscript")
    assert not (tmp_path / "out" / "encoder.torchscript.pt").exists()


def test_the_tolerances_are_those_the_docs_state():
    readme = (ROOT / "docs" / "exporting.md").read_text()
    for name in FORMATS:
        tolerance = FORMATS[name]
        stated = rf"\| `{name}` \|.*\| rtol {tolerance.rtol:g}, atol {tolerance.atol:g} \|"
        assert re.search(stated, readme), f"docs/exporting.md's export table: {name}"
