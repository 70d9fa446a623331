"""Property-based API fuzzing generated from /openapi.json (schemathesis) on both engines.

For every operation of the document, schemathesis generates requests from its parameter and body schemas, valid
ones (positive) and ones that break them (negative), and sends them to the app (in process, through its WSGI
interface: the same Flask app gunicorn serves; what only gunicorn sees — request lines, header limits — is tested
against a real ``shopsearch serve`` in test_request_guards.py). Every answer must pass schemathesis'
``not_a_server_error``, ``response_schema_conformance``, ``status_code_conformance`` and
``content_type_conformance``, and :func:`assert_no_internals` (an error body sent to a search key names no
URL, file path or exception text).

Keys are configured: each operation is called with the least key that may call it (a search key; /metrics an admin
key), as a storefront and an operator would. Rate limits are off so the budget does not turn generated requests
into 429s, and the /search deadline is a minute: this test is about input handling, and on a busy CI machine the
1 s default would turn machine load into 503s (deadlines and load shedding have tests of their own).

Hypothesis is derandomized (its seed is derived from the test itself) and keeps no example database, so a CI run
is reproducible and writes nothing. ``too_slow`` is suppressed: it measures how long hypothesis takes to *generate*
inputs (the POST /events body is a oneOf of two large models), which on a shared 2-core runner says nothing about
the API. /openapi.json itself is not fuzzed (schemathesis skips the schema's own location; it takes no input) but
loading it through the app is the first request of the test.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                              status_code_conformance)

from shopsearch.api.app import create_app
from shopsearch.api.keys import KeyStore
from shopsearch.plugin.ubi_spool import SpoolDrainer
from shopsearch.plugin.ubi_store import JsonlUbiStore

from .conftest import ALIAS, CATALOG, build_catalog

EXAMPLES = 500  # generated requests per operation (an operation with fewer distinct inputs gets all of them)
# What an error body for a non-admin may not show: URLs, absolute paths, exception class names or tracebacks.
INTERNALS = re.compile(r"https?://|(?<![\w.])/(?:home|root|tmp|usr|var|etc|opt|work)/|Traceback|\w+(?:Error|"
                       r"Exception)\(|opensearchpy|werkzeug|\.py\b")
QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")  # a Python repr of a str, either quote
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


def assert_no_internals(case, response) -> None:
    """An error answer to a search key carries no internal details (docs/security.md).

    Quoted values are left out: errors quote the client's own offending value back (``got 'a/b.py'``).
    """
    message = response.json()["error"]["message"]
    found = INTERNALS.search(QUOTED.sub("''", message))
    assert found is None, (f"{case.method} {case.formatted_path} {response.status_code}: the message shows "
                           f"{found.group(0)!r}: {message!r}")


@pytest.fixture(params=["embedded", pytest.param("opensearch", marks=pytest.mark.opensearch)])
def fuzzed(request, tmp_path, searcher, catalog_engine, tiny_encoder):
    """(engine name, app, search key, admin key): the test catalog on that engine, keys configured."""
    from shopsearch.plugin.engines import open_engine
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.profiles import ProfileStore

    engine, own, index, concrete = catalog_engine, None, ALIAS, None
    if request.param == "opensearch":
        url = request.getfixturevalue("opensearch_url")
        own = engine = open_engine("opensearch", url=url)
        tag = uuid.uuid4().hex[:8]
        index, concrete = f"api-fuzz-{tag}", f"api-fuzz-{tag}-v1"
        build_catalog(engine, tiny_encoder, index=concrete, alias=index)
    fuzz_searcher = searcher if own is None else HybridSearcher(engine, index, tiny_encoder, ProfileStore())
    store = KeyStore(tmp_path / "keys.json")
    search_key, admin_key = store.create("search").secret, store.create("admin").secret
    app = create_app({"searcher": fuzz_searcher, "engine_instance": engine, "index": index,
                      "engine": request.param, "home": str(tmp_path), "events_dir": str(tmp_path / "events"),
                      "rate_limits": False, "search_deadline_ms": 60_000})
    # Generated events go to JSONL files under tmp_path, never into the shared node's ubi_events index.
    svc = app.extensions["shopsearch"]
    svc.ubi_drainer = SpoolDrainer(svc.ubi_spool, lambda: JsonlUbiStore(tmp_path / "ubi"), 1.0)
    try:
        yield request.param, app, search_key, admin_key
    finally:
        app.extensions["shopsearch"].ubi_drainer.stop()
        if own is not None:
            own.delete_index(concrete)
            own.close()


def test_generated_requests_get_documented_answers_and_never_5xx(fuzzed):
    name, app, search_key, admin_key = fuzzed
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    sent: Counter[str] = Counter()
    statuses: Counter[tuple[str, int]] = Counter()
    with_inputs = set()  # operations with parameters or a body: they must get EXAMPLES requests each
    for result in schema.get_all_operations():  # every path but /openapi.json itself (the schema's own location)
        operation = result.ok()
        if operation.definition.raw.get("parameters") or operation.definition.raw.get("requestBody"):
            with_inputs.add(operation.label)
        roles = {role for req in operation.definition.raw.get("security", []) for roles in req.values()
                 for role in roles}
        key = admin_key if "admin" in roles else search_key
        strategies = [operation.as_strategy(mode) for mode in schemathesis.GenerationMode]
        if "{product_id}" in operation.path:  # generated ids all miss the catalog: also fuzz around real products
            strategies += [operation.as_strategy(path_parameters={"product_id": p.id}) for p in CATALOG[:3]]
        strategy = st.one_of(strategies)

        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        def fuzz(case) -> None:
            # both schemes carry the key: a generated Authorization header must not stand in for it
            response = case.call_and_validate(headers={"Authorization": f"Bearer {key}", "X-API-Key": key},
                                              checks=CHECKS)
            if key == search_key and response.status_code >= 400:
                assert_no_internals(case, response)
            sent[operation.label] += 1
            statuses[(operation.label, response.status_code)] += 1

        fuzz()
    print(f"{name}: {sum(sent.values())} requests: {dict(sent)}; statuses {dict(statuses)}")
    assert len(with_inputs) == 6 and all(sent[label] >= EXAMPLES for label in with_inputs), sent
    assert not any(status >= 500 for _, status in statuses)
