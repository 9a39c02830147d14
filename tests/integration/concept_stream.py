"""A labelled stream whose error rate jumps at a known position, written straight into the store by SQL.

`python -m tests.integration.concept_stream FOLDER MODEL` seeds a chDB folder of its own from a subprocess
(the test process holds the session's folder). Row i (0-based) is the i-th row of the stream: its label
has offset i and an ingested_at in the past, so the runner reads the rows in that order; it is wrong with
probability `before` for i < jump and `after` from then on, decided by a seeded hash (the same rows every
run, no Python loop over 100,000 rows).
"""

from __future__ import annotations

import datetime as dt
import sys

from clickhouse_connect.driver.client import Client

STABLE_ROWS = 100_000
JUMP_ROWS = 20_000
BEFORE, AFTER = 0.10, 0.30
SEED = 8
DELAY_BOUND = {"page_hinkley": 1_000, "adwin": 500, "ddm": 20_000}
"""Rows after a 10% -> 30% jump that follows 100,000 stable rows within which each detector must fire (defaults)."""
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
VARIANT = "Variant(Float64, String)"


def seed_stream(client: Client, model: str, *, stable: int = STABLE_ROWS, jump: int = JUMP_ROWS,
                before: float = BEFORE, after: float = AFTER, seed: int = SEED, first_offset: int = 0,
                t0: dt.datetime = T0, spacing_ms: int = 0) -> None:
    """Predictions (class 'a') and labels (wrong: 'b') of `stable + jump` events, one per millisecond from `t0`.

    Labels are ingested `spacing_ms` apart from `t0` + 1 s (0: all in the same millisecond, ordered by offset).
    """
    n = stable + jump
    params = {"m": model, "t0": t0, "n": n, "stable": stable, "b": before, "a": after, "seed": seed,
              "o": first_offset, "sp": spacing_ms}
    client.command(
        f"INSERT INTO predictions (topic, partition, offset, event_id, model, model_version, ts, features, prediction) "
        f"SELECT 'predictions', 0, {{o:Int64}} + number, concat({{m:String}}, '-', toString({{o:Int64}} + number)), "
        f"{{m:String}}, 'v1', {{t0:DateTime64(3, 'UTC')}} + toIntervalMillisecond(number), "
        f"map('x', CAST(toFloat64(number % 7) AS {VARIANT})), CAST('a' AS {VARIANT}) "
        f"FROM numbers({{n:UInt64}})", parameters=params)
    client.command(
        f"INSERT INTO labels (topic, partition, offset, event_id, model, ts, label, ingested_at) "
        f"SELECT 'labels', 0, {{o:Int64}} + number, concat({{m:String}}, '-', toString({{o:Int64}} + number)), "
        f"{{m:String}}, {{t0:DateTime64(3, 'UTC')}} + toIntervalMillisecond(number + 500), "
        f"CAST(if(cityHash64({{seed:UInt64}}, number) % 1000000 < "
        f"if(number < {{stable:UInt64}}, {{b:Float64}}, {{a:Float64}}) * 1000000, 'b', 'a') AS {VARIANT}), "
        f"{{t0:DateTime64(3, 'UTC')}} + toIntervalMillisecond(1000 + number * {{sp:UInt64}}) "
        f"FROM numbers({{n:UInt64}})", parameters=params)


if __name__ == "__main__":
    from driftline.store import connect, migrate
    from driftline.config import load_settings

    folder, name = sys.argv[1], sys.argv[2]
    store = connect(load_settings(clickhouse_url=f"chdb:{folder}"))
    migrate(store)
    seed_stream(store, name)
