"""Configuration: defaults, the ClickHouse URL forms, secrets kept out of messages, bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from driftline.config import Settings


def test_defaults_select_the_embedded_engine_in_a_local_folder(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.is_embedded and s.embedded_path == tmp_path / "driftline-data"
    assert s.kafka_bootstrap_servers is None
    assert s.topics == {"prediction": "predictions", "label": "labels", "metric": "metrics"}
    assert s.database == "driftline"


@pytest.mark.parametrize("url,path", [("chdb:/var/lib/dl", "/var/lib/dl"), ("chdb:///var/lib/dl", "/var/lib/dl")])
def test_embedded_url_forms(url: str, path: str) -> None:
    assert Settings(clickhouse_url=url).embedded_path == Path(path)


def test_environment_variables_are_read(monkeypatch) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("DRIFTLINE_BATCH_MAX_EVENTS", "5000")
    s = Settings()
    assert s.kafka_bootstrap_servers == "k1:9092,k2:9092" and s.batch_max_events == 5000


def test_server_url_password_is_never_shown(tmp_path: Path) -> None:
    s = Settings(clickhouse_url="https://alice:s3cr%40t@ch.example:8443/monitoring")
    assert not s.is_embedded
    assert s.database == "monitoring"
    assert s.clickhouse_password().get_secret_value() == "s3cr@t"
    assert "s3cr" not in s.redacted_clickhouse_url() and "s3cr" not in repr(s.clickhouse_password())
    assert s.redacted_clickhouse_url() == "https://alice:***@ch.example:8443/monitoring"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    s2 = Settings(clickhouse_url="http://bob@ch:8123", clickhouse_password_file=secret)
    assert s2.clickhouse_password().get_secret_value() == "from-file"
    assert s2.database == "driftline"


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("clickhouse_url", "postgres://x", "must start with chdb:"),
        ("clickhouse_database", "x'; DROP DATABASE y; --", "does not match"),
        ("topic_predictions", "bad topic!", "does not match"),
        ("batch_max_events", 0, "greater than or equal"),
        ("batch_max_seconds", -1, "greater than"),
        ("log_format", "xml", "json"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{field: value})


def test_topics_must_differ() -> None:
    with pytest.raises(ValidationError, match="must differ"):
        Settings(topic_labels="predictions")


def test_database_in_the_url_is_validated() -> None:
    with pytest.raises(ValueError, match="does not match"):
        Settings(clickhouse_url="http://ch:8123/bad;name").database


def test_repr_and_str_redact_the_clickhouse_password() -> None:
    s = Settings(clickhouse_url="http://bob:s3cr@t@ch:8123/db")
    assert "s3cr" not in repr(s) and "s3cr" not in str(s) and "bob:***@ch:8123" in repr(s)
    assert s.model_copy().clickhouse_password().get_secret_value() == "s3cr@t"  # the value itself is kept
