"""Pre-emption and exact resume: a signal stops a run after a step with a complete
``last.ckpt`` and exit status 75, and a run resumed from it ends with the weights of the
uninterrupted run (max abs difference 0 on a CPU in float32), for pre-training and
fine-tuning, whatever the number of data-loader workers."""

import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import (
    FAST_OVERRIDES,
    NO_MONITORS_CHECKPOINT_EVERY_STEP,
    ROOT,
    compose_config,
    finish,
    start_python,
)
from simclr.callbacks.preemption import PREEMPTED_EXIT_STATUS, Preempted, PreemptionHandler
from simclr.callbacks.safeguards import AtomicCheckpointIO
from simclr.tasks.common import build_trainer
from simclr.tasks.finetune import run as finetune
from simclr.tasks.pretrain import run as pretrain

# Two epochs of 4 steps (64 fake images, batches of 16), a last.ckpt after every step, and
# no monitors (they do not change the weights; leaving them out keeps the test short).
PRETRAIN = [
    *FAST_OVERRIDES,
    "logger=csv",
    "trainer.max_epochs=2",
    *NO_MONITORS_CHECKPOINT_EVERY_STEP,
]
FINETUNE = [
    "data=fake",
    "trainer=cpu",
    "trainer.max_epochs=3",
    "callbacks.progress_bar=null",
    "logger=csv",
    "pretrained_ckpt=null",
    "backbone=resnet18_slim",
    "backbone.width=0.125",
    "data.batch_size=8",
]


def weights(checkpoint: Path) -> dict:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]


def max_abs_difference(a: Path, b: Path) -> float:
    """Over every entry of both state_dicts: weights, BatchNorm statistics, and buffers such as
    the memory buffer's queue, its write position and its momentum encoder."""
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    return max((first[k].double() - second[k].double()).abs().max().item() for k in first)


