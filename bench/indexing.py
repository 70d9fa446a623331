"""Indexing throughput against the encoder's ceiling, incremental speedup, and peak memory, in one run.

Prints, side by side for the same catalog and the same encode settings:

(a) ceiling: ``BiEncoder.encode`` alone on the catalog's embed texts, in the same chunk-sized calls the job
    makes (docs/s); (b) a full ``run_index`` into each engine with a cold vector cache (a fresh temp file):
    docs/s and % of the ceiling (target >= 85%); (c) an incremental run after 1% of titles changed: seconds,
    speedup over the full run (target >= 20x) and exactly how many products were re-embedded; (d) peak RSS of
    each indexing process (every configuration runs in its own child process, which reports its
    ``ru_maxrss``), for the catalog and growing catalog sizes (rows repeated with new ids; their vectors come
    from the warm cache, so these runs measure the pipeline and engine, not the encoder) (target < 2 GB, flat).

    python bench/indexing.py [--catalog PATH] [--limit N] [--engines opensearch,embedded]
                             [--model all-MiniLM-L6-v2] [--json OUT] [--quick]

Each figure is one run on a shared machine: the load average is printed at start and end; rerun on a quiet
machine before quoting numbers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from shopsearch.settings import ENGINES, load_settings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CATALOG = Path(load_settings().data_dir or REPO.parent / "shared" / "data") / "homedepot" / "products.jsonl"
TARGET_RATIO, TARGET_SPEEDUP, TARGET_RSS_MB = 0.85, 20.0, 2048.0


# ----------------------------------------------------------------------------------------------- child side
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _encoder(spec: dict[str, Any]):
    from shopsearch.indexer.embedder import BiEncoder

    return BiEncoder(spec["model"], max_length=spec["max_length"], batch_size=spec["batch_size"])


def child_ceiling(spec: dict[str, Any]) -> dict[str, Any]:
    """Encode the catalog's valid products' texts exactly as the job would (chunked, distinct per chunk)."""
    from shopsearch.indexer.readers import read_rows
    from shopsearch.indexer.validate import Validator

    validator = Validator(None)
    texts = [p.embed_text() for p in (validator.check(r.data or {}, r.line).product
                                      for r in read_rows(spec["catalog"]) if r.error is None) if p is not None]
    enc = _encoder(spec)
    enc.encode(texts[:enc.batch_size])  # warm-up: first-call allocations are not throughput
    chunk = spec["chunk_size"]
    cpu0, t0 = _cpu_s(), time.perf_counter()
    for i in range(0, len(texts), chunk):
        enc.encode(list(dict.fromkeys(texts[i:i + chunk])))
    secs = time.perf_counter() - t0
    return {"docs": len(texts), "seconds": secs, "docs_per_s": len(texts) / secs,
            "cpu_ms_per_doc": 1000 * (_cpu_s() - cpu0) / len(texts)}


def child_index(spec: dict[str, Any]) -> dict[str, Any]:
    """One run_index into one engine; the vector cache is the file ``spec['cache']``."""
    from shopsearch.indexer.job import run_index
    from shopsearch.indexer.vector_cache import VectorCache
    from shopsearch.plugin.engines import open_engine

    enc = _encoder(spec)
    engine = open_engine(spec["engine"], url=spec.get("url"), root=spec.get("root"))
    cpu0 = _cpu_s()
    try:
        with VectorCache(spec["cache"]) as cache:
            rep = run_index(spec["catalog"], engine, enc, alias=spec["alias"], mode=spec["mode"], cache=cache,
                            chunk_size=spec["chunk_size"], progress=False,
                            quarantine_path=Path(spec["work"]) / f"{spec['alias']}.quarantine.jsonl")
    finally:
        engine.close()
    return {"read": rep.read, "indexed": rep.indexed, "quarantined": rep.quarantined, "unchanged": rep.unchanged,
            "embedded": rep.embedded, "cache_hits": rep.cache_hits, "seconds": rep.seconds,
            "docs_per_s": rep.docs_per_s, "cpu_ms_per_doc": 1000 * (_cpu_s() - cpu0) / max(rep.read, 1)}


def child_main(spec_json: str) -> int:
    """Run one configuration and print its result (plus peak RSS) as the last stdout line."""
    spec = json.loads(spec_json)
    out = child_ceiling(spec) if spec["kind"] == "ceiling" else child_index(spec)
    out["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(out))
    return 0


# ---------------------------------------------------------------------------------------------- parent side
def run_child(spec: dict[str, Any], label: str) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter; raises RuntimeError with its stderr tail on failure."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                          capture_output=True, text=True, cwd=str(REPO))
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"{label} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {label:34s} done in {time.perf_counter() - t0:6.1f} s", flush=True)
    return res


def write_catalog(src: Path, dst: Path, rows: int, *, edit_every: int = 0) -> tuple[int, int]:
    """Write ``rows`` rows of ``src`` (JSONL) to ``dst``, repeating it with new ids past its end.

    With ``edit_every`` > 0 every n-th row's title gets " (edited)". Returns ``(rows written, rows edited)``.
    """
    written = edited = 0
    with dst.open("w", encoding="utf-8") as out:
        for rep in itertools.count():
            with src.open(encoding="utf-8") as f:
                for line in f:
                    if not line.strip():
                        continue
                    if written >= rows:
                        return written, edited
                    row = json.loads(line)
                    if rep:
                        row["id"] = f"{row['id']}-r{rep}"
                    if edit_every and written % edit_every == 0:
                        row["title"] = f"{row['title']} (edited)"
                        edited += 1
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
                    written += 1
            if written == 0:
                raise ValueError(f"catalog {src} holds no rows")
    return written, edited


def count_rows(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def verdicts(res: dict[str, Any]) -> list[str]:
    """One line per target: met / NOT met, with the numbers (pure; used by the printout and the JSON)."""
    lines = []
    ceiling = res["ceiling"]["docs_per_s"]
    for eng, r in res["full"].items():
        ratio = r["docs_per_s"] / ceiling
        lines.append(f"end-to-end {eng}: {r['docs_per_s']:.1f} docs/s = {ratio:.0%} of the {ceiling:.1f} docs/s "
                     f"ceiling -> {'met' if ratio >= TARGET_RATIO else 'NOT met'} (target >= {TARGET_RATIO:.0%})")
    for eng, r in res["incremental"].items():
        speedup = res["full"][eng]["seconds"] / r["seconds"]
        exact = r["embedded"] == res["changed"]
        lines.append(f"incremental {eng}: {r['seconds']:.1f} s vs {res['full'][eng]['seconds']:.1f} s full = "
                     f"{speedup:.1f}x, re-embedded {r['embedded']} of {res['changed']} changed -> "
                     f"{'met' if speedup >= TARGET_SPEEDUP and exact else 'NOT met'} (target >= "
                     f"{TARGET_SPEEDUP:.0f}x, exactly the changed products)")
    for eng, by_size in res["rss"].items():
        sizes = sorted(by_size, key=int)
        peaks = [by_size[s] for s in sizes]
        growth = peaks[-1] / peaks[0] - 1 if peaks[0] else 0.0
        cold = res["full"][eng]["peak_rss_mb"]
        worst = max(peaks + [cold])
        lines.append(f"peak RSS {eng}: {cold:.0f} MB cold full run; " +
                     ", ".join(f"{int(s):,} rows {p:.0f} MB" for s, p in zip(sizes, peaks)) +
                     f" ({growth:+.0%} from {int(sizes[0]):,} to {int(sizes[-1]):,} rows) -> "
                     f"{'met' if worst < TARGET_RSS_MB else 'NOT met'} (target < {TARGET_RSS_MB / 1024:.0f} GB)")
    return lines


def print_table(res: dict[str, Any]) -> None:
    """The compact side-by-side table."""
    c = res["ceiling"]
    print(f"\n{'configuration':34s} {'docs':>7s} {'seconds':>8s} {'docs/s':>8s} {'% ceil':>7s} "
          f"{'embedded':>8s} {'cpu ms/doc':>10s} {'peak RSS':>9s}")
    print(f"{'(a) encode only (ceiling)':34s} {c['docs']:7d} {c['seconds']:8.1f} {c['docs_per_s']:8.1f} "
          f"{'100%':>7s} {c['docs']:8d} {c['cpu_ms_per_doc']:10.2f} {c['peak_rss_mb']:7.0f}MB")
    for eng, r in res["full"].items():
        print(f"{'(b) full, cold cache -> ' + eng:34s} {r['read']:7d} {r['seconds']:8.1f} {r['docs_per_s']:8.1f} "
              f"{r['docs_per_s'] / c['docs_per_s']:7.0%} {r['embedded']:8d} {r['cpu_ms_per_doc']:10.2f} "
              f"{r['peak_rss_mb']:7.0f}MB")
    for eng, r in res["incremental"].items():
        sp = res["full"][eng]["seconds"] / r["seconds"]
        print(f"{'(c) incremental 1% -> ' + eng:34s} {r['read']:7d} {r['seconds']:8.1f} {'':>8s} "
              f"{f'{sp:.0f}x':>7s} {r['embedded']:8d} {r['cpu_ms_per_doc']:10.2f} {r['peak_rss_mb']:7.0f}MB")
    for eng, by_size in res["rss"].items():
        for size, mb in sorted(by_size.items(), key=lambda kv: int(kv[0])):
            print(f"{'(d) warm cache -> ' + eng:34s} {int(size):7d} {'':>8s} {'':>8s} {'':>7s} {'':>8s} "
                  f"{'':>10s} {mb:7.0f}MB")


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run every configuration; returns the results dict (also written to ``--json``)."""
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ENGINES:
            raise ValueError(f"--engines has {e!r}; choose from {', '.join(ENGINES)}")
    catalog = Path(args.catalog)
    if not catalog.is_file():
        raise FileNotFoundError(f"--catalog {catalog} not found")
    total = count_rows(catalog)
    limit = min(args.limit or total, total)
    sizes = sorted({int(s) for s in args.rss_sizes.split(",") if s.strip()}) if args.rss_sizes else []
    res: dict[str, Any] = {"catalog": str(catalog), "rows": limit, "model": args.model, "engines": engines,
                           "batch_size": args.batch_size, "chunk_size": args.chunk_size, "cpus": os.cpu_count(),
                           "loadavg_start": os.getloadavg(), "full": {}, "incremental": {}, "rss": {}}
    print(f"indexing bench: {limit:,} rows of {catalog}, model {args.model}, batch {args.batch_size}, chunk "
          f"{args.chunk_size}, engines {', '.join(engines)}; {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="ss-bench-index-"))
    tag = uuid.uuid4().hex[:8]
    base = {"model": args.model, "batch_size": args.batch_size, "chunk_size": args.chunk_size,
            "max_length": args.max_length, "url": args.url, "work": str(work)}
    cat = work / "catalog.jsonl"
    write_catalog(catalog, cat, limit)
    edited_cat = work / "catalog-edited.jsonl"
    _, res["changed"] = write_catalog(catalog, edited_cat, limit, edit_every=100)
    aliases: list[tuple[str, str]] = []
    try:
        res["ceiling"] = run_child(dict(base, kind="ceiling", catalog=str(cat)), "(a) encode only")
        for eng in engines:
            alias = f"bench-ix-{tag}-{eng[:3]}"
            aliases.append((eng, alias))
            spec = dict(base, kind="index", engine=eng, alias=alias, root=str(work / "embedded"),
                        cache=str(work / f"vectors-{eng}.sqlite"))  # a cold cache per engine
            res["full"][eng] = run_child(dict(spec, catalog=str(cat), mode="full"), f"(b) full -> {eng}")
            res["incremental"][eng] = run_child(dict(spec, catalog=str(edited_cat), mode="incremental"),
                                                f"(c) incremental -> {eng}")
            res["rss"][eng] = {}
            for size in sizes:
                path = work / f"catalog-{size}.jsonl"
                if not path.exists():
                    write_catalog(cat, path, size)  # repeats the benched rows: every vector is cached
                a = f"bench-ix-{tag}-{eng[:3]}-{size}"
                aliases.append((eng, a))
                r = run_child(dict(spec, catalog=str(path), mode="full", alias=a), f"(d) {size:,} rows -> {eng}")
                res["rss"][eng][str(size)] = r["peak_rss_mb"]
                _drop(eng, a, args.url, work)
    finally:
        for eng, alias in aliases:
            _drop(eng, alias, args.url, work)
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    res["loadavg_end"] = os.getloadavg()
    res["verdicts"] = verdicts(res)
    return res


def _drop(engine_kind: str, alias: str, url: str | None, work: Path) -> None:
    """Delete the bench's indices on OpenSearch (the embedded ones go with the temp dir)."""
    if engine_kind != "opensearch":
        return
    from shopsearch.plugin.engines import open_engine

    eng = open_engine("opensearch", url=url)
    try:
        for name in eng.list_indices(f"{alias}-v"):
            eng.delete_index(name)
    finally:
        eng.close()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the bench, print the table and verdicts; returns 0 (1 when a configuration failed)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", default=str(DEFAULT_CATALOG), help="JSONL catalog (default: homedepot)")
    ap.add_argument("--limit", type=int, default=None, help="index only the first N rows (default: all)")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated: opensearch,embedded")
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--url", default=None, help="OpenSearch URL (default $OPENSEARCH_URL or 127.0.0.1:9200)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--chunk-size", type=int, default=512)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--rss-sizes", default="10000,25000,55000",
                    help="catalog sizes for the peak-RSS runs (rows; past the catalog's end rows repeat with new "
                         "ids); '' to skip")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2,000 rows, RSS sizes 1,000 and 4,000")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the temp work directory")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args.child)
    if args.quick:
        args.limit = min(args.limit or 2000, 2000)
        args.rss_sizes = "1000,4000"
    if args.limit is not None and args.limit < 100:
        raise ValueError(f"--limit must be >= 100 (1% of it is edited for the incremental run), got {args.limit}")
    try:
        res = run_bench(args)
    except RuntimeError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    print_table(res)
    print()
    for line in res["verdicts"]:
        print(line)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in res['loadavg_end'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
