"""``shopsearch index CATALOG``: load a catalog file into a search index (full rebuild or incremental)."""

from __future__ import annotations

import argparse
from pathlib import Path

from shopsearch.api.cli_args import add_engine_args, add_model_arg, add_setting_arg
from shopsearch.settings import INDEX_ENCODERS

HELP = """\
Index a catalog (JSONL, CSV or Parquet) into an engine behind an alias.

Engine: --engine, else $SHOPSEARCH_ENGINE, else "embedded" (an in-process engine under
$SHOPSEARCH_HOME/embedded). Use --engine opensearch (URL from --url or $OPENSEARCH_URL,
default http://127.0.0.1:9200) for a real cluster.

Mode: --full builds a new <index>-v<timestamp> index, verifies its count, restores its
replicas and waits until it is green (yellow on a one-node cluster, said in the summary),
then swaps the alias onto it and drops older versions except the one just replaced (kept
for rollback). Shards, replicas and refresh intervals come from plugin/config/index.toml
([cluster]); --shards/--replicas override them for this run. An interrupted rebuild leaves
the alias where it was; the next run of any kind drops the partial index. --incremental
(the default when the alias exists) upserts new/changed products, deletes products that
left the catalog and leaves the rest alone.

Safety: a run that would remove more of the live catalog than allowed is refused before
anything is written (--incremental: deleting more than index_max_delete_share, default 5%;
--full: a count more than index_max_shrink_share, default 10%, below the live index), and
says how many products would disappear; --allow-shrink lets it through. One run per alias
at a time: a second refuses while the first holds the lock (in OpenSearch, or a file for
the embedded engine); a stale lock (dead pid, old heartbeat) is broken automatically, and
--break-lock breaks one that still looks alive.

Embedding: --workers N encoder processes (default one per physical core on CPU; 1, in this
process, on CUDA or for a catalog file under 2 MB) feed the bulk writer, with at most 2N chunks in flight, in catalog
order; only this process reads and writes the vector cache. A worker that dies or Ctrl-C
stops the run like any failure: the alias stays where it was, and a rerun reuses every
vector cached so far. --encoder onnx-int8 embeds with the model quantised to int8 (ONNX
Runtime; recorded on the index, which the search side checks its query encoder against).

Rows that cannot be indexed are appended to the quarantine file (JSON lines with source,
line, reason and raw text); the run still succeeds (exit 0) and prints how many and where.
Exit 1 when the load itself fails (engine error, count mismatch, index not green in time),
is refused (shrink, lock); 2 for bad arguments.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``index`` subcommand."""
    p = subparsers.add_parser("index", help="index a catalog file", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("catalog", help="catalog file: .jsonl/.ndjson, .csv/.tsv or .parquet")
    add_setting_arg(p, "index", "alias searches use")
    add_engine_args(p)
    p.add_argument("--fields", help="field-mapping TOML (see indexer/fields.example.toml); default: identity")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--full", dest="mode", action="store_const", const="full", help="rebuild and swap the alias")
    mode.add_argument("--incremental", dest="mode", action="store_const", const="incremental",
                      help="upsert changes and delete vanished products (default when the alias exists)")
    add_model_arg(p, help="bi-encoder: all-MiniLM-L6-v2 (packaged) or a local model directory")
    p.add_argument("--workers", type=int, default=None,
                   help="encoder processes (default: the index_workers setting; 0 = one per physical core, but 1 "
                        "with CUDA or for a catalog file under 2 MB); 1 embeds in this process")
    p.add_argument("--encoder", choices=INDEX_ENCODERS, default=None,
                   help="torch (the model as trained) or onnx-int8 (int8 ONNX Runtime: faster on CPU, recorded on "
                        "the index; default: the index_encoder setting, torch)")
    p.add_argument("--batch-size", type=int, default=64, help="texts per encoder forward pass (default 64)")
    p.add_argument("--chunk-size", type=int, default=512, help="products per embed+bulk chunk (default 512)")
    p.add_argument("--max-length", type=int, default=256, help="encoder max tokens per product (default 256)")
    p.add_argument("--quarantine", help="quarantine JSONL path (default ./<index>.quarantine.jsonl)")
    p.add_argument("--cache", help="vector cache SQLite path (default $SHOPSEARCH_HOME/vector-cache.sqlite; "
                                   "'none' disables it)")
    p.add_argument("--shards", type=int, help="primary shards of a new index (default: [cluster] in index.toml)")
    p.add_argument("--replicas", type=int, help="replicas restored after the load (default: [cluster] in "
                                                "index.toml; sets a fixed count, turning auto-expand off)")
    p.add_argument("--allow-shrink", action="store_true",
                   help="let the run remove more of the live catalog than index_max_*_share allows")
    p.add_argument("--break-lock", action="store_true", help="break another run's indexing lock on this alias")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run, mode=None)


