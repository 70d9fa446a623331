"""``shopsearch train ranker``: the LightGBM ranker a profile's ``[conversion]`` stage serves, from behaviour events,
from the UBI logs (logged features), or from human judgments run through the served pipeline."""

from __future__ import annotations

import argparse
from pathlib import Path

from shopsearch.api.cli_args import add_engine_args, add_model_arg, add_setting_arg
from shopsearch.judgments import FORMATS

DEFAULT_PROFILE = "ltr"  # --judgments: the profile a ranker is trained to serve in

HELP = """\
Train the LightGBM ranker that a profile's [conversion] stage serves, from one of three sources:

  --judgments FILE   human judgments (TREC + --queries, CSV, ESCI, WANDS, Quepid): every judged query runs through
                     the served pipeline (--index, --profile, engine flags) and the rows are the head the profile's
                     [conversion] stage orders, with the features that stage computes; label = the grade
                     (unjudged: 0, or no row with --unjudged skip). Target `relevance`, lambdarank.
  --logs             the UBI logs (--ubi-dir or the engine's store): each query's logged top K with the stage values
                     as served (query_attributes.features), labelled by its clicks / add_to_cart / purchases; the
                     product features come from the products stored in --index, as serving read them;
                     --position-debias (default on) lets lambdarank learn and remove the shown positions' bias.
  --events FILE      behaviour events JSONL (shopsearch simulate-events or the API's event log); retrieval
                     features recomputed (--cross-encoder, --bi-encoder).

Cross-validation is grouped by query (--folds K). With --fold I the queries of fold I are held out of training
altogether (written to heldout-queries.tsv for --judgments) and the card reports the model against the incoming
order on them; run I = 0..K-1 and pool `shopsearch compare` over the held-out files (bench/pool_compare.py).
Writes model.txt (LightGBM text format; --members N: model-1.txt ... beside it), model_card.json and README.md
(features, importances, CV figures).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ranker`` target under ``train``."""
    p = subparsers.add_parser(
        "ranker", help="LightGBM ranker (the [conversion] stage) from judgments, UBI logs or events",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--judgments", metavar="FILE", help="human judgments (format auto-detected; see --format)")
    src.add_argument("--logs", action="store_true", help="the UBI query and event logs (--ubi-dir or the engine)")
    src.add_argument("--events", metavar="FILE", help="events JSONL (shopsearch simulate-events or the API log)")
    p.add_argument("--out", required=True, help="model directory to write, e.g. models/ltr")
    p.add_argument("--data", help="--events: data folder with products.jsonl (product fields and BM25 features)")
    p.add_argument("--queries", help="--judgments: queries TSV qid<TAB>text (required for TREC qrels)")
    p.add_argument("--format", choices=FORMATS, help="--judgments: judgment format (default: detected)")
    p.add_argument("--wands-queries", help="--judgments: WANDS query file (default: query.csv beside it)")
    add_setting_arg(p, "index", "--judgments: index or alias to search; --logs: the one the logs were served "
                                "from, whose stored products give the product features as serving saw them")
    p.add_argument("--profile",
                   help="--judgments: the profile the model will serve in; its retrieval and rerank stages produce "
                        f"the head, its conversion.depth sets the head's size (default {DEFAULT_PROFILE})")
    p.add_argument("--rows-cache", metavar="FILE",
                   help="--judgments: keep the rows (the served head's features and grades) in this .npz file and "
                        "reuse them while the judgments, queries, index version, profile, features and bi-encoder "
                        "are unchanged, so the K fold runs of --fold pay for one pass of the pipeline")
    p.add_argument("--ubi-dir", help="--logs: read ubi_queries.jsonl / ubi_events.jsonl from this folder instead "
                                     "of the engine's UBI store")
    add_engine_args(p)
    add_model_arg(p)
    p.add_argument("--objective", choices=("lambdarank", "binary"), default="lambdarank")
    p.add_argument("--target", choices=("purchase", "click", "relevance"),
                   help="default: relevance for --judgments, purchase otherwise")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds, grouped by query (default 5)")
    p.add_argument("--fold", type=int, metavar="I", help="hold fold I (0..K-1) of --folds out of training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--features", help="comma-separated feature names (default: RELEVANCE_FEATURES for "
                                      "--judgments, DEFAULT_MODEL_FEATURES otherwise)")
    p.add_argument("--label-gain", choices=("linear", "exponential"),
                   help="lambdarank's worth of grade g: exponential 2^g - 1 (LightGBM's; default) or linear g, "
                        "as eval's nDCG scores judgments")
    p.add_argument("--unjudged", choices=("zero", "skip"),
                   help="--judgments: a product in the head nobody judged is a row labelled 0 (zero, the default, "
                        "as eval counts it) or no row (skip: learn to order what the judges saw, not which "
                        "products they saw)")
    p.add_argument("--position-debias", action=argparse.BooleanOptionalAction, default=None,
                   help="lambdarank learns the shown positions' bias (default: on for --logs, off otherwise)")
    p.add_argument("--cross-encoder", metavar="MODEL",
                   help="--events: cross-encoder (model name or folder) that scores every impression for the "
                        "cross_encoder feature; use the one the serving profile's rerank stage runs")
    p.add_argument("--bi-encoder", metavar="MODEL",
                   help="--events: the index's bi-encoder (all-MiniLM-L6-v2 or a folder) for the knn features")
    p.add_argument("--tune", action="store_true",
                   help="choose the trees' size, rows per leaf and number of rounds by the query-grouped CV first "
                        "among 36 settings (3 tree sizes x 3 rows-per-leaf x 4 round counts; 9 boosters of 480 "
                        "rounds a fold: about a minute more on crowdflower's 134 training queries, 8-10 on "
                        "homedepot's 7,560; times N with --members N); the card lists every setting's CV figure")
    p.add_argument("--members", type=int, default=1, metavar="N",
                   help="fit N boosters, each on a random 80%% of the training queries with a seed of its own drawn "
                        "from --seed, and rank by their mean: steadier when a few hundred judged queries decide "
                        "the splits; N times the training time and the scoring time of the stage (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    """Raise ValueError naming the first flag that does not fit the chosen source."""
    if args.events and not args.data:
        raise ValueError("--data is required with --events (products.jsonl)")
    if args.data and not args.events:
        raise ValueError("--data is for --events (--judgments and --logs read the products from --index)")
    if args.objective != "lambdarank" and (args.label_gain or args.position_debias):
        raise ValueError(f"--label-gain and --position-debias are for --objective lambdarank; got "
                         f"{args.objective}")
    if args.rows_cache and not args.judgments:
        raise ValueError("--rows-cache is for --judgments (the rows of --logs and --events are read, not computed)")
    if args.judgments and (args.cross_encoder or args.bi_encoder):
        raise ValueError("--cross-encoder / --bi-encoder are for --events; with --judgments the profile's own "
                         "stages score the head")
    if args.logs and (args.cross_encoder or args.bi_encoder):
        raise ValueError("--cross-encoder / --bi-encoder are for --events; --logs reads the stage values each "
                         "search logged (serve a profile with that stage to log them)")
    for flag, value in (("--queries", args.queries), ("--format", args.format), ("--profile", args.profile),
                        ("--wands-queries", args.wands_queries), ("--unjudged", args.unjudged)):
        if value is not None and not args.judgments:
            raise ValueError(f"{flag} is for --judgments")
    if args.ubi_dir and not args.logs:
        raise ValueError("--ubi-dir is for --logs")
    if args.events and Path(args.events).name.startswith("ubi_"):
        raise ValueError(f"--events {args.events}: a UBI log; read the UBI logs with --logs --ubi-dir "
                         f"{Path(args.events).parent}")
    if args.fold is not None and not 0 <= args.fold < args.folds:
        raise ValueError(f"--fold {args.fold}: must be in 0..{args.folds - 1} (--folds {args.folds})")
    from shopsearch.reranker.ranker_training import MAX_MEMBERS

    if not 1 <= args.members <= MAX_MEMBERS:
        raise ValueError(f"--members {args.members}: must be in 1..{MAX_MEMBERS}")
    if args.judgments and args.target not in (None, "relevance"):
        raise ValueError(f"--target {args.target}: judgments train target relevance")


def run(args: argparse.Namespace) -> int:
    """Build the rows from the chosen source, cross-validate, fit and save; prints a one-line summary."""
    import time

    from shopsearch.reranker.features import DEFAULT_MODEL_FEATURES, RELEVANCE_FEATURES

    _check(args)
    t0 = time.perf_counter()
    default = RELEVANCE_FEATURES if args.judgments else DEFAULT_MODEL_FEATURES
    names = tuple(n.strip() for n in args.features.split(",") if n.strip()) if args.features else default
    target = args.target or ("relevance" if args.judgments else "purchase")
    debias = args.logs and args.objective == "lambdarank" if args.position_debias is None else args.position_debias
    rows, data, texts = (_judged if args.judgments else _logged if args.logs else _events)(args, names)
    return _train_and_save(args, rows, data, texts, target, debias, t0)


def _train_and_save(args, rows, data, texts, target, debias, t0) -> int:
    """Hold out --fold, cross-validate and fit on the rest, save the card; print the summary."""
    import time

    import numpy as np

    from shopsearch.judgments import Query, write_queries
    from shopsearch.reranker.ranker_training import edge_note, evaluate, file_sha256, save, train, tuned_setting
    from shopsearch.reranker.training_data import split_queries

    source = args.judgments or args.events
    if source:
        data[("judgments" if args.judgments else "events") + "_sha256"] = file_sha256(source)
    heldout, train_rows, folds = None, rows, args.folds
    if args.fold is not None:
        # judged rows: the folds of every judged query (as train cross-encoder cuts them), so a query without rows
        # (no result, or no judged product with --unjudged skip) moves no other query to another fold
        qids = sorted(texts) if args.judgments and texts else rows.query_ids.tolist()
        test = split_queries(qids, folds=args.folds, fold=args.fold, valid_fraction=0.0, seed=args.seed).test
        if not test:
            raise ValueError(f"--fold {args.fold}: holds out none of the {len(set(rows.query_ids.tolist()))} "
                             f"queries; use fewer --folds")
        mask = np.isin(rows.query_ids, sorted(test))
        train_rows, test_rows = rows.subset(~mask), rows.subset(mask)
        folds = max(2, args.folds - 1)
    result = train(train_rows, objective=args.objective, target=target, folds=folds, seed=args.seed,
                   progress=not args.no_progress, position_debias=debias, label_gain=args.label_gain,
                   tune_grid=args.tune, members=args.members)
    if args.fold is not None:
        model_scores = result.booster.predict(test_rows.X, raw_score=True)
        heldout = {"fold": args.fold, "folds": args.folds, "queries": len(test),
                   "incoming": _scores(evaluate(test_rows, -test_rows.positions.astype(float), target)),
                   "model": _scores(evaluate(test_rows, model_scores, target))}
        # rows from behaviour (events or UBI logs) are grouped by the query's normalised text, judged rows by qid
        data["heldout_queries" if args.judgments else "heldout_query_texts"] = sorted(test)
    model = save(result, train_rows, args.out, data, heldout)
    heldout_file = Path(args.out) / "heldout-queries.tsv"
    if args.fold is not None and texts:
        write_queries(heldout_file, [Query(q, texts[q]) for q in sorted(test) if q in texts])
    else:  # an earlier --fold run's list would name queries this model trained on
        heldout_file.unlink(missing_ok=True)
    mean = model.card["cv"]["mean"]
    figures = ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} n/a" for k, v in mean.items())
    if heldout:
        figures += "; held-out fold " + ", ".join(f"{k} {heldout['incoming'][k]:.4f} -> {v:.4f}"
                                                  for k, v in heldout["model"].items())
    tuning = model.card.get("tuning")
    if tuning:
        edge = edge_note(tuning)
        edge = f" ({edge})" if edge else ""
        figures = f"tuned {tuned_setting(tuning)}{edge} on these folds, so optimistic: {figures}"
    dt = time.perf_counter() - t0
    simulated = " (SIMULATED events)" if model.card["data"].get("simulated") else ""
    print(f"saved {args.out}: {len(train_rows)} rows{simulated}, {model.card['data']['queries']} queries, {folds}-fold "
          f"CV by query: {figures}; {dt:.1f}s")
    return 0


def _scores(metrics: dict) -> dict:
    """The score entries of :func:`evaluate`'s metrics (counts left out)."""
    from shopsearch.reranker.ranker_training import COUNT_KEYS

    return {k: float(v) for k, v in metrics.items() if k not in COUNT_KEYS}


def _judged(args, names):
    """Rows from judgments through the served pipeline: (rows, card data, qid -> text); the other two sources
    return the same triple (no texts)."""
    from shopsearch.api.cli_args import index_missing, open_engine_from_args, settings_from_args
    from shopsearch.api.cmd_compare import load_judged_queries
    from shopsearch.indexer.embedder import BiEncoder
    from shopsearch.indexer.encoder_record import check_query_encoder
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.merchandising import Merchandising
    from shopsearch.plugin.profiles import ProfileStore
    from shopsearch.reranker.judged_rows import judged_rows
    from shopsearch.reranker.model_registry import ModelRegistry, default_model_dirs
    from shopsearch.reranker.pipeline import RankingPipeline, model_stages
    from shopsearch.reranker.training_rows import load_rows, save_rows

    qrels, todo = load_judged_queries(args.judgments, args.format, args.queries, args.wands_queries)
    settings = settings_from_args(args)  # rules, synonyms and models as the API serves with them
    profiles = ProfileStore(settings=settings)
    profile = profiles.get(args.profile or DEFAULT_PROFILE)
    models = ModelRegistry(default_model_dirs(settings))
    # The stage being trained is skipped; the ones before it must be there, as served.
    stage_dirs = {f"{kind}:{model}": models.check(kind, model) for kind, model in model_stages(profile)
                  if kind != "conversion"}
    engine = open_engine_from_args(args)
    try:
        if index_missing(engine, args, "train ranker"):
            raise SystemExit(1)
        fingerprint = _rows_fingerprint(args, engine, profile, names, stage_dirs)
        rows = load_rows(args.rows_cache, fingerprint) if args.rows_cache else None
        if rows is not None:
            print(f"rows from {args.rows_cache} ({len(rows)} rows; same judgments, index version and profile)")
        else:
            encoder = BiEncoder(args.model)
            check_query_encoder(engine, args.index, encoder)  # warns, as eval does: the head is another model's
            searcher = HybridSearcher(engine, args.index, encoder, profiles,  # the rules, not the API's limits
                                      merchandising=Merchandising.from_settings(settings))
            pipeline = RankingPipeline(searcher, models, budgets=False)
            rows = judged_rows(pipeline, todo, qrels, profile.name, names, progress=not args.no_progress,
                               unjudged=args.unjudged or "zero")
            if args.rows_cache:
                save_rows(rows, args.rows_cache, fingerprint)
    finally:
        engine.close()
    without = len(set(todo) - set(rows.query_ids.tolist()))
    if without:
        why = "no result" + (", or no judged product in the head" if args.unjudged == "skip" else "")
        print(f"{without} of {len(todo)} judged queries have no row ({why}); nothing is learnt from them")
    data = {"judgments": str(args.judgments), "queries_file": args.queries, "index": args.index,
            "engine": args.engine, "profile": profile.name, "depth": profile.conversion.depth,
            "rerank_model": profile.rerank.model if profile.rerank.enabled else None, "bi_encoder": args.model,
            "unjudged": args.unjudged or "zero", "queries_without_rows": without}
    return rows, data, todo


def _rows_fingerprint(args, engine, profile, names, stage_dirs) -> dict:
    """What judged rows depend on: the judgments and queries files, the index version, the profile, the models of
    its earlier stages (their folder and files' sizes and times), the features and the bi-encoder (a cache built
    from anything else is rebuilt)."""
    from shopsearch.reranker.conversion import CARD_VERSION
    from shopsearch.reranker.ranker_training import file_sha256

    files = {name: file_sha256(path) for name, path in (("judgments", args.judgments), ("queries", args.queries),
                                                        ("wands_queries", args.wands_queries)) if path}
    models = {stage: [str(d.resolve()), sorted((str(f.relative_to(d)), f.stat().st_size, f.stat().st_mtime_ns)
                                              for f in d.rglob("*") if f.is_file())]
              for stage, d in stage_dirs.items()}
    return {**files, "index": args.index, "index_version": engine.resolve_alias(args.index) or args.index,
            "engine": args.engine, "profile": profile.model_dump(mode="json"), "models": models,
            "features": list(names), "bi_encoder": str(args.model),
            **({"unjudged": args.unjudged} if args.unjudged not in (None, "zero") else {}),
            # the features' definitions change with the card version (rows from an older one are computed anew)
            "card_version": CARD_VERSION}


def _logged(args, names):
    """Rows from the UBI logs' logged features and events."""
    from shopsearch.api.cli_args import open_ubi_store_from_args
    from shopsearch.reranker.training_rows import build_rows, logged_events

    store = open_ubi_store_from_args(args)
    logs = logged_events(store.iter_queries(), store.iter_events())
    if not logs.stages:
        raise ValueError("logs: no UBI query record carries logged features (query_attributes.features); serve "
                         "with feature logging on, or simulate traffic through the API")
    shown = {pid for stages in logs.stages.values() for pid in stages}
    rows = build_rows(logs.events, _stored_products(args, shown), names, progress=not args.no_progress,
                      logged=logs.stages, history_events=logs.history)
    data = {"logs": args.ubi_dir or f"{args.engine} UBI store", "index": args.index,
            "events_count": len(logs.events), "simulated": any(e.simulated for e in logs.events)}
    return rows, data, {}


def _stored_products(args, ids: set[str]) -> dict:
    """The products ``ids`` as --index stores them (what the served features saw); a product deleted since is
    left out (its rows get NaN product features)."""
    from shopsearch.api.cli_args import index_missing, open_engine_from_args

    engine = open_engine_from_args(args)
    try:
        if index_missing(engine, args, "train ranker"):
            raise SystemExit(1)
        ordered, out = sorted(ids), {}
        for i in range(0, len(ordered), 500):
            out.update({pid: hit.product for pid, hit in engine.sources(args.index, ordered[i:i + 500]).items()})
        return out
    finally:
        engine.close()


def _events(args, names):
    """Rows from an events file, retrieval features recomputed by the scorers."""
    from shopsearch.events import read_events
    from shopsearch.reranker.model_registry import load_cross_encoder
    from shopsearch.reranker.sim_catalog import load_judged
    from shopsearch.reranker.training_rows import (Bm25Scorer, CrossEncoderScorer, VectorScorer, build_rows,
                                                   combine_stages)

    catalog = load_judged(args.data)
    events = list(read_events(args.events))
    scorers = [Bm25Scorer(catalog.products)]
    if args.bi_encoder:
        from shopsearch.indexer.embedder import BiEncoder

        scorers.append(VectorScorer(BiEncoder(args.bi_encoder), catalog.products))
    if args.cross_encoder:
        scorers.append(CrossEncoderScorer(load_cross_encoder(args.cross_encoder), catalog.products))
    rows = build_rows(events, catalog.products, names, stages_fn=combine_stages(*scorers),
                      progress=not args.no_progress)
    return rows, {"events": str(args.events), "events_count": len(events), "data_dir": str(args.data),
                  "simulated": any(e.simulated for e in events), "cross_encoder": args.cross_encoder,
                  "bi_encoder": args.bi_encoder}, {}
