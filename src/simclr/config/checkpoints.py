"""Which checkpoint a run resumes from: ``ckpt_path`` resolved to a file before any work."""

from __future__ import annotations

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

    A path that does not exist, or ``last`` with no earlier run, is a :class:`ConfigError`.
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
        return str(max(found, key=lambda p: p.stat().st_mtime))
    path = Path(str(ckpt_path)).expanduser()
    if path.is_dir() and (path / "checkpoints" / "last.ckpt").is_file():
        return str(path / "checkpoints" / "last.ckpt")
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path}: no such checkpoint file; give the path of a .ckpt (e.g. "
            "logs/pretrain/runs/<time>/checkpoints/last.ckpt), a run folder, 'last' for the "
            "newest run's last.ckpt, or null to start afresh"
        )
    return str(path)
