"""The closed loop on SIMULATED shoppers (issue 13): serve → simulate traffic → judgments from the logs → a ranker
learnt from the logs → the learnt profile (`ltr`, or `--profile`), over K seeded folds of a judged folder's
queries; then the learnt profile against `default` by team-draft interleaving on the live API.

Per fold (``split_queries``, seed 0 as ``train ranker --folds K --fold I``, or ``--seed``):

1. ``shopsearch serve`` (embedded engine, the index of $SHOPSEARCH_HOME, a search API key, a fresh UBI log);
   with ``--explore SHARE`` that share of `default`'s first pages explores (reranker/exploration.py: FairPairs
   swaps within the profile's explore depth, logged with the query);
2. ``shopsearch simulate-traffic --sessions N`` on the fold's *training* queries only (shoppers whose
   satisfaction comes from the human grades; every record marked simulated); with ``--show-learnt SHARE``
   (``--learn cross-encoder``) an A/B experiment serves that share of the shoppers the learnt profile with the
   cross-encoder it starts from, so the logs also grade the products *it* would put first;
3. ``shopsearch judgments from-logs --model pbm``: graded qrels from the clicks (Kendall tau against the human
   grades of the same pairs is printed: how well clicks recover relevance);
4. ``shopsearch train ranker --logs`` (position-debiased lambdarank on the features logged at serving time), or
   ``--learn judgments``: ``train ranker --judgments`` on the click-model qrels through the served pipeline (with
   ``--profile ltr-ce`` the cross-encoder's score is among the features; ``--link`` supplies that model), or
   ``--learn cross-encoder``: ``train cross-encoder`` from the profile's cross-encoder (``--link``) on the
   click-model qrels; it replaces that model in the fold's models, so the profile (``--profile rerank-ce``) serves
   it;
5. ``shopsearch compare default <learnt profile>`` on the fold's *test* queries with the *human* qrels;
6. interleaving: ``shopsearch serve`` with an experiments file (``mode = "interleave"``, arms default and the learnt
   profile) and the fold's model, ``simulate-traffic --sessions M`` on the fold's test queries.

At the end: the folds' per-query comparisons pooled (nDCG@10 of `ltr` minus `default`, 95% CI, paired tests) and
the interleaving preference pooled over the folds (exact binomial test), with p after the first n sessions.

    SHOPSEARCH_HOME=~/.cache/shopsearch/bench-home python bench/closed_loop.py --data ../shared/data/crowdflower \
        --index crowdflower --sessions 3000 --interleave-sessions 2000 --work /tmp/loop
    SHOPSEARCH_HOME=~/.cache/shopsearch/bench-home python bench/closed_loop.py --data ../shared/data/crowdflower \
        --index crowdflower --learn judgments --profile ltr-ce --link ce-minilm=models/ce-hd --work /tmp/loop-ce
    SHOPSEARCH_HOME=~/.cache/shopsearch/bench-home python bench/closed_loop.py --data ../shared/data/crowdflower \
        --index crowdflower --learn cross-encoder --profile rerank-ce --link ce-minilm=models/ce-hd --explore 1.0 \
        --work /tmp/loop-clicks-ce

``--seed S`` draws other folds and other shoppers (traffic and interleaving) for an independent replication;
seed 0 is the runs recorded before it existed. ``--interleave-only`` reruns step 6 alone on the folds' models
already in ``--work`` (the earlier interleaved logs are kept as ``home-interleave-<n>``). The learnt profile is
served without a stage budget: this measures ranking, and a loaded box would otherwise serve its fallback.

The index must exist in $SHOPSEARCH_HOME on the embedded engine (``shopsearch index ... --engine embedded``).
Everything here is simulated traffic and the report says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from _cli_runs import add_fold_args, command, link_targets, models_with_links, sh
from pool_compare import pooled_table

EXPERIMENT = "closed-loop"
TRAIN_EXPERIMENT = "closed-loop-training"  # --show-learnt's A/B split of the training traffic
# The shopper-behaviour features (product CTR/CVR/impressions, user affinity) are left out: `compare` scores the
# test queries offline, with no event history, so they would be priors there and not what the model learnt from.
BEHAVIOUR = ("ctr", "cvr", "impressions_log", "user_brand_affinity", "user_category_affinity", "user_history_log")
CHECKPOINTS = (100, 250, 500, 1000, 2000, 4000, 8000, 16000)
UNBOUNDED_MS = 60_000  # the learnt profile's stage budget (the largest plugin/profiles.py takes) and the deadline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(index: str, env: dict[str, str], log: Path):
    """``shopsearch serve`` on a free port until the block ends (SIGTERM: the UBI spool is drained)."""
    import requests

    port = free_port()
    with log.open("w") as fh:
        proc = subprocess.Popen(command(["shopsearch", "serve", "--engine", "embedded", "--index", index, "--port",
                                         str(port), "--threads", "8"]), env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                sys.exit(f"closed_loop: serve exited ({proc.returncode}); see {log}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                sys.exit(f"closed_loop: serve not ready after 300 s; see {log}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        proc.wait(60)


def fold_home(base: Path, home: Path) -> Path:
    """A home of its own (its own UBI logs and keys) that shares the base home's indices and model exports."""
    home.mkdir(parents=True, exist_ok=True)
    (base / "onnx").mkdir(parents=True, exist_ok=True)  # one query-encoder export for every fold
    for name in ("embedded", "onnx"):
        link = home / name
        if not link.exists() and (base / name).exists():
            link.symlink_to((base / name).resolve())
    return home


