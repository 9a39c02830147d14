"""Detector shards: every model on exactly one shard, balanced, stable, and minimal movement when n grows."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from pydantic import ValidationError

from detectors.shard import Shard, shard_of
from driftline.config import Settings

NAMES = [f"model-{i:04d}" for i in range(1000)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 8, 16])
def test_every_model_is_on_exactly_one_shard(n: int) -> None:
    shards = [Shard(i, n) for i in range(n)]
    assert all(sum(s.owns(name) for s in shards) == 1 for name in NAMES)


@pytest.mark.parametrize("n", [2, 3, 4, 8, 16])
def test_shards_are_balanced_within_four_binomial_standard_deviations(n: int) -> None:
    counts = Counter(shard_of(name, n) for name in NAMES)
    expected = len(NAMES) / n
    tolerance = 4 * math.sqrt(len(NAMES) * (1 / n) * (1 - 1 / n))  # n=4: 250 +- 55
    assert set(counts) == set(range(n))
    assert all(abs(c - expected) <= tolerance for c in counts.values()), counts


def test_the_assignment_is_stable_and_does_not_depend_on_the_process() -> None:
    # md5, not hash(): the same on every host and under any PYTHONHASHSEED, so the values can be pinned.
    names = ("fraud", "churn", "ranker", "model-0000")
    assert [shard_of(n, 4) for n in names] == [1, 3, 3, 2]
    assert [shard_of(n, 4) for n in NAMES] == [shard_of(n, 4) for n in NAMES]


def test_growing_from_n_to_n_plus_one_moves_models_only_to_the_new_shard() -> None:
    for n in (2, 4, 8):
        before = {name: shard_of(name, n) for name in NAMES}
        after = {name: shard_of(name, n + 1) for name in NAMES}
        moved = [name for name in NAMES if before[name] != after[name]]
        assert all(after[name] == n for name in moved)  # rendezvous: nothing shuffles between old shards
        share = len(moved) / len(NAMES)
        assert abs(share - 1 / (n + 1)) <= 4 * math.sqrt((1 / (n + 1)) * (1 - 1 / (n + 1)) / len(NAMES))


def test_parse_and_settings_validation() -> None:
    assert Shard.parse("2/4") == Shard(2, 4) and str(Shard.parse(" 0 / 1 ")) == "0/1"
    for bad in ("4/4", "1", "a/b", "-1/2", "0/0", ""):
        with pytest.raises(ValueError):
            Shard.parse(bad)
    assert Settings(detector_shard="1/3").detector_shard == "1/3"
    with pytest.raises(ValidationError):
        Settings(detector_shard="3/3")