def run(args: argparse.Namespace) -> int:
    """Run the index command; returns the exit code."""
    import sys

    from shopsearch.indexer.encode_pool import open_index_encoder
    from shopsearch.indexer.fields import load_field_mapping
    from shopsearch.indexer.catalog_guard import CatalogShrinkRefused, ShrinkLimits
    from shopsearch.indexer.job import IndexVerificationError, run_index
    from shopsearch.indexer.rebuild_lock import IndexLocked
    from shopsearch.indexer.vector_cache import VectorCache
    from shopsearch.api.cli_args import settings_from_args
    from shopsearch.plugin.engine import EngineUnavailable, IndexNotFound
    from shopsearch.plugin.engines import open_engine
    from shopsearch.plugin.index_config import load_index_config

    catalog = Path(args.catalog)
    if not catalog.is_file():
        raise FileNotFoundError(f"catalog not found: {catalog}")
    mapping = load_field_mapping(args.fields)
    settings = settings_from_args(args)
    config = load_index_config().with_layout(shards=args.shards, replicas=args.replicas)
    limits = ShrinkLimits(settings.index_max_delete_share, settings.index_max_shrink_share, args.allow_shrink)
    workers = settings.index_workers if args.workers is None else args.workers
    cache = None
    if (args.cache or "").lower() != "none":
        cache = VectorCache(args.cache or settings.home / "vector-cache.sqlite")
    engine = open_engine(settings.engine, root=args.root, settings=settings, config=config)
    try:
        with open_index_encoder(args.model, kind=args.encoder or settings.index_encoder, workers=workers,
                                max_length=args.max_length, batch_size=args.batch_size,
                                onnx_dir=settings.onnx_dir, catalog_bytes=catalog.stat().st_size) as encoder:
            report = run_index(catalog, engine, encoder, alias=args.index, mode=args.mode or "auto",
                               mapping=mapping, quarantine_path=args.quarantine, cache=cache,
                               chunk_size=args.chunk_size, progress=not args.no_progress, limits=limits,
                               lock_stale_s=settings.index_lock_stale_s, break_lock=args.break_lock)
    except (CatalogShrinkRefused, IndexLocked) as exc:
        print(f"shopsearch index: refused: {exc}", file=sys.stderr)
        return 1
    except (EngineUnavailable, IndexVerificationError, RuntimeError) as exc:
        print(f"shopsearch index: load failed: {exc}", file=sys.stderr)
        return 1
    except IndexNotFound as exc:  # the version this run was building, deleted under it
        print(f"shopsearch index: stopped: index {exc.args[0]!r} vanished during the run (another run on another "
              f"host broke this run's lock?); rerun to finish", file=sys.stderr)
        return 1
    finally:
        engine.close()
        if cache is not None:
            cache.close()
    if args.no_progress:  # with progress on, the job printed both
        print(report.summary_line())
        if report.quarantine_summary:
            print(report.quarantine_summary)
    if report.failed_deletes:
        print(f"shopsearch index: {report.failed_deletes} deletes failed", file=sys.stderr)
        return 1
    return 0
