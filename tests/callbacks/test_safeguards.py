"""A run that meets a NaN, is killed, or is run twice: what is saved, and where it resumes."""

import csv
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import simclr.models.pretrain
from conftest import FAST_OVERRIDES, ROOT, run_script, start_python
from simclr.callbacks.safeguards import AtomicCheckpointIO, NonFiniteError, NonFiniteGuard
from simclr.losses.ntxent import ContrastiveOutput, NTXentLoss
from simclr.optim import warmup_cosine_factor
from simclr.tasks.pretrain import run

# 64 fake images, batch 16: 4 optimiser steps an epoch. A last.ckpt after every step.
EVERY_STEP = [
    "optimizer=sgd",
    "callbacks.model_checkpoint.every_n_epochs=null",
    "callbacks.model_checkpoint.every_n_train_steps=1",
]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def all_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


@pytest.fixture
def nan_loss_at(monkeypatch):
    """Make the criterion's loss NaN (with NaN gradients) at the given 0-based calls; returns
    the list of every loss it computed."""

    def install(*bad_calls: int) -> list[float]:
        losses: list[float] = []

        class Poisoned(NTXentLoss):
            def forward(self, z):
                out = super().forward(z)
                losses.append(float(out.loss.detach()))
                if len(losses) - 1 in bad_calls:
                    return ContrastiveOutput(out.loss * float("nan"), out.accuracy)
                return out

        monkeypatch.setattr(simclr.models.pretrain, "NTXentLoss", Poisoned)
        return losses

    return install


def test_non_finite_loss_stops_before_the_step_and_keeps_last_ckpt_finite(
    fast_config, tmp_path, nan_loss_at
):
    losses = nan_loss_at(2)
    cfg = fast_config(*EVERY_STEP, "trainer.max_epochs=1")
    with pytest.raises(NonFiniteError) as error:
        run(cfg)
    message = str(error.value)
    assert "non-finite loss (nan) at global step 2" in message
    assert f"the last finite loss was {losses[1]:.6g} at global step 1" in message
    assert "callbacks.non_finite.action=skip" in message
    last = torch.load(
        tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    # Saved after the last good step; nothing written after the NaN one.
    assert last["global_step"] == 2
    assert all_finite(last["state_dict"])


def test_skip_mode_skips_and_counts_non_finite_steps(fast_config, tmp_path, nan_loss_at):
    nan_loss_at(1, 2)
    cfg = fast_config(
        *EVERY_STEP,
        "trainer.max_epochs=1",
        "callbacks.non_finite.action=skip",
        "callbacks.model_checkpoint.save_top_k=-1",
        "callbacks.model_checkpoint.filename='step_{step:03d}'",
    )
    metrics = run(cfg)
    assert metrics["train/skipped_steps"] == 2
    folder = tmp_path / "checkpoints"
    states = {step: weights(folder / f"step_{step:03d}.ckpt") for step in (1, 2, 3, 4)}
    assert all(all_finite(state) for state in states.values())
    # Parameters only: BatchNorm's running statistics still move in the forward pass.
    names = [n for n in states[1] if "running_" not in n and "num_batches" not in n]

    def same(a, b):
        return all(torch.equal(states[a][n], states[b][n]) for n in names)

    assert same(1, 2) and same(2, 3)  # steps 1 and 2 (0-based) were skipped
    assert not same(3, 4)  # step 3 trained again
    guard_state = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)[
        "callbacks"
    ]
    assert any(s.get("skipped_steps") == 2 for s in guard_state.values())


