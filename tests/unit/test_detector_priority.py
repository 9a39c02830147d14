"""Which settings put detection behind ingest, and how CAP_SYS_NICE is read (detectors/priority.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.priority import background_settings, can_renice


@pytest.mark.parametrize(("nice", "embedded", "renice", "expected"), [
    (0, True, True, {}),  # 0: detection competes as before
    (0, False, False, {}),
    (10, True, True, {"os_threads_nice_value_query": 10}),  # ClickHouse renices (and restores) its threads
    (10, True, False, {"max_threads": 1}),  # it would ignore the nice value: hold detection to one thread
    (19, False, False, {"os_threads_nice_value_query": 19}),  # a server decides with its own capabilities
])
def test_background_settings(nice: int, embedded: bool, renice: bool, expected: dict[str, int]) -> None:
    assert background_settings(nice, embedded=embedded, renice=renice) == expected


def _status(tmp_path: Path, cap_eff: str) -> Path:
    path = tmp_path / "status"
    path.write_text(f"Name:\tpython\nCapInh:\t0000000000000000\nCapEff:\t{cap_eff}\nCapBnd:\t000001ffffffffff\n")
    return path


def test_can_renice_reads_the_effective_capability_bit(tmp_path: Path) -> None:
    assert can_renice(_status(tmp_path, "000001ffffffffff"))  # root: every capability
    assert can_renice(_status(tmp_path, "0000000000800000"))  # CAP_SYS_NICE (bit 23) alone
    assert not can_renice(_status(tmp_path, "00000000a80425fb"))  # Docker's default set: no CAP_SYS_NICE
    assert not can_renice(_status(tmp_path, "0000000000000000"))
    assert not can_renice(tmp_path / "missing")  # not Linux: no nice, and no claim of one
