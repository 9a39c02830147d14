"""A dashboard being built: the foundation SDK's builder, plus what each panel's query must return.

Every panel Driftline draws has one SQL query against its own tables. `Board`
lays panels out on the grid (two per row unless told otherwise), numbers
them, and records each query with the columns the panel reads, so the
queries can be run against a real ClickHouse engine and checked, by
dashboard and panel title, without a Grafana.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import barchart, dashboard, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import GridPos, VariableRefresh, VariableSort

from dashboards.clickhouse import DATASOURCE, QueryType, Sql, SqlAnnotation

PANEL_KINDS = {
    "table": (table.Panel, "table"),
    "timeseries": (timeseries.Panel, "timeSeries"),
    "state": (statetimeline.Panel, "timeSeries"),
    "stat": (stat.Panel, "table"),
    "bars": (barchart.Panel, "table"),
}
GRID_WIDTH = 24


@dataclass(frozen=True)
class PanelQuery:
    """A query of a dashboard (a panel's, a variable's or an annotation's) and the columns it must return.

    A variable's query returns its values in the first column, whatever its name: `columns` is empty.
    """

    dashboard: str
    title: str
    sql: str
    columns: tuple[str, ...]
    query_type: QueryType = "table"


@dataclass
class Board:
    uid: str
    title: str
    description: str
    variables: dict[str, str] = field(default_factory=dict)  # name -> the SQL listing its values
    queries: list[PanelQuery] = field(default_factory=list)
    _builder: Any = None
    _next_id: int = 1
    _x: int = 0
    _y: int = 0
    _row_height: int = 0

    def __post_init__(self) -> None:
        self._builder = (dashboard.Dashboard(self.title).uid(self.uid).description(self.description)
                         .tags(["driftline"]).time("now-24h", "now").refresh("1m").timezone("utc").editable())

    def variable(self, name: str, label: str, sql: str, *, all_value: str | None = None) -> None:
        """A template variable listing values from ClickHouse (with an `All` entry whose value is `all_value`)."""
        query = Sql(sql, ref_id=f"var-{name}").build()
        var = (dashboard.QueryVariable(name).label(label).datasource(DATASOURCE).query(query.to_json())
               .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC))
        if all_value is not None:
            var = var.include_all(True).all_value(all_value)
        self._builder = self._builder.with_variable(var)
        self.variables[name] = sql
        self.queries.append(PanelQuery(self.uid, f"variable {name}", query.sql, ()))

    def annotation(self, name: str, color: str, sql: str) -> None:
        """Events drawn across the time panels: the query returns `time`, `text` and `tags`."""
        target = SqlAnnotation(sql)
        self._builder = self._builder.annotation(dashboard.AnnotationQuery().name(name).datasource(DATASOURCE)
                                                 .enable(True).icon_color(color).target(target))
        self.queries.append(PanelQuery(self.uid, f"annotation {name}", target.build().query.sql,
                                       ("time", "text", "tags")))

    def row(self, title: str) -> None:
        self._newline()
        self._builder = self._builder.with_row(dashboard.Row(title).id(self._take_id()).grid_pos(
            GridPos(h=1, w=GRID_WIDTH, x=0, y=self._y)))
        self._y += 1

    def panel(self, kind: str, title: str, sql: str, columns: tuple[str, ...], *, description: str = "",
              width: int = 12, height: int = 8, unit: str | None = None) -> None:
        """A panel of `kind` (table, timeseries, state, stat, bars) drawing `sql`, which returns `columns`."""
        make, query_type = PANEL_KINDS[kind]
        if self._x + width > GRID_WIDTH:
            self._newline()
        target = Sql(sql, query_type)  # type: ignore[arg-type]
        panel = (make().id(self._take_id()).title(title).description(description).datasource(DATASOURCE)
                 .with_target(target).grid_pos(GridPos(h=height, w=width, x=self._x, y=self._y)))
        if unit is not None:
            panel = panel.unit(unit)
        self._builder = self._builder.with_panel(panel)
        self.queries.append(PanelQuery(self.uid, title, target.build().sql, columns, query_type))  # type: ignore[arg-type]
        self._x += width
        self._row_height = max(self._row_height, height)

    def _newline(self) -> None:
        if self._x:
            self._y += self._row_height
        self._x, self._row_height = 0, 0

    def _take_id(self) -> int:
        taken, self._next_id = self._next_id, self._next_id + 1
        return taken

    def to_json(self) -> dict[str, Any]:
        """The dashboard as Grafana stores it (plain JSON types)."""
        return json.loads(json.dumps(self._builder.build(), cls=JSONEncoder))