class _InfiniteGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def test_a_finite_loss_with_infinite_gradients_also_stops():
    # The guard's hooks on a bare model: no Trainer needed to judge one step.
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleNamespace(
        precision_plugin=SimpleNamespace(),
        global_step=7,
        current_epoch=1,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_idx=3)),
    )
    guard = NonFiniteGuard(action="stop")
    for step, poison in ((6, False), (7, True)):
        trainer.global_step = step
        loss = model(torch.ones(2, 3)).sum()
        if poison:
            loss = _InfiniteGradient.apply(loss)
        optimizer.zero_grad()
        guard.on_before_backward(trainer, model, loss)
        loss.backward()
        if not poison:
            guard.on_before_optimizer_step(trainer, model, optimizer)
    with pytest.raises(NonFiniteError, match=r"non-finite gradient norm \(.*\) at global step 7"):
        guard.on_before_optimizer_step(trainer, model, optimizer)
    # Skip mode drops the gradients instead, so the optimiser step changes nothing.
    skipper = NonFiniteGuard(action="skip")
    skipper.on_before_backward(trainer, model, loss.detach())
    before = [p.clone() for p in model.parameters()]
    skipper.on_before_optimizer_step(trainer, model, optimizer)
    optimizer.step()
    assert skipper.skipped_steps == 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_checkpoint_writer_refuses_non_finite_weights(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    with pytest.raises(NonFiniteError, match=r"refusing to write.*'w'"):
        io.save_checkpoint({"state_dict": {"w": torch.tensor([1.0, float("nan")])}}, path)
    assert torch.load(path)["global_step"] == 1


def test_a_failed_write_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # as if the process died between writing and renaming

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    assert torch.load(path)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


WRITER = """
import sys, torch
from simclr.callbacks.safeguards import AtomicCheckpointIO
io, i = AtomicCheckpointIO(), 0
while True:
    state = {"w": torch.full((1_000_000,), float(i))}
    io.save_checkpoint({"state_dict": state, "i": i}, sys.argv[1])
    print(i, flush=True)
    i += 1
"""


def test_sigkill_while_writing_never_leaves_a_truncated_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    for delay in (0.05, 0.13, 0.21):
        path.unlink(missing_ok=True)
        writer = start_python(["-c", WRITER, str(path)], tmp_path)
        # Two whole saves, then kill in the middle of later ones.
        deadline = time.monotonic() + 120
        while not (path.exists() and torch.load(path)["i"] >= 1):
            assert writer.poll() is None and time.monotonic() < deadline, "no checkpoint saved"
            time.sleep(0.01)
        time.sleep(delay)
        writer.kill()
        writer.communicate()
        saved = torch.load(path)
        assert torch.all(saved["state_dict"]["w"] == saved["i"])


# -- resuming a killed run ---------------------------------------------------------------


def csv_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_sigkill_mid_epoch_then_resume_with_ckpt_path_last(tmp_path):
    # 320 images, batch 16: 20 steps, one epoch; warm-up over the first 10 steps; a last.ckpt
    # every 2 steps. SGD at 0.1, no batch scaling: the rate at step s is 0.1 x factor(s).
    steps, warmup = 20, 10
    common = [
        *FAST_OVERRIDES,
        "data.options.num_train=320",
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1",
        "optimizer=sgd",
        "optimizer.lr=0.1",
        "optimizer.lr_scaling=none",
        "scheduler.warmup_epochs=0.5",
        "scheduler.max_warmup_fraction=null",  # the warm-up as given: half of this short run
        "callbacks.model_checkpoint.every_n_epochs=null",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "callbacks.model_checkpoint.save_top_k=0",
        "logger=csv",
    ]
    runs = tmp_path / "logs" / "pretrain" / "runs"
    first, second = runs / "first", runs / "second"
    last = first / "checkpoints" / "last.ckpt"
    process = start_python([str(ROOT / "train.py"), *common, f"hydra.run.dir={first}"], tmp_path)
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    assert process.returncode == -signal.SIGKILL, stderr[-3000:]
    saved = torch.load(last, map_location="cpu", weights_only=False)
    step = saved["global_step"]
    assert 0 < step < steps and step % 2 == 0  # killed mid-epoch

    result = run_script(
        "train.py", [*common, "ckpt_path=last", f"hydra.run.dir={second}"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = csv_rows(second)
    rates = [(int(r["step"]), float(r["lr-SGD/pg1"])) for r in rows if r.get("lr-SGD/pg1")]
    # It continues at the saved step with the schedule's rate there: no new warm-up.
    assert rates[0][0] == step
    assert rates[0][1] == pytest.approx(0.1 * warmup_cosine_factor(step, warmup, steps))
    for s, rate in rates:
        assert rate == pytest.approx(0.1 * warmup_cosine_factor(s, warmup, steps))
    # Lightning 2.x runs the epoch's remaining batches (from a fresh shuffle), then stops.
    losses = [int(r["step"]) for r in rows if r.get("train/loss_step")]
    assert losses == list(range(step, steps))
    final = torch.load(second / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["global_step"] == steps
    assert final["lr_schedulers"][0]["last_epoch"] == steps
    # The optimiser's momentum came back too (SGD keeps one buffer per parameter).
    assert saved["optimizer_states"][0]["state"] and final["optimizer_states"][0]["state"]


# -- determinism -------------------------------------------------------------------------


def logged_losses(cfg) -> list[str]:
    run(cfg)
    rows = csv_rows(Path(cfg.paths.output_dir))
    return [r["train/loss_step"] for r in rows if r.get("train/loss_step")]


def test_same_seed_same_losses(fast_config, tmp_path):
    overrides = [
        "logger=csv",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.log_every_n_steps=1",
        "seed=123",
    ]
    first = logged_losses(fast_config(*overrides))
    (tmp_path / "csv").rename(tmp_path / "csv_first")
    second = logged_losses(fast_config(*overrides))
    assert len(first) == 3 and len(set(first)) == 3
    assert first == second
