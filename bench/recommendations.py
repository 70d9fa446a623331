"""Recommendations offline, on SIMULATED sessions: hit-rate@10 and nDCG@10 of "for you" and "frequently bought
together" against the popular-products baseline, each with a 95% CI (issue 14).

    SHOPSEARCH_HOME=~/.cache/shopsearch/test-home python bench/recommendations.py \
        --data ../shared/data/crowdflower --index crowdflower --sessions 3000 --seed 0

1. **Simulate** ``--sessions`` sessions of ``--users`` shoppers with the click/purchase simulator
   (reranker/simulate.py, docs/simulator.md; its defaults otherwise): every event is SIMULATED, and so is every
   figure here. The simulator's sessions end at the first purchase, so "bought together" here means bought by the
   same shopper within ``--basket-window-s`` (the serving rule), across their sessions.
2. **Leave last out**: per shopper with at least ``--min-targets`` ``--target`` events (purchase, or click), the
   last one is held out; the training log is every shopper's events before the session of their held-out event
   (that session and later ones are dropped, so its own click/cart never leak). Other shoppers' events before that
   point in time and after it both train (the usual leave-one-out protocol), so popularity sees a little of the
   future.
3. **Train** by writing that log where the serving history reads it and refreshing
   :class:`~shopsearch.reranker.event_context.EventLogHistory` once: the same code as GET /recommendations, with
   the simulated brands/categories of reranker/sim_catalog.py for the affinity.
4. **Score** per held-out shopper: ``for_you`` (context home; the shopper's vectors from ``--index``), ``bought
   together`` (context product, the product: the shopper's last training purchase; an empty list scores 0 and the
   coverage column says how often it was empty) and ``popular``. ``--candidates judged`` (default) searches only
   the products the simulator can show (the judged pool); ``all`` the whole index. Metrics:
   :func:`shopsearch.evaluation.held_out_scores`; CIs: the t-interval ``shopsearch compare`` uses
   (:func:`shopsearch.api.compare.mean_ci`), of the mean over shoppers and of the paired difference to popular.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

METHODS = ("for_you", "bought_together", "popular")
K = 10


def held_out_split(events: list, target: str, min_targets: int) -> tuple[list, dict[str, object]]:
    """(training events, user -> held-out event): each user's last ``target`` event is held out and their events
    from that session on are dropped; users with fewer than ``min_targets`` targets keep all their events.

    >>> held_out_split([], "purchase", 2)
    ([], {})
    """
    targets: dict[str, list] = {}
    for e in events:
        if e.type == target and e.user_id:
            targets.setdefault(e.user_id, []).append(e)
    held = {u: evs[-1] for u, evs in targets.items() if len(evs) >= min_targets}
    cut = {}  # user -> start of the held-out session
    for e in events:
        h = held.get(e.user_id)
        if h is not None and e.session_id == h.session_id:
            cut[e.user_id] = min(cut.get(e.user_id, e.time), e.time)
    train = [e for e in events if e.user_id not in cut or e.time < cut[e.user_id]]
    return train, held


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a judged data folder (products.jsonl, queries-dev.tsv, qrels)")
    p.add_argument("--index", required=True, help="the index (alias) holding that catalog's vectors")
    p.add_argument("--engine", choices=("embedded", "opensearch"), default=None, help="default: the settings'")
    p.add_argument("--sessions", type=int, default=3000)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", choices=("purchase", "click"), default="purchase")
    p.add_argument("--min-targets", type=int, default=2, help="held-out shoppers need this many target events")
    p.add_argument("--basket-window-s", type=float, default=86_400.0)
    p.add_argument("--candidates", choices=("judged", "all"), default="judged")
    p.add_argument("--affinity-weight", type=float, default=0.3)
    p.add_argument("--related-purchase", type=float, default=0.0,
                   help="the simulator's related_purchase: after a purchase, the chance of a follow-up session "
                        "over products of the bought one's (simulated) category (default 0: the plain simulator)")
    args = p.parse_args(argv)

    import numpy as np

    from shopsearch.api.compare import mean_ci
    from shopsearch.evaluation import held_out_scores
    from shopsearch.events import EventLog
    from shopsearch.plugin.engines import open_engine
    from shopsearch.reranker.event_context import EventLogHistory
    from shopsearch.reranker.recommendations import EngineCatalog, RecLimits, Recommender
    from shopsearch.reranker.sim_catalog import load_judged
    from shopsearch.reranker.simulate import SimParams, simulate
    from shopsearch.settings import load_settings

    settings = load_settings()
    data = load_judged(args.data)
    params = SimParams(sessions=args.sessions, users=args.users, seed=args.seed,
                       related_purchase=args.related_purchase)
    events = [e for _, session in simulate(data, params) for e in session]
    train, held = held_out_split(events, args.target, args.min_targets)
    if not held:
        print("no shopper has enough target events to hold one out", file=sys.stderr)
        return 1

    engine = open_engine(args.engine or settings.engine, settings=settings)
    try:
        only = tuple(sorted(data.products)) if args.candidates == "judged" else ()
        recommender = Recommender(EngineCatalog(engine, args.index, only=only), args.affinity_weight)
        with tempfile.TemporaryDirectory(prefix="recs-bench-") as tmp:
            EventLog(tmp).append(train)
            history = EventLogHistory(tmp, data.products.get, refresh_s=0, max_events=len(train) + 1,
                                      rec_limits=RecLimits(basket_window_s=args.basket_window_s))
            history.refresh()
            rankings: dict[str, dict[str, list[str]]] = {m: {} for m in METHODS}
            for user in sorted(held):
                home = history.recommendation_inputs(user, [], "home")
                rankings["for_you"][user] = [r.id for r in recommender.for_you(home, K).items]
                rankings["popular"][user] = [r.id for r in recommender.popular(home, K).items]
                seed = home.purchased[0] if home.purchased else None
                if seed is not None:
                    product = history.recommendation_inputs(user, [seed], "product")
                    rankings["bought_together"][user] = [r.id for r in
                                                         recommender.bought_together(product, K, {seed}).items]
    finally:
        engine.close()

    targets = {u: e.product_id for u, e in held.items()}
    scores = {m: held_out_scores(rankings[m], targets, K) for m in METHODS}
    users = sorted(held)
    n_train = len(train)
    print(f"SIMULATED: {args.sessions} sessions, {args.users} shoppers, seed {args.seed}, related_purchase "
          f"{args.related_purchase} (reranker/simulate.py defaults otherwise); held out: the last {args.target} "
          f"of {len(held)} shoppers with >= {args.min_targets}; {n_train} training events; candidates: "
          f"{args.candidates}; index {args.index}")
    print(f"| method | hit-rate@{K} [95% CI] | nDCG@{K} [95% CI] | Δ hit-rate vs popular [95% CI] | "
          f"Δ nDCG vs popular [95% CI] | non-empty lists |")
    print("|---|---|---|---|---|---|")
    for m in METHODS:
        row = [f"| {m}"]
        for metric in ("hit", "ndcg"):
            vals = np.array([getattr(scores[m][u], metric) for u in users])
            lo, hi = mean_ci(vals)
            row.append(f"{vals.mean():.3f} [{lo:.3f}, {hi:.3f}]")
        for metric in ("hit", "ndcg"):
            if m == "popular":
                row.append("—")
                continue
            diffs = np.array([getattr(scores[m][u], metric) - getattr(scores["popular"][u], metric) for u in users])
            lo, hi = mean_ci(diffs)
            row.append(f"{diffs.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]")
        row.append(f"{sum(1 for u in users if rankings[m].get(u))}/{len(users)}")
        print(" | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _main import finish

    finish(main)
