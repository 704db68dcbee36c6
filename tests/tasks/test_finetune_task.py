"""Fine-tuning and linear evaluation: label fractions, protocols, and wrong pretrained_ckpt."""

import json
import logging

import pytest
import torch
from omegaconf import OmegaConf

from conftest import (
    FAST_OVERRIDES,
    assert_accuracies_counted,
    assert_counted_over,
    compose_config,
    run_script,
)
from simclr.config import config_problems
from simclr.data import FineTuneDataModule
from simclr.errors import ConfigError, DataError
from simclr.models.pretrained import PretrainedEncoder
from simclr.tasks.common import plain
from simclr.tasks.finetune import run
from simclr.tasks.pretrain import run as pretrain

# One make test worker takes this whole file: its module fixture
# (the pre-trained checkpoint) is built once.
pytestmark = pytest.mark.xdist_group("test_finetune_task")

# data=fake's validation and test splits hold 32 images each.
FAKE_SPLIT = 32
FINETUNE_FAST = [
    "data=fake",
    "trainer=cpu",
    "trainer.max_epochs=2",
    "callbacks.progress_bar=null",
    "logger=csv",
]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 1-epoch pre-training checkpoint of a tiny slim ResNet-18 on fake data."""
    folder = tmp_path_factory.mktemp("pretrain")
    cfg = compose_config(
        [*FAST_OVERRIDES, "trainer.max_epochs=1", "logger=csv"],
        folder,
    )
    pretrain(cfg)
    return folder / "checkpoints" / "last.ckpt"


def finetune_config(tmp_path, *overrides):
    return compose_config([*FINETUNE_FAST, *overrides], tmp_path, config_name="finetune")


def encoder_state(checkpoint) -> dict:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}


@pytest.mark.parametrize("mode", ["full", "linear"])
def test_every_mode_composes(mode, tmp_path):
    cfg = finetune_config(tmp_path, "pretrained_ckpt=null", f"mode={mode}")
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.mode == mode and OmegaConf.is_struct(cfg)
    if mode == "full":  # the original project's fine-tuning
        assert cfg.optimizer.name == "nadam" and cfg.optimizer.lr == 1e-4
        assert cfg.trainer.gradient_clip_val == 10


def test_label_fraction_trains_on_exactly_ten_percent_of_each_class(tmp_path):
    cfg = compose_config(["pretrained_ckpt=null"], tmp_path, config_name="finetune")
    data = plain(cfg.data)
    subset = FineTuneDataModule(data, label_fraction=0.1, label_seed=0)
    labels = subset.labelled.load_splits().train.labels
    loader_labels = torch.cat([y for _, y in subset.train_dataloader()])
    counts = torch.bincount(labels, minlength=10)
    expected = torch.round(0.1 * counts.double()).long()
    assert torch.equal(torch.bincount(loader_labels, minlength=10), expected)
    assert len(loader_labels) == len(subset.train_indices) < len(labels) // 9
    # Deterministic, and another seed draws other images.
    again = FineTuneDataModule(data, label_fraction=0.1, label_seed=0).train_indices
    other = FineTuneDataModule(data, label_fraction=0.1, label_seed=1).train_indices
    assert torch.equal(again, subset.train_indices)
    assert not torch.equal(other, subset.train_indices)


def test_linear_evaluation_keeps_the_encoder_and_its_batchnorm_statistics(pretrained, tmp_path):
    metrics = run(finetune_config(tmp_path, f"pretrained_ckpt={pretrained}", "mode=linear"))
    before = encoder_state(pretrained)
    after = encoder_state(tmp_path / "checkpoints" / "last.ckpt")
    assert before.keys() == after.keys()
    running = [k for k in before if "running_mean" in k or "running_var" in k]
    assert running
    for key in before:
        assert torch.equal(before[key], after[key]), key
    for name in ("test/acc", "test/acc_top5", "val/acc_best"):
        assert_counted_over(metrics[name], FAKE_SPLIT)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["test/acc"] == pytest.approx(metrics["test/acc"])
    assert (tmp_path / "checkpoints" / "best.ckpt").exists()


def test_full_fine_tuning_trains_the_encoder(pretrained, tmp_path):
    run(finetune_config(tmp_path, f"pretrained_ckpt={pretrained}", "mode=full"))
    before = encoder_state(pretrained)
    after = encoder_state(tmp_path / "checkpoints" / "last.ckpt")
    assert not torch.equal(before["conv1.weight"], after["conv1.weight"])


def test_test_metrics_come_from_the_best_validation_checkpoint(pretrained, tmp_path):
    metrics = run(
        finetune_config(
            tmp_path, f"pretrained_ckpt={pretrained}", "mode=linear", "trainer.max_epochs=3"
        )
    )
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)
    score = next(v for v in best["callbacks"].values() if "best_model_score" in v)
    assert float(score["best_model_score"]) == pytest.approx(metrics["val/acc_best"])


def test_random_initialisation_needs_a_backbone_and_then_runs(tmp_path):
    with pytest.raises(ConfigError, match="backbone"):
        run(finetune_config(tmp_path, "pretrained_ckpt=null"))
    metrics = run(
        finetune_config(
            tmp_path,
            "pretrained_ckpt=null",
            "backbone=resnet18_slim",
            "backbone.width=0.125",
            "mode=linear",
            "label_fraction=0.5",
        )
    )
    assert metrics["train/num_images"] < 64
    assert_accuracies_counted(metrics)


def test_a_file_that_is_no_checkpoint_is_named(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(torch.randint(0, 256, (1000,), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(DataError, match=r"junk\.ckpt is not a PyTorch checkpoint"):
        run(finetune_config(tmp_path, f"pretrained_ckpt={junk}"))
    # A path that does not exist, or none given, is a config problem: listed before any work.
    missing = tmp_path / "nowhere.ckpt"
    with pytest.raises(ConfigError, match=r"pretrained_ckpt='.*nowhere\.ckpt': must be a pre"):
        run(finetune_config(tmp_path, f"pretrained_ckpt={missing}"))
    with pytest.raises(ConfigError, match=r"pretrained_ckpt is not set: must be a pre-training"):
        run(compose_config(FINETUNE_FAST, tmp_path, config_name="finetune"))


@pytest.mark.parametrize(
    "overrides, problem",
    [
        ([], r"pretrained_ckpt=null \(a randomly initialised encoder\) needs a backbone"),
        (["backbone=resnet18_slim", "from_head_layer=1"], r"from_head_layer=1 keeps layers"),
    ],
)
def test_a_fresh_encoder_s_missing_parts_are_config_problems(overrides, problem, tmp_path):
    # Listed with the other problems before any work (the run, its Trainer included, never
    # starts), and refused alike when the encoder is asked for in Python.
    cfg = finetune_config(tmp_path, "pretrained_ckpt=null", *overrides, "label_fraction=3")
    with pytest.raises(ConfigError, match=rf"2 problem\(s\)(.|\n)*{problem}"):
        run(cfg)
    assert not (tmp_path / "checkpoints").exists()
    backbone, layer = ({"name": "resnet18_slim"}, 1) if overrides else (None, 0)
    with pytest.raises(ConfigError, match=problem):
        PretrainedEncoder.for_finetuning(None, backbone, None, 32, from_head_layer=layer)
    fresh = finetune_config(tmp_path, "pretrained_ckpt=null", "backbone=resnet18_slim")
    assert config_problems(fresh) == []


def test_a_checkpoint_of_another_backbone_is_refused(pretrained, tmp_path):
    with pytest.raises(ConfigError, match=r"backbone is resnet18 .* holds a resnet18_slim"):
        run(finetune_config(tmp_path, f"pretrained_ckpt={pretrained}", "backbone=resnet18"))
    # A checkpoint whose weights do not fit the architecture it names.
    state = torch.load(pretrained, map_location="cpu", weights_only=False)
    state["hyper_parameters"]["backbone"]["width"] = 0.25
    edited = tmp_path / "edited.ckpt"
    torch.save(state, edited)
    with pytest.raises(DataError, match=r"edited\.ckpt do not fit the backbone resnet18_slim"):
        run(finetune_config(tmp_path, f"pretrained_ckpt={edited}"))


def test_overriding_the_image_size_warns(pretrained, tmp_path, caplog):
    cfg = finetune_config(
        tmp_path,
        f"pretrained_ckpt={pretrained}",
        "mode=linear",
        "image_size=24",
        "trainer.fast_dev_run=true",
    )
    with caplog.at_level(logging.WARNING):
        run(cfg)
    assert "image_size=24 overrides the 32 px" in caplog.text


def test_finetune_py_prints_the_message_and_exits_2(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_text("not a checkpoint")
    result = run_script(
        "finetune.py", [*FINETUNE_FAST, f"pretrained_ckpt={junk}"], cwd=tmp_path, timeout=120
    )
    assert result.returncode == 2
    assert "junk.bin is not a PyTorch checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_label_fraction_stops_before_any_work(tmp_path, monkeypatch):
    from simclr.tasks import finetune

    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded before the config was checked")

    monkeypatch.setattr(finetune, "FineTuneDataModule", no_data)
    cfg = compose_config(
        ["pretrained_ckpt=null", "backbone=resnet18_slim", "label_fraction=1.5"],
        tmp_path,
        config_name="finetune",
    )
    with pytest.raises(ConfigError, match=r"label_fraction=1.5: must be in \(0, 1\]"):
        finetune.run(cfg)


def test_initialisation_options_do_not_make_another_architecture(tmp_path):
    from simclr.models.backbones import check_backbone

    # A checkpoint written before backbone.zero_init_residual existed, or with the other value:
    # its weights replace any initialisation, so the architecture is the same.
    saved = {"name": "slim_resnet18", "width": 0.25, "depthwise": False, "small_stem": True}
    source = tmp_path / "old.ckpt"
    requested = {**saved, "small_stem": None, "zero_init_residual": False}
    check_backbone(requested, saved, 32, source)
    check_backbone(None, saved, 32, source)
    with pytest.raises(ConfigError, match="holds a slim_resnet18"):
        check_backbone({**requested, "width": 0.5}, saved, 32, source)
