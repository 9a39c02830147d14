"""The value model: one canonical form for every feature, prediction and label, on every path in.

Data reaches Driftline as JSON events (Kafka, HTTP ingest), as reference files
(CSV read as text, Parquet read as pandas dtypes) and as Python objects
(`PredictionLogger`, with numpy and pandas scalars). The same class or
category arrives as `1`, `1.0`, `"1"`, `"1.0"`, `true`, `numpy.int64(1)` or
`numpy.True_`; if each path stored its own spelling, a reference label "1.0"
never equals a prediction "1" and a categorical feature is 100% unseen in
every window. So every path stores the *stored form* defined here:

- null, NaN, pandas NA/NaT: missing (None);
- booleans (JSON, Python, numpy; the strings true/false in any case): 1.0 / 0.0;
- numbers (any int or float type): Float64, with -0.0 stored as 0.0;
- strings that spell a plain decimal number (`NUMBER_PATTERN`: no sign but
  `-`, no leading zeros, at most 15 integer digits, finite): that number;
- any other string: itself (`"007"`, `"A"`, a 20-digit id stay text).

A Variant(Float64, String) column then holds one representation per value,
and reading it as a category (`toString` in ClickHouse, `text` here) gives
the *text form*: numbers as ClickHouse prints a Float64 (`1`, `0.5`,
`1e-7`, `1e21`), strings unchanged. `text` reproduces ClickHouse's printing,
so a class named in Python (a registry's `positive_label`, a `proba_<class>`
column, a proba key) equals the class the detectors' SQL reads.

The Kafka and HTTP paths never run this Python per event: the collector
validates and hands ClickHouse the original JSON, and the ingest view calls
`json_token_sql`, the SQL twin of `stored`. tests/unit/test_values.py runs
both on the same inputs and compares what is stored.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal
from typing import Any

NUMBER_PATTERN = r"-?(0|[1-9][0-9]{0,14})([.][0-9]+)?([eE][+-]?[0-9]+)?"
"""Strings stored as numbers. 15 integer digits stay below 2^53, so an integer id is never rounded into
another; leading zeros (`"007"`, zip codes) and other spellings (`"+1"`, `" 1"`, `"1_000"`) stay text."""

_NUMBER = re.compile(NUMBER_PATTERN)
_BOOLEAN_TEXT = {"true": 1.0, "false": 0.0}
VARIANT = "Variant(Float64, String)"


class ValueTypeError(TypeError):
    """A value of a type Driftline does not store (a list, a dict, an arbitrary object)."""


def _number_from_text(text: str) -> float | None:
    """The number a string spells under the value model, or None when it stays text."""
    if len(text) in (4, 5) and text.isascii():
        flag = _BOOLEAN_TEXT.get(text.lower())
        if flag is not None:
            return flag
    if _NUMBER.fullmatch(text) is None:
        return None
    number = float(text)
    return number + 0.0 if math.isfinite(number) else None


def stored(value: Any) -> float | str | None:
    """The stored form of a feature, prediction or label value (see the module docstring).

    Infinite numbers raise ValueError: JSON cannot carry them, and a reference that holds one has a bug
    the owner should see rather than a value that breaks every statistic.
    """
    if value is None:
        return None
    kind = type(value)
    if kind is str:
        number = _number_from_text(value)
        return value if number is None else number
    if kind is bool:
        return 1.0 if value else 0.0
    if kind is float or kind is int:
        return _finite(float(value))
    return _stored_other(value)


def _finite(number: float) -> float | None:
    if math.isnan(number):
        return None
    if math.isinf(number):
        raise ValueError("infinite values are not allowed")
    return number + 0.0


def _stored_other(value: Any) -> float | str | None:
    """numpy and pandas scalars, Decimal, str and float subclasses: the slow path of `stored`, through `plain`."""
    return stored(_plain_other(value))


def number_text(number: float) -> str:
    """A Float64 as ClickHouse's `toString` prints it: shortest round-trip digits, ECMAScript layout.

    Fixed notation for 1e-7 < |x| < 1e21, otherwise `d.ddde-N` / `de21` (no `+` in the exponent).
    """
    if number == 0:
        return "0"
    if not math.isfinite(number):
        raise ValueError(f"{number} has no text form")
    sign = "-" if number < 0 else ""
    mantissa, _, exponent = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    stripped = digits.lstrip("0")
    point = len(whole) + int(exponent or 0) - (len(digits) - len(stripped))  # value = 0.<digits> * 10^point
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= point <= 21:
        return sign + digits + "0" * (point - k)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    power = point - 1
    head = digits[0] if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{head}e{'-' if power < 0 else ''}{abs(power)}"


def text(value: Any) -> str | None:
    """The text form: how a class or category reads in SQL (`toString` of the stored Variant)."""
    form = stored(value)
    if form is None or type(form) is str:
        return form
    return number_text(form)


def class_name(value: Any, *, what: str = "class") -> str:
    """The text form of a value that must name a class (positive_label, a proba key): never missing."""
    name = text(value)
    if name is None or name == "":
        raise ValueError(f"{what} cannot be empty or null")
    return name


def plain(value: Any) -> Any:
    """A value msgspec can encode into an event: Python bool/float/str/None, numpy and pandas scalars converted.

    The producer's fast path: Python's own types pass through; only foreign scalars pay for a conversion.
    NaN and pandas NA/NaT become None (JSON null: missing).
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is float:
        return None if math.isnan(value) else value
    if kind is int:
        return float(value)
    return _plain_other(value)


