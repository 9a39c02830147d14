"""Issue 16, must-show 5, and issue 17's reload: a reload rotates what a leak would expose, and turns alerts on.

The wiring is `driftline up`'s own (`start_dispatcher` and `reloader` from
driftline/cli.py) behind the real API, with the dispatcher on its thread
sending to real HTTP receivers on 127.0.0.1. A token removed from tokens.yaml
answers 401 from the moment the reload returns; a webhook URL changed in
alerts.yaml is where the next delivery goes, a replay of an old one included;
alerts.yaml created after the start turns alerts on without a restart; and
the reload's answer says what changed.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from alerts import outbox
from alerts.config import load_alerts
from alerts.signing import WebhookSecret
from detectors.config import load_registry
from driftline.api.app import create_app
from driftline.api.auth import load_tokens
from driftline.cli import reloader, start_dispatcher
from driftline.config import Settings
from driftline.store import connect
from tests.conftest import wait_for
from tests.integration.alerting import tag
from tests.integration.receivers import Receiver
from tests.integration.test_api_write import auth, model_entry, write_tokens

pytestmark = pytest.mark.integration
UTC = dt.timezone.utc
SECRET = WebhookSecret.generate()


def alerts_yaml(url: str) -> str:
    return (f"channels:\n  retrain:\n    type: webhook\n    url: {url}\n    secret_env: ROTATION_HOOK_SECRET\n"
            "    backoff: 50ms\n    backoff_cap: 200ms\n")


def queue_webhook(store, model: str) -> str:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(UTC)
    did = outbox.delivery_id("rotation", model, now.isoformat())
    outbox.enqueue(store, [(outbox.Delivery(did, "retrain", "webhook", model, "firing", [], "s", "pending", 0, now, "",
                                            now), b'{"schema": "driftline.retrain.v1"}')])
    return did


@pytest.fixture
def service(base_settings, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """`up`'s reload wiring over files in tmp_path; alerts.yaml does not exist yet."""
    monkeypatch.setenv("ROTATION_HOOK_SECRET", SECRET)
    model = f"rot-{tag()}"
    settings = Settings(**{**base_settings.model_dump(), "models_file": tmp_path / "models.yaml",
                           "alerts_file": tmp_path / "alerts.yaml", "api_tokens_file": tmp_path / "tokens.yaml",
                           "outbox_poll_seconds": 0.1})
    settings.models_file.write_text(json.dumps({"models": [model_entry(model, "team-a")]}))
    write_tokens(settings.api_tokens_file)
    stop = threading.Event()
    dispatcher = start_dispatcher(settings, None, stop)
    app = create_app(load_registry(settings.models_file), load_tokens(settings.api_tokens_file),
                     lambda: connect(settings), settings=settings, reload=reloader(settings, None, dispatcher),
                     tokens_file=settings.api_tokens_file)
    yield TestClient(app), settings, model, dispatcher
    stop.set()
    dispatcher[0].wake.set()
    dispatcher[1].join(timeout=10)


def test_a_reload_turns_alerts_on_revokes_a_token_and_moves_deliveries_to_the_new_url(service, store) -> None:  # type: ignore[no-untyped-def]
    client, settings, model, dispatcher = service
    with Receiver([], SECRET) as old, Receiver([], SECRET) as new:
        first = queue_webhook(store, model)  # queued while no channel is configured: held, not dropped
        dispatcher[0].wake.set()
        assert outbox.get(store, first).status == "pending"  # type: ignore[union-attr]

        settings.alerts_file.write_text(alerts_yaml(old.url))
        turned_on = client.post("/models/reload", headers=auth("admin"))
        assert turned_on.status_code == 200, turned_on.text
        assert turned_on.json()["alerts"]["channels_added"] == ["retrain"]
        wait_for("the held delivery sent once alerts.yaml exists", lambda: old.accepted == [first], timeout=30)

        settings.alerts_file.write_text(alerts_yaml(new.url))
        lines = settings.api_tokens_file.read_text().splitlines()
        settings.api_tokens_file.write_text("\n".join(x for x in lines if "name: writer" not in x) + "\n")
        assert client.get("/models", headers=auth("writer")).status_code == 200  # until the reload
        rotated = client.post("/models/reload", headers=auth("admin"))
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["tokens"] == {"added": [], "removed": ["writer"], "changed": []}
        assert rotated.json()["alerts"] == {"channels_added": [], "channels_removed": [], "channels_changed": ["retrain"],
                                            "rules_added": [], "rules_removed": [], "rules_changed": []}
        revoked = client.get("/models", headers=auth("writer"))
        assert revoked.status_code == 401 and revoked.json()["detail"] == "unknown or revoked token"

        replayed = client.post(f"/deliveries/{first}/replay", headers=auth("admin"))
        assert replayed.status_code == 200, replayed.text
        second = queue_webhook(store, model)
        dispatcher[0].wake.set()
        wait_for("the replay and a new delivery at the new URL",
                 lambda: sorted(new.accepted) == sorted([first, second]), timeout=30)
        assert old.accepted == [first] and len(old.received) == 1  # nothing more went to the old URL
    assert load_alerts(settings.alerts_file).channels["retrain"].url == new.url  # type: ignore[union-attr]
