"""The OpenSearch adapter's search retries, with a fake client (no node): an ``_msearch`` item that fails with a 5xx
(e.g. a shard with no copy answering while a lost node's replicas take over) or that some shards did not answer
(``_shards.failed > 0``) is sent again, alone, a bounded number of times within the deadline; a 429, a 4xx, a shard
failure of the query itself or a missing index raises at once; a whole request refused or reset on every node the
client tried, or answered a 5xx that does not blame the query, is sent once more, a timeout never; a failure
that persists is a plain EngineUnavailable (the API's 503). Counts (``_count``) and autocomplete answers some
shards did not give are sent again the same way, never returned as if complete; a product read failing whole is
sent once more, as a search is."""

from __future__ import annotations

import pytest

from shopsearch.deadline import Deadline
from shopsearch.plugin import opensearch_engine
from shopsearch.plugin.engine import (BM25Leg, EngineBusy, EngineUnavailable, Filters, IndexNotFound, KnnLeg,
                                      MatchRule)
from shopsearch.plugin.opensearch_engine import SEARCH_RETRIES, OpenSearchEngine
from shopsearch.plugin.opensearch_errors import search_failure
from shopsearch.settings import load_settings

TITLE = {"title": 1.0}
NO_SHARD = {"status": 503, "error": {
    "type": "search_phase_execution_exception", "reason": "all shards failed", "phase": "query",
    "root_cause": [{"type": "no_shard_available_action_exception", "reason": "[node-2][shop-1][0]"}],
    "failed_shards": [{"shard": 0, "index": "shop-1", "node": "n2", "reason": {
        "type": "no_shard_available_action_exception", "reason": "[node-2][shop-1][0]"}}]}}


def ok(*ids: str) -> dict:
    return {"status": 200, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": len(ids), "relation": "eq"},
                     "hits": [{"_id": i, "_score": 1.0, "_source": {"title": i}} for i in ids]}}


def partial(*ids: str) -> dict:
    answer = ok(*ids)
    answer["_shards"] = {"total": 2, "successful": 1, "skipped": 0, "failed": 1, "failures": [
        {"shard": 1, "index": "shop-1", "node": "n2", "reason": {"type": "node_disconnected_exception",
                                                                 "reason": "[node-2] disconnected"}}]}
    return answer


class FakeClient:
    """Stands for opensearch-py's client: each msearch/search/count call takes its answers from a script."""

    def __init__(self, msearch=(), search=(), count=(), get=()) -> None:
        self.msearch_script = list(msearch)
        self.search_script = list(search)
        self.count_script = list(count)
        self.get_script = list(get)
        self.get_calls = 0
        self.count_bodies: list[dict | None] = []
        self.msearch_bodies: list[list[dict]] = []
        self.search_calls = 0
        self.timeouts: list[float | None] = []

    def msearch(self, body, request_timeout=None, **_):
        self.msearch_bodies.append(body)
        self.timeouts.append(request_timeout)
        step = self.msearch_script.pop(0)
        if isinstance(step, Exception):
            raise step
        items = step(body) if callable(step) else step
        assert len(items) == len(body) // 2, "the fake's script answers every item sent"
        return {"took": 1, "responses": items}

    def search(self, index, body, request_timeout=None, **_):
        self.search_calls += 1
        self.timeouts.append(request_timeout)
        step = self.search_script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def get(self, index, id, **_):
        self.get_calls += 1
        step = self.get_script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def count(self, index, body=None, **_):
        self.count_bodies.append(body)
        return self.count_script.pop(0)

    def close(self) -> None:
        pass


@pytest.fixture
def make_engine(monkeypatch):
    monkeypatch.setattr(opensearch_engine, "SEARCH_RETRY_BACKOFF_S", 0.001)
    made = []

    def make(client: FakeClient) -> OpenSearchEngine:
        engine = OpenSearchEngine("http://127.0.0.1:9", settings=load_settings(environ={}), timeout=5.0)
        engine.client = client
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine._legs.shutdown(wait=False)


def test_an_msearch_item_failing_with_503_is_sent_again_alone_and_the_search_served(make_engine):
    client = FakeClient(msearch=[[ok("a", "b"), NO_SHARD], [ok("c")]])
    engine = make_engine(client)
    bm25, knn = engine.search("shop", [BM25Leg("lamp", TITLE), KnnLeg([1.0, 0.0], k=5)])
    assert [h.id for h in bm25] == ["a", "b"] and [h.id for h in knn] == ["c"]
    assert [len(b) for b in client.msearch_bodies] == [4, 2]  # the retry carries the failed k-NN leg only
    assert "knn" in str(client.msearch_bodies[1][1])