def learnt_profile(d: Path, args: argparse.Namespace) -> Path:
    """A profiles folder holding the learnt profile: the packaged one, its stages ordering only the top ``--depth``
    (a ranker learnt from the logs saw the logged first page only; deeper it would rank what it never saw) and its
    cross-encoder without a latency budget; with ``--explore``, also `default` exploring that share of its served
    first pages.

    The budget goes because this measures ranking, not latency: on a loaded 2-core box the cross-encoder's 50
    pairs always overran the packaged 400 ms, so every interleaved search served the learnt profile degraded,
    without its cross-encoder (sessions 9-12's interleaving runs before this was found).
    """
    from shopsearch.plugin.profiles import ProfileStore

    folder = d / "profiles"
    folder.mkdir(exist_ok=True)
    text = ProfileStore().get(args.profile).path.read_text(encoding="utf-8")
    text = re.sub(r"\nbudget_ms = [0-9.]+\n", f"\nbudget_ms = {UNBOUNDED_MS}\n", text)
    if args.learn != "cross-encoder":  # a learnt cross-encoder keeps the profile's depths: no ranker follows it
        if "\ndepth = 50\n" not in text:
            sys.exit(f"closed_loop: the packaged {args.profile} profile no longer sets depth = 50; update "
                     "learnt_profile()")
        depth = args.depth if args.depth is not None else (10 if args.learn == "logs" else 50)
        text = text.replace("\ndepth = 50\n", f"\ndepth = {depth}\n")
    if args.show_learnt and args.explore:  # its served lists explore as default's do
        if "explore" in tomllib.loads(text):
            sys.exit(f"closed_loop: the packaged {args.profile} profile now has an [explore] table; update "
                     "learnt_profile()")
        text += f"\n[explore]\nshare = {args.explore}\n"
    (folder / f"{args.profile}.toml").write_text(text, encoding="utf-8")
    if args.explore:
        default = ProfileStore().get("default").path.read_text(encoding="utf-8")
        if "\n[explore]\n" not in default or "\nshare = 0.0\n" not in default:
            sys.exit("closed_loop: the packaged default profile no longer sets [explore] share = 0.0; update "
                     "learnt_profile()")
        (folder / "default.toml").write_text(default.replace("\nshare = 0.0\n", f"\nshare = {args.explore}\n"),
                                             encoding="utf-8")
    return folder


