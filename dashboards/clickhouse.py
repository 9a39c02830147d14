"""The ClickHouse data source as the dashboards see it: its uid, and SQL queries as foundation-SDK targets.

The foundation SDK ships query builders for Prometheus, Loki and the like but
none for the official ClickHouse plugin (`grafana-clickhouse-datasource`), so
this module adds the one query shape Driftline uses: raw SQL in the plugin's
SQL editor, as a table or as a time series. Everything else (panels,
variables, layout) is the SDK's own.
"""

from __future__ import annotations

from typing import Any, Literal

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

PLUGIN = "grafana-clickhouse-datasource"
DATASOURCE_UID = "driftline-clickhouse"
"""The uid the provisioning file gives the data source; every panel and variable refers to it."""
DATASOURCE = DataSourceRef(type_val=PLUGIN, uid=DATASOURCE_UID)

QueryType = Literal["table", "timeSeries"]
FORMATS = {"timeSeries": 0, "table": 1}  # the plugin's backend format codes


class SqlQuery(cogvariants.Dataquery):
    """One SQL target of the ClickHouse plugin."""

    def __init__(self, sql: str, query_type: QueryType = "table", ref_id: str = "A") -> None:
        self.sql = sql
        self.query_type = query_type
        self.ref_id = ref_id

    def to_json(self) -> dict[str, Any]:
        return {
            "refId": self.ref_id,
            "datasource": DATASOURCE.to_json(),
            "editorType": "sql",
            "queryType": self.query_type,
            "format": FORMATS[self.query_type],
            "rawSql": self.sql,
        }


class Sql(cogbuilder.Builder[SqlQuery]):
    def __init__(self, sql: str, query_type: QueryType = "table", ref_id: str = "A") -> None:
        self._query = SqlQuery(_tidy(sql), query_type, ref_id)

    def build(self) -> SqlQuery:
        return self._query


def _tidy(sql: str) -> str:
    """One statement, indentation removed: what a person sees in the query editor."""
    lines = [line.strip() for line in sql.strip().splitlines()]
    return "\n".join(line for line in lines if line)


class SqlAnnotationTarget:
    """An annotation query's target: the plugin reads the same SQL shape (time, timeEnd, text, tags columns)."""

    def __init__(self, sql: str) -> None:
        self.query = SqlQuery(_tidy(sql), "table", "Anno")

    def to_json(self) -> dict[str, Any]:
        return self.query.to_json()


class SqlAnnotation(cogbuilder.Builder[SqlAnnotationTarget]):
    def __init__(self, sql: str) -> None:
        self._target = SqlAnnotationTarget(sql)

    def build(self) -> SqlAnnotationTarget:
        return self._target
