"""``bench/quality.py --check``: the rule that makes ``make quality`` fail when ours falls
behind the peer or below raw pixels (the pre-trainings themselves are too long for a test)."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality", ROOT / "bench" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scores(quality, value: float, spread: float = 0.0) -> dict[str, list[float]]:
    return {p: [value - spread, value, value + spread] for p in quality.PROTOCOLS}


RAW = 0.5


def raw_pixels(quality) -> dict[str, float]:
    return dict.fromkeys(quality.PROTOCOLS, RAW)


def test_level_with_the_peer_passes(quality):
    assert (
        quality.shortfalls(
            scores(quality, 0.9, 0.01), scores(quality, 0.9, 0.01), raw_pixels(quality)
        )
        == []
    )


def test_behind_the_peer_within_two_standard_errors_passes(quality):
    # standard error of the difference: hypot(0.02, 0.02) / sqrt(3) = 0.0163; 2 x = 0.0327
    ours, peer = scores(quality, 0.87, 0.02), scores(quality, 0.90, 0.02)
    assert quality.shortfalls(ours, peer, raw_pixels(quality)) == []


def test_behind_the_peer_by_more_than_two_standard_errors_fails(quality):
    ours, peer = scores(quality, 0.86, 0.02), scores(quality, 0.90, 0.02)
    failures = quality.shortfalls(ours, peer, raw_pixels(quality))
    assert [f.split(":")[0] for f in failures] == quality.PROTOCOLS


def test_one_protocol_behind_fails_on_that_protocol_alone(quality):
    ours = scores(quality, 0.9)
    ours["linear1"] = [0.7, 0.7, 0.7]
    failures = quality.shortfalls(ours, scores(quality, 0.9), raw_pixels(quality))
    assert len(failures) == 1 and failures[0].startswith("linear1: ours 0.7000 < peer")


def test_below_raw_pixels_on_few_label_linear_fails_but_not_on_knn(quality):
    low = scores(quality, RAW - 0.1)
    failures = quality.shortfalls(low, low, raw_pixels(quality))
    assert [f.split(":")[0] for f in failures] == [p for p in quality.PROTOCOLS if "linear" in p]
    assert all("raw pixels" in f for f in failures)