def test_an_answer_some_shards_did_not_give_is_not_served_as_complete(make_engine):
    client = FakeClient(msearch=[[partial("a"), ok("k")], [ok("a", "b")]])
    bm25, knn = make_engine(client).search("shop", [BM25Leg("lamp", TITLE), KnnLeg([1.0, 0.0], k=5)])
    assert [h.id for h in bm25] == ["a", "b"] and [h.id for h in knn] == ["k"]
    assert [len(b) for b in client.msearch_bodies] == [4, 2]


def test_a_whole_request_failing_on_every_node_is_sent_once_more(make_engine):
    """A node's death can fail a whole round trip (connections reset on every node the client tried, a 5xx while
    its copies are given up): sent once more after the backoff, never more, so an outage costs one more round
    rather than SEARCH_RETRIES; a refusal is still a refusal (NewConnectionError derives from urllib3's
    ConnectTimeoutError)."""
    from opensearchpy.exceptions import ConnectionError, TransportError
    from urllib3.exceptions import NewConnectionError

    five = TransportError(500, "search_phase_execution_exception", NO_SHARD["error"])
    reset = ConnectionError("N/A", "Connection aborted: RemoteDisconnected", None)
    refused = ConnectionError("N/A", "refused", NewConnectionError(None, "Connection refused"))
    client = FakeClient(msearch=[refused, [ok("a")]])
    hits, = make_engine(client).search("shop", [BM25Leg("lamp", TITLE)])
    assert [h.id for h in hits] == ["a"] and len(client.msearch_bodies) == 2

    client = FakeClient(msearch=[five, [ok("a"), ok("k")]])
    bm25, knn = make_engine(client).search("shop", [BM25Leg("lamp", TITLE), KnnLeg([1.0, 0.0], k=5)])
    assert [h.id for h in bm25] == ["a"] and [h.id for h in knn] == ["k"]
    assert [len(b) for b in client.msearch_bodies] == [4, 4]

    client = FakeClient(msearch=[reset, five, [ok("a")]])
    with pytest.raises(EngineUnavailable, match=r"\(500\)"):
        make_engine(client).search("shop", [BM25Leg("lamp", TITLE)])
    assert len(client.msearch_bodies) == 2 and len(client.msearch_script) == 1  # the answer was never asked for

    # A whole failure after failed items takes one of the same rounds: SEARCH_RETRIES + 1 sends in all.
    client = FakeClient(msearch=[[NO_SHARD], reset, [ok("a")]])
    hits, = make_engine(client).search("shop", [BM25Leg("lamp", TITLE)])
    assert [h.id for h in hits] == ["a"] and len(client.msearch_bodies) == 3
    client = FakeClient(msearch=[reset] + [[NO_SHARD]] * SEARCH_RETRIES + [[ok("a")]])
    with pytest.raises(EngineUnavailable, match=r"\(503\)"):
        make_engine(client).search("shop", [BM25Leg("lamp", TITLE)])
    assert len(client.msearch_bodies) == SEARCH_RETRIES + 1


def test_a_whole_failure_is_not_sent_again_past_the_deadline(make_engine):
    from opensearchpy.exceptions import ConnectionError

    now = [100.0]
    client = FakeClient(msearch=[ConnectionError("N/A", "refused", None), [ok("a")]])
    deadline = Deadline.after(0.5, clock=lambda: now[0])
    now[0] += 0.48  # too little left for a backoff and another attempt
    with pytest.raises(EngineUnavailable, match="unreachable"):
        make_engine(client).search("shop", [BM25Leg("lamp", TITLE)], deadline=deadline)
    assert len(client.msearch_bodies) == 1


def test_the_500_a_search_meets_at_a_node_kill_is_sent_again(make_engine):
    """What a three-node cluster answered 31 ms after its cluster manager was SIGKILLed (bench/RESULTS.md, session
    30): all shards failed, caused by node_not_connected_exception. An _msearch item with it was always sent again;
    the page's products come from a _search, where it is a whole HTTP 500 that opensearch-py does not retry."""
    from opensearchpy.exceptions import TransportError

    lost = {"type": "search_phase_execution_exception", "reason": "all shards failed", "phase": "query",
            "root_cause": [{"type": "node_not_connected_exception",
                            "reason": "[shopsearch-node-1][127.0.0.1:9561] Node not connected"}]}
    client = FakeClient(search=[TransportError(500, "search_phase_execution_exception", {"error": lost}),
                                ok("p1", "p2")])
    assert sorted(make_engine(client).sources("shop", ["p1", "p2"])) == ["p1", "p2"]
    assert client.search_calls == 2