def serving_env(f: int, d: Path, args: argparse.Namespace, base_env: dict[str, str]) -> dict[str, str]:
    """What every fold's ``serve`` runs with: the fold's models and profiles, no rate limit (one client IP plays
    every shopper) and a long deadline, so a loaded 2-core box serves no page degraded (not what this measures)."""
    return {**base_env, "SHOPSEARCH_RATE_LIMITS": "false", "SHOPSEARCH_SEARCH_DEADLINE_MS": str(UNBOUNDED_MS),
            "SHOPSEARCH_MODELS": str(models_with_links(d / "models", args.link, f)),
            "SHOPSEARCH_PROFILES": str(learnt_profile(d, args))}


def write_experiment(path: Path, name: str, description: str, mode: str,
                     arms: list[tuple[str, float | None]]) -> Path:
    """An experiments file of one experiment (reranker/experiments.example.toml): arms as (profile, share), share
    None for an interleaving's arms."""
    cells = ", ".join(f"{{ profile = {json.dumps(profile)}" + ("" if share is None else f", share = {share}") + " }"
                      for profile, share in arms)
    path.write_text(f"[experiments.{name}]\ndescription = {json.dumps(description)}\nmode = {json.dumps(mode)}\n"
                    f"arms = [{cells}]\n", encoding="utf-8")
    return path


def relink(link: Path, target: Path) -> None:
    """Point the fold's model ``link`` at ``target`` (a model folder), whatever it pointed at before."""
    link.unlink(missing_ok=True)
    link.symlink_to(target.resolve())


def search_key(env: dict[str, str]) -> str:
    """A fresh search-role API key in the home's keys file (the API then refuses keyless calls)."""
    return sh(["shopsearch", "keys", "create", "--role", "search", "--name", "simulated-shoppers"],
              env).strip().splitlines()[0]


def kendall_tau(logged_qrels: Path, logged_queries: Path, human_queries: dict[str, str],
                human: dict[str, dict[str, int]]) -> tuple[float, int]:
    """Kendall tau-b of click-model grades against the human grades of the same (query text, product) pairs."""
    from scipy.stats import kendalltau

    from shopsearch.judgments import query_ids_by_text, read_qrels, read_queries
    from shopsearch.text import normalise_query

    by_text = query_ids_by_text(human_queries.items(), judged=human)
    text_of = {q.qid: normalise_query(q.text) for q in read_queries(logged_queries)}
    a, b = [], []
    for r in read_qrels(logged_qrels):
        hq = by_text.get(text_of.get(r.query_id, ""))
        if hq is not None and r.doc_id in human.get(hq, {}):
            a.append(r.relevance)
            b.append(human[hq][r.doc_id])
    return (float(kendalltau(a, b).statistic) if len(a) > 1 else float("nan")), len(a)


def learn_cross_encoder(f: int, d: Path, args: argparse.Namespace, env: dict[str, str], models: Path) -> None:
    """Fine-tune the learnt profile's cross-encoder on the fold's click-model qrels and serve it in its place.

    The qrels become a judged folder of the shared layout (the catalog linked, no raw ratings: the calibration maps
    onto the click grades) whose queries all train, a tenth of them validating for early stopping. The recipe is the
    per-fold cross-encoders' on crowdflower's human judgments (bench/RESULTS.md, session 15) without their mined
    hard negatives: those label top hits the judgments leave out irrelevant, and click-model qrels leave out every
    product shoppers were not shown, relevant or not (on session 21's seed-4 logs: +0.0163 nDCG@10 over `default`
    without them, +0.0117 with 10 per query; bench/RESULTS.md, session 23). The fold's test queries are never
    searched or trained on.
    """
    name = cross_encoder_of(args)
    # from the linked model, not the fold's models entry: a rerun would otherwise start from its last learnt one
    base = link_targets(args.link, f)[name]
    # named for what it holds, so the model's card and calibration do not pass for the human judgments'
    clicks = d / "clicks" / f"{Path(args.data).name}-clicks"
    clicks.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(d / "logs-qrels.txt", clicks / "qrels-dev.txt")
    shutil.copyfile(d / "logs-qrels-queries.tsv", clicks / "queries-dev.tsv")
    if not (clicks / "products.jsonl").exists():
        (clicks / "products.jsonl").symlink_to((Path(args.data) / "products.jsonl").resolve())
    out = d / f"{name}-learnt"
    sh(["shopsearch", "train", "cross-encoder", "--base-model", str(base), "--train", str(clicks),
        "--out", str(out), "--test-fraction", "0", "--valid-fraction", "0.1", "--epochs", "2", "--batch-size", "32",
        "--lr", "3e-5", "--warmup-ratio", "0.05", "--max-length", "48", "--max-valid-pairs", "100000",
        "--eval-steps", "50", "--patience", "4", "--seed", str(args.seed), "--loss", "lambda", "--list-size", "16",
        "--no-progress"], env, d / "train.txt")
    relink(models / name, out)


