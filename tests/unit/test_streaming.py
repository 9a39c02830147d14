"""The streaming detectors: quiet on long stable streams, quick on a step, and restorable bit for bit mid-stream.

Bounds are stated per detector (rows after a 10% -> 30% error jump that follows 100,000 stable rows); the
measured delays are in docs/reference.md (Concept drift on the labelled stream). river is not installed here, so
there is no comparison with its implementations.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator

import pytest

from detectors.streaming import Adwin, Ddm, PageHinkley, StreamDetector
from tests.integration.concept_stream import DELAY_BOUND

STABLE = 100_000
MAKERS: dict[str, Callable[[], StreamDetector]] = {"page_hinkley": PageHinkley, "adwin": Adwin, "ddm": Ddm}


def errors(seed: int, rates: list[tuple[int, float]]) -> Iterator[float]:
    """Binary errors: `rows` rows at each `rate`, in order."""
    rng = random.Random(seed)
    for rows, rate in rates:
        for _ in range(rows):
            yield 1.0 if rng.random() < rate else 0.0


@pytest.mark.parametrize("name, seeds", [("page_hinkley", range(5)), ("ddm", range(5)), ("adwin", range(2))])
def test_no_false_alarm_on_long_stable_streams(name: str, seeds: range) -> None:
    for seed in seeds:
        detector = MAKERS[name]()
        fired = [i for i, x in enumerate(errors(100 + seed, [(STABLE, 0.1)])) if detector.update(x)]
        assert fired == [], (name, seed)


@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("seed", [1, 2])
def test_fires_within_its_bound_after_a_step_and_never_before(name: str, seed: int) -> None:
    detector = MAKERS[name]()
    fired = [i for i, x in enumerate(errors(seed, [(STABLE, 0.1), (DELAY_BOUND[name], 0.3)])) if detector.update(x)]
    assert fired, f"{name} did not fire within {DELAY_BOUND[name]} rows of the jump"
    assert fired[0] >= STABLE  # nothing in the stable prefix
    statistic, threshold = detector.fired  # the evidence of the last firing: past its threshold
    assert statistic >= threshold > 0


@pytest.mark.parametrize("name", list(MAKERS))
def test_a_drop_of_the_error_does_not_fire(name: str) -> None:
    detector = MAKERS[name]()
    assert not any(detector.update(x) for x in errors(3, [(20_000, 0.3), (20_000, 0.05)]))


@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("cut", [7, 5_000, 100_050])
def test_a_restored_detector_continues_bit_identically(name: str, cut: int) -> None:
    stream = list(errors(4, [(STABLE, 0.1), (DELAY_BOUND[name], 0.3)]))
    original = MAKERS[name]()
    for x in stream[:cut]:
        original.update(x)
    saved = json.dumps(original.state())
    restored = MAKERS[name]()
    restored.restore(json.loads(saved))
    outputs = [(original.update(x), restored.update(x)) for x in stream[cut:]]
    assert [a for a, _ in outputs] == [b for _, b in outputs]
    if cut < STABLE:
        assert any(a for a, _ in outputs)  # the restored one sees the jump, like the original
    assert json.dumps(original.state()) == json.dumps(restored.state())


def test_page_hinkley_resets_after_firing_and_needs_min_instances_again() -> None:
    detector = PageHinkley(delta=0.0, lambda_=5.0, min_instances=10)
    outputs = [detector.update(1.0 if i >= 20 else 0.0) for i in range(40)]
    first = outputs.index(True)
    assert 20 < first < 30 and detector.state()["n"] == 40 - first - 1
    assert detector.fired[0] > 5.0 and detector.fired[1] == 5.0


def test_ddm_takes_binary_errors_only() -> None:
    with pytest.raises(ValueError, match="binary"):
        Ddm().update(0.5)


def test_ddm_error_free_start_does_not_make_the_first_error_a_drift() -> None:
    detector = Ddm(min_instances=30)
    assert not any(detector.update(0.0) for _ in range(100))
    assert not detector.update(1.0)


def test_adwin_memory_grows_with_the_log_of_its_window() -> None:
    detector = Adwin()
    for x in errors(5, [(STABLE, 0.1)]):
        detector.update(x)
    buckets = sum(len(level) for level in detector.state()["levels"])
    assert detector.state()["width"] > 50_000 and buckets <= (detector.max_buckets + 1) * 20