def test_a_product_read_failing_whole_at_a_node_kill_is_sent_once_more(make_engine):
    """A product page or a recommendation reads one product: a connection reset on every node the client tried is
    sent once more, a second failure is the API's 503; a timeout, a missing index and a 429 raise at once, and a
    missing product is None at once."""
    from opensearchpy.exceptions import ConnectionError, ConnectionTimeout, NotFoundError, TransportError

    reset = ConnectionError("N/A", "Connection aborted: RemoteDisconnected", None)
    found = {"_id": "p1", "found": True, "_source": {"title": "Lamp"}}
    client = FakeClient(get=[reset, found])
    assert make_engine(client).get("shop", "p1")["title"] == "Lamp"
    assert client.get_calls == 2

    client = FakeClient(get=[reset, reset, found])
    with pytest.raises(EngineUnavailable):
        make_engine(client).get("shop", "p1")
    assert client.get_calls == 2

    client = FakeClient(get=[ConnectionTimeout("TIMEOUT", "read timed out", None), found])
    with pytest.raises(EngineUnavailable):
        make_engine(client).get("shop", "p1")
    assert client.get_calls == 1

    client = FakeClient(get=[NotFoundError(404, "not found", {"_id": "p9", "found": False})])
    assert make_engine(client).get("shop", "p9") is None and client.get_calls == 1

    missing = NotFoundError(404, "index_not_found_exception", {"error": {
        "type": "index_not_found_exception", "reason": "no such index [shop]", "index": "shop"}, "status": 404})
    busy = TransportError(429, "rejected_execution_exception", {"error": "queue full"})
    for error, raised in ((missing, IndexNotFound), (busy, EngineBusy)):
        client = FakeClient(get=[error, found])
        with pytest.raises(raised):
            make_engine(client).get("shop", "p1")
        assert client.get_calls == 1


@pytest.mark.parametrize("error", [
    "read timeout", "connect timeout", "tls", "busy", "denied", "closed", "the query's own 500",
])
def test_a_whole_request_that_cannot_pass_in_a_moment_raises_at_once(make_engine, error):
    """A timeout has spent the time (a hung node must fail within the engine's timeout), a TLS failure and a 403
    are the operator's to fix, a 429 is shed at once, a closed index stays closed, and a 5xx that blames the query
    fails again."""
    from opensearchpy.exceptions import (AuthorizationException, ConnectionError, ConnectionTimeout, SSLError,
                                         TransportError)
    from urllib3.exceptions import ConnectTimeoutError

    own = {"type": "search_phase_execution_exception", "reason": "all shards failed",
           "root_cause": [{"type": "query_shard_exception", "reason": "failed to create query"}]}
    cause = {"read timeout": ConnectionTimeout("TIMEOUT", "read timed out", None),
             "connect timeout": ConnectionError("N/A", "connect timed out", ConnectTimeoutError("timed out")),
             "tls": SSLError("N/A", "certificate verify failed", None),
             "busy": TransportError(429, "rejected_execution_exception", {"error": "queue full"}),
             "denied": AuthorizationException(403, "security_exception", {"error": "no permission"}),
             "closed": TransportError(400, "index_closed_exception", {"error": {
                 "type": "index_closed_exception", "reason": "closed", "index": "shop-1"}}),
             "the query's own 500": TransportError(500, "search_phase_execution_exception", {"error": own})}[error]
    client = FakeClient(msearch=[cause, [ok("a")]])
    with pytest.raises((EngineUnavailable, ValueError)):
        make_engine(client).search("shop", [BM25Leg("lamp", TITLE)])
    assert len(client.msearch_bodies) == 1


def test_a_shard_failure_of_the_query_itself_is_a_bad_request_at_once(make_engine):
    bad = partial("a")
    bad["_shards"]["failures"][0]["reason"] = {"type": "query_shard_exception", "reason": "failed to create query"}
    client = FakeClient(msearch=[[bad]])
    with pytest.raises(ValueError, match="failed to create query"):
        make_engine(client).search("shop", [BM25Leg("lamp", TITLE)])
    assert len(client.msearch_bodies) == 1


