"""Train the LightGBM ranker (the profiles' conversion stage) with query-grouped cross-validation and save it with
a model card.

Rows come from behaviour (events or UBI logs; targets ``purchase`` / ``click``) or from human judgments (target
``relevance``: graded labels of each judged query's served head). Folds group rows by query
(:func:`~.training_data.split_queries`, so no query is in both the training and the held-out part of a fold).
Each fold reports, for behaviour, AUC of the target and purchase-nDCG@10 over held-out lists with a purchase; for
judgments, nDCG@10 of the graded labels over each held-out head. The final model is fitted on all rows; for
lambdarank a Platt calibration fitted on the out-of-fold scores turns scores into probabilities (of a purchase,
a click, or a positive grade). Logged rows can be position-debiased: LightGBM 4's lambdarank learns a bias per
shown position (``Dataset(position=...)``) and ranks without it. ``tune_grid`` (``train ranker --tune``) first
chooses the trees' size, rows per leaf and round count on the same folds (:func:`tune`). ``members`` (``--members N``)
fits N boosters, each on a random share of the training queries, and scores their mean (:class:`~.conversion.Bag`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from shopsearch.atomic_write import write_atomically
from shopsearch.evaluation import auc, json_safe, mean_list_ndcg

from .conversion import CARD_VERSION, Bag, ConversionModel, card_members, platt
from .features import FEATURES
from .model_card import CARD_JSON, CARD_README, created_now
from .training_data import split_queries
from .training_rows import TrainingRows

OBJECTIVES = ("lambdarank", "binary")
TARGETS = ("purchase", "click", "relevance")
DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 20, "feature_fraction": 0.9,
    "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0, "num_threads": 2, "verbose": -1,
    "deterministic": True, "force_row_wise": True,
}
NUM_ROUNDS = 120
# Judgments give a few thousand rows (a few hundred queries x the head), events tens of thousands: smaller trees,
# more data per leaf and a stronger L2 keep the judged model from fitting single queries.
RELEVANCE_PARAMS: dict[str, Any] = {"num_leaves": 7, "min_data_in_leaf": 50, "lambda_l2": 10.0}
# What a grade g is worth to lambdarank's nDCG: "linear" g, as shopsearch.evaluation's nDCG@10 scores judgments
# (grade 3 counts 3x grade 1), or "exponential" 2^g - 1, LightGBM's default (grade 3 counts 7x grade 1).
LABEL_GAINS = ("linear", "exponential")
# `train ranker --tune`: the 36 settings (3 x 3 x 4 round counts) its query-grouped CV chooses among; an exact tie
# keeps the earlier one in this order. Every round count is read off one booster per grid point and fold.
TUNE_GRID: dict[str, tuple[int, ...]] = {"num_leaves": (3, 7, 15), "min_data_in_leaf": (20, 50, 100)}
TUNE_ROUNDS = (60, 120, 240, 480)
# `train ranker --members N`: each member learns from this share of the training queries (drawn without replacement),
# so the members disagree where a few judged queries decide a split, and their mean does not follow those queries.
MEMBER_QUERIES = 0.8
MAX_MEMBERS = 32  # --members: each adds a booster's training and scoring time
_MAX_LABEL = 31  # LightGBM's default label_gain covers labels 0..30


def resolve_label_gain(label_gain: str | None) -> str:
    """``label_gain``, or LightGBM's exponential default when None. Linear gains match how
    shopsearch.evaluation scores judgments, but on crowdflower they moved ``ltr-ce`` by +0.0008 nDCG@10
    (p = 0.71; bench/RESULTS.md, session 15) and homedepot was not re-measured, so the default stays.

    >>> resolve_label_gain(None), resolve_label_gain("linear")
    ('exponential', 'linear')
    """
    if label_gain is not None and label_gain not in LABEL_GAINS:
        raise ValueError(f"label_gain must be one of {', '.join(LABEL_GAINS)}; got {label_gain!r}")
    return label_gain or "exponential"


def label_gain_list(label_gain: str) -> list[float]:
    """LightGBM's ``label_gain``: the worth of labels 0..30.

    >>> label_gain_list("linear")[:4], label_gain_list("exponential")[:4]
    ([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 3.0, 7.0])
    """
    return [float(g if label_gain == "linear" else 2 ** g - 1) for g in range(_MAX_LABEL)]


@dataclass(frozen=True)
class TrainResult:
    """A fitted booster (or :class:`~.conversion.Bag`) plus everything the model card records."""

    booster: Any
    objective: str
    target: str
    params: dict[str, Any]
    folds: list[dict[str, float]]
    calibration: dict[str, float]
    importance_gain: dict[str, float]
    position_debias: bool = False
    tuning: dict[str, Any] | None = None  # what --tune tried and chose (:func:`tune`)


def _check(objective: str, target: str, folds: int) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    if target == "relevance" and objective != "lambdarank":
        raise ValueError(f"target 'relevance' (graded judgments) needs objective 'lambdarank'; got {objective!r}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2; got {folds!r}")


def labels(rows: TrainingRows, objective: str, target: str) -> np.ndarray:
    """Training labels: lambdarank on purchase or relevance: the rows' grades (behaviour: 0 none, 1 click,
    2 add_to_cart, 3 purchase; judgments: the human grade); else 0/1 of the target."""
    if objective == "lambdarank" and target in ("purchase", "relevance"):
        return rows.grades
    return (rows.purchased if target == "purchase" else rows.clicked).astype(int)


def binary_outcome(rows: TrainingRows, target: str) -> np.ndarray:
    """The 0/1 outcome the calibration and AUC use: purchase, click, or a positive grade."""
    if target == "relevance":
        return (rows.grades > 0).astype(int)
    return rows.purchased if target == "purchase" else rows.clicked


def group_folds(groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number (0..k-1) per row; every group (query) lands in one fold, the fold of
    :func:`~.training_data.split_queries` with ``folds=k`` and ``seed``.

    Raises:
        ValueError: fewer distinct groups than folds.
    """
    uniq = sorted(set(groups.tolist()))
    if len(uniq) < k:
        raise ValueError(f"folds={k} needs at least {k} distinct queries; got {len(uniq)} (lower --folds)")
    fold_of = {q: f for f in range(k)
               for q in split_queries(uniq, folds=k, fold=f, valid_fraction=0.0, seed=seed).test}
    return np.array([fold_of[g] for g in groups.tolist()])


