"""The cluster variant of the schema covers every table of the migrations, replicated, sharded where it should be."""

from __future__ import annotations

import re

import pytest

from driftline.store.cluster import SHARDED, cluster_ddl, local
from driftline.store.migrations import MIGRATIONS

CREATE = re.compile(r"CREATE (?:TABLE|MATERIALIZED VIEW|VIEW) IF NOT EXISTS (\w+) ON CLUSTER '(\w+)'")


def _created(statements: list[str]) -> dict[str, tuple[str, str]]:
    out = {}
    for s in statements:
        if s.startswith(("ALTER TABLE ", "DROP ")):
            continue
        m = CREATE.match(s.strip())
        assert m, s[:120]
        out[m.group(1)] = (m.group(2), s)
    return out


def test_every_table_of_the_migrations_is_in_the_cluster_ddl_on_a_cluster() -> None:
    names = {re.match(r"\s*CREATE (?:TABLE|MATERIALIZED VIEW|VIEW) IF NOT EXISTS (\w+)", s).group(1)  # type: ignore[union-attr]
             for m in MIGRATIONS for s in m.statements if not s.startswith(("ALTER TABLE ", "DROP "))}
    created = _created(cluster_ddl("data", "coord"))
    assert names <= set(created)
    assert {"partition_owners", "detector_claims", "ingest_batches", "detector_runs"} <= names
    for table in SHARDED:
        assert created[local(table)][0] == "data" and created[table][0] == "data"
        engine = "ReplicatedAggregatingMergeTree" if table == "window_states" else "ReplicatedMergeTree"
        assert f"{engine}('/clickhouse/tables/{{shard}}/{{database}}/" in created[local(table)][1]
        assert "ENGINE = Distributed('data', currentDatabase(), " in created[table][1]
    for table in ("ingest_batches", "partition_owners", "detector_claims", "detector_runs", "outbox", "drift_results",
                  "multivariate_drift_results"):
        assert created[table][0] == "coord"  # coordination and results: one shard, every replica
    assert created["estimated_performance_results"][0] == "coord"
    assert created["performance_timeline"][0] == "data"  # a view: on every host, over the replicated results
    assert created["hourly_states"][0] == "coord"  # built by the detectors through the Distributed tables


def test_no_engine_is_left_unreplicated_and_version_columns_survive() -> None:
    statements = cluster_ddl("data", "coord")
    for s in statements:
        assert not re.search(r"ENGINE = (Replacing)?MergeTree\b", s), s[:120]
    created = _created(statements)
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/coordination/{database}/drift_results', '{replica}', " \
           "computed_at)" in created["drift_results"][1]
    assert "TO predictions_local" in created["predictions_ingest_mv"][1]
    assert "FROM predictions_ingest_local" in created["predictions_ingest_mv"][1]
    # A migration's new query for an ingest view runs on every shard and reads the shard's entry table.
    altered = [s for s in statements if s.startswith("ALTER TABLE predictions_ingest_mv ")]
    assert len(altered) == 1 and altered[0].startswith("ALTER TABLE predictions_ingest_mv ON CLUSTER 'data' MODIFY QUERY")
    assert "FROM predictions_ingest_local" in altered[0] and "FROM predictions_ingest\n" not in altered[0]
    assert created["predictions_ingest_local"][1].rstrip().endswith("ENGINE = Null")
    # Migration 9's window states sat beside the predictions of their partition (the view read and wrote one
    # shard); migration 14 drops the view, the Distributed table and the shards' tables, in that order.
    assert "TO window_states_local" in created["window_states_mv"][1]
    assert "FROM predictions_local ARRAY JOIN" in created["window_states_mv"][1]
    drops = [s for s in statements if s.startswith("DROP ")]
    assert drops == ["DROP VIEW IF EXISTS window_states_mv ON CLUSTER 'data'",
                     "DROP TABLE IF EXISTS window_states ON CLUSTER 'data'",
                     "DROP TABLE IF EXISTS window_states_local ON CLUSTER 'data'"]
    assert statements.index(drops[-1]) < statements.index(created["hourly_states"][1])


@pytest.mark.parametrize("bad", ["x'; DROP TABLE t; --", "a b", ""])
def test_cluster_names_are_identifiers(bad: str) -> None:
    with pytest.raises(ValueError):
        cluster_ddl(bad, "coord")
    with pytest.raises(ValueError):
        cluster_ddl("data", bad)