def test_a_failure_that_persists_is_engine_unavailable_after_bounded_retries(make_engine):
    client = FakeClient(msearch=[[ok("a"), NO_SHARD]] + [[NO_SHARD]] * SEARCH_RETRIES)
    with pytest.raises(EngineUnavailable) as info:
        make_engine(client).search("shop", [BM25Leg("lamp", TITLE), KnnLeg([1.0, 0.0], k=5)])
    assert not isinstance(info.value, EngineBusy)
    assert "(503)" in str(info.value) and "no_shard_available_action_exception" in str(info.value)
    assert len(client.msearch_bodies) == SEARCH_RETRIES + 1 and not client.msearch_script


def test_partial_shard_failures_that_persist_are_engine_unavailable(make_engine):
    client = FakeClient(msearch=[[partial("a")]] * (SEARCH_RETRIES + 1))
    with pytest.raises(EngineUnavailable, match=r"from 1 of 2 shards \(1 failed: node_disconnected_exception"):
        make_engine(client).search("shop", [BM25Leg("lamp", TITLE)])
    assert len(client.msearch_bodies) == SEARCH_RETRIES + 1


@pytest.mark.parametrize("item, error", [
    ({"status": 429, "error": {"type": "rejected_execution_exception", "reason": "queue full"}}, EngineBusy),
    ({"status": 400, "error": {"type": "parsing_exception", "reason": "bad"}}, ValueError),
    ({"status": 404, "error": {"type": "index_not_found_exception", "reason": "no such index [shop]",
                               "index": "shop"}}, IndexNotFound),
])
def test_busy_bad_and_missing_index_items_raise_at_once(make_engine, item, error):
    client = FakeClient(msearch=[[NO_SHARD, item]])  # a 4xx/429 beside a transient failure still raises at once
    with pytest.raises(error):
        make_engine(client).search("shop", [BM25Leg("lamp", TITLE), KnnLeg([1.0, 0.0], k=5)])
    assert len(client.msearch_bodies) == 1


def test_no_retry_past_the_deadline(make_engine):
    now = [100.0]
    client = FakeClient(msearch=[[NO_SHARD], [ok("a")]])
    deadline = Deadline.after(0.5, clock=lambda: now[0])
    now[0] += 0.48  # too little left for a backoff and another attempt: the item's 503, as before
    with pytest.raises(EngineUnavailable, match=r"\(503\)"):
        make_engine(client).search("shop", [BM25Leg("lamp", TITLE)], deadline=deadline)
    assert len(client.msearch_bodies) == 1
    assert client.timeouts[0] == pytest.approx(0.02)


def test_retries_get_the_time_the_deadline_leaves(make_engine):
    now = [100.0]
    client = FakeClient(msearch=[[NO_SHARD], [ok("a")]])
    deadline = Deadline.after(0.5, clock=lambda: now[0])
    hits, = make_engine(client).search("shop", [BM25Leg("lamp", TITLE)], deadline=deadline)
    assert [h.id for h in hits] == ["a"] and client.timeouts == [0.5, 0.5]


def test_a_field_scores_leg_sent_alone_is_retried_too(make_engine):
    from opensearchpy.exceptions import ConnectionError

    client = FakeClient(search=[partial("a"), ok("a", "b")])
    hits, = make_engine(client).search("shop", [BM25Leg("lamp", TITLE, field_scores=True)])
    assert [h.id for h in hits] == ["a", "b"] and client.search_calls == 2

    # Refused on every node the client tried: sent once more, then raised as it was.
    client = FakeClient(search=[ConnectionError("N/A", "refused", None)] * 2)
    with pytest.raises(EngineUnavailable, match="unreachable"):
        make_engine(client).search("shop", [BM25Leg("lamp", TITLE, field_scores=True)])
    assert client.search_calls == 2


def test_match_and_sources_are_retried(make_engine):
    counted = ok("a")
    counted["aggregations"] = {}
    client = FakeClient(msearch=[[counted, NO_SHARD], [ok("a")]], search=[partial("p1"), ok("p1", "p2")])
    engine = make_engine(client)
    # exclude with a slice: a counting body and a slice body; the slice's item failed and is sent again alone
    page = engine.match("shop", MatchRule(BM25Leg("lamp", TITLE)), size=10, exclude=["z"])
    assert page.total == 1 and [h.id for h in page.hits] == ["a"]
    assert [len(b) for b in client.msearch_bodies] == [4, 2]
    assert sorted(engine.sources("shop", ["p1", "p2"])) == ["p1", "p2"]


def counted(n: int, failed: int = 0) -> dict:
    answer = {"count": n, "_shards": {"total": 2, "successful": 2 - failed, "skipped": 0, "failed": failed}}
    if failed:
        answer["_shards"]["failures"] = partial()["_shards"]["failures"]
    return answer


