"""The dashboard commands of `driftline`.

  dashboards generate   write dashboards/json from the code (what the repository commits)
  dashboards check      run every dashboard query, macros expanded, against the store: which panels break
  dashboards push       upload the dashboards to Grafana (DRIFTLINE_GRAFANA_URL, DRIFTLINE_GRAFANA_TOKEN)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from driftline.config import Settings
from driftline.store import connect, migrate

EXIT_GRAFANA = 5


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.generate import write

    for path in write():
        print(json.dumps({"written": str(path)}))
    return 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Each query with Grafana's macros expanded over the last --hours, on this store; exit 1 if one fails."""
    from dashboards.generate import boards
    from dashboards.macros import expand

    client = connect(settings)
    migrate(client)
    end = dt.datetime.now(dt.timezone.utc)
    start = end - dt.timedelta(hours=args.hours)
    failed = 0
    for board in boards():
        for q in board.queries:
            sql = expand(q.sql, start=start, end=end, interval_s=max(1, int(args.hours * 3600 / 300)),
                         variables={"model": args.model or "__all__"})
            try:
                rows = len(client.query(sql).result_rows)
                print(json.dumps({"dashboard": q.dashboard, "panel": q.title, "rows": rows}))
            except Exception as exc:  # noqa: BLE001 - report every broken panel, not just the first
                failed += 1
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                print(json.dumps({"dashboard": q.dashboard, "panel": q.title, "error": reason[:300]}))
    return 1 if failed else 0


def cmd_push(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.generate import boards
    from dashboards.push import PushError, push

    if not settings.grafana_url:
        print("driftline dashboards push: set DRIFTLINE_GRAFANA_URL (e.g. http://localhost:3000)", file=sys.stderr)
        return 2
    if settings.grafana_token is None:
        print("driftline dashboards push: set DRIFTLINE_GRAFANA_TOKEN to a Grafana service account token "
              "(Editor role)", file=sys.stderr)
        return 2
    try:
        pushed = push(settings.grafana_url, settings.grafana_token, [b.to_json() for b in boards()],
                      folder_title=settings.grafana_folder)
    except PushError as exc:
        print(f"driftline dashboards push: {exc}", file=sys.stderr)
        return EXIT_GRAFANA
    for p in pushed:
        print(json.dumps({"dashboard": p.uid, "url": p.url, "version": p.version}))
    return 0


def add_parsers(sub: Any, common: Any) -> None:
    dashboards = sub.add_parser("dashboards", help="Grafana dashboards: generate, check, push").add_subparsers(
        dest="dashboards_command", required=True, metavar="DASHBOARDS_COMMAND")
    p = dashboards.add_parser("generate", help="write dashboards/json from the code")
    common(p)
    p.set_defaults(handler=cmd_generate)
    p = dashboards.add_parser("check", help="run every dashboard query against the store; list the ones that fail")
    common(p)
    p.add_argument("--hours", type=float, default=24.0, help="time range to expand $__timeFilter over (default 24)")
    p.add_argument("--model", help="value of the `model` template variable (default: All)")
    p.set_defaults(handler=cmd_check)
    p = dashboards.add_parser("push", help="upload the dashboards to Grafana (DRIFTLINE_GRAFANA_URL, "
                                           "DRIFTLINE_GRAFANA_TOKEN)")
    common(p)
    p.set_defaults(handler=cmd_push)
