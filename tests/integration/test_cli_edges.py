"""Issue 17 (small ones): `db query` with a FORMAT clause and into `| head`; a damaged folder is not "in use"."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import clean_env, run_driftline

pytestmark = pytest.mark.integration


def test_db_query_takes_a_format_clause_and_ends_quietly_into_head(tmp_path: Path) -> None:
    env = clean_env(clickhouse_url=f"chdb:{tmp_path / 'store'}")
    done = run_driftline(["db", "query", "SELECT number AS n, toString(number) AS s FROM numbers(3) FORMAT JSONEachRow"],
                         env)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"n": i, "s": str(i)} for i in range(3)]
    piped = subprocess.run(["bash", "-c", f'"{sys.executable}" -m driftline.cli db query '
                            '"SELECT number FROM numbers(2000000)" | head -2; echo "status ${PIPESTATUS[0]}"'],
                           env=env, capture_output=True, text=True, timeout=120)
    assert piped.stdout.splitlines() == ["number", "0", "status 0"], piped.stdout[-300:]
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr, piped.stderr[-2000:]


def test_a_folder_that_cannot_be_opened_is_not_called_in_use(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "metadata").write_text("a file where the engine wants a folder")
    done = run_driftline(["db", "status"], clean_env(clickhouse_url=f"chdb:{store}"))
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "in use by another process" not in done.stderr and "metadata" in done.stderr, done.stderr[-2000:]
