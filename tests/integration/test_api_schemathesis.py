"""Schemathesis against the API's own OpenAPI document, on the real engine: generated requests for every
operation (valid and edge-case parameters, paths, bodies) must never get a 5xx, and every answer must match
the status codes, content types and schemas the document declares.

Left out: schemathesis' `positive_data_acceptance`, which expects every schema-valid request to succeed. Some
rules are not in the schema (exactly one of `duration`/`ends_at`, a matcher's syntax, a regex that compiles,
an alert that is firing): those answer 409 or 422 with a reason, as the document says they may.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from detectors.config import load_registry
from driftline.api.app import create_app
from driftline.api.context import Reloaded
from driftline.api.auth import load_tokens
from driftline.config import Settings
from driftline.store import connect
from tests.integration.alerting import DAY_OF_RESULTS, hour, tag, write_drift

pytestmark = pytest.mark.integration

EXCLUDED_CHECKS = [positive_data_acceptance]  # see the module's docstring

ADMIN = "schemathesis-admin-token-0123456789"
EXAMPLES_PER_OPERATION = 30
MIN_CASES = 500
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def api_schema(base_settings, store, tmp_path: Path):  # type: ignore[no-untyped-def]
    return build_api_schema(base_settings, store, tmp_path)


def build_api_schema(base_settings, store, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The API over `base_settings`' database with one model and three hours of drift results, and its schema."""
    name = f"fuzz-{tag()}"
    models_file = tmp_path / "models.yaml"
    models_file.write_text(json.dumps({"models": [{
        "name": name, "task": "binary_classification", "owner": "team-a",
        "features": {"x1": "numeric", "x2": "numeric", "c": "categorical"},
        "reference": {"rolling": {"offset": "7d"}}, "window": "1h"}]}))
    for h in range(3):
        write_drift(store, name, hour(DAY_OF_RESULTS, h), share=0.67 if h else 0.0, drifted=("x1",) if h else ())
    (tmp_path / "tokens.yaml").write_text(
        f"tokens:\n  - {{name: fuzz, sha256: {hashlib.sha256(ADMIN.encode()).hexdigest()}, scopes: [admin]}}\n")
    app = create_app(load_registry(models_file), load_tokens(tmp_path / "tokens.yaml"), lambda: connect(base_settings),
                     settings=Settings(**{**base_settings.model_dump(), "api_ingest_partition": 60001}),
                     reload=lambda: Reloaded(load_registry(models_file)))
    client = TestClient(app)
    return schemathesis.openapi.from_dict(without_security(client.get("/openapi.json").json())), client


def without_security(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without its bearer scheme: every request here carries the token (AUTH), but with the scheme
    declared, schemathesis counts a negative case's missing header as the violation and then calls the answer
    to our token a schema-violating request accepted. test_security covers the tokens of every operation."""
    doc.get("components", {}).pop("securitySchemes", None)
    for item in doc["paths"].values():
        for operation in item.values():
            operation.pop("security", None)
    return doc


def httpx_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Schemathesis' request as httpx takes it. Its own transport goes through `requests`, which breaks here:
    grafana-client's niquests installs urllib3-future over urllib3, and schemathesis counts urllib3's pools."""
    out = {k: kwargs[k] for k in ("method", "url", "params", "headers", "json") if k in kwargs}
    if "data" in kwargs:
        data = kwargs["data"]
        out["content" if isinstance(data, bytes | str) else "data"] = data
    return out


@pytest.mark.slow
def test_generated_requests_get_no_5xx_and_answers_match_the_document(api_schema) -> None:  # type: ignore[no-untyped-def]
    """Every operation, up to EXAMPLES_PER_OPERATION schema-valid and as many schema-violating cases each;
    failures are collected per operation and mode."""
    schema, client = api_schema
    failures: dict[str, str] = {}
    cases: list[str] = []
    for result, mode in itertools.product(list(schema.get_all_operations()), GenerationMode):
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None, derandomize=True)
        def exercise(case) -> None:  # type: ignore[no-untyped-def]
            cases.append(operation.label)
            response = client.request(**httpx_kwargs(case.as_transport_kwargs(base_url="http://testserver",
                                                                              headers=AUTH)))
            case.validate_response(response, headers=AUTH, excluded_checks=EXCLUDED_CHECKS)

        try:
            exercise()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise
            # An operation without parameters or body has no schema-violating request to make.
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - reported below, per operation
            failures[f"{operation.label} ({mode.value})"] = f"{type(exc).__name__}: {str(exc)[:1500]}"
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    print(f"schemathesis: {len(cases)} cases over {len(set(cases))} operations")
    assert len(cases) >= MIN_CASES, f"{len(cases)} cases over {len(set(cases))} operations"
    assert len(set(cases)) >= 15, sorted(set(cases))
