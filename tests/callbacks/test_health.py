"""Training health without labels: RankMe, alignment and uniformity order a collapsed encoder
below a spread-out one, and the callback logs them from a real pre-training run."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from conftest import FAST_OVERRIDES, compose_config
from simclr.callbacks.health import alignment, effective_rank, uniformity


def test_a_collapsed_representation_scores_worst():
    torch.manual_seed(0)
    collapsed = torch.ones(64, 32) + 1e-9 * torch.randn(64, 32)
    spread = torch.randn(64, 32)
    assert effective_rank(collapsed) == pytest.approx(1.0, abs=1e-3)
    assert effective_rank(spread) > 20  # of at most 32
    assert uniformity(collapsed) == pytest.approx(0.0, abs=1e-6)
    assert uniformity(spread) < -2.5
    assert alignment(collapsed, collapsed) == pytest.approx(0.0, abs=1e-9)
    # Two views that agree align better than two unrelated ones (about 2 on a sphere).
    noisy = spread + 0.1 * torch.randn(64, 32)
    assert alignment(spread, noisy) < 0.05 < 1.5 < alignment(spread, torch.randn(64, 32))


def test_the_rank_counts_the_directions_used():
    torch.manual_seed(0)
    three = torch.randn(200, 3) @ torch.randn(3, 64)  # rank 3 in 64 dimensions
    assert 2.0 < effective_rank(three) <= 3.0


def test_pretraining_logs_health_every_epoch(tmp_path):
    from simclr.tasks.pretrain import run

    cfg = compose_config(
        [*FAST_OVERRIDES, "trainer.max_epochs=2", "logger=csv", "callbacks.health.num_images=32"],
        tmp_path,
    )
    run(cfg)
    (metrics,) = tmp_path.glob("**/metrics.csv")
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("health/rank")]
    assert len(rows) == 2
    for row in rows:
        rank, align, uniform = (
            float(row[f"health/{k}"]) for k in ("rank", "alignment", "uniformity")
        )
        assert 1 <= rank <= 32 and 0 <= align <= 4 and -4.1 <= uniform <= 0
        assert all(math.isfinite(v) for v in (rank, align, uniform))
