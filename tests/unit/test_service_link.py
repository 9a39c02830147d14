"""The store lent by `up` to commands beside it (driftline/store/service_link.py): the link itself.

The real pair (chDB inside `up`, commands in subprocesses) is tests/integration/test_cli_beside_up.py;
here a stand-in client shows what crosses the socket and who may use it.
"""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from driftline.store import StoreError
from driftline.store.service_link import KEY_FILE, StoreService, open_service_client


class Answer:
    column_names = ("model", "rows")
    result_rows = [("fraud", 3), ("churn", 5)]


class StandIn:
    closed = 0

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Answer:
        if "boom" in sql:
            raise DatabaseError("Code: 62. Syntax error")
        return Answer()

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> str:
        return f"ran {sql} with {parameters}"

    def close(self) -> None:
        StandIn.closed += 1


def test_queries_cross_with_their_answers_and_errors_and_only_key_holders_are_served(tmp_path: Path) -> None:
    service = StoreService(tmp_path, StandIn)
    try:
        assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
        client = open_service_client(tmp_path, "driftline")
        assert client is not None and client.database == "driftline"
        rows = client.query("SELECT model, rows FROM t", parameters={"m": "fraud"})
        assert rows.named_results() == [{"model": "fraud", "rows": 3}, {"model": "churn", "rows": 5}]
        assert rows.result_columns == [["fraud", "churn"], [3, 5]] and rows.first_row == ("fraud", 3)
        assert client.command("DELETE x", parameters={"a": 1}) == "ran DELETE x with {'a': 1}"
        with pytest.raises(DatabaseError, match="Syntax error"):
            client.query("boom")
        with pytest.raises(StoreError, match="unknown store operation"):
            client._call("close")  # noqa: SLF001 - only the listed operations run
        client.close()

        (tmp_path / KEY_FILE).write_bytes(b"a guessed key".ljust(32, b"x"))
        assert open_service_client(tmp_path, "driftline") is None  # refused at the challenge
    finally:
        service.close()
    assert not (tmp_path / KEY_FILE).exists()
    assert open_service_client(tmp_path, "driftline") is None  # no `up`: the caller says "in use"
    deadline = time.monotonic() + 5
    while StandIn.closed < 1 and time.monotonic() < deadline:  # closed by the connection's thread as it ends
        time.sleep(0.01)
    assert StandIn.closed >= 1  # each connection's client is closed with it