def _group_sizes(list_ids: np.ndarray) -> list[int]:
    sizes: list[int] = []
    prev = None
    for lid in list_ids.tolist():
        if lid != prev:
            sizes.append(0)
            prev = lid
        sizes[-1] += 1
    return sizes


def member_seed(seed: int, i: int) -> int:
    """Member ``i``'s seed in a ranker trained with ``seed``: drawn from both, so rankers trained with neighbouring
    seeds share no member (``seed + i`` would make seed 1's members 0-2 seed 0's members 1-3)."""
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0] & 0x7FFFFFFF)


def member_queries(rows: TrainingRows, seed: int) -> np.ndarray:
    """Row mask of a member's queries: :data:`MEMBER_QUERIES` of ``rows``' distinct queries (at least one), drawn
    without replacement by ``seed`` (the member's, :func:`member_seed`)."""
    uniq = np.array(sorted(set(rows.query_ids.tolist())), dtype=object)
    n = max(1, round(MEMBER_QUERIES * len(uniq)))
    chosen = np.random.default_rng(seed).choice(len(uniq), size=n, replace=False)
    return np.isin(rows.query_ids, uniq[chosen])


def fit(rows: TrainingRows, objective: str, target: str, seed: int, params: dict[str, Any] | None = None,
        position_debias: bool = False, rounds: int = NUM_ROUNDS, members: int = 1):
    """One LightGBM booster of ``rounds`` trees on ``rows`` (no validation), or a bag of ``members``.

    ``position_debias`` (lambdarank only) hands LightGBM the shown positions, from which it learns a click bias
    per position alongside the ranker (unbiased lambdarank, LightGBM >= 4.1); the saved model scores without it.
    ``members`` > 1 returns a :class:`~.conversion.Bag` of that many boosters; member i is fitted with seed
    ``member_seed(seed, i)`` on the queries :func:`member_queries` draws with it.

    Raises:
        ValueError: ``position_debias`` with the binary objective; ``members`` < 1.
    """
    if position_debias and objective != "lambdarank":
        raise ValueError(f"position_debias needs objective 'lambdarank'; got {objective!r}")
    if members < 1:
        raise ValueError(f"members must be >= 1; got {members}")
    if members > 1:
        seeds = [member_seed(seed, i) for i in range(members)]
        return Bag([_fit_one(rows.subset(member_queries(rows, s)), objective, target, s, params, position_debias,
                             rounds) for s in seeds])
    return _fit_one(rows, objective, target, seed, params, position_debias, rounds)


