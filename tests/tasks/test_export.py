"""Encoder export: a plain state dict that torchvision loads, and that finetune.py accepts."""

import json

import pytest
import torch
import torchvision
from torch import nn

from conftest import assert_accuracies_counted, compose_config, save_pretrain_checkpoint
from simclr.errors import DataError
from simclr.models import PretrainedEncoder
from simclr.models.exports import export
from simclr.tasks.export import main


def save_checkpoint(tmp_path, backbone: dict, image_size: int = 32):
    path = tmp_path / "pretrain.ckpt"
    return save_pretrain_checkpoint(path, backbone, image_size), path


@pytest.mark.parametrize("image_size,small_stem", [(32, True), (64, False)])
def test_exported_resnet18_loads_into_plain_torchvision_with_the_same_features(
    tmp_path, image_size, small_stem
):
    backbone = {"name": "resnet18", "width": 1, "depthwise": False, "small_stem": None}
    model, checkpoint = save_checkpoint(tmp_path, backbone, image_size)
    weights_path, description_path = export(checkpoint, tmp_path / "export").files
    info = json.loads(description_path.read_text())
    assert info["backbone"]["small_stem"] is small_stem and info["feature_dim"] == 512

    plain = torchvision.models.resnet18()
    plain.fc = nn.Identity()
    if info["backbone"]["small_stem"]:
        plain.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        plain.maxpool = nn.Identity()
    plain.load_state_dict(torch.load(weights_path, weights_only=True), strict=True)

    images = torch.randn(4, 3, image_size, image_size)
    with torch.no_grad():
        expected = model.eval()(images)
        assert torch.allclose(plain.eval()(images), expected, atol=1e-5)


def test_export_command_and_reader_round_trip(tmp_path, capsys):
    backbone = {"name": "slim_resnet18", "width": 0.125, "depthwise": False, "small_stem": None}
    model, checkpoint = save_checkpoint(tmp_path, backbone)
    assert main([str(checkpoint), str(tmp_path / "out")]) == 0
    assert "encoder.pt" in capsys.readouterr().out
    for given in (tmp_path / "out", tmp_path / "out" / "encoder.pt"):
        weights = PretrainedEncoder.read(given)
        encoder, _ = weights.build()
        images = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            assert torch.allclose(encoder.eval()(images), model.eval()(images), atol=1e-6)
    assert main([str(tmp_path / "missing.ckpt"), str(tmp_path / "x")]) == 2


def test_finetune_accepts_an_exported_encoder(tmp_path):
    from simclr.tasks.finetune import run

    backbone = {"name": "slim_resnet18", "width": 0.125, "depthwise": False, "small_stem": None}
    _, checkpoint = save_checkpoint(tmp_path, backbone)
    export(checkpoint, tmp_path / "export")
    cfg = compose_config(
        [
            "data=fake",
            "trainer=cpu",
            "trainer.fast_dev_run=true",
            "callbacks.progress_bar=null",
            "mode=linear",
            f"pretrained_ckpt={tmp_path / 'export' / 'encoder.pt'}",
        ],
        tmp_path / "run",
        config_name="finetune",
    )
    metrics = run(cfg)
    assert_accuracies_counted(metrics)


def test_a_broken_description_is_named(tmp_path):
    backbone = {"name": "slim_resnet18", "width": 0.125, "depthwise": False, "small_stem": None}
    _, checkpoint = save_checkpoint(tmp_path, backbone)
    export(checkpoint, tmp_path / "out")
    (tmp_path / "out" / "encoder.json").write_text("{not json")
    with pytest.raises(DataError, match=r"encoder\.json is not an encoder description"):
        PretrainedEncoder.read(tmp_path / "out")
