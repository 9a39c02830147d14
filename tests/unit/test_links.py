"""Signed report links: one canonical form per instant, every field covered, expiry, constant-time comparison."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from alerts.render import links
from detectors.sources import Window
from driftline.api import links as signing
from driftline.config import Settings

UTC = dt.timezone.utc
SECRET = b"unit-link-secret-0123456789"
WINDOW = Window(dt.datetime(2026, 4, 1, 10, tzinfo=UTC), dt.datetime(2026, 4, 1, 11, tzinfo=UTC))
NOW = dt.datetime(2026, 4, 2, tzinfo=UTC)
PATH = "/models/churn/report"


def test_without_a_secret_the_email_link_is_plain() -> None:
    assert links("churn", WINDOW, grafana_url=None, public_url="https://driftline.example/").report == (
        "https://driftline.example/models/churn/report?start=2026-04-01T10%3A00%3A00%2B00%3A00"
        "&end=2026-04-01T11%3A00%3A00%2B00%3A00")


def test_a_signed_link_verifies_until_it_expires() -> None:
    link = links("churn", WINDOW, grafana_url=None, public_url="https://d.example", link_secret=SECRET, now=NOW,
                 link_lifetime=dt.timedelta(days=7)).report
    assert link is not None and link.startswith("https://d.example/models/churn/report?start=")
    q = signing.signed_query(SECRET, "churn", WINDOW.start, WINDOW.end, now=NOW)
    expires = int(q["expires"])
    assert expires == int((NOW + dt.timedelta(days=7)).timestamp()) and f"sig={q['sig']}" in link
    assert signing.check(SECRET, PATH, "churn", WINDOW.start, WINDOW.end, expires, q["sig"], now=NOW) is None
    # The same instants spelled another way (naive means UTC, another offset) verify alike.
    naive = WINDOW.start.replace(tzinfo=None)
    cet = WINDOW.end.astimezone(dt.timezone(dt.timedelta(hours=1)))
    assert signing.check(SECRET, PATH, "churn", naive, cet, expires, q["sig"].upper(), now=NOW) is None
    late = signing.check(SECRET, PATH, "churn", WINDOW.start, WINDOW.end, expires, q["sig"],
                         now=NOW + dt.timedelta(days=7))
    assert late == "the link expired at 2026-04-09T00:00:00+00:00"


@pytest.mark.parametrize("field", ["secret", "path", "model", "start", "end", "expires", "sig"])
def test_changing_any_field_breaks_the_signature(field: str) -> None:
    q = signing.signed_query(SECRET, "churn", WINDOW.start, WINDOW.end, now=NOW)
    args = {"secret": SECRET, "path": PATH, "model": "churn", "start": WINDOW.start, "end": WINDOW.end,
            "expires": int(q["expires"]), "sig": q["sig"]}
    args[field] = {"secret": b"other-secret-0123456789", "path": "/models/eta/report", "model": "eta",
                   "start": WINDOW.start - dt.timedelta(seconds=1), "end": None, "expires": args["expires"] + 1,
                   "sig": "é" + q["sig"][1:]}[field]
    problem = signing.check(args["secret"], args["path"], args["model"], args["start"], args["end"],
                            args["expires"], args["sig"], now=NOW)
    assert problem is not None and "signature is invalid" in problem


def test_missing_parts_and_no_secret_are_refused() -> None:
    assert "not enabled" in str(signing.check(None, PATH, "churn", None, None, 1, "ab"))
    assert "needs both" in str(signing.check(SECRET, PATH, "churn", None, None, None, "ab"))
    with pytest.raises(ValueError, match="at least 16 bytes"):
        signing.signature(b"short", PATH, "churn", None, None, 1)


def test_settings_read_the_secret_file_first_and_refuse_a_short_one(tmp_path: Path) -> None:
    assert Settings().link_secret() is None
    assert Settings(api_link_secret="from-the-variable-0123").link_secret() == b"from-the-variable-0123"
    (tmp_path / "secret").write_text("from-the-file-0123456789\n")
    both = Settings(api_link_secret="from-the-variable-0123", api_link_secret_file=tmp_path / "secret")
    assert both.link_secret() == b"from-the-file-0123456789"
    assert "from-the-variable" not in repr(both) and "from-the-variable" not in str(both.model_dump())
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Settings(api_link_secret="short").link_secret()
