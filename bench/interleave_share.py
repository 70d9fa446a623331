"""What an interleaving experiment between two profiles can find, in expectation, before any traffic is spent
(issue 13) — SIMULATED shoppers.

The live experiment (bench/closed_loop.py, step 6) draws team-draft coins and shoppers one search at a time, so
its share carries both sources of noise. Here each test query's two rankings, as the fold serves them, are
interleaved with ``--coins`` fresh coins (reranker/interleaving.team_draft) and each list is shown to
``--shoppers`` simulated shoppers (reranker/simulate.decide: the human grades, unjudged products grade 0, the
same users as ``simulate-traffic``), clicks credited as the experiment report credits them
(interleaving.preference). The result is the share the live experiment converges to and the searches its sign
test needs for 80% power (api/experiment_report.searches_needed), beside each fold's nDCG@10 delta on the same
queries from its ``compare.json``.

    SHOPSEARCH_HOME=~/.cache/shopsearch/bench-home python bench/interleave_share.py \
        --work /tmp/loop-clicks-ce --data ../shared/data/crowdflower --index crowdflower

``--work`` is a closed-loop work folder: per fold, ``test.tsv``, ``models/``, ``profiles/`` and ``result.json``
(whose ``profile`` is the candidate; ``--candidate`` overrides it). Stages run without their budgets, as the
closed loop serves them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from shopsearch.settings import DEFAULT_MODEL

BASELINE = "default"
CANDIDATE = "candidate"  # the team label of whichever profile a fold's candidate is, so folds pool
DEPTH = 20  # each ranking's head given to the draft; a 10-result page never reaches past it


def expected_preference(a: Mapping[str, Sequence[str]], b: Mapping[str, Sequence[str]],
                        grades: Mapping[str, Mapping[str, int]], products: Mapping, max_grade: int, *,
                        coins: int, shoppers: int, seed: int = 25, page: int = 10,
                        names: tuple[str, str] = ("a", "b")) -> dict[str, list[Counter]]:
    """Per query and coin, how ``shoppers`` simulated searches of the team-draft interleaving of rankings ``a`` and
    ``b`` end: a Counter of ``names[0]`` / ``names[1]`` wins and ``None`` (ties, no clicks included).

    >>> from shopsearch.indexer.records import Product
    >>> ps = {p: Product(id=p, title=p, price=10.0, rating=4.0) for p in ("g", "x")}
    >>> out = expected_preference({"q": ["x", "g"]}, {"q": ["g", "x"]}, {"q": {"g": 3}}, ps, 3, coins=50,
    ...                           shoppers=20)
    >>> sum(c["b"] for c in out["q"]) > sum(c["a"] for c in out["q"])
    True
    """
    from shopsearch.reranker.interleaving import preference, team_draft
    from shopsearch.reranker.simulate import ShownProduct, SimParams, decide, make_users

    params = SimParams()
    users = make_users(params, np.random.default_rng(0))
    rng = np.random.default_rng(seed)
    out: dict[str, list[Counter]] = {}
    for qid in sorted(a):
        g = grades.get(qid, {})
        out[qid] = []
        for c in range(coins):
            tally = Counter()
            merged = team_draft(a[qid], b.get(qid, []), seed=f"{seed}:{qid}:{c}", teams=names, length=page)
            shown = [ShownProduct(i + 1, products.get(pid) or _bare(pid), g.get(pid, 0))
                     for i, pid in enumerate(merged.ids)]
            for _ in range(shoppers):
                user = users[int(rng.integers(len(users)))]
                clicks = [x.product_id for x in decide(params, shown, user, max_grade, rng) if x.type == "click"]
                tally[preference(merged.ids, merged.teams, clicks)] += 1
            out[qid].append(tally)
    return out


def _bare(pid: str):
    """A product the catalog file lacks, as simulate-traffic would show a hit without fields."""
    from shopsearch.indexer.records import Product
    from shopsearch.reranker.sim_catalog import with_simulated_attributes

    return with_simulated_attributes(Product(id=pid, title=""))


def fold_rankings(engine, encoder, d: Path, index: str, profiles: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """Each profile's top :data:`DEPTH` on the fold's test queries, through the fold's models and profiles (the
    engine and query bi-encoder shared by every fold). A search served degraded is reported on stderr."""
    from shopsearch.api.ranking_runs import rank_queries
    from shopsearch.judgments import read_queries
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.profiles import ProfileStore
    from shopsearch.reranker.model_registry import ModelRegistry
    from shopsearch.reranker.pipeline import RankingPipeline
    from shopsearch.settings import load_settings

    settings = load_settings({"engine": "embedded", "models_dir": str(d / "models"),
                              "profiles_dir": str(d / "profiles")})
    searcher = HybridSearcher(engine, index, encoder, ProfileStore(settings=settings), settings=settings)
    pipeline = RankingPipeline(searcher, ModelRegistry([d / "models"]), budgets=False)
    todo = {q.qid: q.text for q in read_queries(d / "test.tsv")}
    runs = {p: rank_queries(pipeline, todo, p, depth=DEPTH, progress=False) for p in profiles}
    for p, run in runs.items():
        if run.degraded:
            print(f"interleave_share: {d.name}: {run.degraded} searches of {p} served degraded", file=sys.stderr)
    return {p: run.rankings for p, run in runs.items()}


def summary(name: str, lists: Sequence[Counter], candidate: str = CANDIDATE) -> str:
    """One line: the candidate's expected share of decided searches with its 95% CI, and the searches needed.

    The interval is the simulation's error only (each interleaved list one cluster, since its shoppers share it),
    for these queries, shoppers and models: not the uncertainty of a live experiment."""
    from shopsearch.api.experiment_report import searches_needed

    wins = np.array([t[candidate] for t in lists], dtype=float)
    ties = np.array([t[None] for t in lists], dtype=float)
    n = np.array([sum(t.values()) for t in lists], dtype=float)
    decided = n - ties
    w, l = int(wins.sum()), int(decided.sum() - wins.sum())
    share = w / max(w + l, 1)
    half = 1.96 * np.sqrt(((wins - share * decided) ** 2).sum()) / max(w + l, 1)  # ratio estimator, clustered
    ties, n = int(ties.sum()), int(n.sum())
    needed = searches_needed(w, l, n, 0.05)
    return (f"{name}: expected share {share:.4f} [{share - half:.4f}, {share + half:.4f}] (simulation error), "
            f"decided {(w + l) / max(n, 1):.3f}; searches for 80% power at p < 0.05: "
            f"{needed if needed else 'never (no lean)'}" + (f" (the lean is to {BASELINE})" if share < 0.5 else ""))


def main(argv: list[str] | None = None) -> int:
    from scipy.stats import spearmanr

    from shopsearch.indexer.embedder import BiEncoder
    from shopsearch.plugin.engines import open_engine
    from shopsearch.reranker.sim_catalog import load_judged
    from shopsearch.settings import load_settings

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, help="a closed-loop work folder (fold*/ inside)")
    p.add_argument("--data", required=True, help="the judged folder the loop simulated from")
    p.add_argument("--index", required=True)
    p.add_argument("--candidate", help="the profile against default (default: each fold's result.json profile)")
    p.add_argument("--coins", type=int, default=500, help="team-draft coins per query (default 500)")
    p.add_argument("--shoppers", type=int, default=2, help="shoppers per interleaved list (default 2)")
    p.add_argument("--seed", type=int, default=25)
    p.add_argument("--model", default=DEFAULT_MODEL, help="the index's query bi-encoder")
    args = p.parse_args(argv)

    data = load_judged(args.data, whole_catalog=True)  # the rankings show unjudged products too
    products = data.products
    dirs = sorted(d for d in Path(args.work).glob("fold*") if (d / "result.json").is_file())
    if not dirs:
        sys.exit(f"interleave_share: no fold*/result.json under {args.work}")
    print("SIMULATED shoppers (the human grades), expected team-draft interleaving outcome per fold:", flush=True)
    pooled, prefs, deltas = [], [], []
    engine = open_engine("embedded", settings=load_settings({"engine": "embedded"}))  # the home's index, every fold
    encoder = BiEncoder(args.model)  # as `compare` loads it
    try:
        for d in dirs:
            candidate = args.candidate or json.loads((d / "result.json").read_text(encoding="utf-8"))["profile"]
            runs = fold_rankings(engine, encoder, d, args.index, (BASELINE, candidate))
            tallies = expected_preference(runs[BASELINE], runs[candidate], data.qrels, products, data.max_grade,
                                          coins=args.coins, shoppers=args.shoppers, seed=args.seed,
                                          names=(BASELINE, CANDIDATE))
            lists = [t for per_coin in tallies.values() for t in per_coin]
            pooled += lists
            line = summary(f"{d.name} ({len(tallies)} queries, {candidate})", lists)
            per_query = d / "compare.json"
            report = json.loads(per_query.read_text(encoding="utf-8")) if per_query.is_file() else {}
            if (report.get("a"), report.get("b")) == (BASELINE, candidate):  # the fold's comparison of these two
                line += f"; nDCG@10 delta {report['metrics']['ndcg@10']['delta']:+.4f}"
                for qid, per_coin in tallies.items():
                    scores = report["per_query"].get(qid)
                    if scores:
                        t = sum(per_coin, Counter())
                        prefs.append((t[CANDIDATE] - t[BASELINE]) / sum(t.values()))
                        deltas.append(scores["b"]["ndcg@10"] - scores["a"]["ndcg@10"])
            print(line, flush=True)
    finally:
        engine.close()
    print(summary(f"pooled ({len(pooled) // args.coins} queries, {args.coins} coins x {args.shoppers} shoppers "
                  "each)", pooled))
    if len(prefs) > 2:
        print(f"per query, Spearman of the expected preference against the nDCG@10 delta: "
              f"{spearmanr(prefs, deltas).statistic:.3f} ({len(prefs)} queries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