def _fit_one(rows: TrainingRows, objective: str, target: str, seed: int, params: dict[str, Any] | None,
             position_debias: bool, rounds: int):
    import lightgbm as lgb

    p = {**DEFAULT_PARAMS, **(params or {}), "objective": objective, "seed": seed}
    if objective == "lambdarank":
        p.update({"eval_at": [10], "lambdarank_truncation_level": 20})
    ds = lgb.Dataset(rows.X, label=labels(rows, objective, target), feature_name=list(rows.names),
                     group=_group_sizes(rows.list_ids) if objective == "lambdarank" else None,
                     position=rows.positions.astype(np.int32) - 1 if position_debias else None,
                     free_raw_data=False)
    return lgb.train(p, ds, num_boost_round=rounds)


def evaluate(rows: TrainingRows, scores: np.ndarray, target: str = "purchase") -> dict[str, float]:
    """Behaviour: AUC of the target and purchase-nDCG@10 (lists with a purchase) of ``scores`` on ``rows``;
    relevance: nDCG@10 of the grades over each list with a positive grade, and AUC of a positive grade."""
    if target == "relevance":
        ndcg, n_lists = mean_list_ndcg(rows.list_ids, rows.grades, scores, 10)
        return {"ndcg@10": ndcg, "auc": auc(binary_outcome(rows, target), scores), "lists": n_lists,
                "rows": len(rows)}
    y = rows.purchased if target == "purchase" else rows.clicked
    ndcg, n_lists = mean_list_ndcg(rows.list_ids, rows.purchased, scores, 10)
    return {"auc": auc(y, scores), "purchase_ndcg@10": ndcg, "lists_with_purchase": n_lists, "rows": len(rows)}


def tuning_metric(target: str) -> str:
    """The :func:`evaluate` figure ``--tune`` maximises: nDCG@10 of judgments, purchase-nDCG@10, click AUC."""
    return {"relevance": "ndcg@10", "purchase": "purchase_ndcg@10", "click": "auc"}[target]


def tune(rows: TrainingRows, fold_of: np.ndarray, objective: str, target: str, seed: int,
         params: dict[str, Any], position_debias: bool = False, progress: bool = False, members: int = 1
         ) -> tuple[dict[str, Any], dict[int, Any]]:
    """Choose :data:`TUNE_GRID`'s setting and :data:`TUNE_ROUNDS`' round count by the mean held-out
    :func:`tuning_metric` over the folds ``fold_of`` numbers; ``params`` holds everything else.

    Returns:
        ``{"metric", "chosen": {setting..., "rounds"}, "score", "tried": [{setting..., "rounds", "score"}],
        "at_edge": [names]}`` (the chosen score is optimistic: the same folds chose it; ``at_edge``: the
        settings chosen at their grid's smallest or largest value, where one past it might score better), and
        fold -> the chosen setting's booster on the other folds, whose first ``rounds`` trees are what a fit of
        that many rounds grows.
    Raises:
        ValueError: no fold has a list the metric can score (e.g. purchase-nDCG@10 of rows without a purchase).
    """
    metric = tuning_metric(target)
    settings = [dict(zip(TUNE_GRID, values)) for values in product(*TUNE_GRID.values())]
    folds = sorted(set(fold_of.tolist()))
    scores = np.zeros((len(settings), len(TUNE_ROUNDS), len(folds)))
    boosters = {}
    jobs = [(i, j) for i in range(len(settings)) for j in range(len(folds))]
    if progress:
        from tqdm import tqdm

        jobs = tqdm(jobs, desc="tuning", unit="fit")
    for i, j in jobs:
        train_rows, test_rows = rows.subset(fold_of != folds[j]), rows.subset(fold_of == folds[j])
        booster = boosters[i, folds[j]] = fit(train_rows, objective, target, seed, {**params, **settings[i]},
                                              position_debias, rounds=max(TUNE_ROUNDS), members=members)
        for r, rounds in enumerate(TUNE_ROUNDS):
            held = booster.predict(test_rows.X, raw_score=True, num_iteration=rounds)
            scores[i, r, j] = evaluate(test_rows, held, target)[metric]
    if np.isnan(scores).all():
        raise ValueError(f"--tune: no fold has a list that {metric} can score; nothing to choose by")
    mean = np.nanmean(scores, axis=2)  # a fold the metric cannot score is NaN for every setting alike
    tried = [{**settings[i], "rounds": rounds, "score": float(mean[i, r])}
             for i in range(len(settings)) for r, rounds in enumerate(TUNE_ROUNDS)]
    k = max(range(len(tried)), key=lambda k: tried[k]["score"])  # max keeps the earliest of equal scores
    best, i = tried[k], k // len(TUNE_ROUNDS)
    grid = {**TUNE_GRID, "rounds": TUNE_ROUNDS}
    summary = {"metric": metric, "chosen": {key: v for key, v in best.items() if key != "score"},
               "score": best["score"], "tried": tried,
               "at_edge": [key for key, values in grid.items() if best[key] in (min(values), max(values))]}
    return summary, {f: boosters[i, f] for f in folds}


