"""The alert lifecycle as a table: value sequences in, transitions out."""

from __future__ import annotations

import pytest

from alerts.lifecycle import AlertState, Status, Thresholds, Transition, step

SHARE = Thresholds(fire=0.5, clear=0.3)  # dataset drift share: fire at 50%, clear below 30%
ACCURACY = Thresholds(fire=0.85, clear=0.88, direction="below")  # accuracy: fire at or below 0.85, clear above 0.88


def run(values, thresholds=SHARE, fire_after=2, clear_after=2):  # type: ignore[no-untyped-def]
    state, out = AlertState(), []
    for i, v in enumerate(values):
        state, t = step(state, v, thresholds, fire_after=fire_after, clear_after=clear_after, window_end=f"w{i}")
        out.append(t.value if t else None)
    return state, out


@pytest.mark.parametrize("name,values,transitions,final", [
    ("fires after two bad windows", [0.6, 0.7], ["pending", "fired"], Status.FIRING),
    ("one bad window only is cancelled silently", [0.6, 0.1], ["pending", "cancelled"], Status.INACTIVE),
    ("resolves after two good windows", [0.6, 0.7, 0.1, 0.2], ["pending", "fired", None, "resolved"], Status.INACTIVE),
    ("one good window does not resolve", [0.6, 0.7, 0.1, 0.6, 0.1], ["pending", "fired", None, None, None], Status.FIRING),
    ("the band between thresholds neither fires nor clears", [0.6, 0.4, 0.6], ["pending", None, None], Status.PENDING),
    ("hovering at the threshold does not flap", [0.6, 0.7, 0.45, 0.5, 0.45, 0.49], ["pending", "fired", None, None, None, None],
     Status.FIRING),
    ("no data is not a recovery", [0.6, 0.7, None, None, None], ["pending", "fired", None, None, None], Status.FIRING),
    ("NaN is no data", [0.6, float("nan"), 0.6], ["pending", None, None], Status.PENDING),
    ("fires again after resolving", [0.6, 0.6, 0.0, 0.0, 0.9, 0.9], ["pending", "fired", None, "resolved", "pending", "fired"],
     Status.FIRING),
])
def test_share_lifecycle(name: str, values: list[float | None], transitions: list[str | None], final: Status) -> None:
    state, out = run(values)
    assert out == transitions
    assert state.status is final


def test_lower_is_bad_metrics_and_first_window_fires_with_for_one() -> None:
    state, out = run([0.86, 0.84, 0.87, 0.89], ACCURACY, fire_after=1, clear_after=1)
    assert out == [None, "fired", None, "resolved"]  # 0.86 and 0.87 are in the band
    assert state == AlertState()


def test_active_since_is_the_first_bad_window() -> None:
    state = AlertState()
    for i, v in enumerate([0.6, 0.6, 0.6]):
        state, _ = step(state, v, SHARE, fire_after=3, clear_after=1, window_end=f"w{i}")
    assert state.status is Status.FIRING and state.active_since == "w0"


@pytest.mark.parametrize("fire,clear,direction", [(0.5, 0.6, "above"), (0.85, 0.8, "below")])
def test_thresholds_must_leave_a_band_on_the_good_side(fire: float, clear: float, direction: str) -> None:
    with pytest.raises(ValueError, match="clearing threshold"):
        Thresholds(fire, clear, direction)  # type: ignore[arg-type]


def test_streak_lengths_must_be_positive() -> None:
    with pytest.raises(ValueError):
        step(AlertState(), 0.9, SHARE, fire_after=0, clear_after=1, window_end="w")
    assert Transition.FIRED.value == "fired"
