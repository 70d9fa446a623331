"""What each ranking profile costs a shopper: /search wall time per profile, with its stages and its budgets as
packaged (issue 13: the headline table's latency for the learnt profiles).

Serves the app in-process (Flask test client, which builds the WSGI request and serialises the JSON like a
server) on an existing index and replays the dev queries as the storefront sends them (``size=12``, every facet)
for each profile in turn, the order of the profiles rotating per query so that load drifts hit all alike. Prints
per profile: p50/p95/p99 of the whole request, p50/p95 of its cross-encoder (``rerank``) and ranker
(``conversion``) stages, and the share of searches served degraded (a stage over its ``budget_ms``, or a model
missing: the profile's fallback order, which is what a loaded machine makes shoppers see).

    python bench/profile_latency.py --models /tmp/ltr-cf/m0 [--profile default --profile rerank-ce ...]
                                    [--index crowdflower] [--repeat 2] [--warmup 20]

``--models``: a folder holding the profiles' models (``ce-minilm``, ``ltr-ce``...; ``bench/ltr_cv.py --work W``
leaves one per fold in ``W/m<fold>``). Settings (home, engine) come from the environment as for the CLI; events,
spool and keys go to a temporary folder. One run on a shared machine: the load average is printed with the
figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _latency_stats import percentile  # noqa: E402  (bench/ is on the path: the script runs from it)
from shopsearch.judgments import read_queries  # noqa: E402
from shopsearch.settings import SHARED_DATA, load_settings  # noqa: E402

PAGE_SIZE = 12  # what the storefront asks for (api/static/storefront.js)
PROFILES = ("default", "rerank-ce", "ltr-ce")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    ap.add_argument("--models", action="append", required=True, help="a folder of models (repeatable)")
    ap.add_argument("--profile", action="append", help=f"profiles to time (default: {', '.join(PROFILES)})")
    ap.add_argument("--engine", help="embedded or opensearch (default: the settings')")
    ap.add_argument("--index", default="crowdflower")
    ap.add_argument("--queries", help="qid<TAB>query file (default: crowdflower dev)")
    ap.add_argument("--repeat", type=int, default=2, help="passes over the queries (default 2)")
    ap.add_argument("--warmup", type=int, default=20, help="unrecorded queries per profile first (default 20)")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.warmup < 0:
        ap.error("--repeat must be at least 1 and --warmup at least 0")

    from tqdm import tqdm

    from shopsearch.api.app import create_app
    from shopsearch.reranker.model_registry import ModelRegistry

    settings = load_settings({"engine": args.engine})
    path = Path(args.queries or Path(settings.data_dir or SHARED_DATA) / "crowdflower" / "queries-dev.tsv")
    queries = [q.text for q in read_queries(path)]
    profiles = args.profile or list(PROFILES)
    wall: dict[str, list[float]] = {p: [] for p in profiles}
    stages: dict[str, dict[str, list[float]]] = {p: {"rerank": [], "conversion": []} for p in profiles}
    degraded: dict[str, Counter] = {p: Counter() for p in profiles}  # reason -> searches
    served_degraded: Counter = Counter()  # profile -> searches
    with tempfile.TemporaryDirectory(prefix="profile-latency-") as tmp:
        app = create_app({"engine": settings.engine, "index": args.index, "events_dir": f"{tmp}/events",
                          "ubi_spool_dir": f"{tmp}/spool", "keys_file": f"{tmp}/keys.json", "rate_limits": False,
                          "models": ModelRegistry([Path(m) for m in args.models])})
        svc, client = app.extensions["shopsearch"], app.test_client()

        def search(q: str, profile: str) -> dict:
            resp = client.get("/search", query_string={"q": q, "size": PAGE_SIZE, "profile": profile})
            if resp.status_code != 200:
                raise SystemExit(f"/search?q={q!r}&profile={profile} answered {resp.status_code}: "
                                 f"{resp.get_data(as_text=True)[:300]}")
            return resp.get_json()

        try:
            for profile in profiles:  # model loads and caches, unrecorded
                for q in queries[:args.warmup]:
                    search(q, profile)
            load0 = os.getloadavg()[0]
            for r in tqdm(range(args.repeat * len(queries)), desc="profile latency", unit="query"):
                q = queries[r % len(queries)]
                shift = r % len(profiles)
                for profile in profiles[shift:] + profiles[:shift]:
                    t0 = time.perf_counter()
                    body = search(q, profile)
                    wall[profile].append((time.perf_counter() - t0) * 1000)
                    for stage, values in stages[profile].items():
                        if stage in body["timings_ms"]:
                            values.append(body["timings_ms"][stage])
                    if body["degraded"]:
                        served_degraded[profile] += 1
                        degraded[profile].update(body["degraded_reasons"] or ["degraded"])
            load1 = os.getloadavg()[0]
        finally:
            svc.ubi_drainer.stop()
            svc.stop_history()
    n = args.repeat * len(queries)
    print(f"engine={settings.engine} index={args.index}, {len(queries)} queries x {args.repeat}, size={PAGE_SIZE}, "
          f"packaged budgets; load average {load0:.1f} -> {load1:.1f}")
    print("| profile | /search p50 ms | p95 | p99 | cross-encoder p50 / p95 | ranker p50 / p95 | served degraded |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for p in profiles:
        st = {k: f"{percentile(v, 50):.1f} / {percentile(v, 95):.1f}" if v else "" for k, v in stages[p].items()}
        share = served_degraded[p]
        why = ", ".join(f"{k} {v}" for k, v in degraded[p].most_common())
        print(f"| {p} | {percentile(wall[p], 50):.1f} | {percentile(wall[p], 95):.1f} | {percentile(wall[p], 99):.1f} | {st['rerank']} | "
              f"{st['conversion']} | {share / n:.1%}{f' ({why})' if why else ''} |")
    print(f"done: {n} searches per profile")
    return 0


if __name__ == "__main__":
    from _main import finish

    finish(main)
