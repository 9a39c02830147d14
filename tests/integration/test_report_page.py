"""Must-show 3: the drift report page, served by uvicorn over the real engine, rendered by headless Chromium.

Predictions with drift injected into two of three features are written
through the collector's write path, a reference is uploaded, the drift stage
runs, and the API is served on a free port of 127.0.0.1. Chromium opens the
report link exactly as an alert email carries it (signed, no token), opens
every row of the report's table (Evidently renders its Plotly charts in a
row's detail panel), switches numeric features to their distribution, and
takes the screenshot and the DOM. Then the ways in: tokens, signed links
altered or expired, team limits, and the errors of a report with nothing to
show. Chromium missing is a failure that says how to install it, never a skip.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import hashlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn

from alerts import outbox
from alerts.evaluate import Evaluator
from alerts.render import links
from collector.replay import write_events
from detectors.config import registry_from_yaml
from detectors.reference import upload
from detectors.run import run_stage
from detectors.sources import Window
from driftline.api.app import create_app
from driftline.api.auth import load_tokens
from driftline.config import Settings
from driftline.contracts import EventKind, PredictionEvent, encode_event
from driftline.store import connect
from driftline.yamlfile import LocatedYaml
from tests.integration.alerting import alert_config, write_drift
from tests.integration.browser import Browser, chromium_binary, distinct_colours, png_pixels

SECRET = b"test-link-secret-0123456789abcdef"
READ, TEAM = "report-reader-token-0123456789", "report-team-b-token-0123456789"
WINDOW = Window(dt.datetime(2026, 4, 1, 10, tzinfo=dt.timezone.utc), dt.datetime(2026, 4, 1, 11, tzinfo=dt.timezone.utc))
UTC = dt.timezone.utc


def events(model: str, rng: np.random.Generator, n: int = 600) -> list[bytes]:
    """One window of predictions: x1 shifted by 1.5 sd and c's mix turned around; x2 as in the reference."""
    out = []
    for i in range(n):
        out.append(encode_event(PredictionEvent(
            event_id=f"{model}-{i}", model=model, model_version="1",
            ts=WINDOW.start + dt.timedelta(seconds=i * 5),
            features={"x1": float(rng.normal(1.5, 1.0)), "x2": float(rng.normal(10.0, 2.0)),
                      "c": str(rng.choice(["web", "app", "store"], p=[0.2, 0.3, 0.5]))},
            prediction=float(rng.normal(0.5, 0.1)))))
    return out


# Category values as a hostile tenant would send them: each sets a DOM marker if it ever runs as code.
XSS = ["</script><script>window.__xss = 1</script>", "<img src=x onerror=\"window.__xss = 2\">",
       "javascript:window.__xss = 3", "\"><svg onload=window.__xss=4>", "</SCRIPT ><script>window.__xss = 5//",
       "line\u2028separator\u2029paragraph", "&lt;b&gt;&amp;"]


def hostile_events(model: str, rng: np.random.Generator, n: int = 300) -> list[bytes]:
    return [encode_event(PredictionEvent(
        event_id=f"{model}-{i}", model=model, model_version="1", ts=WINDOW.start + dt.timedelta(seconds=i * 10),
        features={"x1": float(rng.normal(0.0, 1.0)), "x2": float(rng.normal(10.0, 2.0)), "c": XSS[i % len(XSS)]},
        prediction=float(rng.normal(0.5, 0.1)))) for i in range(n)]


