"""/search latency before and after a flood of 10,000 behaviour events for random product ids (issue 15).

Serves the app in-process (Flask test client) on an existing index, with a profile whose conversion stage reads
the event history (a tiny LightGBM model over price, rating, ctr, cvr, impressions and affinity: the history is
consulted on every search). Measures /search wall time over the dev queries, floods POST /events — 9 in 10 events
for product ids no catalog holds (refused, one request each: each costs the gate a lookup), 1 in 10 genuine clicks
and purchases on served hits from random sessions and users (accepted, signed tokens) — lets the history read
them all, and measures /search again. Prints p50/p95 side by side, the bounded structures' sizes and the process
RSS.

    python bench/events_flood.py [--engine embedded] [--index crowdflower] [--queries 100] [--repeat 2]
                                 [--events 10000]

Settings (home, engine options) come from the environment as for the CLI; events, spool, keys and profiles go
to a temporary folder. One run on a shared machine: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _latency_stats import percentile  # noqa: E402  (bench/ is on the path: the script runs from it)
from shopsearch.judgments import read_queries  # noqa: E402
from shopsearch.settings import SHARED_DATA, load_settings  # noqa: E402

FEATURES = ("price", "rating", "ctr", "cvr", "impressions_log", "user_brand_affinity", "user_category_affinity")


def rss_mb() -> float:
    """This process's resident set (MiB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(client, queries: list[str], repeat: int) -> list[float]:
    """Wall ms of each /search (the storefront's request, with a shopper so affinity is read too)."""
    times = []
    for r in range(repeat):
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            resp = client.get("/search", query_string={"q": q, "size": 12, "profile": "flood", "user_id": f"u{i}",
                                                       "session_id": f"s{i}-{r}"})
            times.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                raise SystemExit(f"/search?q={q!r} answered {resp.status_code}: {resp.get_data(as_text=True)[:300]}")
    return times


def flood(client, queries: list[str], n: int, rng: random.Random) -> tuple[int, int]:
    """Post ``n`` events for random product ids; returns (accepted, refused)."""
    accepted = refused = 0
    served = []
    for q in queries[:20]:
        body = client.get("/search", query_string={"q": q, "size": 12}).get_json()
        served += [(body["query_id"], h) for h in body["hits"]]
    for start in range(0, n, 50):
        for _ in range(45):
            resp = client.post("/events", json={"type": "purchase", "product_id": f"rand-{rng.getrandbits(64):x}",
                                                "session_id": f"s{rng.getrandbits(32)}", "event_id": uuid.uuid4().hex})
            refused += resp.status_code == 400
        batch = []
        for _ in range(5):
            qid, hit = rng.choice(served)
            batch.append({"type": rng.choice(["click", "purchase"]), "query_id": qid, "product_id": hit["id"],
                          "position": hit["rank"], "token": hit["token"], "session_id": f"s{rng.getrandbits(32)}",
                          "user_id": f"u{rng.getrandbits(16)}", "event_id": uuid.uuid4().hex})
        resp = client.post("/events", json=batch)
        accepted += len(batch) if resp.status_code == 202 else 0
    return accepted, refused


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    p.add_argument("--engine", help="embedded or opensearch (default: the settings')")
    p.add_argument("--index", default="crowdflower")
    p.add_argument("--queries", type=int, default=100, help="dev queries measured (default 100)")
    p.add_argument("--repeat", type=int, default=2, help="passes over the queries per measurement (default 2)")
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from shopsearch.api.app import create_app
    from shopsearch.reranker.model_registry import ModelRegistry
    from tests.reranker.tiny_lgbm import build_tiny_conversion_model

    settings = load_settings({"engine": args.engine})
    data = Path(settings.data_dir or SHARED_DATA) / "crowdflower" / "queries-dev.tsv"
    queries = [q.text for q in read_queries(data)][:args.queries]
    with tempfile.TemporaryDirectory(prefix="events-flood-") as tmp:
        tmp_path = Path(tmp)
        build_tiny_conversion_model(tmp_path / "models" / "flood-conv", features=FEATURES)
        (tmp_path / "profiles").mkdir()
        ltr = (REPO / "plugin" / "profiles" / "ltr.toml").read_text(encoding="utf-8")
        (tmp_path / "profiles" / "flood.toml").write_text(ltr.replace('model = "ltr"', 'model = "flood-conv"'),
                                                         encoding="utf-8")
        app = create_app({"engine": settings.engine, "index": args.index, "events_dir": str(tmp_path / "events"),
                          "ubi_spool_dir": str(tmp_path / "spool"), "keys_file": str(tmp_path / "keys.json"),
                          "profiles_dir": str(tmp_path / "profiles"), "rate_limits": False,
                          "search_deadline_ms": 10_000,  # measure the whole search, never a deadline's cut
                          "models": ModelRegistry([tmp_path / "models"])})
        svc = app.extensions["shopsearch"]
        client = app.test_client()
        try:
            measure(client, queries[:20], 1)  # warm-up: model loads, caches
            history = svc.get_pipeline().history
            history.refresh()
            rss0 = rss_mb()
            before = measure(client, queries, args.repeat)
            t0 = time.perf_counter()
            accepted, refused = flood(client, queries, args.events, random.Random(args.seed))
            flood_s = time.perf_counter() - t0
            applied = history.refresh()
            after = measure(client, queries, args.repeat)
            rss1 = rss_mb()
        finally:
            svc.ubi_drainer.stop()
            svc.stop_history()
    gate = svc.event_gate
    print(f"engine={settings.engine} index={args.index} profile=flood (conversion stage reads the history); "
          f"{len(queries)} queries x {args.repeat}; load average {os.getloadavg()[0]:.1f}")
    print(f"flood: {args.events} events in {flood_s:.1f}s: {accepted} accepted, {refused} refused (unknown "
          f"products); the history read {applied} in its last pass")
    print(f"{'':<22}{'before':>10}{'after':>10}")
    for name, q in (("/search p50 (ms)", 50), ("/search p95 (ms)", 95)):
        print(f"{name:<22}{percentile(before, q):>10.1f}{percentile(after, q):>10.1f}")
    print(f"{'RSS (MiB)':<22}{rss0:>10.0f}{rss1:>10.0f}")
    products, users = history.history.sizes()
    print(f"bounded: history {products} products / {users} shoppers; gate {len(gate.known_products)} product ids "
          f"remembered (known or missing), {len(gate.recent_ids)} recent ids, {len(gate.counters)} cap counters")
    return 0


if __name__ == "__main__":
    from _main import finish

    finish(main)
