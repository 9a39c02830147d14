"""Issue 16, must-show 2: text that cannot be encoded answers 4xx naming where it was, on every operation.

Three kinds of text no store or protocol here can take: a lone surrogate
(`\\udcff`: valid JSON escape syntax, but no UTF-8 encoding exists), bytes that
are not UTF-8 (`\\xff\\xfe`), and NUL. Each goes into every path and query
parameter of every operation of the OpenAPI document (percent-encoded), into
every string field of every JSON body (as a JSON escape and as raw bytes), and
into the string arguments of the CLI. The API must answer 4xx, never 5xx, and
a 422 names the parameter or field; the CLI must exit 2 naming the argument.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import clean_env
from tests.integration.test_api_write import api, auth, prediction  # noqa: F401 - `api` is a fixture

pytestmark = pytest.mark.integration

# Percent-encoded forms for URLs: a surrogate's UTF-8-like bytes (invalid UTF-8), plain invalid bytes, NUL.
IN_URLS = {"surrogate": "%ED%B3%BF", "invalid-utf8": "%FF%FE", "nul": "a%00b"}
# JSON string bodies: the escape form of a lone surrogate, raw invalid bytes inside the quotes, an escaped NUL.
IN_JSON = {"surrogate": b'"a\\udcffb"', "invalid-utf8": b'"a\xff\xfeb"', "high-surrogate": b'"\\ud800"'}
VALUES = {"kind": "predictions", "fingerprint": "0123456789abcdef", "silence_id": "00000000-0000-0000-0000-000000000000",
          "delivery_id": "00000000-0000-0000-0000-000000000000", "name": "train"}


def _operations(client) -> list[tuple[str, str, dict[str, Any]]]:  # type: ignore[no-untyped-def]
    doc = client.get("/openapi.json").json()
    return [(m.upper(), p, op) for p, item in doc["paths"].items() for m, op in item.items()]


def test_every_parameter_of_every_operation_refuses_unencodable_text_with_a_4xx(api) -> None:  # type: ignore[no-untyped-def]
    client, a, _, _, _ = api
    values = {**VALUES, "model": a}
    failures, tried = [], 0
    for method, path, op in _operations(client):
        for param in op.get("parameters", []):
            for what, bad in IN_URLS.items():
                if param["in"] == "path":
                    url = path.format(**{**values, param["name"]: bad})
                else:
                    url = path.format(**values) + f"?{param['name']}={bad}"
                answer = client.request(method, url, headers={**auth("admin"), "Content-Type": "application/json"},
                                        content=b"[]" if method == "POST" else None)
                tried += 1
                if answer.status_code >= 500 or answer.status_code < 400:
                    failures.append((method, path, param["name"], what, answer.status_code, answer.text[:200]))
                elif answer.status_code == 422 and param["in"] == "query":
                    if param["name"] not in answer.text:
                        failures.append((method, path, param["name"], what, "reason does not name it", answer.text[:200]))
    assert tried > 100, tried
    assert not failures, "\n".join(map(str, failures))


def _bodies(model: str) -> list[tuple[str, str, str, bytes]]:
    """(url, field, kind, body) with `{}` in each template standing for the bad JSON string."""
    event = json.dumps([prediction(model, 1)])
    templates = [
        ("/silences", "matchers", '{"matchers": [{}], "comment": "c", "duration": "1h"}'),
        ("/silences", "comment", '{"matchers": ["model=' + model + '"], "comment": {}, "duration": "1h"}'),
        ("/silences", "duration", '{"matchers": ["model=' + model + '"], "comment": "c", "duration": {}}'),
        ("/silences", "author", '{"matchers": ["model=' + model + '"], "comment": "c", "duration": "1h", "author": {}}'),
        ("/alerts/0123456789abcdef/ack", "comment", '{"comment": {}}'),
        ("/ingest/predictions", "event_id", event.replace(f'"{model}-1"', "{}")),
        ("/ingest/predictions", "features.c", event.replace('"c": "a"', '"c": {}')),
        ("/ingest/predictions", "model_version", event.replace('"model_version": "1"', '"model_version": {}')),
        ("/ingest/predictions", "features key", event.replace('"c": "a"', '{}: "a"')),
    ]
    out = []
    for url, field, template in templates:
        head, tail = template.split("{}", 1) if "{}" in template else (template, "")
        for kind, bad in IN_JSON.items():
            out.append((url, field, kind, head.encode() + bad + tail.encode()))
    return out


def test_every_body_field_refuses_unencodable_text_with_a_4xx_and_ingest_dead_letters_it(api, store) -> None:  # type: ignore[no-untyped-def]
    client, a, _, _, _ = api
    failures = []
    for url, field, kind, body in _bodies(a):
        answer = client.post(url, content=body, headers={**auth("admin"), "Content-Type": "application/json"})
        ok = 400 <= answer.status_code < 500 or (url.startswith("/ingest") and answer.status_code == 200
                                                 and answer.json()["accepted"] == 0)
        if not ok:
            failures.append((url, field, kind, answer.status_code, answer.text[:300]))
    assert not failures, "\n".join(map(str, failures))


def test_numbers_and_nesting_no_decoder_can_hold_answer_4xx_and_one_dead_letter(api) -> None:  # type: ignore[no-untyped-def]
    """Durations past timedelta's range, 1e400 (inf once parsed), JSON nested beyond any decoder's depth."""
    client, a, _, _, _ = api
    headers = {**auth("admin"), "Content-Type": "application/json"}
    for duration in ('"99999999999d"', "1e400", '"1e400h"', '"99999999999999999999999w"'):
        body = '{"matchers": ["model=%s"], "comment": "c", "duration": %s}' % (a, duration)
        answer = client.post("/silences", content=body.encode(), headers=headers)
        assert answer.status_code == 422, (duration, answer.status_code, answer.text[:200])
        assert "duration" in answer.text
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = client.post("/ingest/predictions", content=deep, headers=headers)
    assert answer.status_code == 400 and "nested too deeply" in answer.text, answer.text[:200]
    line = json.dumps(prediction(a, 1))
    nested = "[" * 40_000 + "]" * 40_000  # two of these fit the test server's 200 kB body limit
    lines = [line, line.replace(f'"{a}-1"', f'"{a}-2"')[:-1] + ', "proba": ' + nested + "}",
             line.replace(f'"{a}-1"', f'"{a}-3"'), line.replace(f'"{a}-1"', f'"{a}-4"').replace('"c": "a"', '"c": ' + nested)]
    answer = client.post("/ingest/predictions", content="\n".join(lines).encode(),
                         headers={**auth("admin"), "Content-Type": "application/x-ndjson"})
    assert answer.status_code == 200, answer.text[:300]
    assert (answer.json()["accepted"], answer.json()["dead_lettered"]) == (2, 2), answer.text[:300]


@pytest.mark.parametrize(("argv", "named"), [
    ([b"alerts", b"ack", b"0123456789abcdef", b"--comment", b"a\xff\xfeb"], b"comment"),
    ([b"silence", b"add", b"--match", b"model=a\xedb", b"--duration", b"1h", b"--comment", b"c"], b"match"),
    ([b"db", b"query", b"select '\xff'"], b"sql"),
])
def test_cli_refuses_arguments_that_are_not_utf8_naming_them(argv: list[bytes], named: bytes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    env = clean_env(clickhouse_url=f"chdb:{tmp_path / 'store'}")
    done = subprocess.run([sys.executable.encode(), b"-m", b"driftline.cli", *argv], env=env, capture_output=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr[-500:]
    assert b"argument " + named + b" is not valid UTF-8" in done.stderr, done.stderr[-500:]
    assert b"Traceback" not in done.stderr