@pytest.fixture(scope="module")
def served(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("report-page")
    tag = uuid.uuid4().hex[:6]
    model, other, hostile = f"page-{tag}", f"other-{tag}", f"xss-{tag}"
    registry = registry_from_yaml(LocatedYaml(Path("test"), {"models": [
        {"name": n, "task": "regression", "features": {"x1": "numeric", "x2": "numeric", "c": "categorical"},
         "reference": {"upload": "train"}, "window": "1h", "owner": owner, "drift": {"min_rows": 50}}
        for n, owner in ((model, "team-a"), (other, "team-b"), (hostile, "team-a"))]}))
    client = connect(base_settings)
    rng = np.random.default_rng(7)
    assert write_events(client, EventKind.PREDICTION, events(model, rng), source="report-test") == (600, 0)
    assert write_events(client, EventKind.PREDICTION, events(other, rng, 200), source="report-test") == (200, 0)
    pd.DataFrame({"x1": rng.normal(0.0, 1.0, 1000), "x2": rng.normal(10.0, 2.0, 1000),
                  "c": rng.choice(["web", "app", "store"], 1000, p=[0.5, 0.3, 0.2]),
                  "prediction": rng.normal(0.5, 0.1, 1000)}).to_csv(root / "train.csv", index=False)
    upload(client, registry.get(model), "train", root / "train.csv", show_progress=False)  # `other` has none
    assert write_events(client, EventKind.PREDICTION, hostile_events(hostile, rng), source="report-test") == (300, 0)
    pd.DataFrame({"x1": rng.normal(0.0, 1.0, 300), "x2": rng.normal(10.0, 2.0, 300),
                  "c": [XSS[i % len(XSS)] for i in range(300)], "prediction": rng.normal(0.5, 0.1, 300)}).to_csv(
        root / "hostile.csv", index=False)
    upload(client, registry.get(hostile), "train", root / "hostile.csv", show_progress=False)
    result = run_stage(client, registry.get(model), WINDOW, "drift")
    assert result.status == "ok", result.error
    drifted = sorted(c for c in result.drifted_columns if c in ("x1", "x2", "c"))
    assert drifted == ["c", "x1"], result.drifted_columns

    (root / "tokens.yaml").write_text(
        f"tokens:\n  - {{name: reader, sha256: {hashlib.sha256(READ.encode()).hexdigest()}, scopes: [read]}}\n"
        f"  - {{name: team-b, sha256: {hashlib.sha256(TEAM.encode()).hexdigest()}, scopes: [read], team: team-b}}\n")
    settings = base_settings.model_copy(update={"api_link_secret": None, "api_link_secret_file": root / "secret"})
    (root / "secret").write_bytes(SECRET + b"\n")
    app = create_app(registry, load_tokens(root / "tokens.yaml"), lambda: client, settings=settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="report-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield {"base": base, "model": model, "other": other, "hostile": hostile, "drifted": drifted, "root": root,
               "registry": registry, "client": client}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def email_link(base: str, model: str, *, now: dt.datetime | None = None, window: Window = WINDOW) -> str:
    """The report link an alert email carries (alerts.render.links with the server's secret)."""
    link = links(model, window, grafana_url=None, public_url=base, link_secret=SECRET,
                 now=now or dt.datetime.now(UTC)).report
    assert link is not None
    return link


def test_report_page_renders_its_charts_in_headless_chromium(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    binary = chromium_binary()
    url = email_link(str(served["base"]), str(served["model"]))
    assert "sig=" in url and "expires=" in url
    with Browser(tmp_path / "chromium.log", binary=binary) as browser:
        browser.open(url)
        assert browser.js("document.contentType") == "text/html"
        rows = browser.wait("the report's table", "document.querySelectorAll('tr[data-testid=mtablebodyrow]').length")
        assert rows == 3  # x1, x2 and c: the features the dataset verdict counts (the prediction is not one)
        # Open every row, then show numeric features' distribution (their first tab is drift over time).
        browser.js("document.querySelectorAll('button[aria-label=\"Detail panel visibility toggle\"]')"
                   ".forEach(b => b.click())")
        browser.wait("a chart in every detail panel", "[...document.querySelectorAll('tr[data-testid=mtablebodyrow]')]"
                     ".every(r => r.nextElementSibling && r.nextElementSibling.querySelector('.js-plotly-plot'))")
        browser.js("[...document.querySelectorAll('[role=tab]')].filter(t => /distribution/i.test(t.textContent))"
                   ".forEach(t => t.click())")
        per_feature = browser.wait("every distribution chart", """(() => {
            const rows = [...document.querySelectorAll('tr[data-testid=mtablebodyrow]')].map(r => ({
                name: r.querySelectorAll('td')[1].textContent.trim(),
                drift: r.querySelectorAll('td')[5].textContent.trim(),
                plots: r.nextElementSibling.querySelectorAll('.js-plotly-plot .main-svg').length,
                legend: [...r.nextElementSibling.querySelectorAll('.legendtext')].map(t => t.textContent).sort()}));
            return rows.every(r => r.legend.join() === 'current,reference') && rows;
        })()""")
        time.sleep(0.5)  # Plotly's transitions
        shot = browser.screenshot(tmp_path / "report.png")
        dom = browser.dom()
    (tmp_path / "report-dom.html").write_text(dom)
    print(f"\nreport screenshot: {shot}\nreport DOM: {tmp_path / 'report-dom.html'}")

    by_name = {r["name"]: r for r in per_feature}
    for feature in served["drifted"]:  # type: ignore[attr-defined]
        assert by_name[feature]["plots"] >= 1 and by_name[feature]["drift"] == "Detected", by_name
        assert f'value="{feature}"' in dom
    assert by_name["x2"]["drift"] == "Not Detected"
    assert dom.count('class="js-plotly-plot"') >= len(by_name) >= 3
    assert dom.count('class="main-svg"') >= 2 * len(by_name)
    assert "Dataset Drift" in dom
    # The page opens with Driftline's verdict, and Evidently's, given the same methods, thresholds and share, agrees.
    assert "Driftline&#x27;s verdict on this window: dataset drift DETECTED, 2 of 3 features drifted" in dom or \
        "Driftline's verdict on this window: dataset drift DETECTED, 2 of 3 features drifted" in dom
    assert "Dataset Drift is detected" in dom and "Dataset Drift is NOT detected" not in dom

    width, height, _ = png_pixels(shot)
    assert (width, height) == (1400, 3000)
    assert distinct_colours(shot) > 200  # charts, text and colours, not a blank or an error page


def test_values_from_the_data_never_run_as_code_in_the_report_page(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Category values that close the script element, add event handlers, or break a JavaScript line stay
    text: the page renders them in its table and charts, and the marker any of them would set stays unset.
    The page also runs sandboxed (CSP), so even a value that did run would have no access to the service."""
    url = email_link(str(served["base"]), str(served["hostile"]))
    answer = get(url)
    assert answer.status_code == 200
    csp = answer.headers["content-security-policy"]
    assert csp.startswith("sandbox allow-scripts;") and "allow-same-origin" not in csp and "default-src 'none'" in csp
    assert answer.headers["x-content-type-options"] == "nosniff" and answer.headers["referrer-policy"] == "no-referrer"
    page = answer.text
    assert "window.__xss" in page  # the payloads are in the page (as data) ...
    assert "</script><script>window.__xss" not in page  # ... escaped:
    assert r"\u003c/script\u003e\u003cscript\u003ewindow.__xss = 1\u003c/script\u003e" in page
    assert "\u2028" not in page and "\u2029" not in page  # raw, they end a JavaScript line in older engines
    with Browser(tmp_path / "chromium.log") as browser:
        browser.open(url)
        shown = hostile_report_shown_as_text(browser)
        assert browser.js("window.origin") == "null"  # sandboxed: an opaque origin, not the service's
    assert "javascript:window.__xss = 3" in shown, "the hostile values are rendered, as text"


def test_the_alert_email_and_its_attached_report_never_run_values_from_the_data(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 16, must-show 1 (email): the HTML part and the attached report, exactly as queued for SMTP, opened
    from disk in headless Chromium: no CSP protects a saved attachment, so the escaping alone must hold."""
    hostile, client = str(served["hostile"]), served["client"]
    # A channel name of its own: the outbox is shared, and a dispatcher of another test on a channel named
    # like this one would send this test's email to its own inbox.
    config = alert_config(hostile, channels={f"owners-{hostile}": {"type": "email", "to": ["owner@example.com"],
                                                                   "attach_report": True}},
                          rules=[{"name": "dataset-drift", "for": 1, "labels": {"team": XSS[0], "note": XSS[1]},
                                  "when": {"dataset_drift": {"fire_share": 0.5}}}])
    write_drift(client, hostile, WINDOW, share=0.67, drifted=("x1", "c"))
    queued = Evaluator(client, served["registry"], config, public_url=str(served["base"]), link_secret=SECRET,
                       report_rows=300).evaluate(hostile, now=WINDOW.end).queued
    assert len(queued) == 1
    message = email.message_from_bytes(outbox.body_of(client, queued[0].delivery_id), policy=email.policy.default)
    page = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert message["Message-ID"].endswith("@driftline>")
    assert abs(email.utils.parsedate_to_datetime(message["Date"]) - WINDOW.end) < dt.timedelta(seconds=1)  # queued
    attached = [a for a in message.iter_attachments() if a.get_filename() == f"drift-report-{hostile}.html"]
    assert attached, "the report is attached"
    report = attached[0].get_content()
    report = report.decode() if isinstance(report, bytes) else report
    assert "window.__xss" in report and "</script><script>window.__xss" not in report
    (tmp_path / "email.html").write_text(page)
    (tmp_path / "report.html").write_text(report)
    with Browser(tmp_path / "chromium.log") as browser:
        browser.open((tmp_path / "email.html").as_uri())
        assert browser.wait("the email's body", "document.querySelectorAll('td b').length") >= 1
        assert browser.js("typeof window.__xss") == "undefined"
        assert browser.js("document.querySelectorAll('img[src=x], svg[onload], script').length") == 0
        browser.open((tmp_path / "report.html").as_uri())
        shown = hostile_report_shown_as_text(browser)
    assert "javascript:window.__xss = 3" in shown, "the hostile values are rendered, as text"


def hostile_report_shown_as_text(browser: Browser) -> str:
    """Open every row of the loaded report (its charts render only then), check that no payload ran, and return
    the text the table and charts show."""
    assert browser.wait("the report's table", "document.querySelectorAll('tr[data-testid=mtablebodyrow]').length") >= 3
    browser.js("document.querySelectorAll('button[aria-label=\"Detail panel visibility toggle\"]')"
               ".forEach(b => b.click())")
    browser.wait("a chart in every detail panel", "[...document.querySelectorAll('tr[data-testid=mtablebodyrow]')]"
                 ".every(r => r.nextElementSibling && r.nextElementSibling.querySelector('.js-plotly-plot'))")
    time.sleep(0.5)  # Plotly's transitions
    assert browser.js("typeof window.__xss") == "undefined"
    assert browser.js("document.querySelectorAll('img[src=x], svg[onload]').length") == 0
    return str(browser.js("[...document.querySelectorAll('svg text, td')].map(e => e.textContent).join('\\n')"))


def get(url: str, **kw: object) -> httpx.Response:
    return httpx.get(url, timeout=120, **kw)  # type: ignore[arg-type]


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(query)).geturl()


def test_signed_links_tokens_and_team_limits(served) -> None:  # type: ignore[no-untyped-def]
    base, model, other = served["base"], served["model"], served["other"]
    signed = email_link(str(base), str(model))
    plain = f"{base}/models/{model}/report?" + urlencode({"start": WINDOW.start.isoformat(),
                                                           "end": WINDOW.end.isoformat()})
    bearer = {"Authorization": f"Bearer {READ}"}

    ok = get(signed)
    assert ok.status_code == 200 and ok.headers["content-type"] == "text/html; charset=utf-8"
    assert ok.text.lstrip().startswith("<!DOCTYPE html>") and ok.headers["referrer-policy"] == "no-referrer"
    began = time.monotonic()
    again = get(plain, headers=bearer)  # the same window and sample: from the cache
    assert again.status_code == 200 and again.headers["x-driftline-report-cache"] == "hit"
    assert time.monotonic() - began < 2 and again.content == ok.content

    missing = get(plain)
    assert missing.status_code == 401 and "Authorization: Bearer" in missing.json()["detail"]
    sig = parse_qs(urlsplit(signed).query)["sig"][0]
    tampered = {
        "sig": with_query(signed, sig=sig[:-1] + ("0" if sig[-1] != "0" else "1")),
        "end": with_query(signed, end=(WINDOW.end + dt.timedelta(hours=1)).isoformat()),
        "expires": with_query(signed, expires=str(int(parse_qs(urlsplit(signed).query)["expires"][0]) + 86400)),
        "model": signed.replace(f"/models/{model}/", f"/models/{other}/"),
        "other secret": links(str(model), WINDOW, grafana_url=None, public_url=str(base),
                              link_secret=b"another-secret-0123456789", now=dt.datetime.now(UTC)).report,
    }
    for what, url in tampered.items():
        answer = get(str(url))
        assert answer.status_code == 401, (what, answer.text)
        assert "signature is invalid" in answer.json()["detail"], (what, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"
    expired = get(email_link(str(base), str(model), now=dt.datetime.now(UTC) - dt.timedelta(days=8)))
    assert expired.status_code == 401 and "the link expired at" in expired.json()["detail"]
    resampled = get(with_query(signed, sample_rows="4999"))  # unsigned: would force a fresh render per value
    assert resampled.status_code == 403 and "another sample_rows needs" in resampled.json()["detail"]
    assert get(with_query(signed, sample_rows="4999"), headers=bearer).status_code == 200  # a token may choose
    half = get(with_query(signed, sig=""))
    assert half.status_code == 401 and "needs both" in half.json()["detail"]
    # A spoiled signature does not lock out a token holder: the token decides.
    assert get(tampered["sig"], headers=bearer).status_code == 200
    assert get(tampered["sig"], headers={"Authorization": "Bearer nope"}).status_code == 401

    assert get(plain, headers={"Authorization": f"Bearer {TEAM}"}).status_code == 403
    assert "limited to team 'team-b'" in get(plain, headers={"Authorization": f"Bearer {TEAM}"}).json()["detail"]
    # The same `Z` instant spelled differently verifies: times are signed in one canonical form.
    q = parse_qs(urlsplit(signed).query)
    respelled = with_query(signed, start=WINDOW.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           end=WINDOW.end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert q["start"][0] != parse_qs(urlsplit(respelled).query)["start"][0]
    assert get(respelled).status_code == 200


@pytest.mark.parametrize("path,params,status,detail", [
    ("/models/nope-{tag}/report", {}, 404, "unknown model"),
    ("/models/{model}/report", {"start": "2026-05-01T00:00Z", "end": "2026-05-01T01:00Z"}, 404,
     "has no predictions in [2026-05-01T00:00:00+00:00, 2026-05-01T01:00:00+00:00)"),
    ("/models/{other}/report", {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()}, 409,
     "has no reference rows"),
    ("/models/{model}/report", {"start": "2026-04-01T10:00Z"}, 422, "give start and end, or neither"),
    ("/models/{model}/report", {"start": "2026-04-01T11:00Z", "end": "2026-04-01T10:00Z"}, 422, "start must be before"),
    ("/models/{model}/report", {"start": "2020-01-01T00:00Z", "end": "2026-01-01T00:00Z"}, 422, "at most 400 days"),
    ("/models/{model}/report", {"start": "0001-01-01T00:00Z", "end": "0001-01-02T00:00Z"}, 422, "must lie between"),
    ("/models/{model}/report", {"start": "9999-12-30T00:00Z", "end": "9999-12-31T00:00Z"}, 422, "must lie between"),
    ("/models/{model}/report", {"sample_rows": 10}, 422, None),
    ("/models/{model}/report", {"sample_rows": 10_000_000}, 422, None),
    ("/models/{model}/report", {"expires": "soon", "sig": "x"}, 422, None),
    ("/models/{model}/report", {"start": "yesterday'--", "end": "now"}, 422, None),
    ("/models/x'%3B%20DROP%20TABLE%20predictions%3B--/report", {}, 422, None),
])
def test_report_errors_are_clear_4xx(served, path: str, params: dict[str, object], status: int,
                                     detail: str | None) -> None:  # type: ignore[no-untyped-def]
    url = str(served["base"]) + path.format(model=served["model"], other=served["other"], tag=uuid.uuid4().hex[:6])
    answer = get(url, params=params, headers={"Authorization": f"Bearer {READ}"})  # type: ignore[arg-type]
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    if detail is not None:
        assert detail in answer.json()["detail"], answer.text

