"""Window states: per (model, hour, feature) aggregates that merge into any hour-aligned window.

`hourly_states` (an AggregatingMergeTree) holds, per (model, hour bucket,
feature), mergeable aggregates of the `predictions` rows of that hour.
Merging the rows of the hours of a window (`sum`, `min`, `max`, `sumMap`)
gives the same summary a scan of the window's raw rows would, without reading
them: a 30-day window is 720 hours of states instead of every event.

Per feature (and per event, under the feature '', and for the prediction,
under `__prediction__`):
- `rows`: events carrying the key; `numbers`: non-null numeric values;
  `min`/`max` (exact), `sum`/`sum2` (for the reference's standard deviation);
- `histogram`: counts of numeric values quantized to their top
  `MANTISSA_BITS` mantissa bits (truncated toward zero): a value x lands in
  a bin [key, key + 2^(e - k)) (mirrored for negatives), so the bin's width
  is at most 2^-k |x|. Mergeable and exact up to that quantization; the
  number of keys grows with the octaves the data spans, never with rows.
- `categories`: exact counts of string values (categories, hashed fields);
- `fingerprint` (feature '' only): the wrapping sum of a hash of each row's
  Kafka position, so an hour whose rows changed with an unchanged count
  (some deleted, as many others added) is still seen as changed.

Why built, not kept by a view: a materialized view aggregated every insert
block on the collector's hot path and halved its throughput (docs/evidence.md:
Benchmarks). States are now built by `refresh` for the hours whose rows differ
from their states (count or fingerprint), one INSERT ... SELECT per run of up
to HOURS_PER_BUILD such hours, when a detection is about to read them
(detectors/states.py). That one
comparison covers every way rows change: the first build, late events into a
closed hour, the collector's rollback of uncommitted rows and their replay,
retention, and a process that died between a rebuild's DELETE and its INSERT.
Each hour's states come from one statement, so they and their
fingerprint describe the same snapshot; rows landing after it make the next
comparison differ, and until that rebuild the detectors' guard (the states'
event count against the rows stored) sends the detection to raw rows.

Why hour buckets: windows are aligned multiples of the model's window
(an hour or more in practice); minute buckets would multiply the rows of the
histogram maps, which dominate the table, by 60 for no window that uses them.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

TABLE = "hourly_states"
LEGACY_TABLE = "window_states"
"""Migration 9's table, kept by a view on every insert; migration 14 drops both."""
EVENTS_KEY = ""
"""The feature key whose `rows` count every event (the window's row count)."""
PREDICTION_KEY = "__prediction__"
"""The key of the model's prediction (the name drift results use for it)."""

MANTISSA_BITS = 9
"""Mantissa bits kept by the numeric histogram: bin width at most 2^-9 (0.2 %) of the value."""

HOUR = timedelta(hours=1)
BUCKET = "toStartOfHour(toDateTime(ts, 'UTC'))"
FINGERPRINT = "cityHash64(topic, partition, offset)"
"""A row's Kafka position hashed; summed (wrapping) per hour. Rows are only ever deleted by position."""
BUILD_SETTINGS = {"cast_string_to_variant_use_inference": 0}

_MASK = (1 << 64) - (1 << (52 - MANTISSA_BITS))
VARIANT = "Variant(Float64, String)"


def quantize_sql(x: str) -> str:
    """`x` (Float64) with all but its top MANTISSA_BITS mantissa bits cleared (rounded toward zero)."""
    return f"reinterpretAsFloat64(bitAnd(reinterpretAsUInt64({x}), toUInt64({_MASK})))"


PAIRS = (
    f"arrayZip(arrayConcat(['{EVENTS_KEY}', '{PREDICTION_KEY}'], mapKeys(features)), "
    f"arrayConcat([CAST(NULL AS {VARIANT}), prediction], mapValues(features)))"
)
"""(key, value) of every feature of a row, plus the event itself and the prediction."""

_X = "variantElement(kv.2, 'Float64')"
_S = "variantElement(kv.2, 'String')"
KEY_COLUMNS = ("model", "bucket", "feature")
STATE_COLUMNS = ("rows", "numbers", "min", "max", "sum", "sum2", "histogram", "categories")

AGGREGATES = (
    "count()",
    f"count({_X})",
    f"min({_X})",
    f"max({_X})",
    f"sum(ifNull({_X}, 0))",
    f"sum(ifNull({_X} * {_X}, 0))",
    f"sumMapIf([{quantize_sql(f'assumeNotNull({_X})')}], [toUInt64(1)], {_X} IS NOT NULL)",
    f"sumMapIf([assumeNotNull({_S})], [toUInt64(1)], {_S} IS NOT NULL)",
)
"""The state of a group of rows, per column of STATE_COLUMNS (over `kv`, one (key, value) pair)."""

MERGES = ("sum(rows)", "sum(numbers)", "min(min)", "max(max)", "sum(sum)", "sum(sum2)", "sumMap(histogram)",
          "sumMap(categories)")
"""The same columns merged over any set of state rows."""

_STATE_TYPES = """rows SimpleAggregateFunction(sum, UInt64),
                numbers SimpleAggregateFunction(sum, UInt64),
                min SimpleAggregateFunction(min, Nullable(Float64)),
                max SimpleAggregateFunction(max, Nullable(Float64)),
                sum SimpleAggregateFunction(sum, Float64),
                sum2 SimpleAggregateFunction(sum, Float64),
                histogram SimpleAggregateFunction(sumMap, Tuple(Array(Float64), Array(UInt64))),
                categories SimpleAggregateFunction(sumMap, Tuple(Array(String), Array(UInt64)))"""