def tuned_setting(tuning: dict[str, Any]) -> str:
    """What :func:`tune` chose, as the card and the CLI say it: ``num_leaves 7, min_data_in_leaf 50, rounds 480``."""
    return ", ".join(f"{k} {v}" for k, v in tuning["chosen"].items())


def edge_note(tuning: dict[str, Any]) -> str:
    """What the card and the CLI add when :func:`tune` chose at its grid's edge, else "": the CV would have had
    to try past it to say the choice is best."""
    edge = tuning.get("at_edge") or []
    return f"at the edge of the grid in {', '.join(edge)}: a value past it was not tried" if edge else ""


def compare(rows: TrainingRows, candidate: np.ndarray, baselines: dict[str, np.ndarray],
            target: str = "purchase") -> dict[str, dict[str, float]]:
    """Metrics of every baseline's scores and of the candidate's on the same rows, baselines first.

    NaN baseline scores (a missing stage) rank last. Example: ``compare(test, model.predict(test.X),
    {"bm25": bm25_scores, "cross_encoder": ce_scores})``.
    """
    out = {}
    for name, scores in {**baselines, "candidate": candidate}.items():
        s = np.nan_to_num(np.asarray(scores, dtype=float), nan=-1e18)
        if len(s) != len(rows):
            raise ValueError(f"scores {name!r} have {len(s)} values for {len(rows)} rows")
        out[name] = evaluate(rows, s, target)
    return out


