"""Typed configuration, read from ``DRIFTLINE_*`` environment variables.

Every knob of the service lives here, with its default and its meaning, so
that the configuration table of docs/reference.md and the code cannot drift apart
(``driftline config`` prints this table from the model itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftline.names import validate_identifier, validate_topic


class Settings(BaseSettings):
    """The service's configuration (environment first, explicit overrides on top)."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLINE_",
        env_file=None,
        extra="forbid",
        validate_default=True,
    )

    clickhouse_url: str = Field(
        "chdb:./driftline-data",
        description=(
            "Where ClickHouse is. `chdb:PATH` (or `chdb:///abs/path`) runs the embedded "
            "engine on a local folder; `http(s)://user:pass@host:port/db` selects a server."
        ),
    )
    clickhouse_database: str = Field(
        "driftline", description="Database holding Driftline's tables (created by `db migrate`)."
    )
    clickhouse_password_file: Path | None = Field(
        None,
        description="File holding the ClickHouse password; overrides a password in the URL.",
    )
    kafka_bootstrap_servers: str | None = Field(
        None,
        description=(
            "Comma-separated Kafka brokers. Unset: `driftline up` starts a local "
            "Kafka-protocol broker (tansu) and `driftline collect` refuses to start."
        ),
    )
    topic_predictions: str = Field("predictions", description="Topic of prediction events.")
    topic_labels: str = Field("labels", description="Topic of late label events.")
    topic_metrics: str = Field("metrics", description="Topic of infrastructure metric events.")
    consumer_group: str = Field("driftline-collector", description="Kafka consumer group of the collectors.")
    batch_max_events: int = Field(
        20_000, ge=1, le=1_000_000, description="Flush a batch to ClickHouse at this many events..."
    )
    batch_max_seconds: float = Field(
        1.0, gt=0, le=300, description="...or when its oldest event has waited this long."
    )
    max_event_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="Events larger than this are dead-lettered (raw bytes kept) instead of parsed.",
    )
    kafka_session_timeout_ms: int = Field(
        10_000, ge=1000, description="Consumer session timeout; shorter detects dead collectors sooner."
    )
    kafka_max_poll_interval_ms: int = Field(
        60_000, ge=1000, description="Longest gap between polls before the group evicts a collector."
    )
    kafka_offset_out_of_range: Literal["resume", "stop"] = Field(
        "resume",
        description="When the broker no longer holds a partition's position (OFFSET_OUT_OF_RANGE: retention removed "
        "unread records, the topic was recreated): `resume` reads on from the log start (records skipped are "
        "counted in driftline_collector_events_lost_total and `db status`) or, for a log that started over, from "
        "its beginning under a new offset base; `stop` stops the collector with an error instead.",
    )
    shutdown_timeout_seconds: float = Field(
        30.0, gt=0, description="On SIGTERM/SIGINT, how long to drain and flush before giving up."
    )
    local_broker_host: str = Field("127.0.0.1", description="Listen address of the broker `up` starts.")
    local_broker_port: int = Field(9092, ge=1, le=65535, description="Port of the broker `up` starts.")
    local_broker_partitions: int = Field(
        3, ge=1, le=256, description="Partitions per topic that `up` creates on its local broker."
    )
    local_broker_max_mb: int = Field(
        1024, ge=0,
        description="Memory of the local broker above which `up` swaps it for an empty one, once the collector "
        "has committed everything it holds (a pause of a few seconds for producers); 0: never (it grows with "
        "every event). Linux only (read from /proc).",
    )
    heap_trim_seconds: float = Field(
        60.0, ge=0,
        description="How often `up` hands the memory glibc keeps free back to the system (malloc_trim), so the "
        "service's RSS follows what it uses rather than the heap's fragmentation; 0: never. glibc only "
        "(driftline/heap.py).",
    )
    models_file: Path = Field(
        Path("models.yaml"),
        description="The model registry (YAML): models, features, references, windows, schedules, thresholds. "
        "Missing: the collector runs and the detectors wait for a registry.",
    )
    detector_grace_seconds: float = Field(
        30.0, ge=0, description="A window is detected this long after it ends, so late-arriving events are in."
    )
    detector_catchup_windows: int = Field(
        24, ge=1, le=10_000, description="How many past windows a scheduled run looks back for missed ones."
    )
    detector_workers: int = Field(2, ge=1, le=64, description="Models detected in parallel by the scheduler.")
    background_nice: int = Field(
        10, ge=0, le=19,
        description="Linux nice value of background work, so ingest keeps the CPU when both compete (0: same "
                    "priority): the scheduled detections' queries, and the embedded engine's merges. ClickHouse "
                    "honours it with CAP_SYS_NICE; without it, detection on the embedded store is held to one "
                    "thread instead and merges run at normal priority (detectors/priority.py).",
    )
    detector_shard: str = Field(
        "0/1",
        description="This detector worker's shard `i/n`: it schedules only the models rendezvous hashing gives "
                    "to shard i of n (run n workers with 0/n .. n-1/n). Two workers taking one model still "
                    "never judge a window twice (window claims).",
    )
    detector_claim_settle_seconds: float = Field(
        0.5, ge=0, le=60,
        description="How long a worker waits after claiming due windows before reading back whose claim was "
                    "first; longer than a ClickHouse insert takes to land.",
    )
    detector_claim_lease_seconds: float = Field(
        300.0, gt=0,
        description="How long a window claim holds (longer than a window's run takes); a worker on another "
                    "host that died holding one delays that window this long (a restart on the same host does not).",
    )
    alerts_file: Path = Field(
        Path("alerts.yaml"),
        description="Alert rules and channels (YAML), checked against the model registry. Missing: no alerts.",
    )
    grafana_url: str | None = Field(
        None, description="Grafana's base URL, for dashboard links in alerts (e.g. http://grafana:3000)."
    )
    grafana_token: SecretStr | None = Field(
        None, description="Grafana service account token for `driftline dashboards push` (never logged)."
    )
    grafana_folder: str = Field("Driftline", description="Grafana folder `dashboards push` uploads into.")
    public_url: str | None = Field(
        None, description="Driftline's own base URL as users reach it, for drift report links in alerts."
    )
    api_link_secret_file: Path | None = Field(
        None,
        description="File holding the secret that signs report links in alert emails (at least 16 bytes; "
        "overrides `DRIFTLINE_API_LINK_SECRET`). Unset, and no secret: links are plain and need a token.",
    )
    api_link_secret: SecretStr | None = Field(
        None, description="The report link signing secret itself, if not in a file (never logged)."
    )
    api_link_lifetime_days: float = Field(
        7.0, gt=0, le=366, description="How long a signed report link in an alert email stays valid."
    )
    api_host: str = Field("127.0.0.1", description="Listen address of the HTTP API (`up` and `driftline api`).")
    api_port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP API.")
    api_tokens_file: Path = Field(
        Path("tokens.yaml"),
        description="Bearer tokens of the HTTP API (YAML: name, sha256 or env, scopes, team). Missing: no tokens.",
    )
    api_max_body_bytes: int = Field(
        1 << 20, ge=1024, description="Largest request body the HTTP API accepts (ingest and uploads excepted)."
    )
    api_max_upload_bytes: int = Field(
        64 << 20, ge=1024, description="Largest ingest batch or reference upload the HTTP API accepts."
    )
    api_request_read_timeout_seconds: float = Field(
        60.0, gt=0, le=3600,
        description="Time a client has to send one whole request (head and body) from its first byte; a slower "
                    "one has its connection closed, so stalled clients cannot hold the API's connections.",
    )
    api_ingest_partition: int = Field(
        0, ge=0, le=65535,
        description="Partition number this API instance writes HTTP-ingested events under; give each API "
                    "instance sharing one ClickHouse server its own.",
    )
    outbox_poll_seconds: float = Field(
        1.0, gt=0, le=60, description="How often the notification dispatcher looks for due deliveries."
    )
    privacy_key_file: Path | None = Field(
        None,
        description="File holding the HMAC key of the models' privacy policies (`privacy: hash:` in models.yaml; at "
        "least 16 bytes; overrides `DRIFTLINE_PRIVACY_KEY`). Required once any model has a policy.",
    )
    privacy_key: SecretStr | None = Field(
        None, description="The privacy HMAC key itself, if not in a file (never logged)."
    )
    retention_events_days: float = Field(
        90, ge=0, description="TTL of predictions, labels and infra metrics, from their arrival (0 = keep forever)."
    )
    retention_dead_letters_days: float = Field(
        30, ge=0, description="TTL of dead letters, by arrival time (0 = keep forever)."
    )
    retention_results_days: float = Field(
        400, ge=0, description="TTL of drift, quality and performance results, detector runs and concept drift "
        "firings, from when they were computed (0 = keep forever)."
    )
    retention_audit_days: float = Field(
        400, ge=0, description="TTL of the alert audit trail and delivery attempts (0 = keep forever)."
    )
    retention_ingest_batches_days: float = Field(
        30, ge=0, description="After this long, the collector's commit log is folded to one row per partition "
        "(its latest offset is kept; 0 = never fold)."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="`json` (one object per line), `text`, or `auto`: text on a terminal, JSON otherwise."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")

    @field_validator("clickhouse_database")
    @classmethod
    def _database_is_identifier(cls, value: str) -> str:
        return validate_identifier(value, what="clickhouse_database")

    @field_validator("topic_predictions", "topic_labels", "topic_metrics")
    @classmethod
    def _topic_is_valid(cls, value: str) -> str:
        return validate_topic(value)

    @field_validator("detector_shard")
    @classmethod
    def _shard_is_i_of_n(cls, value: str) -> str:
        index, _, count = value.strip().partition("/")
        if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
            raise ValueError(f"detector_shard must be 'i/n' with 0 <= i < n (e.g. '0/1' or '2/4'), not {value!r}")
        return f"{int(index)}/{int(count)}"

    @field_validator("clickhouse_url")
    @classmethod
    def _url_has_known_scheme(cls, value: str) -> str:
        scheme = value.split(":", 1)[0].lower()
        if scheme not in ("chdb", "http", "https"):
            raise ValueError(f"clickhouse_url must start with chdb:, http:// or https://, not {scheme!r}:")
        return value

    @model_validator(mode="after")
    def _topics_are_distinct(self) -> "Settings":
        topics = [self.topic_predictions, self.topic_labels, self.topic_metrics]
        if len(set(topics)) != 3:
            raise ValueError(f"topic_predictions, topic_labels and topic_metrics must differ, got {topics}")
        return self

    # -- derived views -------------------------------------------------------

    @property
    def is_embedded(self) -> bool:
        return self.clickhouse_url.lower().startswith("chdb:")

    @property
    def embedded_path(self) -> Path:
        """The chDB folder, absolute, for the embedded engine."""
        if not self.is_embedded:
            raise ValueError("clickhouse_url does not select the embedded engine")
        rest = self.clickhouse_url.split(":", 1)[1]
        if rest.startswith("//"):
            rest = rest[2:]
        return Path(rest or "./driftline-data").expanduser().resolve()

    @property
    def database(self) -> str:
        """The database: the server URL's path if it names one, else clickhouse_database."""
        if not self.is_embedded:
            path = urlsplit(self.clickhouse_url).path.strip("/")
            if path:
                return validate_identifier(path, what="database in clickhouse_url")
        return self.clickhouse_database

    @property
    def topics(self) -> dict[str, str]:
        """Event kind -> topic name."""
        return {
            "prediction": self.topic_predictions,
            "label": self.topic_labels,
            "metric": self.topic_metrics,
        }

    def clickhouse_password(self) -> SecretStr | None:
        """The server password, from the password file or the URL; never logged."""
        if self.clickhouse_password_file is not None:
            return SecretStr(self.clickhouse_password_file.read_text().strip())
        if self.is_embedded:
            return None
        password = urlsplit(self.clickhouse_url).password
        return SecretStr(unquote(password)) if password else None

    def link_secret(self) -> bytes | None:
        """The report link signing secret (file first, then the variable), or None; never logged."""
        return _secret_bytes(self.api_link_secret_file, self.api_link_secret, "the report link secret",
                             "API_LINK_SECRET")

    def privacy_key_bytes(self) -> bytes | None:
        """The HMAC key of the privacy policies (file first, then the variable), or None; never logged."""
        return _secret_bytes(self.privacy_key_file, self.privacy_key, "the privacy key", "PRIVACY_KEY")

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        """repr() and str() show the ClickHouse URL redacted: it may hold a password, and settings end up in
        tracebacks, test reports and debug logs."""
        for name, value in super().__repr_args__():
            yield (name, self.redacted_clickhouse_url()) if name == "clickhouse_url" else (name, value)

    def redacted_clickhouse_url(self) -> str:
        """The URL with any password replaced, for logs and messages."""
        if self.is_embedded:
            return f"chdb:{self.embedded_path}"
        parts = urlsplit(self.clickhouse_url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}:***@" if parts.username else ""
        return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def _secret_bytes(path: Path | None, value: SecretStr | None, what: str, variable: str) -> bytes | None:
    """A secret of at least 16 bytes from its file (first) or its variable, or None when neither is set."""
    if path is not None:
        text = path.read_text().strip()
    elif value is not None:
        text = value.get_secret_value().strip()
    else:
        return None
    if len(text.encode()) < 16:
        raise ValueError(f"{what} (DRIFTLINE_{variable}_FILE / DRIFTLINE_{variable}) must be at least 16 bytes")
    return text.encode()


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
