"""Pure parts of the OpenSearch adapter: connection settings, query bodies, error translation, bulk ordering."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shopsearch.indexer.fields import FieldMapping
from shopsearch.indexer.records import MAX_CATEGORY_PATH_CHARS, PATH_SEPARATOR, Product, java_length
from shopsearch.indexer.sink import BulkItem, Delete, IndexDoc
from shopsearch.indexer.validate import to_product
from shopsearch.plugin.connection import client_kwargs, display_url, make_client
from shopsearch.plugin.engine import (BM25Leg, EngineRejected, EngineUnavailable, Filters, IndexNotFound, KnnLeg,
                                      MatchRule)
from shopsearch.plugin.opensearch_bulk import expand_action, ordered_bulk
from shopsearch.plugin.opensearch_errors import ScrollLost, engine_errors, error_reason, translate_status
from shopsearch.plugin.opensearch_queries import (bm25_body, facet_aggs, filter_query, knn_body, match_bodies,
                                                  parse_facets)
from shopsearch.settings import load_settings

URL = "http://node:9200"
# OpenSearch's 404 answer to a scroll whose search context is gone (expired, or its node left)
NO_CONTEXT = {"type": "search_context_missing_exception", "reason": "No search context found for id [7]"}
LOST_SCROLL = {"root_cause": [NO_CONTEXT], "type": "search_phase_execution_exception", "reason": "all shards failed",
               "phase": "query", "grouped": True, "failed_shards": [{"shard": -1, "index": None, "reason": NO_CONTEXT}]}


# --- connection ------------------------------------------------------------------------------------------------


def test_client_kwargs_and_client():
    https = load_settings(environ={"OPENSEARCH_URL": "https://u:p@search:9200", "OPENSEARCH_USER": "u",
                                   "OPENSEARCH_PASSWORD": "p", "OPENSEARCH_CA_CERTS": "/ca.pem"})
    kw = client_kwargs(https, timeout=3, max_retries=4)
    assert kw["http_auth"] == ("u", "p") and kw["use_ssl"] and kw["verify_certs"] and kw["http_compress"]
    assert kw["ca_certs"] == "/ca.pem" and kw["ssl_show_warn"]
    assert (kw["timeout"], kw["max_retries"], kw["retry_on_timeout"], kw["retry_on_status"]) == (3, 4, True,
                                                                                                  (502, 503, 504))
    unverified = client_kwargs(https.replace(opensearch_verify_certs=False))
    assert unverified["verify_certs"] is False and unverified["ssl_show_warn"] is False  # no warning per request
    assert "use_ssl" not in client_kwargs(load_settings(environ={}))
    assert display_url(https.opensearch_url) == "https://search:9200"
    with pytest.raises(ValueError, match="timeout"):
        client_kwargs(https, timeout=0)
    client = make_client(URL, timeout=2)
    assert client.transport.max_retries == 2 and client.transport.retry_on_timeout
    client.close()


# --- query bodies ----------------------------------------------------------------------------------------------


def test_filters_become_terms_ranges_and_must_not_ids():
    q = filter_query(Filters(brand=("A", "B"), category=("Lamps",), price_min=5, price_max=9.5, in_stock=False,
                             rating_min=4, exclude_ids=("x",)))
    assert q == {"bool": {
        "filter": [{"terms": {"brand": ["A", "B"]}}, {"terms": {"category": ["Lamps"]}},
                   {"range": {"price": {"gte": 5, "lte": 9.5}}}, {"term": {"in_stock": False}},
                   {"range": {"rating": {"gte": 4}}}],
        "must_not": [{"ids": {"values": ["x"]}}]}}
    assert filter_query(Filters(price_max=3))["bool"]["filter"] == [{"range": {"price": {"lte": 3}}}]


def test_bm25_body_is_a_boosted_best_fields_multi_match_inside_a_filtered_bool():
    body = bm25_body(BM25Leg("red lamp", {"title": 3.0, "brand_text": 1.5}, size=7, tie_breaker=0.2,
                             filters=Filters(brand=("Acme",))))
    mm = body["query"]["bool"]["must"][0]["multi_match"]
    assert mm == {"query": "red lamp", "type": "best_fields", "fields": ["title^3.0", "brand_text^1.5"],
                  "tie_breaker": 0.2, "operator": "or", "fuzziness": "AUTO", "prefix_length": 1,
                  "max_expansions": 50}
    assert body["query"]["bool"]["filter"] == [{"terms": {"brand": ["Acme"]}}]
    assert body["size"] == 7 and "embedding" in body["_source"]["excludes"]
    assert "fuzziness" not in bm25_body(BM25Leg("x", {"title": 1.0}, fuzziness=None))["query"]["bool"]["must"][0][
        "multi_match"]


def test_a_bm25_leg_asking_for_field_scores_spells_best_fields_out_with_a_named_clause_per_field():
    # multi_match best_fields is a dis_max over one boosted match per field; spelled out, each field's clause is
    # named, so OpenSearch reports its score (the ranker's per-field BM25)
    leg = BM25Leg("red lamp", {"title": 3.0, "brand_text": 1.5}, size=7, tie_breaker=0.2, field_scores=True)
    fuzzy = {"fuzziness": "AUTO", "prefix_length": 1, "max_expansions": 50}
    assert bm25_body(leg)["query"]["bool"]["must"][0] == {"dis_max": {"tie_breaker": 0.2, "queries": [
        {"match": {"title": {"query": "red lamp", "operator": "or", "boost": 3.0, "_name": "bm25_field:title",
                             **fuzzy}}},
        {"match": {"brand_text": {"query": "red lamp", "operator": "or", "boost": 1.5,
                                  "_name": "bm25_field:brand_text", **fuzzy}}}]}}


@pytest.mark.parametrize("leg, match", [
    (BM25Leg("x", {}), "fields must name"),
    (BM25Leg("x", {"price": 1.0}), "'price'"),
    (BM25Leg("x", {"title": 0.0}), "boost"),
    (BM25Leg("x", {"title": 1.0}, size=0), "size=0"),
    (BM25Leg("x", {"title": 1.0}, tie_breaker=2.0), "tie_breaker"),
    (BM25Leg("x", {"title": 0.0}, field_scores=True), "boost"),
])
def test_bm25_body_rejects_bad_legs(leg, match):
    with pytest.raises(ValueError, match=match):
        bm25_body(leg)


def test_knn_body_puts_the_filter_inside_the_knn_clause():
    body = knn_body(KnnLeg([1, 0.5], k=12, filters=Filters(in_stock=True, exclude_ids=("a",))))
    assert body["size"] == 12 and "post_filter" not in body
    clause = body["query"]["knn"]["embedding"]
    assert clause == {"vector": [1.0, 0.5], "k": 12, "filter": {"bool": {
        "filter": [{"term": {"in_stock": True}}], "must_not": [{"ids": {"values": ["a"]}}]}}}
    assert "filter" not in knn_body(KnnLeg([1.0], k=1))["query"]["knn"]["embedding"]
    with pytest.raises(ValueError, match="finite"):
        knn_body(KnnLeg([float("inf")], k=1))
    with pytest.raises(ValueError, match="k=10001"):
        knn_body(KnnLeg([1.0], k=10_001))


def test_match_bodies_put_facet_filters_aside_for_disjunctive_counts():
    rule = MatchRule(BM25Leg("tv", {"title": 3.0}), [1.0, 0.0], 0.8, Filters(brand=("A",), in_stock=True))
    (body,) = match_bodies(rule, sort="price_desc", offset=10, size=5, facets=["brand", "category_lvl0"],
                           facet_size=4)
    should = body["query"]["bool"]["should"]
    assert should[0]["multi_match"]["fields"] == ["title^3.0"] and body["query"]["bool"]["minimum_should_match"] == 1
    assert should[1]["knn"]["embedding"]["min_score"] == 0.8 and "k" not in should[1]["knn"]["embedding"]
    assert body["query"]["bool"]["filter"] == [{"term": {"in_stock": True}}]  # brand is not filtered here...
    assert body["post_filter"] == {"bool": {"filter": [{"terms": {"brand": ["A"]}}]}}  # ...but the hits are
    assert body["aggs"]["brand"]["filter"] == {"bool": {"filter": []}}  # the brand facet ignores its own filter
    assert body["aggs"]["category_lvl0"]["filter"] == {"bool": {"filter": [{"terms": {"brand": ["A"]}}]}}
    assert body["aggs"]["category_lvl0"]["aggs"]["values"]["terms"] == {"field": "category_lvl0", "size": 4}
    assert body["sort"] == [{"price": {"order": "desc", "missing": "_last", "unmapped_type": "float"}}, {"id": "asc"}]
    assert (body["from"], body["size"], body["track_total_hits"]) == (10, 5, True)
    counted, sliced = match_bodies(rule, size=5, exclude=["x"], facets=["brand"])
    assert counted["size"] == 0 and "aggs" in counted and "sort" not in counted
    assert sliced["post_filter"]["bool"]["must_not"] == [{"ids": {"values": ["x"]}}] and "aggs" not in sliced
    assert match_bodies(MatchRule())[0]["query"] == {"bool": {"filter": []}}  # browse: everything
    assert match_bodies(MatchRule(BM25Leg(" ", {"title": 1.0})))[0]["query"]["bool"]["must"] == [{"match_none": {}}]
    for bad, message in [({"sort": "cheap"}, "sort='cheap'"), ({"facets": ["title"]}, "facet fields"),
                         ({"offset": 9_999, "size": 2}, "offset=9999")]:
        with pytest.raises(ValueError, match=message):
            match_bodies(MatchRule(), **bad)
    with pytest.raises(ValueError, match="min_score"):
        match_bodies(MatchRule(vector=[1.0], min_score=0.0))
    aggs = {"brand": {"values": {"buckets": [{"key": "b", "doc_count": 2}, {"key": "a", "doc_count": 2},
                                             {"key": "c", "doc_count": 5}]}}}
    assert parse_facets(aggs, ["brand", "category_lvl0"]) == {"brand": [("c", 5), ("a", 2), ("b", 2)],
                                                              "category_lvl0": []}


# --- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [["!" * 131, "!" * 131, "!" * 132], ["💡" * 100, "💡" * 98]])
def test_the_longest_category_path_kept_lists_its_children_within_opensearchs_regex_limit(levels):
    """index.max_regex_length is 1,000 UTF-16 units; the indexer keeps paths of MAX_CATEGORY_PATH_CHARS of them,
    which escaped (punctuation doubled, an emoji's two units behind one backslash) stay under it."""
    path = to_product({"id": "1", "title": "t", "category": levels}, FieldMapping()).category
    joined = PATH_SEPARATOR.join(path)
    assert java_length(joined) >= MAX_CATEGORY_PATH_CHARS - 1
    aggs = facet_aggs("category_path", Filters(category_path=(joined,)), 10, ())["aggs"]
    assert max(java_length(a["terms"]["include"]) for a in aggs.values()) <= 1000


def test_translate_status_maps_to_contract_errors():
    missing = {"type": "index_not_found_exception", "reason": "no such index [p]", "index": "p"}
    assert isinstance(translate_status(404, missing, index="p", url=URL), IndexNotFound)
    for status in (500, 503, 429, "N/A"):
        err = translate_status(status, {"type": "x", "reason": "boom"}, index="p", url=URL)
        assert isinstance(err, EngineUnavailable) and URL in str(err)
    bad = translate_status(400, {"type": "parsing_exception", "reason": "unknown query [nope]"}, index="p", url=URL)
    assert isinstance(bad, EngineRejected) and isinstance(bad, ValueError) and "unknown query [nope]" in str(bad)
    # an index an operator closed is an outage, not a request's fault
    closed = translate_status(400, {"type": "index_closed_exception", "reason": "closed", "index": "p-v1"},
                              index="p", url=URL)
    assert isinstance(closed, EngineUnavailable) and "index 'p' is closed" in str(closed)
    # a scroll whose search context is gone is the engine's trouble, not a bad request (a 400 to the shopper)
    lost = translate_status(404, LOST_SCROLL, index="p", url=URL)
    assert isinstance(lost, ScrollLost) and isinstance(lost, EngineUnavailable) and not isinstance(lost, ValueError)
    assert "lost the scroll over index 'p'" in str(lost) and "No search context found" in str(lost)


def test_error_reason_follows_shard_failures_to_the_cause():
    err = {"type": "search_phase_execution_exception", "reason": "all shards failed",
           "root_cause": [{"type": "query_shard_exception", "reason": "failed"}],
           "failed_shards": [{"reason": {"type": "query_shard_exception", "reason": "failed",
                                         "caused_by": {"type": "illegal_argument_exception",
                                                       "reason": "Query vector has invalid dimension: 2"}}}]}
    assert error_reason(err).endswith("(caused by illegal_argument_exception: Query vector has invalid dimension: 2)")


# --- bulk ------------------------------------------------------------------------------------------------------


def _doc(pid: str, vector=(1.0, 0.0)) -> IndexDoc:
    return IndexDoc(Product(id=pid, title=f"t{pid}"), list(vector), "h")


def test_expand_action():
    body = expand_action("idx", _doc("1"))
    assert (body["_op_type"], body["_index"], body["_id"]) == ("index", "idx", "1")
    assert body["_source"]["embedding"] == [1.0, 0.0] and body["_source"]["content_hash"] == "h"
    with pytest.raises(ValueError, match="IndexDoc or Delete"):
        expand_action("idx", "nope")


def test_ordered_bulk_restores_input_order_after_retries():
    def send(bodies):
        bodies = list(bodies)
        # Like streaming_bulk after a 429: the retried first document comes back last.
        for b in bodies[1:] + bodies[:1]:
            if b["_id"] == "2":
                yield False, {"index": {"_id": "2", "status": 400,
                                        "error": {"type": "mapper_parsing_exception", "reason": "bad"}}}
            elif b["_op_type"] == "delete":
                yield False, {"delete": {"_id": b["_id"], "status": 404, "result": "not_found"}}
            else:
                yield True, {b["_op_type"]: {"_id": b["_id"], "status": 201}}

    actions = [_doc("1"), _doc("2"), _doc("nan", (float("nan"), 0.0)), Delete("3"), _doc("4")]
    items = list(ordered_bulk("idx", actions, send, url=URL))
    assert [i.id for i in items] == ["1", "2", "nan", "3", "4"]
    assert items[0] == BulkItem("1", True) and items[3] == BulkItem("3", True)
    assert not items[1].ok and items[1].error == "400: mapper_parsing_exception: bad"
    assert not items[2].ok and "NaN" in items[2].error


def test_ordered_bulk_raises_engine_unavailable_when_a_whole_chunk_fails():
    def send(bodies):
        for b in bodies:
            yield False, {"index": {"_id": b["_id"], "status": "N/A", "error": "ConnectionError(refused)",
                                    "exception": OSError("refused")}}

    waits = []
    with pytest.raises(EngineUnavailable, match="node:9200.*1 documents still failing after 5 retries"):
        list(ordered_bulk("idx", [_doc("1")], send, url=URL, sleep=waits.append))
    assert len(waits) == 5  # the default policy's rounds, each after a backoff


def test_facet_owned_filters_go_to_post_filter_and_each_facet_drops_only_its_own():
    from shopsearch.plugin.opensearch_queries import facet_aggs, filter_clauses

    f = Filters(category_path=("Home > Furniture",), attributes=(("color", ("red", "blue")), ("size", ("L",))),
                price_min=10.0, rating_min=4.0, in_stock=True)
    (body,) = match_bodies(MatchRule(filters=f), facets=["attr.color", "category_path", "price", "rating"])
    assert body["query"]["bool"]["filter"] == [{"term": {"in_stock": True}}]
    assert body["post_filter"]["bool"]["filter"] == filter_clauses(replace(f, in_stock=None))[0]
    color = body["aggs"]["attr.color"]
    assert {"terms": {"attr.color": ["red", "blue"]}} not in color["filter"]["bool"]["filter"]
    assert {"terms": {"attr.size": ["L"]}} in color["filter"]["bool"]["filter"]
    assert color["aggs"]["values"]["terms"] == {"field": "attr.color", "size": 10}
    paths = facet_aggs("category_path", f, 5, (25.0,))
    assert {"terms": {"category_paths": ["Home > Furniture"]}} not in paths["filter"]["bool"]["filter"]
    assert [a["terms"]["include"] for a in paths["aggs"].values()] == [
        "[^>]*", "Home\\ \\>\\ [^>]*", "Home\\ \\>\\ Furniture\\ \\>\\ [^>]*"]
    price = body["aggs"]["price"]
    assert {"range": {"price": {"gte": 10.0}}} not in price["filter"]["bool"]["filter"]
    assert price["aggs"]["values"]["range"]["ranges"][-1] == {"key": "250+", "from": 250.0}
    assert body["aggs"]["rating"]["aggs"]["values"]["range"]["ranges"][0] == {"key": "4+", "from": 4.0}
    aggs = {"price": {"values": {"buckets": [{"key": "0-25", "doc_count": 0}, {"key": "25-50", "doc_count": 3}]}},
            "rating": {"values": {"buckets": [{"key": "1+", "doc_count": 5}, {"key": "4+", "doc_count": 2}]}},
            "category_path": {"p1": {"buckets": [{"key": "A > B", "doc_count": 1}]},
                              "p0": {"buckets": [{"key": "B", "doc_count": 2}, {"key": "A", "doc_count": 2}]}}}
    assert parse_facets(aggs, ["price", "rating", "category_path"]) == {
        "price": [("25-50", 3)], "rating": [("4+", 2), ("1+", 5)], "category_path": [("A", 2), ("B", 2), ("A > B", 1)]}


def test_a_scroll_some_shards_did_not_answer_is_an_outage_not_a_library_error():
    from opensearchpy.helpers import ScanError

    with pytest.raises(EngineUnavailable, match="could not read all of index 'p': .*succeeded on 1"):
        with engine_errors(index="p", url=URL):
            raise ScanError("sid", "Scroll request has only succeeded on 1 (+0 skipped) shards out of 2.")
