"""Serving the API with uvicorn on a thread: inside `driftline up`, or alone as `driftline api`.

On the embedded store the API must live in the process that owns the chDB
folder, so `up` serves it beside the collector and the scheduler. A port that
cannot be bound is reported at start, not discovered by the first user.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn

from detectors.config import Registry
from driftline.api.app import create_app
from driftline.api.auth import load_tokens
from driftline.api.context import ApiContext, Reloaded
from driftline.api.slow_clients import with_read_deadline
from driftline.config import Settings
from driftline.privacy import Redactor
from driftline.unknown_models import ModelGate
from driftline.store import connect

log = logging.getLogger(__name__)


class ApiUnavailable(RuntimeError):
    """The API could not start (its port is taken, say); the message says what to change."""


@dataclass
class RunningApi:
    server: uvicorn.Server
    thread: threading.Thread
    url: str
    ctx: ApiContext  # what a reload switches (SIGHUP in `up` goes through it too)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=timeout)


def kafka_check(bootstrap: str) -> Callable[[], None]:
    """Readiness of Kafka: a TCP connection to the first bootstrap server answers within 2 s."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")

    def check() -> None:
        with socket.create_connection((host or "localhost", int(port)), timeout=2.0):
            pass

    return check


def start_api(settings: Settings, registry: Registry | None, *,
              reload: Callable[[], Reloaded] | None = None, redactor: Redactor | None = None,
              gate: ModelGate | None = None) -> RunningApi:
    """Serve the API on a thread; `reload` re-reads the config files for `POST /models/reload`.

    `redactor`: the privacy policies HTTP ingest applies (`up` shares its collector's); default: the registry's.
    """
    authenticator = load_tokens(settings.api_tokens_file)
    if authenticator.empty:
        log.warning("no API tokens configured; every endpoint but /healthz and /readyz answers 401",
                    extra={"api_tokens_file": str(settings.api_tokens_file)})
    client = connect(settings)
    checks: dict[str, Callable[[], None]] = {"clickhouse": lambda: client.query("SELECT 1")}
    if settings.kafka_bootstrap_servers:
        checks["kafka"] = kafka_check(settings.kafka_bootstrap_servers)
    app = create_app(registry or Registry(), authenticator, lambda: client, ready_checks=checks, settings=settings,
                     reload=reload, redactor=redactor, gate=gate or ModelGate.from_registry(registry),
                     tokens_file=settings.api_tokens_file if reload is not None else None)
    config = uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_config=None,
                            access_log=False, lifespan="off", server_header=False,
                            http=with_read_deadline(settings.api_request_read_timeout_seconds))
    server = uvicorn.Server(config)
    # uvicorn installs signal handlers only on the main thread: on this one, the CLI keeps owning SIGTERM/SIGINT.
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise ApiUnavailable(f"the HTTP API cannot listen on {settings.api_host}:{settings.api_port} (in use?); "
                                 "set DRIFTLINE_API_PORT (or DRIFTLINE_API_HOST)")
        time.sleep(0.05)
    url = f"http://{settings.api_host}:{settings.api_port}"
    log.info("HTTP API serving", extra={"url": url})
    return RunningApi(server, thread, url, app.state.ctx)
