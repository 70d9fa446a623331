"""The cost a long UBI store outage adds to each /search's query record: the spool append, with the segments the
outage left behind (issue 13).

Before this bench's change, every drain pass during an outage closed each worker's segment and could not delete
it: one segment per worker per pass (the drainer backs off to a pass a minute), about 11,500 in a day for 8
workers; now a failing drain leaves its segment open until it holds 1 MiB. Each /search appends its query record
to the spool, which checks the spool's bound first. Baseline: the size listed on every append (``SIZE_TTL_S =
0``, as before); shipped: listed at most once a second per process. Prints p50/p95/p99/max of one append (one
query record, as a /search writes) side by side for each number of segments; the max is the append that lists.

    python bench/spool_outage.py [--segments 1000 --segments 10000] [--appends 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _latency_stats import percentile  # noqa: E402  (bench/ is on the path: the script runs from it)
from shopsearch.plugin import ubi_spool  # noqa: E402
from shopsearch.plugin.ubi_spool import UbiSpool  # noqa: E402
from shopsearch.ubi import UbiQuery  # noqa: E402


def record(n: int) -> UbiQuery:
    hits = [f"p{n}-{i}" for i in range(12)]
    return UbiQuery(query_id=f"q{n}", client_id="c1", user_query="lamp", query_response_id=f"r{n}",
                    query_response_hit_ids=hits, timestamp="2024-01-01T00:00:00Z",
                    query_attributes={"profile": "default", "page": 1,
                                      "features": {h: {"bm25": 1.5, "knn": 0.7, "fused": 0.03} for h in hits}})


def globbed_size(spool: UbiSpool) -> int:
    """The size as the spool listed it before (a sorted glob, then a stat per path)."""
    return sum(path.stat().st_size for path in spool.segments())


def timed_appends(directory: Path, segments: int, appends: int, ttl_s: float) -> list[float]:
    """Milliseconds per append into a spool already holding ``segments`` closed segments."""
    directory.mkdir(parents=True)
    line = f'{{"query":{record(0).model_dump_json()}}}\n'
    for n in range(segments):
        (directory / f"{n:020d}-1-outage.jsonl").write_text(line)
    ubi_spool.SIZE_TTL_S = ttl_s
    spool, out = UbiSpool(directory, max_bytes=1 << 34), []
    for n in range(appends):
        start = time.perf_counter()
        spool.append([record(n)], [])
        out.append((time.perf_counter() - start) * 1000)
    spool.close()
    return out


def row(segments: int, name: str, ms: list[float]) -> str:
    p50, p95, p99 = (percentile(ms, q) for q in (50, 95, 99))
    return f"| {segments:,} | {name} | {p50:.3f} | {p95:.3f} | {p99:.3f} | {max(ms):.1f} |"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    ap.add_argument("--segments", type=int, action="append", help="segments left by the outage (repeatable)")
    ap.add_argument("--appends", type=int, default=2000, help="query records appended per setting")
    args = ap.parse_args(argv)
    shipped, scandir_size = ubi_spool.SIZE_TTL_S, UbiSpool.size
    print("| segments left | size listed | append p50 ms | p95 | p99 | max |")
    print("|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="ss-spool-bench-") as tmp:
        for segments in args.segments or [1000, 10000]:
            for name, ttl, size in (("every append, glob + stat (before)", 0.0, globbed_size),
                                    (f"once per {shipped:g} s, scandir (shipped)", shipped, scandir_size)):
                UbiSpool.size = size  # type: ignore[method-assign]
                ms = timed_appends(Path(tmp) / f"{segments}-{ttl}", segments, args.appends, ttl)
                print(row(segments, name, ms))
    print(f"done: {args.appends} appends per row, each with its fsync")


if __name__ == "__main__":
    main()