def cross_encoder_of(args: argparse.Namespace) -> str:
    """The model name of the learnt profile's cross-encoder stage (``[rerank] model``; "" when it has none)."""
    from shopsearch.plugin.profiles import ProfileStore

    return ProfileStore().get(args.profile).rerank.model or ""


def shopper_seed(args: argparse.Namespace, n: int) -> int:
    """The simulated shoppers' seed for stream ``n`` (a fold's training traffic, or 1000 + fold interleaved)."""
    return 10_000 * args.seed + n


def run_fold(f: int, args: argparse.Namespace, base_env: dict[str, str], base_home: Path, data) -> dict:
    from shopsearch.judgments import Query, write_queries
    from shopsearch.reranker.features import DEFAULT_MODEL_FEATURES
    from shopsearch.reranker.training_data import split_queries

    d = Path(args.work) / f"fold{f}"
    d.mkdir(parents=True, exist_ok=True)
    split = split_queries(sorted(data.queries), folds=args.folds, fold=f, valid_fraction=0.0, seed=args.seed)
    train, test = sorted(split.train), sorted(split.test)
    write_queries(d / "train.tsv", [Query(q, data.queries[q]) for q in train])
    write_queries(d / "test.tsv", [Query(q, data.queries[q]) for q in test])
    print(f"fold {f}: {len(train)} training queries (simulated traffic), {len(test)} test queries (human qrels)",
          flush=True)
    learnt = args.profile
    env = serving_env(f, d, args, base_env)
    models = Path(env["SHOPSEARCH_MODELS"])
    env["SHOPSEARCH_HOME"] = str(fold_home(base_home, d / "home"))
    key = search_key(env)
    train_env = env
    if args.show_learnt:
        # the profile as it starts: a rerun of the fold would otherwise serve the model it learnt last time
        name = cross_encoder_of(args)
        relink(models / name, link_targets(args.link, f)[name])
        experiments = write_experiment(
            d / "train-experiments.toml", TRAIN_EXPERIMENT, f"SIMULATED: training traffic, {learnt} with the "
            "cross-encoder it starts from shown to a share of the shoppers", "ab",
            [("default", 1 - args.show_learnt), (learnt, args.show_learnt)])
        train_env = {**env, "SHOPSEARCH_EXPERIMENTS_FILE": str(experiments)}
    t0 = time.perf_counter()
    with serving(args.index, train_env, d / "serve.log") as url:
        sh(["shopsearch", "simulate-traffic", "--url", url, "--data", args.data, "--sessions", str(args.sessions),
            "--queries", str(d / "train.tsv"), "--seed", str(shopper_seed(args, f)), "--concurrency",
            str(args.concurrency), "--key", key], train_env, d / "traffic.txt")
    traffic_s = time.perf_counter() - t0
    sh(["shopsearch", "judgments", "from-logs", "--model", args.click_model, "--out", str(d / "logs-qrels.txt"),
        "--min-impressions", str(args.min_impressions), "--engine", "embedded"], env, d / "judgments.txt")
    tau, pairs = kendall_tau(d / "logs-qrels.txt", d / "logs-qrels-queries.tsv", data.queries, data.qrels)
    print(f"  click-model grades vs human grades: Kendall tau {tau:.3f} over {pairs} pairs", flush=True)
    features = [n for n in DEFAULT_MODEL_FEATURES if n not in BEHAVIOUR]
    members = ["--members", str(args.members)] if args.members is not None else []
    if args.learn == "cross-encoder":
        learn_cross_encoder(f, d, args, env, models)
    elif args.learn == "logs":
        sh(["shopsearch", "train", "ranker", "--logs", "--index", args.index, "--engine", "embedded", "--out",
            str(models / learnt), "--features", ",".join(features), "--no-progress", *members], env, d / "train.txt")
    else:
        sh(["shopsearch", "train", "ranker", "--judgments", str(d / "logs-qrels.txt"), "--queries",
            str(d / "logs-qrels-queries.tsv"), "--index", args.index, "--engine", "embedded", "--profile", learnt,
            "--out", str(models / learnt), "--no-progress", *members], env, d / "train.txt")
    sh(["shopsearch", "compare", "--index", args.index, "--engine", "embedded", "--no-budget", "--json",
        "--queries", str(d / "test.tsv"), "--qrels", str(Path(args.data) / "qrels-dev.txt"), "default", learnt],
       env, d / "compare.json")
    result = {"fold": f, "profile": learnt, "train_queries": len(train), "test_queries": len(test),
              "sessions": args.sessions, "explore": args.explore, "show_learnt": args.show_learnt, "seed": args.seed,
              "members": args.members or 1,
              "traffic_s": round(traffic_s, 1), "tau": tau, "tau_pairs": pairs}
    interleave(f, d, args, env, base_home, result)
    return result


