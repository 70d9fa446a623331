"""Search latency per stage through the API, next to the same OpenSearch requests sent by a bare HTTP client.

Replays the dev queries as the storefront sends them (``GET /search?q=...&size=12``: default profile, every facet,
no reranking) against the real OpenSearch node, and prints p50/p95/p99 per stage plus one verdict per target:
API overhead (embedding excluded) p50 <= 3 ms, total p95 <= 60 ms.

    python bench/latency.py [--index crowdflower] [--queries PATH] [--url http://127.0.0.1:8000]
                            [--opensearch-url http://127.0.0.1:9200] [--repeat 3] [--warmup 20]
                            [--page 2] [--quick] [--profile] [--json OUT]

``--page N`` replays the storefront's page N instead of the first. The list-relative features logged with the
query are taken against the retrieval's first page (reranker/pipeline.py), whose products are fetched with the
page's in one search. Only a fused ranking shorter than that first page costs a second search of it; that round
trip is in ``direct`` (the adapter's requests are recorded whole) and in the totals, not in the API's
``timings_ms``, so ``engine in API`` leaves it out and ``API own`` counts it.

How each column is measured (all milliseconds):

- ``embed cold`` / ``embed warm``: the API's own ``timings_ms.embed``. The cold pass sends each query once with the
  query-embedding cache emptied before the request; the warm passes (``--repeat``) hit the LRU cache.
- ``BM25 took`` / ``k-NN took`` / ``facets took``: OpenSearch's ``took`` (server-side, whole ms) of each item of
  the replayed requests (``facets``: the matching-set search that counts, facets and pages past the fused list);
  ``BM25 alone`` / ``k-NN alone``: wall time of that leg's body sent alone as a ``_search``
  (a second, one-leg-at-a-time pass over the same bodies).
- ``direct``: wall time (send to last byte received, JSON decode excluded) of *every* request the adapter sent for
  the query -- recorded byte for byte from the opensearch-py transport and replayed over a keep-alive ``http.client``
  connection in the same pass, right next to the API request (the order alternates per query).
- ``engine in API``: the API's ``timings_ms.retrieve`` + ``timings_ms.match`` (opensearch-py round trips,
  including serialising the bodies, decoding the responses and building hits); ``fusion``: ``timings_ms.fusion``.
- ``total cold`` / ``total warm``: wall time around the API request (the Flask test client in-process, which builds
  a WSGI request and serialises the JSON response like a server; or real HTTP with ``--url``).
- ``API own`` = total warm - embed - engine in API: Flask, parameter parsing, fusion, response JSON.
- ``overhead`` = total warm - embed - direct, per query: everything the API adds to the bare round trips.

With ``--url`` the API is a served process (``shopsearch serve``); its bodies are recorded from an in-process
searcher on the same index (same model, same vectors) and its cache cannot be emptied, so "cold" means the first
time that server sees the query. Each figure is one run on a shared machine: the load average is printed at start
and end; rerun on a quiet machine before quoting numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from _latency_direct import DirectClient, RequestRecorder  # noqa: E402
from _latency_stats import paired, summarise_all, table_rows, verdicts  # noqa: E402

from shopsearch.judgments import read_queries  # noqa: E402
from shopsearch.settings import SHARED_DATA, load_settings  # noqa: E402

DEFAULT_QUERIES = Path(load_settings().data_dir or SHARED_DATA) / "crowdflower" / "queries-dev.tsv"
PAGE_SIZE = 12  # what the storefront asks for (api/static/storefront.js)
QUICK_QUERIES = 20
# timings_ms stages that are engine round trips (whichever the searcher reports)
ENGINE_STAGES = ("retrieve", "match", "fetch")


def load_queries(path: Path, limit: int | None = None) -> list[str]:
    """Query texts from a ``qid<TAB>text`` file, in file order.

    Raises:
        ValueError: a malformed line (shopsearch.judgments' reader names it), or no queries at all.
    """
    out = [q.text for q in read_queries(path)]
    if not out:
        raise ValueError(f"{path} holds no queries")
    return out[:limit] if limit else out


def leg_kind(body: bytes) -> str:
    """``bm25``, ``knn``, ``facets`` or ``fetch`` (products by id: the page's, and a deeper page's first page's)
    for one search body.

    >>> leg_kind(b'{"size": 2, "query": {"ids": {"values": ["a", "b"]}}}')
    'fetch'
    """
    doc = json.loads(body)
    query = doc.get("query", {})
    if "aggs" in doc or "aggregations" in doc or "sort" in doc or doc.get("track_total_hits") is True:
        return "facets"  # the matching-set search (count, facets, a sorted slice)
    if "ids" in query:
        return "fetch"
    return "knn" if "knn" in query else "bm25"


class Api:
    """Sends ``GET /search`` either through the Flask test client or to a served process; returns (ms, body)."""

    def __init__(self, app: Any = None, url: str | None = None, page: int = 1):
        self.page = page
        if url:
            import requests

            self.session, self.url, self.client = requests.Session(), url.rstrip("/"), None
        else:
            self.client, self.url = app.test_client(), None

    def search(self, query: str) -> tuple[float, dict[str, Any]]:
        """One storefront request; raises RuntimeError on a non-200 answer."""
        params = {"q": query, "size": str(PAGE_SIZE), **({"page": str(self.page)} if self.page > 1 else {})}
        t0 = time.perf_counter()
        if self.client is not None:
            resp = self.client.get("/search", query_string=params)
            raw, status = resp.get_data(), resp.status_code
        else:
            resp = self.session.get(self.url + "/search", params=params, timeout=30)
            raw, status = resp.content, resp.status_code
        ms = (time.perf_counter() - t0) * 1000.0
        if status != 200:
            raise RuntimeError(f"/search?q={query!r} answered {status}: {raw[:300]!r}")
        return ms, json.loads(raw)


def build(args: argparse.Namespace, home: Path) -> tuple[Any, Any, RequestRecorder]:
    """The Flask app (OpenSearch engine, the index, the real model) with its searcher loaded and recorded."""
    from shopsearch.api.app import create_app, service

    app = create_app({"TESTING": True, "engine": "opensearch", "index": args.index, "home": str(home),
                      "opensearch_url": args.opensearch_url, "rate_limits": False})  # latency, not throttling
    with app.app_context():
        searcher = service().get_searcher()
    recorder = RequestRecorder(searcher.engine.client.transport)
    return app, searcher, recorder


def fresh_embed_cache(searcher: Any) -> None:
    """Empty the searcher's query-embedding cache (a new one of the same size: the next embed is cold)."""
    from shopsearch.plugin.query_cache import QueryEmbeddingCache

    old = searcher.embeddings
    searcher.embeddings = QueryEmbeddingCache(old.embedder, old.maxsize)


def measure_query(query: str, api: Api, searcher: Any, recorder: RequestRecorder, direct: DirectClient,
                  samples: dict[str, list[float]], *, cold: bool, api_first: bool, legs_alone: bool) -> None:
    """One query into ``samples``: cold, one API request with the embedding cache emptied first; warm, an untimed
    API request (caches the embedding, records the adapter's requests), then the timed API request and the same
    requests sent directly, in the order ``api_first`` says."""
    from shopsearch.plugin.search_types import SearchRequest

    if cold:
        if api.client is not None:
            fresh_embed_cache(searcher)
        total, body = api.search(query)
        recorder.take()
        samples["embed_cold"].append(float(body["timings_ms"].get("embed", 0.0)))
        samples["total_cold"].append(total)
        return
    recorder.take()
    if api.client is None:  # a served API: the bodies come from the in-process searcher on the same index
        searcher.search(SearchRequest(query, size=PAGE_SIZE))
    else:
        api.search(query)
    recorded = recorder.take()
    timed: dict[str, Any] = {}

    def call_api() -> None:
        timed["total"], timed["body"] = api.search(query)

    def call_direct() -> None:
        timed["direct"] = [direct.replay(r) for r in recorded]

    for step in ((call_api, call_direct) if api_first else (call_direct, call_api)):
        step()
    recorder.take()

    t = timed["body"]["timings_ms"]
    embed = float(t.get("embed", 0.0))
    engine_api = sum(float(t.get(k, 0.0)) for k in ENGINE_STAGES)
    direct_ms = sum(d.wall_ms for d in timed["direct"])
    samples["embed_warm"].append(embed)
    samples["total_warm"].append(timed["total"])
    samples["engine_api"].append(engine_api)
    samples["fusion"].append(float(t.get("fusion", 0.0)))
    if "fetch" in t:
        samples["fetch"].append(float(t["fetch"]))
    samples["direct"].append(direct_ms)
    samples["api_own"].extend(paired([timed["total"]], [embed], [engine_api]))
    samples["overhead"].extend(paired([timed["total"]], [embed], [direct_ms]))
    for rec, dt in zip(recorded, timed["direct"]):
        if rec.is_msearch:
            bodies = rec.legs()
        elif rec.path.endswith("/_search"):
            bodies = [(rec.path.split("/")[1], rec.body)]
        else:
            continue  # not a search: in ``direct`` only
        for (index, body), took in zip(bodies, dt.took_ms):
            kind = leg_kind(body)
            if kind == "fetch":
                continue  # in ``direct``; the API's side is ``page fetch``
            samples[f"{kind}_took"].append(took)
            if legs_alone and kind in ("bm25", "knn"):
                samples[f"{kind}_alone"].append(direct.leg_alone(index, body).wall_ms)


def run_passes(queries: list[str], args: argparse.Namespace, api: Api, searcher: Any, recorder: RequestRecorder,
               direct: DirectClient, progress: Callable[[str], Any]) -> dict[str, list[float]]:
    """Warm-up, the cold pass, ``--repeat`` warm passes; returns the per-query samples by column."""
    from tqdm import tqdm

    from _latency_stats import COLUMNS

    samples: dict[str, list[float]] = {key: [] for key, _, _ in COLUMNS}
    scratch: dict[str, list[float]] = {key: [] for key, _, _ in COLUMNS}
    for i, q in enumerate(queries[:args.warmup]):  # not recorded: JIT-free Python, but sockets, caches, allocators
        measure_query(q, api, searcher, recorder, direct, scratch, cold=False, api_first=i % 2 == 0,
                      legs_alone=False)
    passes = [("cold", True)] + [(f"warm {i + 1}/{args.repeat}", False) for i in range(args.repeat)]
    for label, cold in passes:
        for i, q in enumerate(tqdm(queries, desc=label, unit="q", leave=False, disable=args.no_progress)):
            measure_query(q, api, searcher, recorder, direct, samples, cold=cold, api_first=i % 2 == 0,
                          legs_alone=not cold)
        progress(label)
    return samples


def profile_api(queries: list[str], api: Api, top: int = 25) -> str:
    """cProfile of one warm pass of API requests (in-process only): the top functions by cumulative time."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for q in queries:
        api.search(q)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Load, measure, summarise; returns the results (also written to ``--json``)."""
    queries = load_queries(Path(args.queries), QUICK_QUERIES if args.quick else args.limit)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, REPO)] + sys.argv[1:])
    res: dict[str, Any] = {"command": command, "index": args.index,
                           "queries": len(queries), "repeat": args.repeat, "warmup": args.warmup,
                           "api": args.url or "flask test client", "page_size": PAGE_SIZE, "page": args.page,
                           "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}
    print(f"latency bench: {len(queries)} queries x (1 cold + {args.repeat} warm), page {args.page}, from "
          f"{args.queries}, index {args.index!r}, API via {res['api']}, OpenSearch {args.opensearch_url}; "
          f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print(f"command: {command}", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ss-bench-latency-") as home:
        app, searcher, recorder = build(args, Path(home))
        api = Api(app, args.url, args.page)
        direct = DirectClient(args.opensearch_url)
        try:
            samples = run_passes(queries, args, api, searcher, recorder, direct,
                                 lambda label: print(f"  pass {label:10s} done at {time.perf_counter() - t0:6.1f} s",
                                                     flush=True))
            if args.profile and api.client is not None:
                res["profile"] = profile_api(queries, api)
        finally:
            recorder.close()
            direct.close()
            searcher.engine.close()
    res["seconds"] = time.perf_counter() - t0
    res["summary"] = summarise_all(samples)
    res["verdicts"] = verdicts(res["summary"])
    res["loadavg_end"] = os.getloadavg()
    return res


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the bench, print the table, verdicts and load average; returns 0 (1 on failure)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    ap.add_argument("--index", default="crowdflower", help="index or alias (default crowdflower)")
    ap.add_argument("--queries", default=str(DEFAULT_QUERIES), help="qid<TAB>query file (default crowdflower dev)")
    ap.add_argument("--url", default=None, help="a served API (shopsearch serve) instead of the Flask test client")
    ap.add_argument("--opensearch-url", default=load_settings().opensearch_url)
    ap.add_argument("--repeat", type=int, default=3, help="warm passes over the queries (default 3)")
    ap.add_argument("--warmup", type=int, default=20, help="unrecorded requests first (default 20)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N queries")
    ap.add_argument("--page", type=int, default=1,
                    help="the storefront's result page (default 1); see the module notes for what a deeper one "
                         "searches")
    ap.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_QUERIES} queries, 1 warm pass")
    ap.add_argument("--profile", action="store_true", help="also cProfile one warm pass of API requests")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat, args.warmup = 1, min(args.warmup, 5)
    for name in ("repeat", "warmup"):
        if getattr(args, name) < (1 if name == "repeat" else 0):
            raise ValueError(f"--{name} must be >= {1 if name == 'repeat' else 0}, got {getattr(args, name)}")
    if args.page < 1:
        raise ValueError(f"--page must be >= 1, got {args.page}")
    if args.page > 1 and args.url:
        raise ValueError("--page > 1 needs the in-process API: a served one's bodies are recorded from a bare "
                         "searcher, which fetches only the page, not the first page the pipeline also asks for")
    try:
        res = run_bench(args)
    except RuntimeError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    print()
    for line in table_rows(res["summary"]):
        print(line)
    if res.get("profile"):
        print("\ncProfile, one warm pass of API requests:\n" + res["profile"])
    print()
    for line in res["verdicts"]:
        print(line)
    print(f"{res['queries']} queries in {res['seconds']:.1f} s; load average at start "
          f"{' '.join(f'{x:.2f}' for x in res['loadavg_start'])}, at end "
          f"{' '.join(f'{x:.2f}' for x in res['loadavg_end'])} ({res['cpus']} CPUs)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    from _main import finish

    finish(main)
