"""Window states: per (model, hour, feature) aggregates that merge into any hour-aligned window.

A materialized view on `predictions` keeps, for every inserted block, one row
per (model, hour bucket, feature, Kafka topic, partition, offset block) in the
AggregatingMergeTree `window_states`. Merging the rows of the hours of a
window (`sum`, `min`, `max`, `sumMap`) gives the same summary a scan of the
window's raw rows would, without reading them: a 30-day window is 720 hours
of states instead of every event.

Per feature (and per event, under the feature '', and for the prediction,
under `__prediction__`):
- `rows`: events carrying the key; `numbers`: non-null numeric values;
  `min`/`max` (exact), `sum`/`sum2` (for the reference's standard deviation);
- `histogram`: counts of numeric values quantized to their top
  `MANTISSA_BITS` mantissa bits (truncated toward zero): a value x lands in
  a bin [key, key + 2^(e - k)) (mirrored for negatives), so the bin's width
  is at most 2^-k |x|. Mergeable and exact up to that quantization; the
  number of keys grows with the octaves the data spans, never with rows.
- `categories`: exact counts of string values (categories, hashed fields).

Why hour buckets: windows are aligned multiples of the model's window
(an hour or more in practice); minute buckets would multiply the rows of the
histogram maps, which dominate the table, by 60 for no window that uses them.

Why the Kafka position is in the key: the collector's rollback deletes the
rows of a partition at or past its committed offset and replays them. An
MV-fed state would then count them twice, so `rebuild_after_rollback`
deletes the states of that partition from the first affected offset block on
and rebuilds them from the rows `predictions` still holds (see
collector/checkpoint.py).
"""

from __future__ import annotations

import logging

from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

TABLE = "window_states"
EVENTS_KEY = ""
"""The feature key whose `rows` count every event (the window's row count)."""
PREDICTION_KEY = "__prediction__"
"""The key of the model's prediction (the name drift results use for it)."""

MANTISSA_BITS = 9
"""Mantissa bits kept by the numeric histogram: bin width at most 2^-9 (0.2 %) of the value."""

OFFSET_BLOCK = 1 << 20
"""Offsets per block of the state key: a rollback rebuilds at most one block of a partition from raw rows."""

BUCKET = "toStartOfHour(toDateTime(ts, 'UTC'))"

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
KEY_COLUMNS = ("model", "bucket", "feature", "topic", "partition", "offset_block")
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

CREATE_TABLE = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
                model LowCardinality(String),
                bucket DateTime('UTC'),
                feature String,
                topic LowCardinality(String),
                partition Int32,
                offset_block Int64,
                rows SimpleAggregateFunction(sum, UInt64),
                numbers SimpleAggregateFunction(sum, UInt64),
                min SimpleAggregateFunction(min, Nullable(Float64)),
                max SimpleAggregateFunction(max, Nullable(Float64)),
                sum SimpleAggregateFunction(sum, Float64),
                sum2 SimpleAggregateFunction(sum, Float64),
                histogram SimpleAggregateFunction(sumMap, Tuple(Array(Float64), Array(UInt64))),
                categories SimpleAggregateFunction(sumMap, Tuple(Array(String), Array(UInt64)))
            ) ENGINE = AggregatingMergeTree
            PARTITION BY toYYYYMM(bucket)
            ORDER BY (model, bucket, feature, topic, partition, offset_block)"""


def state_select(where: str = "") -> str:
    """The states of the predictions rows matching `where` (SQL written here or parameterised by the caller)."""
    aggregates = ",\n                   ".join(f"{a} AS {c}" for a, c in zip(AGGREGATES, STATE_COLUMNS, strict=True))
    return f"""SELECT model, {BUCKET} AS bucket, kv.1 AS feature, topic, partition,
                   intDiv(offset, {OFFSET_BLOCK}) AS offset_block,
                   {aggregates}
            FROM predictions ARRAY JOIN {PAIRS} AS kv
            {f'WHERE {where}' if where else ''}
            GROUP BY model, bucket, feature, topic, partition, offset_block"""


CREATE_VIEW = f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {TABLE}_mv TO {TABLE} AS
            {state_select()}"""

_PARTITION = "topic = {topic:String} AND partition = {partition:Int32}"


def rebuild_after_rollback(client: Client, topic: str, partition: int, next_offset: int) -> bool:
    """Make the partition's states from `next_offset`'s block on equal a recomputation from `predictions`.

    Runs after the rollback deleted the partition's rows at or past `next_offset`. Checked by
    counting (the states' events against the rows still stored from the block's first offset on), so
    a rollback with nothing to undo costs two small queries, and a process that died between the
    delete and the insert below is repaired by the next rollback. Returns True when it rebuilt.
    """
    block = next_offset // OFFSET_BLOCK
    params = {"topic": topic, "partition": partition, "block": block, "from": block * OFFSET_BLOCK}
    stored = int(client.query(f"SELECT count() FROM predictions WHERE {_PARTITION} AND offset >= {{from:Int64}}",
                              parameters=params).result_rows[0][0])
    counted = int(client.query(
        f"SELECT sum(rows) FROM {TABLE} WHERE {_PARTITION} AND offset_block >= {{block:Int64}} "
        f"AND feature = '{EVENTS_KEY}'", parameters=params).result_rows[0][0])
    if stored == counted:
        return False
    client.command(f"DELETE FROM {TABLE} WHERE {_PARTITION} AND offset_block >= {{block:Int64}}", parameters=params)
    client.command(f"INSERT INTO {TABLE} ({', '.join(KEY_COLUMNS + STATE_COLUMNS)}) "
                   f"{state_select(f'{_PARTITION} AND offset >= {{from:Int64}}')}",
                   parameters=params, settings={"cast_string_to_variant_use_inference": 0})
    log.warning("rebuilt window states after a rollback",
                extra={"topic": topic, "partition": partition, "from_offset": block * OFFSET_BLOCK,
                       "rows": stored, "counted_before": counted})
    return True