CREATE_TABLE = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
                model LowCardinality(String),
                bucket DateTime('UTC'),
                feature String,
                {_STATE_TYPES},
                fingerprint SimpleAggregateFunction(sum, UInt64)
            ) ENGINE = AggregatingMergeTree
            PARTITION BY toYYYYMM(bucket)
            ORDER BY (model, bucket, feature)"""


def _select(keys: str, group: str, where: str, extra: str = "") -> str:
    aggregates = ",\n                   ".join(f"{a} AS {c}" for a, c in zip(AGGREGATES, STATE_COLUMNS, strict=True))
    return f"""SELECT {keys},
                   {aggregates}{extra}
            FROM predictions ARRAY JOIN {PAIRS} AS kv
            {f'WHERE {where}' if where else ''}
            GROUP BY {group}"""


def state_select(where: str = "") -> str:
    """The states (and fingerprints) of the predictions rows matching `where` (SQL written here or parameterised)."""
    return _select(f"model, {BUCKET} AS bucket, kv.1 AS feature", "model, bucket, feature", where,
                   f",\n                   sumIf({FINGERPRINT}, kv.1 = '{EVENTS_KEY}') AS fingerprint")


LEGACY_CREATE_TABLE = f"""CREATE TABLE IF NOT EXISTS {LEGACY_TABLE} (
                model LowCardinality(String),
                bucket DateTime('UTC'),
                feature String,
                topic LowCardinality(String),
                partition Int32,
                offset_block Int64,
                {_STATE_TYPES}
            ) ENGINE = AggregatingMergeTree
            PARTITION BY toYYYYMM(bucket)
            ORDER BY (model, bucket, feature, topic, partition, offset_block)"""
LEGACY_CREATE_VIEW = f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {LEGACY_TABLE}_mv TO {LEGACY_TABLE} AS
            {_select(f"model, {BUCKET} AS bucket, kv.1 AS feature, topic, partition, "
                     "intDiv(offset, 1048576) AS offset_block",
                     "model, bucket, feature, topic, partition, offset_block", "")}"""
"""Migration 9 as it was applied; a new store creates and then drops them (migration 14)."""

HOURS_PER_BUILD = 24
"""Stale hours built by one INSERT ... SELECT."""
_build_lock = threading.Lock()


def _span(column: str) -> str:
    """The rows (`ts`) or states (`bucket`) of parameters m, s, e: one model's span."""
    return f"model = {{m:String}} AND {column} >= {{s:DateTime64(3, 'UTC')}} AND {column} < {{e:DateTime64(3, 'UTC')}}"


def _hours(client: Client, sql: str, params: dict[str, object]) -> dict[datetime, tuple[int, int]]:
    rows = client.query(sql, parameters=params).result_rows
    return {r[0].replace(tzinfo=timezone.utc): (int(r[1]), int(r[2])) for r in rows}


def stale_hours(client: Client, model: str, start: datetime, end: datetime) -> dict[datetime, bool]:
    """The hours of [start, end) whose states differ from their rows (by count or fingerprint): to build.

    Each maps to whether it has states now (to delete first).
    """
    params = {"m": model, "s": start, "e": end}
    rows = _hours(client, f"SELECT {BUCKET} AS b, count(), sum({FINGERPRINT}) FROM predictions "
                          f"WHERE {_span('ts')} GROUP BY b", params)
    states = _hours(client, f"SELECT bucket, sum(rows), sum(fingerprint) FROM {TABLE} "
                            f"WHERE {_span('bucket')} AND feature = '{EVENTS_KEY}' GROUP BY bucket",
                    params)
    return {h: h in states for h in sorted(rows.keys() | states.keys()) if rows.get(h) != states.get(h)}


def refresh(client: Client, model: str, start: datetime, end: datetime) -> list[datetime]:
    """Rebuild the states of every stale hour of [start, end) (hour-aligned) from `predictions`; returns them.

    One DELETE for the stale hours that had states, then one INSERT ... SELECT per run of up to
    HOURS_PER_BUILD stale hours: a statement costs tens of milliseconds in the embedded engine, and
    grouping by hour keeps a build's memory to its hours' states, not their rows. Serialised in this
    process, so a scheduled detection and one asked for through the API do not insert an hour twice; a
    second process doing so is caught by the next comparison (and by the detectors' guard until then).
    """
    with _build_lock:
        stale = stale_hours(client, model, start, end)
        built = [h for h, has_states in stale.items() if has_states]
        if built:
            client.command(f"DELETE FROM {TABLE} WHERE model = {{m:String}} AND bucket IN {{b:Array(DateTime('UTC'))}}",
                           parameters={"m": model, "b": built})
        hours = list(stale)
        for i in range(0, len(hours), HOURS_PER_BUILD):
            chunk = hours[i:i + HOURS_PER_BUILD]
            client.command(
                f"INSERT INTO {TABLE} ({', '.join(KEY_COLUMNS + STATE_COLUMNS)}, fingerprint) "
                + state_select(_span("ts") + f" AND {BUCKET} IN {{b:Array(DateTime('UTC'))}}"),
                parameters={"m": model, "s": chunk[0], "e": chunk[-1] + HOUR, "b": chunk}, settings=BUILD_SETTINGS)
        if hours:
            log.info("built window states", extra={"model": model, "hours": len(hours), "rebuilt": len(built),
                                                   "first": hours[0].isoformat(), "last": hours[-1].isoformat()})
        return hours
