"""Which checkpoint a run resumes from: ``ckpt_path`` resolved to a file before any work."""

from __future__ import annotations

import zipfile
from pathlib import Path

from omegaconf import DictConfig

from simclr.errors import ConfigError


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """The checkpoint to resume from, as ``cfg.ckpt_path`` names it.

    - ``null``: none (a fresh run).
    - ``last``: the newest ``last.ckpt`` (by modification time) of the earlier runs of this
      task, ``${paths.log_dir}/${task_name}/runs/*/checkpoints/last.ckpt``.
    - a run folder: its ``checkpoints/last.ckpt``.
    - a file path: that file.

    A path that does not exist, ``last`` with no earlier run, or a file that is not a whole
    checkpoint (truncated by a full disk or a copy cut short, or damaged) is a
    :class:`ConfigError`, raised before any work.
    """
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None:
        return None
    if str(ckpt_path) == "last":
        runs = Path(cfg.paths.log_dir) / cfg.task_name / "runs"
        found = [p for p in runs.glob("*/checkpoints/last.ckpt") if p.is_file()]
        if not found:
            raise ConfigError(
                f"ckpt_path=last: no earlier run of task {cfg.task_name!r} left a checkpoint "
                f"({runs}/*/checkpoints/last.ckpt matches nothing); give ckpt_path=<path to a "
                ".ckpt> or leave ckpt_path=null to start afresh"
            )
        return readable(max(found, key=lambda p: p.stat().st_mtime), ckpt_path)
    path = Path(str(ckpt_path)).expanduser()
    if path.is_dir() and (path / "checkpoints" / "last.ckpt").is_file():
        return readable(path / "checkpoints" / "last.ckpt", ckpt_path)
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path}: no such checkpoint file; give the path of a .ckpt (e.g. "
            "logs/pretrain/runs/<time>/checkpoints/last.ckpt), a run folder, 'last' for the "
            "newest run's last.ckpt, or null to start afresh"
        )
    return readable(path, ckpt_path)


def readable(path: Path, ckpt_path) -> str:
    """``path`` as a string if it is a whole checkpoint file: PyTorch's zip archive with every
    member's checksum intact (read once, before Lightning reads it again)."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        reason = f"{type(error).__name__}: {error}"
    else:
        if damaged is None:
            return str(path)
        reason = f"the checksum of its part {damaged!r} does not match"
    raise ConfigError(
        f"ckpt_path={ckpt_path}: {path} is not a whole checkpoint, it is truncated or damaged "
        f"({reason}); resume from an earlier checkpoint of that run (its checkpoints/ folder), "
        "or set ckpt_path=null to start afresh"
    )