def _plain_other(value: Any) -> Any:
    module = type(value).__module__
    if module.startswith(("numpy", "pandas")):
        import numpy as np
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, (np.integer, np.floating)):
            number = float(value)
            return None if math.isnan(number) else number
        if isinstance(value, np.str_):
            return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (int, float, Decimal)):
        number = float(value)
        return None if math.isnan(number) else number
    raise ValueTypeError(f"a value of type {type(value).__name__} is not a number, string, boolean or null")


def timestamp(value: Any) -> dt.datetime:
    """An event time from a datetime, pandas Timestamp or numpy datetime64; a naive time is refused, not guessed."""
    if type(value) is not dt.datetime:
        if type(value).__module__.startswith("numpy"):
            import pandas as pd

            value = pd.Timestamp(value)
        if hasattr(value, "to_pydatetime"):
            value = value.to_pydatetime()
        if not isinstance(value, dt.datetime):
            raise ValueTypeError(f"ts must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ValueError("ts needs a time zone (e.g. datetime.now(timezone.utc)); a naive time is ambiguous")
    return value


# -- the SQL twins ---------------------------------------------------------------------------------------------

_SQL_NUMBER = f"'^{NUMBER_PATTERN}$'"


def _string_sql(s: str, *, as_text: bool) -> str:
    """SQL of `stored` (as_text=False: a Variant) or `text` (as_text=True: a String) of a String expression `s`."""
    boolean = f"(length({s}) IN (4, 5) AND lower({s}) IN ('true', 'false'))"
    number = f"(match({s}, {_SQL_NUMBER}) AND isFinite(toFloat64OrZero({s})))"
    if as_text:
        return (f"multiIf({boolean}, if(lower({s}) = 'true', '1', '0'), "
                f"{number}, toString(toFloat64OrZero({s}) + 0.), {s})")
    return (f"multiIf({boolean}, CAST(toFloat64(lower({s}) = 'true') AS {VARIANT}), "
            f"{number}, CAST(toFloat64OrZero({s}) + 0. AS {VARIANT}), CAST({s} AS {VARIANT}))")


def json_token_sql(raw: str) -> str:
    """SQL turning one raw JSON token (`JSONExtractRaw`) into its stored form, a Variant(Float64, String).

    The token's JSON type decides first (a string is never read by ClickHouse's inference), then the
    value model: true/false and numbers are Float64, strings go through `_string_sql`. Use with
    `cast_string_to_variant_use_inference = 0`.
    """
    return (f"multiIf(startsWith({raw}, '\"'), {_string_sql(f'JSONExtractString({raw})', as_text=False)}, "
            f"{raw} IN ('true', 'false'), CAST(toFloat64({raw} = 'true') AS {VARIANT}), "
            f"CAST(toFloat64OrNull({raw}) + 0. AS {VARIANT}))")


def class_name_sql(s: str) -> str:
    """SQL of `text` for a String expression (a proba key): the class name the detectors compare with."""
    return _string_sql(s, as_text=True)
