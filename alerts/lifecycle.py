"""An alert's lifecycle, as a pure function of its last state and one new window.

Alertmanager's model (inactive -> pending -> firing -> resolved) with two
additions that cut noise:

- `for` and `clear_for`: how many consecutive bad windows fire an alert, and
  how many consecutive good windows resolve it;
- hysteresis: a value must cross the firing threshold to count as bad, and
  fall past a separate clearing threshold to count as good. In the band
  between them a window is neither: it keeps the alert as it is and resets
  both streaks, so a value hovering at the threshold neither flaps nor
  resolves.

A window with no value (no data, or a detector without a verdict) also
counts as neither: missing data is its own alert, not a recovery.

`step` decides; it never does I/O. The store of states and the notifiers sit
around it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal


class Status(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


class Transition(StrEnum):
    PENDING = "pending"  # first bad window, `for` not reached yet
    FIRED = "fired"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"  # pending, then good again before it fired: nobody is told


@dataclass(frozen=True)
class Thresholds:
    """Fire when the value crosses `fire`; count as good once it is past `clear` on the other side."""

    fire: float
    clear: float
    direction: Literal["above", "below"] = "above"  # `above`: high values are bad (drift share, latency)

    def __post_init__(self) -> None:
        ok = self.clear <= self.fire if self.direction == "above" else self.clear >= self.fire
        if not ok:
            side = "at or below" if self.direction == "above" else "at or above"
            raise ValueError(f"the clearing threshold ({self.clear}) must be {side} the firing one ({self.fire})")

    def judge(self, value: float | None) -> Literal["bad", "good", "hold"]:
        if value is None or value != value:  # no data, or NaN
            return "hold"
        if self.direction == "above":
            return "bad" if value >= self.fire else "good" if value < self.clear else "hold"
        return "bad" if value <= self.fire else "good" if value > self.clear else "hold"


@dataclass(frozen=True)
class AlertState:
    status: Status = Status.INACTIVE
    bad_streak: int = 0
    good_streak: int = 0
    active_since: str | None = None  # ISO time of the window that made it pending (or fire)


def step(state: AlertState, value: float | None, thresholds: Thresholds, *, fire_after: int, clear_after: int,
         window_end: str) -> tuple[AlertState, Transition | None]:
    """The state after one more window, and the transition to record (or None)."""
    if fire_after < 1 or clear_after < 1:
        raise ValueError("fire_after and clear_after must be at least 1")
    verdict = thresholds.judge(value)
    if verdict == "hold":
        return replace(state, bad_streak=0, good_streak=0), None
    if verdict == "bad":
        bad = state.bad_streak + 1
        if state.status is Status.FIRING:
            return replace(state, bad_streak=bad, good_streak=0), None
        since = state.active_since or window_end
        if bad >= fire_after:
            return AlertState(Status.FIRING, bad, 0, since), Transition.FIRED
        if state.status is Status.INACTIVE:
            return AlertState(Status.PENDING, bad, 0, since), Transition.PENDING
        return AlertState(Status.PENDING, bad, 0, since), None
    good = state.good_streak + 1
    if state.status is Status.FIRING:
        if good >= clear_after:
            return AlertState(), Transition.RESOLVED
        return replace(state, bad_streak=0, good_streak=good), None
    if state.status is Status.PENDING:
        return AlertState(), Transition.CANCELLED
    return AlertState(), None
