"""Issue 16, must-show 4: uploads that expand are refused from what is cheap to read, over HTTP on the real engine.

The two files are the ones a probe sent: a Parquet file of about 1 KiB that
decodes to 1 GiB (16,000 rows of one 64 KiB string, dictionary-encoded; its
footer declares a small row group and no Arrow schema, so a reader sees a plain
string column), and a 4.7 MB CSV whose header names 100,004 columns. Each must
be refused with a reason naming the bound, within a second, while the serving
process's resident memory, sampled every 5 ms during the request, grows by less
than 50 MiB. Before the bounds the first took 1.5 GiB and kept it, the second
41 s of a worker.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from detectors.config import load_registry
from driftline.api.app import create_app
from driftline.api.auth import load_tokens
from driftline.config import Settings
from driftline.store import connect
from tests.integration.alerting import tag
from tests.integration.test_api_write import auth, model_entry, write_tokens

pytestmark = pytest.mark.integration


def parquet_bomb() -> bytes:
    value = pa.array(["x" * 65_536])
    column = pa.DictionaryArray.from_arrays(pa.array(np.zeros(16_000, dtype=np.int32)), value)
    table = pa.table({"x1": np.ones(16_000), "x2": np.full(16_000, 0.5), "c": column})
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd", store_schema=False)
    return out.getvalue()


def wide_csv() -> bytes:
    names = ["x1", "x2", "c", "prediction"] + [f"f{i}" for i in range(100_000)]
    row = ",".join(["1", "0.5", "a", "1"] + ["1"] * 100_000)
    return (",".join(names) + "\n" + "\n".join([row] * 20) + "\n").encode()


class PeakRss:
    """The process's resident set, sampled on a thread; `growth` is the peak over the value at start, in MiB."""

    def __init__(self) -> None:
        self.start = self.peak = self._now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _now() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._now())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._now())

    @property
    def growth(self) -> float:
        return self.peak - self.start


@pytest.fixture
def client(base_settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    name = f"ub-{tag()}"
    models_file = tmp_path / "models.yaml"
    models_file.write_text(json.dumps({"models": [model_entry(name, "team-a")]}))
    settings = Settings(**base_settings.model_dump())  # the default upload bound, 64 MiB
    app = create_app(load_registry(models_file), load_tokens(write_tokens(tmp_path / "tokens.yaml")),
                     lambda: connect(base_settings), settings=settings)
    return TestClient(app), name


@pytest.mark.parametrize("body, content_type, status, reason", [
    (parquet_bomb, "application/vnd.apache.parquet", 422, "column 'c' holds a value of 65,536 characters"),
    (wide_csv, "text/csv", 413, "100,004 columns; a reference file may have at most 4,096"),
])
def test_an_expanding_upload_is_refused_fast_in_bounded_memory(client, body, content_type, status, reason) -> None:  # type: ignore[no-untyped-def]
    http, model = client
    payload = body()
    assert len(payload) < 2048 if content_type.endswith("parquet") else 4_500_000 < len(payload) < 5_000_000
    url = f"/models/{model}/references/train"
    kept = http.post(url, content=b"x1,x2,c\n1,2,a\n", headers={**auth("writer"), "Content-Type": "text/csv"})
    assert kept.status_code == 201, kept.text
    with PeakRss() as rss:
        started = time.monotonic()
        answer = http.post(url, content=payload, headers={**auth("writer"), "Content-Type": content_type})
        took = time.monotonic() - started
    assert answer.status_code == status, answer.text
    assert reason in answer.json()["detail"]
    assert took < 1.0, f"answered in {took:.2f} s"
    assert rss.growth < 50, f"resident memory grew by {rss.growth:.0f} MiB"
    listed = http.get(f"/models/{model}/references", headers=auth("reader")).json()
    assert [(r["reference"], r["rows"]) for r in listed] == [("train", 1)]  # the earlier reference stays


def test_a_long_value_in_a_csv_is_refused_with_its_row(client) -> None:  # type: ignore[no-untyped-def]
    http, model = client
    csv = "x1,x2,c\n1,2,a\n3,4," + "y" * 1025 + "\n"
    answer = http.post(f"/models/{model}/references/train", content=csv,
                       headers={**auth("writer"), "Content-Type": "text/csv"})
    assert answer.status_code == 422
    assert answer.json()["detail"] == ("column 'c', row 1: a value of 1,025 characters; values may have at most "
                                       "1,024 (as in events)")