def train(rows: TrainingRows, *, objective: str = "lambdarank", target: str = "purchase", folds: int = 5,
          seed: int = 0, params: dict[str, Any] | None = None, progress: bool = False,
          position_debias: bool = False, label_gain: str | None = None, tune_grid: bool = False,
          members: int = 1) -> TrainResult:
    """Cross-validate by query, then fit the final model on every row.

    Args:
        rows: training rows (:func:`~.training_rows.build_rows`, :func:`~.judged_rows.judged_rows`,
            :func:`~.log_rows.log_rows`).
        objective, target: see :data:`OBJECTIVES`, :data:`TARGETS` (``relevance`` for judgments).
        folds: query-grouped CV folds (>= 2). seed: folds and LightGBM.
        position_debias: learn the shown positions' bias (logged rows; see :func:`fit`).
        label_gain: lambdarank's worth of a grade, one of :data:`LABEL_GAINS` (:func:`resolve_label_gain`).
        tune_grid: first choose the trees' size, rows per leaf and round count on the same folds (:func:`tune`),
            over any given in ``params``; the per-fold metrics are then those of the chosen setting, and optimistic.
        members: boosters of the ranker (:func:`fit`); every fold's model and the final one have that many.
    Returns:
        The final booster, per-fold metrics (:func:`evaluate`), calibration and gain importances.
    Raises:
        ValueError: bad objective/target/folds/members, too few queries, or no positive label.

    >>> train(judged_rows(pipeline, queries, qrels, "ltr"), target="relevance").folds[0]["ndcg@10"]  # doctest: +SKIP
    0.71
    """
    _check(objective, target, folds)
    label_gain = resolve_label_gain(label_gain) if objective == "lambdarank" else None
    params = {**(RELEVANCE_PARAMS if target == "relevance" else {}), **(params or {})}
    fit_params = {**params, **({"label_gain": label_gain_list(label_gain)} if label_gain else {})}
    y = labels(rows, objective, target)
    # The grades count clicks too: a log with clicks and no purchase would train a "purchase" model of nothing
    if not (y > 0).any() or not binary_outcome(rows, target).any():
        raise ValueError(f"no {target} in the events; cannot train a {target} model")
    fold_of = group_folds(rows.query_ids, folds, seed)
    rounds, tuning, tuned = NUM_ROUNDS, None, {}
    if tune_grid:
        tuning, tuned = tune(rows, fold_of, objective, target, seed, fit_params, position_debias, progress, members)
        chosen = dict(tuning["chosen"])
        rounds = chosen.pop("rounds")
        params, fit_params = {**params, **chosen}, {**fit_params, **chosen}
    oof = np.zeros(len(rows))
    results = []
    iterator = range(folds)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="cv folds", unit="fold")
    for f in iterator:
        train_rows, test_rows = rows.subset(fold_of != f), rows.subset(fold_of == f)
        # tuning fitted this fold's booster already, with more trees than the chosen rounds
        booster = tuned[f] if f in tuned else fit(train_rows, objective, target, seed, fit_params, position_debias,
                                                  rounds, members)
        oof[fold_of == f] = booster.predict(test_rows.X, raw_score=True, num_iteration=rounds)
        results.append({"fold": f, **evaluate(test_rows, oof[fold_of == f], target)})
    booster = fit(rows, objective, target, seed, fit_params, position_debias, rounds, members)
    outcome = binary_outcome(rows, target)
    a, b = platt(oof, outcome) if objective == "lambdarank" and not outcome.all() else (1.0, 0.0)
    if a <= 0:  # one outcome only, or scores that do not rise with it: a fit that would reverse the model's order
        a, b = 1.0, 0.0
    gain = booster.feature_importance(importance_type="gain")
    importance = dict(sorted(zip(rows.names, map(float, gain)), key=lambda t: -t[1]))
    recorded = {**DEFAULT_PARAMS, **params, "objective": objective, "seed": seed, "num_boost_round": rounds,
                "position_debias": position_debias, **({"label_gain": label_gain} if label_gain else {}),
                **({"members": members, "member_queries": MEMBER_QUERIES} if members > 1 else {})}
    return TrainResult(booster, objective, target, recorded, results, {"a": a, "b": b}, importance, position_debias,
                       tuning)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# The entries of per-fold metrics (:func:`evaluate`, plus the fold number) that are counts, not scores.
COUNT_KEYS = ("fold", "rows", "lists", "lists_with_purchase")


def _metric_keys(folds: list[dict[str, float]]) -> list[str]:
    """The score keys of per-fold metrics (counts and the fold number left out), in their order."""
    return [k for k in (folds[0] if folds else {}) if k not in COUNT_KEYS]


def save(result: TrainResult, rows: TrainingRows, out_dir: str | Path, data: dict[str, Any],
         heldout: dict[str, Any] | None = None) -> ConversionModel:
    """Write ``model.txt`` (and the other members), ``model_card.json`` and ``README.md`` to ``out_dir``; returns
    the loaded model.

    Args:
        result: what :func:`train` returned.
        rows: the rows it trained on (counted in the card).
        out_dir: the model folder (created).
        data: describes the training data (events or judgments path and sha256, data dir, simulated or not); its
            ``judgments`` or ``logs`` key names the card's source (else events).
        heldout: figures on queries held out of training altogether (``--fold``): the base order's and the
            model's metrics, the number of queries.
    Raises:
        OSError: the folder cannot be written.
    """
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    members = (result.booster if isinstance(result.booster, Bag) else Bag([result.booster])).save(d)
    keys = _metric_keys(result.folds)
    scored = {k: [f[k] for f in result.folds if not math.isnan(f[k])] for k in keys}
    mean = {k: float(np.mean(v)) if v else math.nan for k, v in scored.items()}  # NaN: no fold could be scored
    # where the rows came from, whatever the target (a relevance target learnt from events is still events')
    source = "judgments" if "judgments" in data else "logs" if "logs" in data else "events"
    card = {
        "card_version": CARD_VERSION, "name": d.name, "created": created_now(),
        "objective": result.objective, "target": result.target, "features": list(rows.names),
        "params": result.params, "members": members, "calibration": result.calibration,
        "data": {**data, "source": source, "rows": len(rows), "lists": len(set(rows.list_ids.tolist())),
                 "queries": len(set(rows.query_ids.tolist())), "clicks": int(rows.clicked.sum()),
                 "purchases": int(rows.purchased.sum())},
        "cv": {"group_by": "query", "folds": result.folds, "mean": mean},
        "importance_gain": result.importance_gain,
        **({"tuning": result.tuning} if result.tuning else {}),
        **({"heldout": heldout} if heldout else {}),
    }
    write_atomically(d / CARD_JSON, json.dumps(json_safe(card), indent=2) + "\n")
    write_atomically(d / CARD_README, render_card(card, {f.name: f.description for f in FEATURES}))
    # members left by a ranker of more members trained here before; gone once the card no longer lists them
    for stale in d.glob("model-*.txt"):
        if re.fullmatch(r"model-\d+\.txt", stale.name) and stale.name not in members:
            stale.unlink()
    return ConversionModel.load(d)


