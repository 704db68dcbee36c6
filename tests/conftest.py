"""Shared test helpers: composing the real Hydra configs into a temporary run folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from preloaded import PreloadedProcess, fresh_processes, start_shared, supported

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
# A tiny pre-training checkpoint and its export from an old version (its README.md).
OLD_CHECKPOINT_DIR = ROOT / "tests" / "fixtures" / "pretrain_2fb1cad"

# make test runs the suite on pytest-xdist workers, one per core: each worker, and every
# process a test starts, computes on one thread, so that the workers do not fight for cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# Small, fast settings shared by the tests that run training.
FAST_OVERRIDES = [
    "data=fake",
    "backbone=resnet18_slim",
    "backbone.width=0.125",
    "trainer=cpu",
    "callbacks.progress_bar=null",
]


def pytest_configure(config):
    """Under pytest-xdist, the process that hands out the tests starts the one preloaded server
    its workers share (``preloaded.start_shared``)."""
    workers = getattr(config.option, "numprocesses", None)
    if workers and not hasattr(config, "workerinput") and not fresh_processes():
        start_shared()


def compose_config(
    overrides: list[str], output_dir: Path, config_name: str = "pretrain"
) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` as ``train.py`` would, writing to ``output_dir``."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(
            config_name,
            overrides=[
                *overrides,
                f"paths.root_dir={output_dir}",
                f"paths.output_dir={output_dir}",
            ],
        )


def start_python(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen | PreloadedProcess:
    """Start ``python <args>`` (a script of the project, or ``-m <module>``) in a process of
    its own, as a user would, its output captured, with ``env`` added to the environment;
    :func:`finish` waits for it. The process is forked from one that has imported torch and
    Lightning already (``preloaded.py``)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if supported(args) and not fresh_processes():
        return PreloadedProcess(args, cwd, env)
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(
    process: subprocess.Popen | PreloadedProcess, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Wait for a :func:`start_python` process; killed (and TimeoutExpired raised) after
    ``timeout`` seconds."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_script(script: str, args: list[str], cwd: Path, timeout: float = 300):
    """Run a top-level script of the project in a subprocess, as a user would."""
    return finish(start_python([str(ROOT / script), *args], cwd), timeout)


def assert_counted_over(accuracy: float, images: int) -> None:
    """``accuracy`` is the share right of exactly ``images`` images, a whole number of them; an
    accuracy averaged over batches of unequal size, or counted over part of the split, is
    generally not."""
    right = accuracy * images
    assert 0 <= accuracy <= 1 and abs(right - round(right)) < 1e-3, (accuracy, images)


def assert_accuracies_counted(metrics: dict[str, float]) -> None:
    """A fine-tuning run's metrics: its test accuracies (and its best validation accuracy,
    where it selects on val) are each counted over every image of their split
    (``<split>/num_images``), see :func:`assert_counted_over`."""
    accuracies = {
        name: value
        for name, value in metrics.items()
        if name.split("/")[0] in ("test", "val") and name.split("/")[1].startswith("acc")
    }
    assert "test/acc" in accuracies and metrics["test/num_images"] > 0, metrics
    for name, value in accuracies.items():
        assert_counted_over(value, round(metrics[f"{name.split('/')[0]}/num_images"]))


@pytest.fixture
def fast_config(tmp_path):
    """Compose a small pre-training config into ``tmp_path`` with extra overrides."""

    def make(*overrides: str) -> DictConfig:
        # The training-health monitor (tested on its own) costs most of a second an epoch.
        return compose_config([*FAST_OVERRIDES, "callbacks.health=null", *overrides], tmp_path)

    return make


# Monitors off (they never change the weights) and a last.ckpt after every step: the
# overrides of the tests that stop and resume pre-training mid-epoch.
NO_MONITORS_CHECKPOINT_EVERY_STEP = [
    "callbacks.linear_probe=null",
    "callbacks.knn=null",
    "callbacks.pictures=null",
    "callbacks.model_checkpoint.every_n_epochs=null",
    "callbacks.model_checkpoint.every_n_train_steps=1",
    "callbacks.model_checkpoint.save_top_k=0",
]


def save_pretrain_checkpoint(path: Path, backbone: dict, image_size: int = 32):
    """A pre-training checkpoint as Lightning writes one (hyper_parameters and state_dict) at
    ``path``, from a small SimCLRModule whose BatchNorm statistics are non-trivial (so export
    checks cover them); returns the module."""
    import torch

    from simclr.models import SimCLRModule

    model = SimCLRModule(
        backbone=backbone,
        head={"num_layers": 2, "hidden_dim": None, "output_dim": 16, "batch_norm": True},
        optimizer={"name": "sgd", "lr": 0.1},
        scheduler={},
        image_size=image_size,
        batch_size=8,
    )
    with torch.no_grad():
        model.train()(torch.randn(8, 3, image_size, image_size))
    torch.save({"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}, path)
    return model


def tiny_simclr_module(image_size: int, batch_size: int, **options):
    """A seeded SimCLRModule small enough for step-level tests (slim ResNet-18 at width 1/8,
    SGD, no warm-up, temperature 0.2); ``options`` are further SimCLRModule arguments."""
    import torch

    from simclr.models import SimCLRModule

    torch.manual_seed(0)
    return SimCLRModule(
        backbone={"name": "slim_resnet18", "width": 0.125},
        head={"hidden_dim": 32, "output_dim": 16},
        optimizer={"name": "sgd", "lr": 0.1},
        scheduler={"warmup_epochs": 0},
        image_size=image_size,
        batch_size=batch_size,
        temperature=0.2,
        **options,
    )
