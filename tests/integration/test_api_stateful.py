"""Schemathesis' stateful phase over the API: sequences that feed one answer's ids into the next request.

The document declares the links for silences (a created or listed silence's `id` goes to
POST /silences/{silence_id}/expire: schemathesis' own inference guessed `silence_id`, a field the answer does not
have); schemathesis 4 infers the rest from field names: a listed delivery's `delivery_id` goes to
POST /deliveries/{delivery_id}/replay, a model's name to its results and references. The test pins those
transitions (a change to the document that loses one fails here), runs the state machine through FastAPI's
TestClient (schemathesis' own transport goes through `requests`, which breaks here: see test_api_schemathesis),
and checks that the linked calls really reached existing objects: a 200 from expire or replay needs an id that
exists, which random generation never hits.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from schemathesis.core.transport import Response

from alerts import outbox
from tests.conftest import own_database
from tests.integration.test_api_schemathesis import AUTH, EXCLUDED_CHECKS, build_api_schema, httpx_kwargs

pytestmark = pytest.mark.integration

WANTED = {
    "POST_silences___201_ExpireSilence__POST_silences_silence_id_expire",
    "GET_silences___200_ExpireFirstSilence__POST_silences_silence_id_expire",
    "GET_deliveries___200_PostDelivery__POST_deliveries_delivery_id_replay",
}
DEAD_DELIVERIES = 40


@pytest.mark.slow
def test_linked_sequences_expire_real_silences_and_replay_real_deliveries(base_settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A database of its own: hypothesis replays each scenario and needs the same answers, and GET /deliveries in
    # the worker's shared database also lists other tests' deliveries, which change while this test runs (in a
    # shuffled parallel run that failed with FlakyStrategyDefinition).
    own, store = own_database(base_settings)
    schema, client = build_api_schema(own, store, tmp_path)
    now = dt.datetime.now(dt.timezone.utc)
    dead = []
    for i in range(DEAD_DELIVERIES):
        did = outbox.delivery_id("stateful", f"m{i}", now.isoformat())
        outbox.enqueue(store, [(outbox.Delivery(did, "mail", "email", "stateful-model", "firing", [], "s", "pending",
                                                0, now, "", now), b"body")])
        d = outbox.get(store, did)
        assert d is not None
        d.status, d.attempts, d.last_error = "dead", 8, "HTTP 500"
        dead.append(d)
    seeded = {d.delivery_id for d in dead}
    created: set[str] = set()

    def reset() -> None:
        """Each scenario starts from the same state (hypothesis replays choices and needs the same answers): the
        deliveries dead again, and fresh silences, since generated ones rarely pass the rules the schema cannot
        say (matcher syntax, one of duration/ends_at)."""
        for d in dead:
            d.status, d.attempts = "dead", 8
        outbox.write_status(store, dead)
        for i in range(3):
            made = client.post("/silences", headers=AUTH, json={"matchers": [f"model=stateful-{i}"],
                                                                "comment": "seed", "duration": "1h"})
            assert made.status_code == 201, made.text
            created.add(made.json()["id"])

    base = schema.as_state_machine()
    assert WANTED <= set(dir(base)), sorted(n for n in dir(base) if "__" in n)
    calls: Counter[tuple[str, int]] = Counter()
    reached: dict[str, set[str]] = {"expired": set(), "replayed": set()}

    class Workflow(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            reset()

        def call(self, case, **kwargs):  # type: ignore[no-untyped-def]
            answer = client.request(**httpx_kwargs(case.as_transport_kwargs(base_url="http://testserver",
                                                                              headers=AUTH)))
            calls[(case.operation.label, answer.status_code)] += 1
            if answer.status_code == 200 and case.operation.label.endswith("/expire"):
                reached["expired"].add(case.path_parameters["silence_id"])
            if answer.status_code == 200 and case.operation.label.endswith("/replay"):
                reached["replayed"].add(case.path_parameters["delivery_id"])
            return Response.from_httpx(answer, verify=False)

        def validate_response(self, response, case, additional_checks=None, **kwargs):  # type: ignore[no-untyped-def]
            case.validate_response(response, headers=AUTH, excluded_checks=EXCLUDED_CHECKS)

    Workflow.run(settings=settings(max_examples=60, stateful_step_count=6, deadline=None, database=None,
                                   derandomize=True, suppress_health_check=list(HealthCheck)))
    print(f"stateful: {sum(calls.values())} calls: {dict(calls)}")
    assert not [k for k in calls if k[1] >= 500], calls
    # The linked calls reached objects that exist (ours: the database is this test's own): a 200 from expire
    # or replay needs an id from an earlier answer, which random generation does not hit.
    silences = {s["id"] for s in client.get("/silences?all=true", headers=AUTH).json()}
    assert reached["expired"] and reached["expired"] <= silences, (reached, calls)
    assert reached["replayed"] and all(outbox.get(store, d) is not None for d in reached["replayed"]), (reached, calls)
    assert created <= silences and seeded  # the seeds were there to be found
