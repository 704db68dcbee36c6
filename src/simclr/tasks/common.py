"""The shared body of the entry points (``train.py``, ``finetune.py``)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from omegaconf import DictConfig

from simclr.errors import SimCLRError


def run_for_user(run: Callable[[DictConfig], dict], cfg: DictConfig) -> float | None:
    """Run ``run(cfg)``; a :class:`SimCLRError` is printed without a stack trace and exits
    with status 2. Returns the metric named by ``cfg.optimized_metric``, for Hydra sweepers."""
    try:
        metrics = run(cfg)
    except SimCLRError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None
