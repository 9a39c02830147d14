"""The ClickHouse cluster variant of the schema, derived from the migrations (docs/operations.md: Scaling out).

The migrations target one server. On a cluster the same tables are created
`ON CLUSTER` with replicated engines; the four event tables are sharded
(`<table>_local` on every shard, a `Distributed` table of the usual name over
them, so readers and the collector keep their SQL), and everything else, the
coordination tables (checkpoints, epochs, claims, runs) and the small
per-window results, lives replicated on one shard (`coordination_cluster`:
the same hosts declared as one shard with every host a replica, so each host
has them locally), where a write on one replica is seen by the next reader
with `select_sequential_consistency`. Deriving the DDL from
`MIGRATIONS` keeps the two from drifting apart: a table added to the
migrations is in the cluster DDL too, or the unit test fails.
"""

from __future__ import annotations

import re

from driftline.names import validate_identifier
from driftline.store import window_states
from driftline.store.migrations import DEAD_LETTER_TABLE, MIGRATIONS, TABLE_BY_KIND, entry_table

SHARDED = (*TABLE_BY_KIND.values(), DEAD_LETTER_TABLE, window_states.LEGACY_TABLE)
"""Tables with one row per event, spread over the shards by Kafka partition (and migration 9's window
states, kept per partition by a view on each shard until migration 14 dropped them). The hourly states
that replaced them are small and built by the detectors through the Distributed tables: replicated on
the coordination cluster like the other per-window results."""

SHARD_BY = "partition"  # every row of one Kafka partition on one shard: a partition's rollback touches one shard
ENTRY_SHARD_BY = "JSONExtractInt(raw, 'partition')"  # the Null entry tables hold the raw event with its position

_ALTER_VIEW = re.compile(r"^\s*ALTER TABLE (\w+) MODIFY QUERY ", re.S)
_ADD_COLUMN = re.compile(r"^\s*ALTER TABLE (\w+) ADD COLUMN ", re.S)
_DROP = re.compile(r"^\s*DROP (TABLE|VIEW) IF EXISTS (\w+)\s*$", re.S)
_CREATE = re.compile(r"^\s*CREATE (TABLE|MATERIALIZED VIEW|VIEW) IF NOT EXISTS (\w+)", re.S)
_ENGINE = re.compile(r"ENGINE = (Replacing|Aggregating)?MergeTree(\(([^)]*)\))?")


def local(table: str) -> str:
    return f"{table}_local"


def _replicated(statement: str, path: str) -> str:
    def engine(m: re.Match[str]) -> str:
        args = [f"'{path}'", "'{replica}'"] + ([m.group(3)] if m.group(3) else [])
        return f"ENGINE = Replicated{m.group(1) or ''}MergeTree({', '.join(args)})"

    replaced, n = _ENGINE.subn(engine, statement, count=1)
    assert n == 1, f"no MergeTree engine in {statement[:80]!r}"
    return replaced


def _on_cluster(statement: str, name: str, new_name: str, cluster: str) -> str:
    return _CREATE.sub(lambda m: f"CREATE {m.group(1)} IF NOT EXISTS {new_name} ON CLUSTER '{cluster}'", statement,
                       count=1)


def _altered_view(statement: str, name: str, cluster: str, entries: dict[str, str], sharded: set[str]) -> str:
    """A migration's new query for an ingest view, on every shard, reading the shard's local entry table."""
    body = statement
    for source in (*entries, *sharded):
        body = re.sub(rf"\bFROM {source}\b", f"FROM {local(source)}", body)
    return _ALTER_VIEW.sub(f"ALTER TABLE {name} ON CLUSTER '{cluster}' MODIFY QUERY ", body, count=1)


def _dropped(kind: str, name: str, cluster: str, coordination_cluster: str, sharded: set[str],
             entries: dict[str, str]) -> list[str]:
    """A migration's DROP, where `cluster_ddl` created the object: a sharded table is also its local tables."""
    if name in sharded or name in entries:
        return [f"DROP TABLE IF EXISTS {name} ON CLUSTER '{cluster}'",
                f"DROP TABLE IF EXISTS {local(name)} ON CLUSTER '{cluster}'"]
    if kind == "VIEW":  # views live on the event cluster: they read or feed its tables
        return [f"DROP VIEW IF EXISTS {name} ON CLUSTER '{cluster}'"]
    return [f"DROP TABLE IF EXISTS {name} ON CLUSTER '{coordination_cluster}'"]


def cluster_ddl(cluster: str, coordination_cluster: str) -> list[str]:
    """Every migration statement, in order, rewritten for a cluster; plus the Distributed tables."""
    validate_identifier(cluster, what="cluster")
    validate_identifier(coordination_cluster, what="coordination cluster")
    sharded = set(SHARDED)
    entries = {entry_table(t): t for t in sharded}
    out: list[str] = []
    for migration in sorted(MIGRATIONS, key=lambda m: m.version):
        for statement in migration.statements:
            if (altered := _ALTER_VIEW.match(statement)) is not None:
                out.append(_altered_view(statement, altered.group(1), cluster, entries, sharded))
                continue
            if (added := _ADD_COLUMN.match(statement)) is not None:
                if added.group(1) in sharded:  # would need the local table and its Distributed table altered
                    raise ValueError(f"migration {migration.version}: a column added to a sharded table")
                out.append(_ADD_COLUMN.sub(f"ALTER TABLE {added.group(1)} ON CLUSTER '{coordination_cluster}' "
                                           "ADD COLUMN ", statement, count=1))
                continue
            if (dropped := _DROP.match(statement)) is not None:
                out.extend(_dropped(*dropped.groups(), cluster, coordination_cluster, sharded, entries))
                continue
            match = _CREATE.match(statement)
            if match is None:
                raise ValueError(f"migration {migration.version}: not a CREATE, DROP, ALTER ... MODIFY QUERY or "
                                 "ADD COLUMN statement: "
                                 f"{statement[:80]!r}")
            kind, name = match.groups()
            if name in sharded:
                out.append(_replicated(_on_cluster(statement, name, local(name), cluster),
                                       f"/clickhouse/tables/{{shard}}/{{database}}/{local(name)}"))
                out.append(f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER '{cluster}' AS {local(name)} "
                           f"ENGINE = Distributed('{cluster}', currentDatabase(), {local(name)}, {SHARD_BY})")
            elif name in entries:  # the Null entry table: one per shard, fed through a Distributed table
                out.append(_on_cluster(statement, name, local(name), cluster))
                out.append(f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER '{cluster}' AS {local(name)} "
                           f"ENGINE = Distributed('{cluster}', currentDatabase(), {local(name)}, {ENTRY_SHARD_BY})")
            elif kind == "MATERIALIZED VIEW" and (target := re.search(r"\bTO (\w+)", statement)) and target.group(1) in sharded:
                body = re.sub(rf"\bTO {target.group(1)}\b", f"TO {local(target.group(1))}", statement, count=1)
                for source in (*entries, *sharded):  # its entry table, or (window states) the events table
                    body = re.sub(rf"\bFROM {source}\b", f"FROM {local(source)}", body)
                out.append(_on_cluster(body, name, name, cluster))
            elif kind == "VIEW":
                out.append(_on_cluster(statement, name, name, cluster))  # reads the Distributed tables
            elif "ENGINE = Null" in statement or kind == "MATERIALIZED VIEW":
                out.append(_on_cluster(statement, name, name, coordination_cluster))
            else:
                out.append(_replicated(_on_cluster(statement, name, name, coordination_cluster),
                                       "/clickhouse/tables/coordination/{database}/" + name))
    return out
