"""A running Driftline's results as pandas DataFrames, for notebooks and pipelines: the HTTP API, read-only.

Why a client at all: the API pages its results and speaks JSON with ISO timestamps; every user who wants
"this model's drift over the last week" in a frame wrote the same paging and parsing loop. Standard library
HTTP only, so it adds no dependency to a model service that imports Driftline for its PredictionLogger.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pandas as pd

RESULT_KINDS = ("drift", "quality", "performance", "estimated", "multivariate")
TIME_COLUMNS = ("window_start", "window_end", "computed_at", "since", "last_window_end", "acknowledged_at")
PAGE = 1000  # the API's largest page


class DriftlineAPIError(RuntimeError):
    """The API answered an error (its status and its `detail`), or could not be reached."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status = status


class DriftlineClient:
    """Results of a running `driftline up` (or `driftline api`) at `url`; `token`: a read token.

    The token defaults to the environment's DRIFTLINE_TOKEN (none: the API must run without tokens.yaml).
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._token = token if token is not None else os.environ.get("DRIFTLINE_TOKEN")
        self.timeout = timeout

    def __repr__(self) -> str:  # never the token
        return f"DriftlineClient({self.url!r})"

    def get(self, path: str, **params: Any) -> Any:
        """The decoded JSON answer of GET `path` (parameters left out when None)."""
        query = {k: _param(v) for k, v in params.items() if v is not None}
        request = urllib.request.Request(f"{self.url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else ""))
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310 - an http(s) URL given by the user
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise DriftlineAPIError(exc.code, _detail(exc)) from None
        except urllib.error.URLError as exc:
            raise DriftlineAPIError(None, f"cannot reach Driftline at {self.url}: {exc.reason}") from None

    def models(self) -> list[dict[str, Any]]:
        return list(self.get("/models"))

    def status(self, model: str) -> dict[str, Any]:
        """The latest dataset drift, performance verdicts, firing alerts and label gaps of `model`."""
        return dict(self.get(f"/models/{_segment(model)}/status"))

    def results(self, model: str, kind: str, start: dt.datetime | str | None = None,
                end: dt.datetime | str | None = None, segment: str = "") -> pd.DataFrame:
        """Every result row of `kind` (drift, quality, performance, estimated, multivariate) in [start, end).

        Default range: the last day (the API's). Pages are followed to the end.
        """
        if kind not in RESULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(RESULT_KINDS)}, not {kind!r}")
        rows: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            page = self.get(f"/models/{_segment(model)}/{kind}", start=start, end=end, segment=segment,
                            limit=PAGE, offset=offset)
            rows += page["items"]
            offset = page["next_offset"]
        return _frame(rows)

    def drift(self, model: str, **window: Any) -> pd.DataFrame:
        return self.results(model, "drift", **window)

    def quality(self, model: str, **window: Any) -> pd.DataFrame:
        return self.results(model, "quality", **window)

    def performance(self, model: str, **window: Any) -> pd.DataFrame:
        return self.results(model, "performance", **window)

    def alerts(self, model: str | None = None, status: str = "active") -> pd.DataFrame:
        """Alert states (`active`: pending or firing; `firing`, `pending`, `inactive`, `all`)."""
        return _frame(self.get("/alerts", model=model, status=status))


def _param(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).isoformat()
    return str(value)


def _segment(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(exc.read()).get("detail")
    except (ValueError, AttributeError):
        detail = None
    return detail if isinstance(detail, str) else json.dumps(detail) if detail else str(exc.reason)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in TIME_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame
