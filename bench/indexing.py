"""Indexing throughput against the encoder's ceiling, incremental speedup, and peak memory, in one run.

Prints, side by side for the same catalog and the same encode settings, for each encoder configuration
(``--encoders torch,onnx-int8`` x ``--workers 1,2``: the encoder ``shopsearch index --encoder`` takes, in that
many processes, ``--workers``):

(a) ceiling: the encoder alone on the catalog's embed texts (no engine, no cache), in the same chunk-sized calls
    the job makes, through the same pool of worker processes (docs/s); (b) a full ``run_index`` into each engine
    with a cold vector cache (a fresh temp file): docs/s, % of that configuration's ceiling (target >= 85%) and
    the speedup over ``torch x1``; (c) an incremental run after 1% of titles changed (first configuration):
    seconds, speedup over the full run (target >= 20x) and exactly how many products were re-embedded; (d) peak
    RSS of each indexing process (every configuration runs in its own child process, which reports its
    ``ru_maxrss``; pool workers are separate processes, not counted), for the catalog and growing catalog sizes
    (rows repeated with new ids; their vectors come from the warm cache, so these runs measure the pipeline and
    engine, not the encoder) (target < 2 GB, flat); (e) with onnx-int8: the cosine similarity of its vectors to
    the fp32 torch vectors on ``--cosine-sample`` catalog texts, and whether a product's int8 vector depends on
    the rows embedded with it (its first 200 texts embedded in one call against each alone).

    python bench/indexing.py [--catalog PATH] [--limit N] [--engines opensearch,embedded]
                             [--workers 1,2] [--encoders torch,onnx-int8]
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

from shopsearch.settings import DEFAULT_MODEL, ENGINES, load_settings

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
    """The encoder of ``shopsearch index --encoder E --workers N`` (a context manager: stops a pool on exit)."""
    from shopsearch.indexer.encode_pool import open_index_encoder

    return open_index_encoder(spec["model"], kind=spec["encoder"], workers=spec["workers"],
                              max_length=spec["max_length"], batch_size=spec["batch_size"],
                              onnx_dir=load_settings().onnx_dir)


def _catalog_texts(path: str) -> list[str]:
    from shopsearch.indexer.readers import read_rows
    from shopsearch.indexer.validate import Validator

    validator = Validator(None)
    return [p.embed_text() for p in (validator.check(r.data or {}, r.line).product
                                     for r in read_rows(path) if r.error is None) if p is not None]


def child_ceiling(spec: dict[str, Any]) -> dict[str, Any]:
    """Encode the catalog's valid products' texts exactly as the job would (chunked, distinct per chunk; through
    the pool with the job's in-flight depth when there is one), with no engine and no cache."""
    from collections import deque

    from shopsearch.indexer.encode_pool import EncoderPool

    texts = _catalog_texts(spec["catalog"])
    chunk = spec["chunk_size"]
    with _encoder(spec) as enc:
        enc.encode(texts[:64])  # warm-up: first-call allocations are not throughput
        cpu0, t0 = _cpu_s(), time.perf_counter()
        if isinstance(enc, EncoderPool):
            inflight: deque[Any] = deque()
            for i in range(0, len(texts), chunk):
                inflight.append(enc.submit(list(dict.fromkeys(texts[i:i + chunk]))))
                while len(inflight) > enc.depth:
                    enc.result(inflight.popleft(), "the ceiling")
            while inflight:
                enc.result(inflight.popleft(), "the ceiling")
        else:
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

    engine = open_engine(spec["engine"], url=spec.get("url"), root=spec.get("root"))
    cpu0 = _cpu_s()
    try:
        with _encoder(spec) as enc, VectorCache(spec["cache"]) as cache:
            rep = run_index(spec["catalog"], engine, enc, alias=spec["alias"], mode=spec["mode"], cache=cache,
                            chunk_size=spec["chunk_size"], progress=False,
                            quarantine_path=Path(spec["work"]) / f"{spec['alias']}.quarantine.jsonl")
    finally:
        engine.close()
    return {"read": rep.read, "indexed": rep.indexed, "quarantined": rep.quarantined, "unchanged": rep.unchanged,
            "embedded": rep.embedded, "cache_hits": rep.cache_hits, "seconds": rep.seconds,
            "docs_per_s": rep.docs_per_s, "cpu_ms_per_doc": 1000 * (_cpu_s() - cpu0) / max(rep.read, 1)}


def child_cosine(spec: dict[str, Any]) -> dict[str, Any]:
    """Cosine similarity of the int8 encoder's vectors to the torch fp32 ones, on a sample of catalog texts."""
    import numpy as np

    from shopsearch.indexer.embedder import BiEncoder
    from shopsearch.indexer.onnx_int8 import int8_encoder

    texts = _catalog_texts(spec["catalog"])[:spec["sample"]]
    fp32 = BiEncoder(spec["model"], device="cpu", max_length=spec["max_length"], batch_size=spec["batch_size"])
    int8 = int8_encoder(spec["model"], cache_dir=load_settings().onnx_dir, max_length=spec["max_length"])
    together = int8.encode(texts)
    cos = np.sum(fp32.encode(texts) * together, axis=1)
    head = min(len(texts), 200)
    alone = np.stack([int8.encode([t])[0] for t in texts[:head]])
    diff = np.abs(together[:head] - alone).max(axis=1)
    return {"texts": len(texts), "mean": float(cos.mean()), "p01": float(np.percentile(cos, 1)),
            "min": float(cos.min()), "alone_texts": head, "alone_changed": int((diff > 0).sum()),
            "alone_max_diff": float(diff.max())}


def child_main(spec_json: str) -> int:
    """Run one configuration and print its result (plus peak RSS) as the last stdout line."""
    spec = json.loads(spec_json)
    run = {"ceiling": child_ceiling, "index": child_index, "cosine": child_cosine}[spec["kind"]]
    out = run(spec)
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


def config_name(encoder: str, workers: int) -> str:
    """The label of one encoder configuration, e.g. ``torch x2``."""
    return f"{encoder} x{workers}"


def verdicts(res: dict[str, Any]) -> list[str]:
    """One line per target: met / NOT met, with the numbers (pure; used by the printout and the JSON)."""
    lines = []
    for eng, by_cfg in res["full"].items():
        for cfg, r in by_cfg.items():
            ceiling = res["ceiling"][cfg]["docs_per_s"]
            ratio = r["docs_per_s"] / ceiling
            lines.append(f"end-to-end {eng} {cfg}: {r['docs_per_s']:.1f} docs/s = {ratio:.0%} of its {ceiling:.1f} "
                         f"docs/s ceiling -> {'met' if ratio >= TARGET_RATIO else 'NOT met'} "
                         f"(target >= {TARGET_RATIO:.0%})")
    first = res["configs"][0]
    for eng, r in res["incremental"].items():
        full = res["full"][eng][first]
        speedup = full["seconds"] / r["seconds"]
        exact = r["embedded"] == res["changed"]
        lines.append(f"incremental {eng} {first}: {r['seconds']:.1f} s vs {full['seconds']:.1f} s full = "
                     f"{speedup:.1f}x, re-embedded {r['embedded']} of {res['changed']} changed -> "
                     f"{'met' if speedup >= TARGET_SPEEDUP and exact else 'NOT met'} (target >= "
                     f"{TARGET_SPEEDUP:.0f}x, exactly the changed products)")
    for eng, by_size in res["rss"].items():
        sizes = sorted(by_size, key=int)
        peaks = [by_size[s] for s in sizes]
        cold = max(r["peak_rss_mb"] for r in res["full"][eng].values())
        worst = max(peaks + [cold])
        growth = f" ({peaks[-1] / peaks[0] - 1:+.0%} from {int(sizes[0]):,} to {int(sizes[-1]):,} rows)" \
            if peaks and peaks[0] else ""
        lines.append(f"peak RSS {eng}: {cold:.0f} MB cold full runs (parent process); " +
                     ", ".join(f"{int(s):,} rows {p:.0f} MB" for s, p in zip(sizes, peaks)) + growth +
                     f" -> {'met' if worst < TARGET_RSS_MB else 'NOT met'} (target < {TARGET_RSS_MB / 1024:.0f} GB)")
    if res.get("cosine"):
        c = res["cosine"]
        lines.append(f"onnx-int8 vs torch fp32 vectors on {c['texts']} catalog texts: cosine mean {c['mean']:.4f}, "
                     f"1st percentile {c['p01']:.4f}, min {c['min']:.4f}; embedded alone instead of in one call: "
                     f"{c['alone_changed']} of {c['alone_texts']} vectors change (max |diff| "
                     f"{c['alone_max_diff']:.2g}; target 0)")
    return lines


def print_table(res: dict[str, Any]) -> None:
    """The compact side-by-side table."""
    base = config_name("torch", 1)
    print(f"\n{'configuration':40s} {'docs':>7s} {'seconds':>8s} {'docs/s':>8s} {'% ceil':>7s} {'vs t x1':>7s} "
          f"{'embedded':>8s} {'cpu ms/doc':>10s} {'peak RSS':>9s}")
    for cfg, c in res["ceiling"].items():
        rel = c["docs_per_s"] / res["ceiling"][base]["docs_per_s"] if base in res["ceiling"] else None
        print(f"{'(a) encode only (ceiling), ' + cfg:40s} {c['docs']:7d} {c['seconds']:8.1f} {c['docs_per_s']:8.1f} "
              f"{'100%':>7s} {f'{rel:.2f}x' if rel else '':>7s} {c['docs']:8d} {c['cpu_ms_per_doc']:10.2f} "
              f"{c['peak_rss_mb']:7.0f}MB")
    for eng, by_cfg in res["full"].items():
        for cfg, r in by_cfg.items():
            rel = r["docs_per_s"] / by_cfg[base]["docs_per_s"] if base in by_cfg else None
            print(f"{'(b) full, cold cache -> ' + eng + ', ' + cfg:40s} {r['read']:7d} {r['seconds']:8.1f} "
                  f"{r['docs_per_s']:8.1f} {r['docs_per_s'] / res['ceiling'][cfg]['docs_per_s']:7.0%} "
                  f"{f'{rel:.2f}x' if rel else '':>7s} {r['embedded']:8d} {r['cpu_ms_per_doc']:10.2f} "
                  f"{r['peak_rss_mb']:7.0f}MB")
    first = res["configs"][0]
    for eng, r in res["incremental"].items():
        sp = res["full"][eng][first]["seconds"] / r["seconds"]
        print(f"{'(c) incremental 1% -> ' + eng + ', ' + first:40s} {r['read']:7d} {r['seconds']:8.1f} {'':>8s} "
              f"{f'{sp:.0f}x':>7s} {'':>7s} {r['embedded']:8d} {r['cpu_ms_per_doc']:10.2f} {r['peak_rss_mb']:7.0f}MB")
    for eng, by_size in res["rss"].items():
        for size, mb in sorted(by_size.items(), key=lambda kv: int(kv[0])):
            print(f"{'(d) warm cache -> ' + eng + ', ' + first:40s} {int(size):7d} {'':>8s} {'':>8s} {'':>7s} "
                  f"{'':>7s} {'':>8s} {'':>10s} {mb:7.0f}MB")
    if res.get("cosine"):
        c = res["cosine"]
        print(f"(e) onnx-int8 vs torch fp32 cosine on {c['texts']} texts: mean {c['mean']:.4f}, p01 {c['p01']:.4f}, "
              f"min {c['min']:.4f}; alone vs in one call: {c['alone_changed']} of {c['alone_texts']} vectors "
              f"change, max |diff| {c['alone_max_diff']:.2g}")


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run every configuration; returns the results dict (also written to ``--json``)."""
    from shopsearch.settings import INDEX_ENCODERS

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ENGINES:
            raise ValueError(f"--engines has {e!r}; choose from {', '.join(ENGINES)}")
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    for e in encoders:
        if e not in INDEX_ENCODERS:
            raise ValueError(f"--encoders has {e!r}; choose from {', '.join(INDEX_ENCODERS)}")
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if not workers or min(workers) < 1:
        raise ValueError(f"--workers must list integers >= 1, got {args.workers!r}")
    configs = [(e, w) for e in encoders for w in workers]
    catalog = Path(args.catalog)
    if not catalog.is_file():
        raise FileNotFoundError(f"--catalog {catalog} not found")
    total = count_rows(catalog)
    limit = min(args.limit or total, total)
    sizes = sorted({int(s) for s in args.rss_sizes.split(",") if s.strip()}) if args.rss_sizes else []
    res: dict[str, Any] = {"catalog": str(catalog), "rows": limit, "model": args.model, "engines": engines,
                           "configs": [config_name(e, w) for e, w in configs],
                           "batch_size": args.batch_size, "chunk_size": args.chunk_size, "cpus": os.cpu_count(),
                           "loadavg_start": os.getloadavg(), "ceiling": {}, "full": {}, "incremental": {}, "rss": {}}
    print(f"indexing bench: {limit:,} rows of {catalog}, model {args.model}, batch {args.batch_size}, chunk "
          f"{args.chunk_size}, engines {', '.join(engines)}, configurations {', '.join(res['configs'])}; "
          f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
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
        for enc, w in configs:
            res["ceiling"][config_name(enc, w)] = run_child(
                dict(base, kind="ceiling", catalog=str(cat), encoder=enc, workers=w),
                f"(a) encode only, {config_name(enc, w)}")
        if "onnx-int8" in encoders and args.cosine_sample:
            res["cosine"] = run_child(dict(base, kind="cosine", catalog=str(cat), sample=args.cosine_sample),
                                      "(e) int8 vs fp32 cosine")
        for eng in engines:
            res["full"][eng] = {}
            for n, (enc, w) in enumerate(configs):
                alias = f"bench-ix-{tag}-{eng[:3]}-{n}"
                aliases.append((eng, alias))
                spec = dict(base, kind="index", engine=eng, alias=alias, root=str(work / "embedded"), encoder=enc,
                            workers=w, cache=str(work / f"vectors-{eng}-{n}.sqlite"))  # a cold cache per run
                res["full"][eng][config_name(enc, w)] = run_child(dict(spec, catalog=str(cat), mode="full"),
                                                                  f"(b) full -> {eng}, {config_name(enc, w)}")
                if n:
                    continue
                res["incremental"][eng] = run_child(dict(spec, catalog=str(edited_cat), mode="incremental"),
                                                    f"(c) incremental -> {eng}")
                res["rss"][eng] = {}
                for size in sizes:
                    path = work / f"catalog-{size}.jsonl"
                    if not path.exists():
                        write_catalog(cat, path, size)  # repeats the benched rows: every vector is cached
                    a = f"bench-ix-{tag}-{eng[:3]}-{size}"
                    aliases.append((eng, a))
                    r = run_child(dict(spec, catalog=str(path), mode="full", alias=a),
                                  f"(d) {size:,} rows -> {eng}")
                    res["rss"][eng][str(size)] = r["peak_rss_mb"]
                    _drop(eng, a, args.url, work)
    finally:
        for eng, alias in aliases:
            try:  # a failed drop (the engine gone) must neither hide the run's own error nor keep the work folder
                _drop(eng, alias, args.url, work)
            except Exception as exc:  # noqa: BLE001
                print(f"could not drop {alias} on {eng}: {exc}", file=sys.stderr)
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    ap.add_argument("--catalog", default=str(DEFAULT_CATALOG), help="JSONL catalog (default: homedepot)")
    ap.add_argument("--limit", type=int, default=None, help="index only the first N rows (default: all)")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated: opensearch,embedded")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--url", default=None, help="OpenSearch URL (default $OPENSEARCH_URL or 127.0.0.1:9200)")
    ap.add_argument("--workers", default="1", help="comma-separated encoder process counts, e.g. 1,2 (default 1)")
    ap.add_argument("--encoders", default="torch", help="comma-separated: torch,onnx-int8 (default torch)")
    ap.add_argument("--cosine-sample", type=int, default=1000,
                    help="catalog texts for the int8-vs-fp32 cosine (with onnx-int8; 0 skips it)")
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
    from _main import finish

    finish(main)
