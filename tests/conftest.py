"""Shared test helpers: composing the real Hydra configs into a temporary run folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"

# Small, fast settings shared by the tests that run training.
FAST_OVERRIDES = [
    "data=fake",
    "backbone=resnet18_slim",
    "backbone.width=0.125",
    "trainer=cpu",
    "callbacks.progress_bar=null",
]


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


def start_python(args: list[str], cwd: Path) -> subprocess.Popen:
    """Start ``python <args>`` (a script of the project, or ``-m <module>``) in a subprocess,
    as a user would, its output captured; :func:`finish` waits for it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
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


@pytest.fixture
def fast_config(tmp_path):
    """Compose a small pre-training config into ``tmp_path`` with extra overrides."""

    def make(*overrides: str) -> DictConfig:
        return compose_config([*FAST_OVERRIDES, *overrides], tmp_path)

    return make
