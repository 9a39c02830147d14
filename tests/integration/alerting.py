"""Helpers of the alerting tests: a model and its rules, detector results written as the detectors write them."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from alerts.config import AlertConfig
from detectors.config import Registry, registry_from_yaml
from detectors.results import DATASET_COLUMN, DRIFT_COLUMNS
from detectors.sources import Window
from driftline.yamlfile import LocatedYaml

UTC = dt.timezone.utc


def registry_of(name: str, window: str = "1h", **extra: Any) -> Registry:
    model = {"name": name, "task": "regression", "features": {"x1": "numeric", "x2": "numeric", "c": "categorical"},
             "reference": {"rolling": {"offset": "7d"}}, "window": window} | extra
    return registry_from_yaml(LocatedYaml(Path("test"), {"models": [model]}))


def alert_config(model: str, *, channels: dict[str, Any], rules: list[dict[str, Any]],
                 inhibit: list[dict[str, str]] | None = None) -> AlertConfig:
    data: dict[str, Any] = {"channels": channels,
                            "rules": [{"model": model, "routes": list(channels)} | r for r in rules]}
    if inhibit is not None:
        data["inhibit"] = inhibit
    return AlertConfig.model_validate(data)


def write_drift(client: Client, model: str, window: Window, *, share: float | None, drifted: tuple[str, ...] = (),
                version: str = "1", status: str | None = None) -> None:
    """One window of drift results: a row per feature and the dataset row, as `detectors.results` writes them."""
    run = uuid.uuid4()
    prefix = [model, version, "", window.start, window.end]
    rows = []
    for feature in ("x1", "x2", "c"):
        hit = feature in drifted
        rows.append([*prefix, feature, "feature", "numeric", "psi", None, None, None, 0.4 if hit else 0.01, 0.1, "",
                     None, None, int(hit), status or ("drifted" if hit else "ok"), 0, 1000, 1000, run])
    dataset_status = status or ("drifted" if share is not None and share >= 0.5 else "ok")
    rows.append([*prefix, DATASET_COLUMN, "dataset", "", "drift_share", share, None, None, share, 0.5, "",
                 float(len(drifted)), None, int(dataset_status == "drifted"), dataset_status, 1, 0, 3, run])
    client.insert("drift_results", rows, column_names=DRIFT_COLUMNS)


def hour(day: dt.datetime, h: int) -> Window:
    return Window(day + dt.timedelta(hours=h), day + dt.timedelta(hours=h + 1))


def tag() -> str:
    return uuid.uuid4().hex[:6]


DAY_OF_RESULTS = dt.datetime(2026, 5, 5, tzinfo=UTC)  # a day the API tests write results into
