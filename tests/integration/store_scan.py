"""Scanning a whole chDB folder for strings: every table of the database, every column cast to a string.

Run as a subprocess on a folder no other process holds (the test process has
its own session store open, and chDB allows one folder per process):

    python -m tests.integration.store_scan FOLDER < {"needles": [...]}

It prints, as JSON, for each needle the (table, column, rows) where it
occurs, and the tables and columns scanned, so a test can prove that values
are nowhere in the store and that the scan did see the data.
"""

from __future__ import annotations

import json
import re
import sys

import clickhouse_connect

SAFE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # names become identifiers in the query: checked, then quoted
NO_STORAGE = ("MaterializedView", "Null")


def scan(folder: str, database: str, needles: list[str]) -> dict[str, object]:
    client = clickhouse_connect.get_client(dsn=f"chdb://{folder}")
    tables = client.query("SELECT name, engine FROM system.tables WHERE database = {db:String} ORDER BY name",
                          parameters={"db": database}).result_rows
    found: dict[str, list[list[object]]] = {n: [] for n in needles}
    scanned: dict[str, list[str]] = {}
    for table, engine in tables:
        if engine in NO_STORAGE:
            continue
        columns = [str(c) for (c,) in client.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} ORDER BY position",
            parameters={"db": database, "t": table}).result_rows]
        assert SAFE.match(table) and all(SAFE.match(c) for c in columns), (table, columns)
        scanned[table] = columns
        counts = ", ".join(
            f"sumForEach(arrayMap(n -> toUInt64(position(toString(`{c}`), n) > 0), {{needles:Array(String)}}))"
            for c in columns)
        (row,) = client.query(f"SELECT {counts} FROM `{database}`.`{table}`", parameters={"needles": needles}).result_rows
        for column, per_needle in zip(columns, row):
            for needle, rows in zip(needles, per_needle or [0] * len(needles)):
                if rows:
                    found[needle].append([table, column, int(rows)])
    return {"found": found, "scanned": scanned}


if __name__ == "__main__":
    request = json.load(sys.stdin)
    print(json.dumps(scan(sys.argv[1], request.get("database", "driftline"), request["needles"])))
