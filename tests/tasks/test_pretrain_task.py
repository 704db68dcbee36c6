"""Pre-training runs end to end: through run(cfg), and through train.py as a user runs it."""

import csv
import itertools
import json

import pytest
import torch

from conftest import run_script
from simclr.tasks.pretrain import run


@pytest.mark.parametrize("optimizer", ["lars", "sgd", "adamw", "nadam"])
def test_one_step_with_each_optimizer(fast_config, optimizer, tmp_path):
    metrics = run(fast_config(f"optimizer={optimizer}", "trainer.fast_dev_run=true"))
    assert torch.isfinite(torch.tensor(metrics["train/loss_step"]))
    assert (tmp_path / "metrics.json").exists()


# The full-width ResNet-18 trains a step with digits_quick's recipe in test_presets.py.
@pytest.mark.parametrize("backbone", ["resnet50"])
def test_one_step_with_torchvision_backbones(fast_config, backbone):
    metrics = run(
        fast_config(
            f"backbone={backbone}",
            "backbone.width=1",
            "data.batch_size=4",
            "trainer.fast_dev_run=true",
        )
    )
    assert torch.isfinite(torch.tensor(metrics["train/loss_step"]))


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["resnet50_w2", "resnet34"])
def test_one_step_with_large_backbones(fast_config, backbone):
    width = 2 if backbone == "resnet50_w2" else 1
    metrics = run(
        fast_config(
            f"backbone={backbone}",
            f"backbone.width={width}",
            "data.batch_size=4",
            "trainer.fast_dev_run=true",
        )
    )
    assert torch.isfinite(torch.tensor(metrics["train/loss_step"]))


def test_three_views_and_a_three_layer_head(fast_config):
    metrics = run(
        fast_config("model.num_views=3", "model.head.num_layers=3", "trainer.fast_dev_run=true")
    )
    assert torch.isfinite(torch.tensor(metrics["train/loss_step"]))


def test_learning_rate_warms_up_then_decays_every_step(fast_config, tmp_path):
    # 64 images, batch 16: 4 steps an epoch; 1 warm-up epoch of 3.
    cfg = fast_config(
        "logger=csv",
        "trainer.max_epochs=3",
        "trainer.log_every_n_steps=1",
        "scheduler.warmup_epochs=1",
        "scheduler.max_warmup_fraction=null",  # the warm-up as given, half of this run
        "optimizer=sgd",
        "optimizer.lr=0.1",
        "optimizer.lr_scaling=none",
    )
    run(cfg)
    with open(tmp_path / "csv" / "metrics.csv") as f:
        rates = [float(r["lr-SGD/pg1"]) for r in csv.DictReader(f) if r.get("lr-SGD/pg1")]
    assert len(rates) == 12  # one value per optimiser step
    assert rates[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert all(a > b for a, b in itertools.pairwise(rates[4:]))
    assert rates[-1] < 0.01


def test_hyperparameters_are_plain_values(fast_config, tmp_path):
    run(fast_config("trainer.fast_dev_run=true"))
    # fast_dev_run writes no checkpoint; build the module as a checkpoint would restore it.
    from simclr.tasks.pretrain import build_model

    model = build_model(fast_config())
    hparams = dict(model.hparams)
    assert hparams["temperature"] == 0.5 and hparams["num_views"] == 2
    assert hparams["backbone"]["name"] == "resnet18_slim"
    assert isinstance(hparams["optimizer"], dict) and isinstance(hparams["head"], dict)


def test_train_py_leaves_checkpoint_logs_and_metrics_then_resumes(tmp_path):
    common = [
        "data=fake",
        "backbone=resnet18_slim",
        "trainer=cpu",
        "callbacks.model_checkpoint.every_n_epochs=1",
    ]
    first = tmp_path / "first"
    result = run_script(
        "train.py", [*common, "trainer.max_epochs=2", f"hydra.run.dir={first}"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = first / "checkpoints" / "last.ckpt"
    assert last.exists() and (first / "checkpoints" / "epoch_001.ckpt").exists()
    assert list((first / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((first / "metrics.json").read_text())
    assert "train/loss_epoch" in metrics
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["epoch"] == 1 and state["global_step"] == 8  # 64 images / 16 = 4 steps

    second = tmp_path / "second"
    result = run_script(
        "train.py",
        [*common, "trainer.max_epochs=3", f"ckpt_path={last}", f"hydra.run.dir={second}"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = torch.load(
        second / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    # One more epoch from where the first run stopped, not three from scratch.
    assert resumed["epoch"] == 2 and resumed["global_step"] == 12
    assert resumed["lr_schedulers"][0]["last_epoch"] == 12