def last_ckpt(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture
def sigterm_at_step(monkeypatch):
    """Makes the run send itself a real SIGTERM at the end of the given optimiser step, which
    the installed handler receives like a scheduler's."""

    def arm(step: int):
        original = PreemptionHandler.on_train_batch_end

        def hook(self, trainer, *args):
            if trainer.global_step == step and self.received is None:
                os.kill(os.getpid(), signal.SIGTERM)
            return original(self, trainer, *args)

        monkeypatch.setattr(PreemptionHandler, "on_train_batch_end", hook)

    return arm


def interrupted_then_resumed(run, overrides, tmp_path, step, arm, config_name="pretrain"):
    """Run with a SIGTERM at ``step``, check the checkpoint, resume it to the end; returns the
    resumed run's folder."""
    arm(step)
    first = tmp_path / "interrupted"
    with pytest.raises(Preempted) as stopped:
        run(compose_config(overrides, first, config_name))
    assert stopped.value.checkpoint == last_ckpt(first)
    assert f"after global step {step} " in str(stopped.value)
    saved = torch.load(last_ckpt(first), map_location="cpu", weights_only=False)
    assert saved["global_step"] == step
    # The run's handlers are gone with it (Lightning restores the ones from before).
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        handler = signal.getsignal(signum)
        assert not isinstance(getattr(handler, "__self__", None), PreemptionHandler)
    arm(-1)
    resumed = tmp_path / "resumed"
    run(compose_config([*overrides, f"ckpt_path={last_ckpt(first)}"], resumed, config_name))
    return resumed


@pytest.mark.parametrize(
    "step, extra",
    [
        (3, []),
        pytest.param(4, ["data.augment_on_device=true"], marks=pytest.mark.slow),
        pytest.param(5, ["model.micro_batch_size=8"], marks=pytest.mark.slow),
        # 32 keys a step into 40 rows: the queue wraps before and after the resume.
        pytest.param(3, ["model.memory.size=40"], marks=pytest.mark.slow),
    ],
    ids=["mid-epoch", "epoch-end-views-on-device", "gradient-caching", "memory-buffer"],
)
def test_pretraining_resumed_after_sigterm_equals_uninterrupted(
    tmp_path, sigterm_at_step, step, extra
):
    overrides = [*PRETRAIN, *extra]
    pretrain(compose_config(overrides, tmp_path / "uninterrupted"))
    resumed = interrupted_then_resumed(pretrain, overrides, tmp_path, step, sigterm_at_step)
    difference = max_abs_difference(last_ckpt(tmp_path / "uninterrupted"), last_ckpt(resumed))
    print(f"pre-training, SIGTERM at step {step} {extra}: max abs difference {difference}")
    assert difference == 0.0


def test_crop_first_pretraining_resumed_after_sigterm_equals_uninterrupted(
    tmp_path, sigterm_at_step
):
    # data.pipeline=crop_first draws the crop boxes in the workers (seeded per image) and the
    # colour in batches (seeded per batch): a resumed run draws the same views.
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for i in range(40):  # textured, so that every crop box gives another view
        (root / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (36, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"class{i % 2}" / f"{i}.jpg", quality=90)
    overrides = [
        *PRETRAIN,
        "data=imagefolder",
        f"data.root={root}",
        "data.pipeline=crop_first",
        "data.image_size=32",
        "data.batch_size=8",  # 24 training images: 3 steps an epoch
        "data.num_workers=1",
        "trainer.max_epochs=1",
    ]
    pretrain(compose_config(overrides, tmp_path / "uninterrupted"))
    resumed = interrupted_then_resumed(pretrain, overrides, tmp_path, 1, sigterm_at_step)
    difference = max_abs_difference(last_ckpt(tmp_path / "uninterrupted"), last_ckpt(resumed))
    assert difference == 0.0


def test_finetuning_resumed_after_sigterm_equals_uninterrupted(tmp_path, sigterm_at_step):
    # 3 epochs of 8 batches (the fake train split's 64 images, 8 a batch); stopped mid-epoch 1.
    finetune(compose_config(FINETUNE, tmp_path / "uninterrupted", "finetune"))
    resumed = interrupted_then_resumed(
        finetune, FINETUNE, tmp_path, 10, sigterm_at_step, config_name="finetune"
    )
    difference = max_abs_difference(last_ckpt(tmp_path / "uninterrupted"), last_ckpt(resumed))
    print(f"fine-tuning, SIGTERM at step 10: max abs difference {difference}")
    assert difference == 0.0


def checkpoint_step(path: Path) -> int:
    """The global step of a complete checkpoint, or -1 (none yet, or being replaced)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)["global_step"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return -1


def start_and_signal(args, run_dir, cwd, at_step, signum, repeat=1, timeout=300):
    """Start ``train.py`` (or ``finetune.py``) writing to ``run_dir``; once its ``last.ckpt``
    reaches ``at_step``, send ``signum`` ``repeat`` times; returns the finished process."""
    process = start_python([*args, f"hydra.run.dir={run_dir}"], cwd)
    deadline = time.monotonic() + timeout
    while checkpoint_step(last_ckpt(run_dir)) < at_step:
        if process.poll() is not None:
            break
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(f"no checkpoint of step {at_step} in {timeout} s")
        time.sleep(0.05)
    for _ in range(repeat):
        if process.poll() is None:
            process.send_signal(signum)
    return finish(process, timeout)


def test_train_py_sigterm_leaves_last_ckpt_of_its_step_and_exits_75(tmp_path):
    args = [str(ROOT / "train.py"), *PRETRAIN, "trainer.max_epochs=1000"]
    run_dir = tmp_path / "run"
    # Two signals in a row: the second must not cut the checkpoint being written.
    result = start_and_signal(args, run_dir, tmp_path, 2, signal.SIGTERM, repeat=2)
    log = result.stdout + result.stderr
    assert result.returncode == PREEMPTED_EXIT_STATUS, log[-3000:]
    line = next(text for text in log.splitlines() if "stopped by SIGTERM after global step" in text)
    step = int(line.split("after global step ")[1].split()[0])
    saved = torch.load(last_ckpt(run_dir), map_location="cpu", weights_only=False)
    assert saved["global_step"] == step >= 2
    assert f"checkpoint: {last_ckpt(run_dir)}" in line
    assert "Traceback" not in log


def fault_injection(script, overrides, tmp_path, schedule, workers=("0", "2")):
    """Run ``script`` uninterrupted, then again stopped by each ``(step, signal)`` of
    ``schedule`` in turn (a signal once the run's last.ckpt reached ``step``), each run resumed
    from the last one's ``last.ckpt`` with the next of ``workers`` data-loader workers; returns
    the max abs weight difference between the two final checkpoints."""
    base = [str(ROOT / script), *overrides]
    whole = tmp_path / "uninterrupted"
    result = finish(start_python([*base, f"hydra.run.dir={whole}"], tmp_path), 600)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint, reached = None, 0
    for number, (step, signum) in enumerate([*schedule, (None, None)]):
        run_dir = tmp_path / f"part{number}"
        args = [*base, f"data.num_workers={workers[number % len(workers)]}"]
        if checkpoint is not None:
            args.append(f"ckpt_path={checkpoint}")
        if step is None:
            result = finish(start_python([*args, f"hydra.run.dir={run_dir}"], tmp_path), 600)
            assert result.returncode == 0, result.stderr[-3000:]
        else:
            result = start_and_signal(args, run_dir, tmp_path, max(step, reached + 1), signum)
            expected = PREEMPTED_EXIT_STATUS if signum == signal.SIGTERM else -signal.SIGKILL
            assert result.returncode == expected, result.stderr[-3000:]
        checkpoint = last_ckpt(run_dir)
        reached = checkpoint_step(checkpoint)
        how = f"{signal.Signals(signum).name} at step >= {step}" if signum else "to the end"
        print(f"{script}: run {number} ({how}) left last.ckpt of step {reached}")
    difference = max_abs_difference(last_ckpt(whole), checkpoint)
    print(f"{script}: max abs weight difference to the uninterrupted run: {difference}")
    return difference


@pytest.mark.slow
def test_fault_injection_pretraining(tmp_path):
    """SIGKILL at 3 random steps and SIGTERM at 2 others of a 16-step run, each run resumed
    with a different number of workers than the one before: the weights of the uninterrupted
    run, to the bit."""
    rng = random.Random(15)
    steps = sorted(rng.sample(range(1, 15), 5))
    signals = [signal.SIGKILL] * 3 + [signal.SIGTERM] * 2
    rng.shuffle(signals)
    overrides = [*PRETRAIN, "trainer.max_epochs=4"]
    difference = fault_injection(
        "train.py", overrides, tmp_path, list(zip(steps, signals, strict=True))
    )
    assert difference == 0.0


@pytest.mark.slow
def test_fault_injection_finetuning(tmp_path):
    """The same for fine-tuning (6 epochs of 8 steps), whose last.ckpt is written at the end
    of each epoch and on a signal: each signal is sent once an epoch's last.ckpt appeared,
    so a SIGKILL loses the steps after it and a SIGTERM stops mid-epoch."""
    schedule = [
        (8, signal.SIGKILL),
        (16, signal.SIGTERM),
        (24, signal.SIGKILL),
        (32, signal.SIGTERM),
        (40, signal.SIGKILL),
    ]
    overrides = [*FINETUNE, "trainer.max_epochs=6"]
    assert fault_injection("finetune.py", overrides, tmp_path, schedule) == 0.0


def test_finetuning_writes_checkpoints_atomically_and_stops_on_signals(tmp_path):
    cfg = compose_config(FINETUNE, tmp_path, "finetune")
    trainer = build_trainer(cfg)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    handlers = [c for c in trainer.callbacks if isinstance(c, PreemptionHandler)]
    assert [s.name for s in handlers[0].signals] == ["SIGTERM", "SIGINT", "SIGUSR1"]


@pytest.mark.slow
def test_under_slurm_the_requeue_signal_writes_last_ckpt_then_lightning_requeues(
    tmp_path, monkeypatch
):
    """SLURM's environment, with a stand-in ``scontrol`` on PATH that records its arguments:
    SIGUSR1 stops the run with last.ckpt and status 75, and Lightning's SLURM plugin writes its
    hpc checkpoint and asks for ``scontrol requeue <job id>``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "scontrol.args"}\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for name, value in {
        "SLURM_NTASKS": "1",
        "SLURM_JOB_NAME": "simclr",
        "SLURM_JOB_ID": "4242",
        "SLURM_NODEID": "0",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODELIST": "localhost",
    }.items():
        monkeypatch.setenv(name, value)
    args = [str(ROOT / "train.py"), *PRETRAIN, "trainer.max_epochs=1000"]
    run_dir = tmp_path / "run"
    result = start_and_signal(args, run_dir, tmp_path, 1, signal.SIGUSR1)
    assert result.returncode == PREEMPTED_EXIT_STATUS, result.stderr[-3000:]
    assert checkpoint_step(last_ckpt(run_dir)) >= 1
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]
    assert list(run_dir.glob("hpc_ckpt_*.ckpt"))
