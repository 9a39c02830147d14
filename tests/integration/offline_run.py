"""The main run-time paths, driven from inside a network-less sandbox (see test_airgapped.py).

    python -m tests.integration.offline_run DIR

Starts `driftline up` in DIR (its own broker, collector, scheduler and API),
posts two windows of predictions through HTTP ingest, fetches the Evidently
drift report page of the second window, stops the service and prints one
JSON line: the exit code, the report's status and where it was saved.
Everything it reaches is on 127.0.0.1: the test runs it where nothing else
can be reached.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from collector.local_broker import free_port

TOKEN = "offline-test-token-0123456789"
MODEL = "offline_model"
START = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).replace(minute=0, second=0, microsecond=0)


def events(first_hour: int, shift: float) -> bytes:
    rng = random.Random(first_hour)
    lines = []
    for i in range(200):
        ts = START + dt.timedelta(hours=first_hour, seconds=i * 10)
        lines.append(json.dumps({
            "event_id": f"e{first_hour}-{i}", "model": MODEL, "model_version": "1",
            "ts": ts.isoformat().replace("+00:00", "Z"), "prediction": rng.random(),
            "features": {"x": rng.gauss(shift, 1), "c": rng.choice("ab")}}))
    return "\n".join(lines).encode()


def call(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=120) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def main(folder: Path) -> dict[str, object]:
    (folder / "models.yaml").write_text(
        f"models:\n  - name: {MODEL}\n    task: regression\n    features: {{x: numeric, c: categorical}}\n"
        "    reference: {rolling: {offset: 1h}}\n    window: 1h\n")
    (folder / "tokens.yaml").write_text(
        f"tokens:\n  - {{name: t, sha256: {hashlib.sha256(TOKEN.encode()).hexdigest()}, scopes: [write]}}\n")
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_") or k == "DRIFTLINE_NET_GUARD_LOG"}
    env.update({"DRIFTLINE_LOCAL_BROKER_PORT": str(free_port()), "DRIFTLINE_API_PORT": str(api_port),
                "DRIFTLINE_DETECTOR_CATCHUP_WINDOWS": "1", "DRIFTLINE_KAFKA_SESSION_TIMEOUT_MS": "6000",
                "DRIFTLINE_KAFKA_MAX_POLL_INTERVAL_MS": "10000"})
    api = f"http://127.0.0.1:{api_port}"
    with open(folder / "up.log", "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "driftline.cli", "up"], cwd=folder, env=env,
                              stdout=subprocess.PIPE, stderr=log)
        try:
            banner = up.stdout.readline().decode()  # type: ignore[union-attr]
            ingested = [call(f"{api}/ingest/predictions", events(h, shift))[0] for h, shift in ((0, 0.0), (1, 2.0))]
            window = f"start={(START + dt.timedelta(hours=1)).isoformat()}&end={(START + dt.timedelta(hours=2)).isoformat()}"
            status, page = call(f"{api}/models/{MODEL}/report?{window}".replace("+", "%2B"))
            (folder / "report.html").write_bytes(page)
            docs = try_it_out(api, folder)
        finally:
            up.send_signal(signal.SIGTERM)
            code = up.wait(timeout=60)
    return {"banner": banner, "ingested": ingested, "report_status": status, "report": str(folder / "report.html"),
            "up_exit": code, "docs": docs, "api": api}


def try_it_out(api: str, folder: Path) -> dict[str, object]:
    """/docs in headless Chromium, as a user does: Authorize with the token, then Try it out on GET /models."""
    from tests.integration.browser import Browser

    with Browser(folder / "chromium.log", width=1280, height=2400) as browser:
        browser.open(f"{api}/docs")
        operations = browser.wait("Swagger UI's operations", "document.querySelectorAll('.opblock').length")
        browser.js("document.querySelector('.btn.authorize').click()")
        browser.wait("the Authorize dialog", "document.querySelector('.modal-ux input') !== null")
        browser.js(f"""(() => {{
            const input = document.querySelector('.modal-ux input');
            Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(input, '{TOKEN}');
            input.dispatchEvent(new Event('input', {{bubbles: true}}));
            document.querySelector('.modal-ux .auth-btn-wrapper .authorize').click();
            document.querySelector('.modal-ux .btn-done').click();
        }})()""")
        block = "document.querySelector('#operations-models-models_models_get')"
        browser.wait("GET /models", f"{block} !== null")
        browser.js(f"({block}.querySelector('button.opblock-summary-control') || {block}.querySelector('.opblock-summary')).click()")
        browser.wait("Try it out", f"{block}.querySelector('.try-out__btn') !== null")
        browser.js(f"{block}.querySelector('.try-out__btn').click()")
        browser.wait("Execute", f"{block}.querySelector('.execute') !== null")
        browser.js(f"{block}.querySelector('.execute').click()")
        status = browser.wait("the response", f"(() => {{ const c = {block}.querySelector("
                                              "'.live-responses-table tr.response .response-col_status'); "
                                              "return c && c.textContent.trim(); })()")
        browser.screenshot(folder / "docs.png")
        origins = browser.js("[...performance.getEntriesByType('resource')].map(e => new URL(e.name).origin)")
    return {"operations": operations, "try_it_out_status": str(status)[:3], "resource_origins": sorted(set(origins))}


if __name__ == "__main__":
    started = time.monotonic()
    result = main(Path(sys.argv[1]))
    print(json.dumps({**result, "seconds": round(time.monotonic() - started, 1)}))