def test_a_count_some_shards_did_not_give_is_not_served_as_complete(make_engine):
    client = FakeClient(count=[counted(3, failed=1), counted(7), counted(2, failed=1), counted(37)])
    engine = make_engine(client)
    assert engine.filtered_count("shop", Filters(brand=("Acme",))) == 7  # not the 3 of the shard that answered
    assert engine.count("shop") == 37
    assert client.count_bodies[0] == client.count_bodies[1] and client.count_bodies[2:] == [None, None]  # resent

    client = FakeClient(count=[counted(3, failed=1)] * (SEARCH_RETRIES + 1))
    with pytest.raises(EngineUnavailable, match=r"from 1 of 2 shards \(1 failed: node_disconnected_exception"):
        make_engine(client).filtered_count("shop", Filters())
    assert len(client.count_bodies) == SEARCH_RETRIES + 1


def test_suggestions_some_shards_did_not_give_are_not_served_as_complete(make_engine):
    client = FakeClient(search=[partial("lamp shade"), ok("lamp shade", "lamp post")])
    assert make_engine(client).suggest("shop", "lam") == ["lamp post", "lamp shade"]  # not the one shard's title
    assert client.search_calls == 2

    client = FakeClient(search=[partial("lamp shade")] * (SEARCH_RETRIES + 1))
    with pytest.raises(EngineUnavailable, match=r"from 1 of 2 shards"):
        make_engine(client).suggest("shop", "lam")
    assert client.search_calls == SEARCH_RETRIES + 1


def test_search_failure():
    assert search_failure(ok("a"), index="i", url="u") is None
    assert search_failure({"hits": {"hits": []}}, index="i", url="u") is None  # no _shards: nothing to doubt
    exc, transient = search_failure(NO_SHARD, index="i", url="u")
    assert transient and type(exc) is EngineUnavailable
    exc, transient = search_failure({"error": "boom"}, index="i", url="u")  # no status: a 5xx, say
    assert transient and type(exc) is EngineUnavailable
    exc, transient = search_failure({"status": 429, "error": {"type": "x"}}, index="i", url="u")
    assert not transient and isinstance(exc, EngineBusy)
    exc, transient = search_failure({"_shards": {"total": 3, "failed": 2}}, index="i", url="u")
    assert transient and "from 1 of 3 shards (2 failed: no reason given)" in str(exc)


def test_a_vocabulary_scan_lost_midway_reads_again_from_the_start_once(make_engine, monkeypatch):
    """The scroll's context gone (404), or some shards lost with their node (ScanError): the scan starts over,
    once; an engine that answered nothing is not asked again."""
    from opensearchpy import helpers
    from opensearchpy.exceptions import ConnectionError, NotFoundError
    from opensearchpy.helpers import ScanError

    lost = NotFoundError(404, "search_phase_execution_exception", {"error": {
        "type": "search_phase_execution_exception", "reason": "all shards failed",
        "root_cause": [{"type": "search_context_missing_exception", "reason": "No search context found for id [7]"}]}})
    partial = ScanError("sid", "Scroll request has only succeeded on 1 (+0 skipped) shards out of 2.")
    scans, failures = [], []

    def scan(client, **kwargs):
        scans.append(kwargs["index"])
        failure = failures.pop(0) if failures else None
        if isinstance(failure, ConnectionError):
            raise failure  # nothing read
        yield {"_source": {"title": "red lamp"}}
        if failure is not None:
            raise failure  # after its first page
        yield {"_source": {"title": "blue lamp"}}

    monkeypatch.setattr(helpers, "scan", scan)
    engine = make_engine(FakeClient())
    monkeypatch.setattr(engine, "_store_vocabulary", lambda found: None)
    whole = engine._build_vocabulary("shop", "shop-1:u:2").to_json()
    for failure in (lost, partial):
        scans.clear()
        failures[:] = [failure]
        assert engine._build_vocabulary("shop", "shop-1:u:2").to_json() == whole and scans == ["shop", "shop"]
    scans.clear()
    failures[:] = [lost, lost]  # lost twice: an outage, said once
    with pytest.raises(EngineUnavailable, match="lost the scroll over index 'shop'"):
        engine._build_vocabulary("shop", "shop-1:u:2")
    assert scans == ["shop", "shop"]
    scans.clear()
    failures[:] = [ConnectionError("N/A", "refused", None)]
    with pytest.raises(EngineUnavailable, match="unreachable"):
        engine._build_vocabulary("shop", "shop-1:u:2")
    assert scans == ["shop"]
