"""The value model (driftline/values.py): one stored form per value, the same in Python and in the ingest SQL.

The SQL half runs on the real engine (chDB, a folder of its own): the ingest view's expression over JSON
tokens must store exactly what `stored` gives for the same value, and `toString` of it must be `text`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import struct
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from driftline.values import (
    ValueTypeError,
    class_name,
    class_name_sql,
    json_token_sql,
    number_text,
    plain,
    stored,
    text,
    timestamp,
)


@pytest.mark.parametrize("value", [1, 1.0, "1", "1.0", "1.00", "1e0", True, "true", "True", "TRUE", np.int64(1),
                                   np.float32(1.0), np.bool_(True), np.uint8(1), Decimal("1.0")])
def test_every_spelling_of_one_is_the_class_1(value: object) -> None:
    assert stored(value) == 1.0 and type(stored(value)) is float
    assert text(value) == "1" == class_name(value)


@pytest.mark.parametrize("value", [0, 0.0, -0.0, "0", "-0", "0.0", False, "false", "False", np.bool_(False),
                                   np.int32(0)])
def test_every_spelling_of_zero_is_the_class_0(value: object) -> None:
    assert text(value) == "0"
    assert math.copysign(1.0, stored(value)) == 1.0  # -0.0 is stored as 0.0: one category, not "-0" and "0"


@pytest.mark.parametrize("value", [None, float("nan"), np.nan, np.float64("nan"), pd.NA, pd.NaT])
def test_missing_values_are_none(value: object) -> None:
    assert stored(value) is None and text(value) is None


@pytest.mark.parametrize("value", [
    "007", "01234", "A", "", " 1", "1 ", "+1", ".5", "1.", "1_000", "0x10", "nan", "NaN", "inf", "Infinity",
    "1e999", "12345678901234567890", "1234567890123456", "yes", "t", "truee", "１",
])
def test_other_strings_stay_text(value: str) -> None:
    """Zip codes, ids beyond 15 digits, signs and spaces: never rounded or merged into a number."""
    assert stored(value) == value and text(value) == value


@pytest.mark.parametrize("value,want", [
    ("123456789012345", 123456789012345.0), ("-2.50", -2.5), ("1e-7", 1e-7), ("1E+3", 1000.0), ("0.5", 0.5),
])
def test_strings_spelling_plain_numbers_are_numbers(value: str, want: float) -> None:
    assert stored(value) == want


@pytest.mark.parametrize("number,want", [
    (1.0, "1"), (0.5, "0.5"), (-2.5, "-2.5"), (1e20, "100000000000000000000"), (1e21, "1e21"), (1e-6, "0.000001"),
    (1e-7, "1e-7"), (1.5e300, "1.5e300"), (123.456, "123.456"), (2.0 ** 53, "9007199254740992"),
    (1.2345678901234568e17, "123456789012345680"), (5e-324, "5e-324"), (-1.5e-9, "-1.5e-9"),
])
def test_number_text_is_clickhouse_printing(number: float, want: str) -> None:
    assert number_text(number) == want


def test_infinite_and_foreign_values_are_refused() -> None:
    with pytest.raises(ValueError, match="infinite"):
        stored(float("inf"))
    with pytest.raises(ValueTypeError, match="list"):
        stored([1])
    with pytest.raises(ValueError, match="empty"):
        class_name("", what="positive_label")


def test_plain_gives_msgspec_encodable_python_values() -> None:
    assert plain(np.int64(3)) == 3.0 and type(plain(np.int64(3))) is float
    assert plain(np.bool_(True)) is True and plain(np.float32(0.5)) == 0.5
    assert plain(np.float64("nan")) is None and plain(pd.NA) is None and plain(float("nan")) is None
    assert plain(np.str_("a")) == "a" and type(plain(np.str_("a"))) is str
    assert plain("x") == "x" and plain(None) is None and plain(7) == 7.0


def test_timestamp_takes_pandas_and_numpy_times_and_refuses_naive_ones() -> None:
    aware = pd.Timestamp("2026-01-02T03:04:05Z")
    assert timestamp(aware) == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert type(timestamp(aware)) is dt.datetime
    with pytest.raises(ValueError, match="time zone"):
        timestamp(np.datetime64("2026-01-02T03:04:05"))
    with pytest.raises(ValueTypeError):
        timestamp("2026-01-02")


# -- Python and SQL store the same value -----------------------------------------------------------------------


@pytest.fixture
def engine(store):  # type: ignore[no-untyped-def]
    """The session's chDB (tests/conftest.py): one process can open one chDB folder, and in a pytest-xdist
    worker the session store is usually open already."""
    return store


def _corpus() -> list[object]:
    rng = random.Random(20261202)
    values: list[object] = [True, False, None, 0, 1, -1, 0.5, -0.0, 1e21, 1e-7, 2 ** 53, 10 ** 15, "1", "1.0", "-0",
                            "007", "true", "False", "TRUE", "A", "", "1e999", "1e-400", "nan", "12345678901234567890",
                            "123456789012345", "1234567890123456", "0.1", "1E5", "+1", " 1", "é", "t\u0000"]
    for _ in range(400):
        bits = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        if math.isfinite(bits):
            values += [bits, repr(bits)]
        x = round(rng.uniform(-1e4, 1e4), rng.randint(0, 8))
        values += [x, repr(x), f"{x:.3f}", str(rng.randint(-10 ** 16, 10 ** 16)), 10.0 ** rng.randint(-30, 30)]
    return values


def test_the_ingest_sql_stores_what_python_stores(engine) -> None:  # type: ignore[no-untyped-def]
    """Each value as a JSON token through `json_token_sql`, the expression the ingest views use."""
    values = _corpus()
    tokens = [json.dumps(v) for v in values]
    rows = engine.query(
        f"SELECT {json_token_sql('t')} AS v, toString(v), variantType(v) FROM (SELECT arrayJoin({{t:Array(String)}}) "
        "AS t, rowNumberInAllBlocks() AS n) ORDER BY n SETTINGS cast_string_to_variant_use_inference = 0",
        parameters={"t": tokens}).result_rows
    assert len(rows) == len(values)
    for value, (got, printed, kind) in zip(values, rows, strict=True):
        want = stored(value)
        if want is None:
            assert got is None, value
            continue
        assert kind == ("Float64" if isinstance(want, float) else "String"), value
        assert got == want, value
        assert printed == text(value), value


def test_proba_keys_canonicalise_alike_in_sql(engine) -> None:  # type: ignore[no-untyped-def]
    keys = [v for v in _corpus() if isinstance(v, str) and v != ""]
    got = engine.query(f"SELECT arrayMap(k -> {class_name_sql('k')}, {{k:Array(String)}})",
                       parameters={"k": keys}).result_rows[0][0]
    assert got == [class_name(k) for k in keys]
