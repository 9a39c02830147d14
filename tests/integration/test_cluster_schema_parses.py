"""Every statement of the cluster DDL is valid ClickHouse SQL, as the real engine's parser reads it."""

from __future__ import annotations

import pytest

from driftline.store.cluster import cluster_ddl

pytestmark = pytest.mark.integration


def test_the_engine_parses_every_cluster_statement(store) -> None:  # type: ignore[no-untyped-def]
    statements = cluster_ddl("driftline", "driftline_coordination")
    for statement in statements:
        formatted = store.query("SELECT formatQuery({q:String})", parameters={"q": statement}).result_rows[0][0]
        # CREATE for the tables and views; ALTER ... MODIFY QUERY where a migration changed a view's query,
        # ALTER ... ADD COLUMN where one added a column (to a coordination table: never a sharded one).
        assert "ON CLUSTER" in formatted and formatted.startswith(("CREATE", "ALTER TABLE", "DROP"))
        assert not formatted.startswith("ALTER") or "MODIFY QUERY" in formatted or (
            "ADD COLUMN" in formatted and "ON CLUSTER driftline_coordination" in formatted)
    assert len(statements) > 30