def interleave_again(f: int, args: argparse.Namespace, base_env: dict[str, str], base_home: Path) -> dict:
    """Only the interleaving phase, with the fold's learnt model already in ``--work``; the earlier run's
    interleaved logs are kept beside it (``home-interleave-<n>``)."""
    d = Path(args.work) / f"fold{f}"
    result = json.loads((d / "result.json").read_text(encoding="utf-8"))
    if result.get("seed", 0) != args.seed:  # its folds were drawn with that seed; its shoppers should be too
        sys.exit(f"closed_loop: {d} was run with --seed {result.get('seed', 0)}; pass that seed")
    if (d / "home-interleave").exists():
        n = 1 + sum(1 for _ in d.glob("home-interleave-*"))
        for name in ("home-interleave", "serve-interleave.log", "traffic-interleave.txt"):
            if (d / name).exists():
                stem, dot, ext = name.partition(".")
                shutil.move(str(d / name), str(d / f"{stem}-{n}{dot}{ext}"))
    env = serving_env(f, d, args, base_env)
    print(f"fold {f}: interleaving again, {env['SHOPSEARCH_PROFILES']} unbudgeted", flush=True)
    interleave(f, d, args, env, base_home, result)
    return result


def interleave(f: int, d: Path, args: argparse.Namespace, env: dict[str, str], base_home: Path,
               result: dict) -> None:
    """The learnt profile against `default` by team-draft interleaving on the fold's test queries; writes
    ``result.json``."""
    learnt = args.profile
    if args.interleave_sessions:
        experiments = write_experiment(d / "experiments.toml", EXPERIMENT,
                                       f"SIMULATED: {learnt} learnt from fold {f}'s logs against default",
                                       "interleave", [("default", None), (learnt, None)])
        il_env = {**env, "SHOPSEARCH_HOME": str(fold_home(base_home, d / "home-interleave")),
                  "SHOPSEARCH_EXPERIMENTS_FILE": str(experiments)}
        il_key = search_key(il_env)
        with serving(args.index, il_env, d / "serve-interleave.log") as url:
            sh(["shopsearch", "simulate-traffic", "--url", url, "--data", args.data, "--sessions",
                str(args.interleave_sessions), "--queries", str(d / "test.tsv"), "--seed",
                str(shopper_seed(args, 1000 + f)), "--concurrency", str(args.concurrency), "--key", il_key],
               il_env, d / "traffic-interleave.txt")
        result["interleave_sessions"] = args.interleave_sessions
        # what was served is only the profile as designed when no stage was cut short
        result["interleave_degraded_stages"] = (d / "serve-interleave.log").read_text(
            encoding="utf-8", errors="replace").count("stage degraded")
        print(f"  interleaved searches with a stage degraded (serve log): {result['interleave_degraded_stages']}",
              flush=True)
    (d / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def pooled_interleaving(dirs: list[Path], learnt: str) -> list[str]:
    """The interleaving preference over every fold's interleaved searches, and p after the first n of them."""
    from shopsearch.api.experiment_report import POWER, experiment_report
    from shopsearch.plugin.ubi_store import JsonlUbiStore

    queries, events = [], []
    for d in dirs:  # fold by fold, each in time order: "the first n sessions" follows the run
        store = JsonlUbiStore(d / "home-interleave" / "ubi")
        queries += [q for q in store.iter_queries() if q.query_attributes.get("experiment") == EXPERIMENT]
        events += list(store.iter_events())
    full = experiment_report(EXPERIMENT, queries, events, arms=["default", learnt]).preference
    rows = [f"interleaving, {learnt} vs default, SIMULATED shoppers on test queries: {full.searches} searches, "
            f"{learnt} wins {full.wins} / loses {full.losses} / ties {full.ties}, {learnt} share of decided "
            f"{full.share.value:.3f} [{full.share.low:.3f}, {full.share.high:.3f}], p = {full.p:.2g} (exact binomial)"
            + (f"; at that share about {full.searches_needed} searches give {POWER:.0%} power"
               if full.searches_needed and not full.significant else ""),
            "| sessions | wins | losses | ties | p |", "|---:|---:|---:|---:|---:|"]
    for n in [c for c in CHECKPOINTS if c < len(queries)] + [len(queries)]:
        pr = experiment_report(EXPERIMENT, queries[:n], events, arms=["default", learnt]).preference
        rows.append(f"| {n} | {pr.wins} | {pr.losses} | {pr.ties} | {pr.p:.2g} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    add_fold_args(ap, "the embedded index of $SHOPSEARCH_HOME to serve")
    ap.add_argument("--fold", type=int, action="append", help="run only these folds (repeatable; default all)")
    ap.add_argument("--sessions", type=int, default=3000, help="simulated sessions per fold on training queries")
    ap.add_argument("--interleave-sessions", type=int, default=2000, help="interleaved sessions per fold (0: none)")
    ap.add_argument("--learn", choices=("logs", "judgments", "cross-encoder"), default="logs",
                    help="train ranker --logs, or --judgments on the click-model qrels, or fine-tune the profile's "
                         "cross-encoder on them (default logs)")
    ap.add_argument("--depth", type=int, help="results the learnt ranker orders (default: 10, the logged first "
                                              "page, for --learn logs; 50 for --learn judgments)")
    ap.add_argument("--profile", default="ltr",
                    help="the learnt profile, whose [conversion] ranker is trained (default ltr; ltr-ce needs "
                         "--learn judgments and its cross-encoder, see --link), or whose cross-encoder is "
                         "(rerank-ce, with --learn cross-encoder)")
    ap.add_argument("--link", action="append", default=[], metavar="NAME=PATH",
                    help="a model every fold's models folder also holds, e.g. ce-minilm=... ({fold} in PATH: the "
                         "fold's own; repeatable)")
    ap.add_argument("--explore", type=float, default=0.0, metavar="SHARE",
                    help="share of `default`'s first pages that explore while the training traffic is served "
                         "(FairPairs swaps within default's [explore] depth; default 0: none)")
    ap.add_argument("--show-learnt", type=float, default=0.0, metavar="SHARE",
                    help="share of the shoppers served the learnt profile, with the cross-encoder it starts from, "
                         "while the training traffic is served (an A/B experiment; --learn cross-encoder only; "
                         "default 0: `default` serves every shopper)")
    ap.add_argument("--seed", type=int, default=0,
                    help="the folds' split and the simulated shoppers' seed (default 0; another value replicates "
                         "the run independently)")
    ap.add_argument("--members", type=int, help="boosters of the learnt ranker (train ranker --members; default 1)")
    ap.add_argument("--click-model", choices=("coec", "pbm", "dbn"), default="pbm")
    ap.add_argument("--min-impressions", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--report-only", action="store_true", help="pool the folds already in --work")
    ap.add_argument("--interleave-only", action="store_true",
                    help="run only the interleaving again on the folds' learnt models already in --work")
    args = ap.parse_args(argv)
    if not 0.0 <= args.explore <= 1.0:
        ap.error(f"--explore {args.explore}: must be a share in [0, 1]")
    if not 0.0 <= args.show_learnt < 1.0:
        ap.error(f"--show-learnt {args.show_learnt}: must be a share in [0, 1)")
    if args.show_learnt and args.learn != "cross-encoder":
        ap.error("--show-learnt serves the learnt profile before it has learnt: only --learn cross-encoder's profile "
                 "can be served then (with the cross-encoder it starts from)")
    from shopsearch.plugin.profiles import ProfileStore, UnknownProfile

    try:
        profile = ProfileStore().get(args.profile)
    except UnknownProfile as e:
        ap.error(f"--profile {args.profile}: {e}")
    if args.learn == "cross-encoder":
        name = profile.rerank.model
        if not name or profile.conversion.enabled:
            ap.error(f"--learn cross-encoder: profile {args.profile} needs a [rerank] cross-encoder and no ranker "
                     "after it, which this would not train (try rerank-ce)")
        if name not in link_targets(args.link, 0):
            ap.error(f"--learn cross-encoder starts from the profile's cross-encoder: --link {name}=PATH")
        if args.members is not None or args.depth is not None:
            ap.error("--members and --depth are the learnt ranker's; --learn cross-encoder trains none")
    elif not profile.conversion.enabled:
        ap.error(f"--learn {args.learn} trains a ranker, and profile {args.profile} has no [conversion] stage to "
                 "serve it; --learn cross-encoder learns rerank-ce's cross-encoder")
    if args.learn == "logs" and args.profile != "ltr":
        ap.error("--learn logs trains on the features `default` logged while serving (no cross-encoder score); "
                 f"--profile {args.profile} needs --learn judgments")

    from shopsearch.reranker.sim_catalog import load_judged
    from shopsearch.settings import child_environment, load_settings

    base_home = load_settings().home
    env = {**child_environment(), "PYTHONUNBUFFERED": "1"}
    data = load_judged(args.data)
    folds = args.fold if args.fold is not None else list(range(args.folds))
    t0 = time.perf_counter()
    if args.report_only:
        results = []
    elif args.interleave_only:
        results = [interleave_again(f, args, env, base_home) for f in folds]
    else:
        results = [run_fold(f, args, env, base_home, data) for f in folds]
    dirs = [Path(args.work) / f"fold{f}" for f in folds]
    print("\nSIMULATED shoppers (reranker/simulate.py's model, satisfaction from the human grades)")
    for r in results:
        print(f"fold {r['fold']} (seed {r.get('seed', 0)}): {r['sessions']} sessions in {r['traffic_s']:.0f}s "
              f"(exploring share {r.get('explore', 0.0)}, learnt profile shown to {r.get('show_learnt', 0.0)}), "
              f"click-model tau {r['tau']:.3f} ({r['tau_pairs']} pairs)")
    print("\n".join(pooled_table([d / "compare.json" for d in dirs])))
    if all((d / "home-interleave" / "ubi").is_dir() for d in dirs):
        print()
        print("\n".join(pooled_interleaving(dirs, args.profile)))
    print(f"\nclosed loop: {len(dirs)} folds in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
