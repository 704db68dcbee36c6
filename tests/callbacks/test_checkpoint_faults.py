"""Known checkpoint faults end in a clear message, never a traceback: resuming from a damaged
or truncated ``ckpt_path``, and a checkpoint write that fails (a full disk)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
import torch

from conftest import (
    FAST_OVERRIDES,
    NO_MONITORS_CHECKPOINT_EVERY_STEP,
    OLD_CHECKPOINT_DIR,
    run_script,
)
from simclr.callbacks.safeguards import AtomicCheckpointIO
from simclr.config.checkpoints import readable
from simclr.errors import CheckpointWriteError, ConfigError

FIXTURE = OLD_CHECKPOINT_DIR / "last.ckpt"


def truncated_copy(folder: Path) -> Path:
    """The old-checkpoint fixture cut to half its length, as a full disk or a cut copy leaves it."""
    data = FIXTURE.read_bytes()
    path = folder / "last.ckpt"
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_whole_checkpoint_is_accepted():
    assert readable(FIXTURE, "x") == str(FIXTURE)


def test_a_damaged_checkpoint_is_named_before_any_work(tmp_path):
    data = bytearray(FIXTURE.read_bytes())
    data[len(data) // 3] ^= 0xFF  # one flipped byte inside a tensor's data
    path = tmp_path / "damaged.ckpt"
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"truncated or damaged \(the checksum of its part"):
        readable(path, str(path))


def test_resuming_from_a_truncated_checkpoint_exits_2_without_traceback(tmp_path):
    path = truncated_copy(tmp_path)
    result = run_script(
        "train.py",
        [*FAST_OVERRIDES, f"ckpt_path={path}", f"paths.output_dir={tmp_path / 'run'}"],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert f"error: ckpt_path={path}: {path} is not a whole checkpoint" in result.stderr
    assert "set ckpt_path=null to start afresh" in result.stderr


def test_a_failed_write_names_the_file_and_the_cause(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointWriteError) as caught:
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    assert str(caught.value).startswith(
        f"could not write checkpoint {path}: No space left on device [errno 28]; the previous "
        "last.ckpt is kept."
    )
    monkeypatch.undo()
    assert torch.load(path)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_full_disk_during_training_exits_without_traceback(tmp_path):
    """A real write error: the hidden file the writer writes first is /dev/full, which
    refuses every byte with ENOSPC, as a full disk does."""
    if not Path("/dev/full").exists():
        pytest.skip("needs Linux's /dev/full")
    run = tmp_path / "run"
    checkpoints = run / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(FIXTURE, checkpoints / "last.ckpt")  # a previous checkpoint to keep
    before = (checkpoints / "last.ckpt").read_bytes()
    (checkpoints / ".last.ckpt.partial").symlink_to("/dev/full")
    result = run_script(
        "train.py",
        [
            *FAST_OVERRIDES,
            *NO_MONITORS_CHECKPOINT_EVERY_STEP,
            "data.batch_size=16",
            "trainer.max_steps=2",
            "logger=csv",
            f"paths.output_dir={run}",
        ],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert (
        f"error: could not write checkpoint {checkpoints / 'last.ckpt'}: No space left on "
        "device [errno 28]; the previous last.ckpt is kept." in result.stderr
    )
    assert (checkpoints / "last.ckpt").read_bytes() == before