def render_card(card: dict[str, Any], meanings: dict[str, str]) -> str:
    """The README.md of a ranker's card: data, per-fold CV figures, held-out figures, features by gain (pure)."""
    data, cv = card["data"], card["cv"]
    keys = _metric_keys(cv["folds"])
    if data["source"] == "judgments":
        what = (f"{data['rows']} rows: the served head of {data['queries']} judged queries "
                f"(judgments sha256 `{data.get('judgments_sha256', '?')}`)")
    else:
        sim = " (SIMULATED events)" if data.get("simulated") else ""
        origin = (f"the UBI logs ({data['logs']})" if data["source"] == "logs"
                  else f"events sha256 `{data.get('events_sha256', '?')}`")
        what = f"{data['rows']} impressions{sim}; {origin}"
    debias = "; position-debiased" if card["params"].get("position_debias") else ""
    members = card_members(card)
    share = card["params"].get("member_queries", MEMBER_QUERIES)
    bag = (f" {len(members)} boosters, each fitted on {share:.0%} of the training queries; it scores their mean."
           if len(members) > 1 else "")
    lines = [f"# Ranker `{card['name']}`", "",
             f"LightGBM `{card['objective']}`, target `{card['target']}`{debias}, trained on {what}.{bag}", "",
             "## Cross-validation (folds grouped by query)", "",
             "| fold | " + " | ".join(keys) + " | rows |", "|---" * (len(keys) + 2) + "|"]
    lines += [f"| {f['fold']} | " + " | ".join(f"{f[k]:.4f}" for k in keys) + f" | {f['rows']} |"
              for f in cv["folds"]]
    lines += ["| mean | " + " | ".join(f"{cv['mean'][k]:.4f}" for k in keys) + " | |", ""]
    tuning = card.get("tuning")
    if tuning:
        chosen = tuned_setting(tuning)
        held_out = "; the held-out queries below are not" if card.get("heldout") else ""
        edge = edge_note(tuning)
        lines += [f"Tuned (`--tune`) on these folds over {len(tuning['tried'])} settings: chose {chosen} "
                  f"({tuning['metric']} {tuning['score']:.4f}{'; ' + edge if edge else ''}). The same folds chose "
                  f"it, so the figures above are optimistic{held_out}.", ""]
    held = card.get("heldout")
    if held:
        lines += [f"## Held-out queries ({held['queries']}, never trained on)", "",
                  "| order | " + " | ".join(held["model"]) + " |", "|---" * (len(held["model"]) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(f"{v:.4f}" for v in held[name].values()) + " |"
                  for name in ("incoming", "model")]
        lines.append("")
    lines += ["## Features (importance by gain)", "", "| feature | gain | meaning |", "|---|---|---|"]
    lines += [f"| {n} | {g:.1f} | {meanings[n]} |" for n, g in card["importance_gain"].items()]
    files = ", ".join(f"`{m}`" for m in members)
    lines += ["", f"Files: {files} (LightGBM text format), `model_card.json` (this card, machine-readable).", ""]
    return "\n".join(lines)
