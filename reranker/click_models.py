"""Click models: relevance estimates for (query, product) pairs from logged result lists and their clicks.

A click says "shown, looked at, attractive"; a missing click may only mean "never looked at". A click model
separates the two so a product's estimate does not depend on where it happened to be shown:

- **COEC** (clicks over expected clicks): a pair's clicks divided by the clicks an average product would have
  got at the same positions, the position click-through rates (CTR priors) estimated from the logs themselves.
  1.0 = as clicked as an average product at those positions.
- **PBM** (position-based model): P(click) = attractiveness(q, d) x examination(rank), fitted by EM. Only the
  product is identified, so the reported attractiveness is scaled so that the most-examined rank has
  examination 1: the estimate is the pair's click probability where shoppers look most.
- **DBN** (dynamic Bayesian network, Chapelle & Zhang 2009), fitted by EM: the shopper scans down the list; an
  examined product is clicked with its attractiveness a(q, d); a clicked one satisfies with s(q, d) and ends the
  scan; otherwise the scan continues to the next rank with probability gamma. The estimate is a * s, the
  probability that the product satisfies a shopper who looks at it.

Input: :class:`SerpSession` records (one served first page, its clicks) built from UBI logs by
:func:`serp_sessions`. Output: a :class:`ClickModelFit` (one :class:`PairEstimate` per pair, with impressions,
clicks and an approximate standard error). :func:`grade_pairs` turns estimates into 0..3 grades.

Example:
    >>> s = [SerpSession("lamp", ("a", "b"), (True, False)), SerpSession("lamp", ("b", "a"), (False, False))]
    >>> fit = fit_click_model("coec", s)
    >>> [(p.doc_id, round(p.estimate, 2)) for p in fit.pairs]
    [('a', 2.0), ('b', 0.0)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from shopsearch.judgments import query_id_for
from shopsearch.text import normalise_query
from shopsearch.ubi import UbiEvent, UbiQuery

MODELS = ("coec", "pbm", "dbn")
MAX_GRADE = 3
# Grade g's share of a top grade's worth is its nDCG gain (2^g - 1) / 7, which is also how ERR and the DBN
# paper (Chapelle et al. 2009) map a grade to a satisfaction probability. A pair gets the grade whose gain is
# nearest, in log2(1 + 7 r), to its estimate r relative to the reference (a high quantile of all estimates):
# r < 0.059 -> 0, < 0.261 -> 1, < 0.665 -> 2, else 3.
GRADE_CUTS = tuple((2 ** (g + 0.5) - 1) / (2**MAX_GRADE - 1) for g in range(MAX_GRADE))
REFERENCE_QUANTILE = 0.95  # the estimate that counts as top grade: robust to a few lucky pairs
_EPS = 1e-6  # parameters stay inside (0, 1) so no session has likelihood 0


class SerpSession(NamedTuple):
    """One served result list: the normalised query, the product ids in served order, and which were clicked."""

    query: str
    docs: tuple[str, ...]
    clicked: tuple[bool, ...]


class PairEstimate(NamedTuple):
    """A click model's relevance estimate of one (query, product) pair and the evidence behind it."""

    query: str
    doc_id: str
    estimate: float
    stderr: float  # approximate standard error of the estimate (inf when there is no evidence)
    impressions: int
    clicks: int
    examinations: float = math.nan  # expected impressions looked at (PBM, DBN); nan where the model has none (COEC)


@dataclass(frozen=True)
class ClickModelFit:
    """A fitted click model: per-pair estimates (sorted by query, then estimate, best first) and its global
    parameters: ``positions`` = per-rank CTR prior (COEC) or examination (PBM), empty for DBN; ``continuation`` =
    DBN's gamma (None otherwise); ``iterations`` = EM iterations run (0 for COEC); ``converged`` = whether the
    EM's last iteration moved no parameter more than its tolerance (True for COEC, which has no EM)."""

    model: str
    pairs: tuple[PairEstimate, ...]
    positions: tuple[float, ...] = ()
    continuation: float | None = None
    iterations: int = 0
    converged: bool = True


class GradedPair(NamedTuple):
    """One graded judgment from clicks: the qrels line's fields and the evidence behind the grade."""

    qid: str
    query: str
    doc_id: str
    grade: int
    estimate: float
    stderr: float
    impressions: int
    clicks: int
    examinations: float = math.nan


@dataclass(frozen=True)
class SessionMatrix:
    """Sessions as arrays: ``pair[i, r]`` indexes ``pairs`` (``len(pairs)`` = padding past a list's end),
    ``click[i, r]`` is 1.0 for a click, ``valid[i, r]`` marks real positions."""

    pairs: tuple[tuple[str, str], ...]
    pair: np.ndarray
    click: np.ndarray
    valid: np.ndarray


class PbmParams(NamedTuple):
    """PBM's EM parameters as fitted (identified only up to attractiveness x examination)."""

    attractiveness: np.ndarray
    examination: np.ndarray
    iterations: int
    converged: bool = False  # the last iteration moved no parameter more than ``tol``


class DbnParams(NamedTuple):
    """DBN's EM parameters: per-pair attractiveness and satisfaction, the continuation probability gamma."""

    attractiveness: np.ndarray
    satisfaction: np.ndarray
    continuation: float
    iterations: int
    converged: bool = False  # the last iteration moved no parameter more than ``tol``


def serp_sessions(queries: Iterable[UbiQuery], events: Iterable[UbiEvent]) -> list[SerpSession]:
    """The first-page result lists of the UBI logs with their clicks, in query-log order.

    A click (``action_name == "click"``) belongs to the list of its ``query_id``; it marks the position its
    ``event_attributes.position.ordinal.index`` names when the product there is the clicked one, else the
    product's own position in that list; clicks on products the list did not show are ignored. Lists of later
    pages (``query_attributes.page`` > 1), empty lists and blank queries are left out: the models' position
    parameters describe the first page. So are lists not shown in relevance order (another ``sort``), explained
    searches (a relevance console's, no shopper's) and redirected searches (the storefront left the hits unseen).

    Args:
        queries: UbiQuery records (``user_query``, ``query_response_hit_ids``).
        events: UbiEvent records; only clicks are used.
    Returns:
        One SerpSession per kept list, query text normalised (:func:`shopsearch.text.normalise_query`).
    Example:
        >>> from shopsearch.ubi import UbiEventAttributes, UbiObject
        >>> q = UbiQuery(query_id="l1", user_query="Red Lamp", query_response_id="r1",
        ...              query_response_hit_ids=["p1", "p2"], timestamp="2024-01-01T00:00:00Z")
        >>> e = UbiEvent(action_name="click", query_id="l1", timestamp="2024-01-01T00:00:03Z",
        ...              event_attributes=UbiEventAttributes(object=UbiObject(object_id="p2")))
        >>> serp_sessions([q], [e])
        [SerpSession(query='red lamp', docs=('p1', 'p2'), clicked=(False, True))]
    """
    clicks: dict[str, list[tuple[str, int | None]]] = {}
    for ev in events:
        attrs = ev.event_attributes
        if ev.action_name != "click" or ev.query_id is None or attrs is None or attrs.object is None:
            continue
        position = ev.position  # None: no ordinal (a screen position, or 0)
        clicks.setdefault(ev.query_id, []).append((attrs.object.object_id, position))
    out = []
    for q in queries:
        key = normalise_query(q.user_query)
        # a page that is no number is not known to be the first; a list sorted by another key than relevance
        # says nothing of the positions' bias
        first = q.page is not None and q.page <= 1
        if not key or not q.query_response_hit_ids or not first or not q.in_relevance_order or not q.seen_by_shopper:
            continue
        docs = tuple(q.query_response_hit_ids)
        clicked = [False] * len(docs)
        for doc, position in clicks.get(q.query_id, ()):
            if position is not None and 1 <= position <= len(docs) and docs[position - 1] == doc:
                clicked[position - 1] = True
            elif doc in docs:
                clicked[docs.index(doc)] = True
        out.append(SerpSession(key, docs, tuple(clicked)))
    return out


def encode_sessions(sessions: Sequence[SerpSession]) -> SessionMatrix:
    """Sessions as padded arrays (pairs numbered in first-seen order).

    Raises:
        ValueError: no sessions, or a session whose ``clicked`` length differs from its ``docs``.
    """
    if not sessions:
        raise ValueError("sessions must hold at least one result list; got none")
    index: dict[tuple[str, str], int] = {}
    depth = max(len(s.docs) for s in sessions)
    rows = []
    for n, s in enumerate(sessions):
        if len(s.clicked) != len(s.docs):
            raise ValueError(f"sessions[{n}]: clicked has {len(s.clicked)} flags for {len(s.docs)} docs")
        rows.append([index.setdefault((s.query, d), len(index)) for d in s.docs])
    pair = np.full((len(sessions), depth), len(index), dtype=np.int64)
    click = np.zeros((len(sessions), depth))
    valid = np.zeros((len(sessions), depth), dtype=bool)
    for i, (s, row) in enumerate(zip(sessions, rows)):
        pair[i, : len(row)] = row
        click[i, : len(row)] = s.clicked
        valid[i, : len(row)] = True
    return SessionMatrix(tuple(index), pair, click, valid)


def _per_pair(m: SessionMatrix, values: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over each pair's impressions."""
    return np.bincount(m.pair[m.valid], weights=values[m.valid], minlength=len(m.pairs))


def _evidence(m: SessionMatrix) -> tuple[np.ndarray, np.ndarray]:
    return _per_pair(m, np.ones(m.click.shape)), _per_pair(m, m.click)


def _above_last(m: SessionMatrix) -> np.ndarray:
    """Impressions with a shown product after them in their list (where a DBN shopper could go on)."""
    inner = m.valid & np.roll(m.valid, -1, axis=1)
    inner[:, -1] = False
    return inner


def fit_coec(m: SessionMatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COEC per pair, its Poisson standard error sqrt(max(clicks, 1)) / expected, and the per-rank CTR priors.

    A pair whose expected clicks are 0 (every rank it was shown at had no click in the whole log) gets 0 and an
    infinite standard error.
    """
    shown = m.valid.sum(axis=0)
    ctr = np.divide(m.click.sum(axis=0), shown, out=np.zeros(shown.shape), where=shown > 0)
    expected = _per_pair(m, np.broadcast_to(ctr, m.click.shape))
    clicks = _per_pair(m, m.click)
    coec = np.divide(clicks, expected, out=np.zeros(clicks.shape), where=expected > 0)
    stderr = np.divide(np.sqrt(np.maximum(clicks, 1.0)), expected, out=np.full(clicks.shape, np.inf),
                       where=expected > 0)
    return coec, stderr, ctr


def fit_pbm(m: SessionMatrix, iterations: int = 100, tol: float = 1e-5) -> PbmParams:
    """PBM by EM from attractiveness = examination = 0.5, until no parameter moves more than ``tol``.

    E-step for a non-click: P(attractive | no click) = a(1 - e) / (1 - a e), P(examined | no click) =
    e(1 - a) / (1 - a e); a click is both. M-step: averages over each pair's impressions / each rank's lists.
    """
    _check_iterations(iterations, tol)
    n_pair, n_rank = _per_pair(m, np.ones(m.click.shape)), m.valid.sum(axis=0)
    a, e = np.full(len(m.pairs) + 1, 0.5), np.full(m.click.shape[1], 0.5)
    done, converged = 0, False
    for done in range(1, iterations + 1):
        ai, ei = a[m.pair], e[np.newaxis, :]
        miss = 1.0 - ai * ei
        post_a = m.click + (1 - m.click) * ai * (1 - ei) / miss
        post_e = m.click + (1 - m.click) * ei * (1 - ai) / miss
        new_a = np.append(np.divide(_per_pair(m, post_a), n_pair, out=np.full(len(m.pairs), 0.5), where=n_pair > 0),
                          0.0)
        new_e = np.divide(np.where(m.valid, post_e, 0).sum(axis=0), n_rank, out=np.full(n_rank.shape, 0.5),
                          where=n_rank > 0)
        new_a, new_e = np.clip(new_a, _EPS, 1 - _EPS), np.clip(new_e, _EPS, 1 - _EPS)
        moved = max(np.abs(new_a - a).max(), np.abs(new_e - e).max())
        a, e = new_a, new_e
        converged = moved <= tol
        if converged:
            break
    return PbmParams(a[:-1], e, done, converged)


def _forward_backward(m: SessionMatrix, a: np.ndarray, s: np.ndarray, gamma: float):
    """DBN forward (alpha) and backward (beta) messages over E_r, per session: arrays (sessions, ranks + 1, 2)."""
    ai, si = a[m.pair], s[m.pair]
    ai = np.where(m.valid, ai, 0.0)  # padding: never clicked whatever is examined, so it changes no likelihood
    p_c_e1 = np.where(m.click > 0, ai, 1 - ai)  # P(C_r | E_r = 1)
    p_c_e0 = 1.0 - m.click  # P(C_r | E_r = 0)
    cont = np.where(m.click > 0, gamma * (1 - si), gamma)  # P(E_r+1 = 1 | E_r = 1, C_r)
    n, depth = m.click.shape
    fwd, bwd = np.zeros((n, depth + 1, 2)), np.ones((n, depth + 1, 2))
    fwd[:, 0, 1] = 1.0
    for r in range(depth):
        stay = fwd[:, r, 1] * p_c_e1[:, r]
        fwd[:, r + 1, 1] = stay * cont[:, r]
        fwd[:, r + 1, 0] = stay * (1 - cont[:, r]) + fwd[:, r, 0] * p_c_e0[:, r]
    for r in range(depth - 1, -1, -1):
        bwd[:, r, 1] = p_c_e1[:, r] * (cont[:, r] * bwd[:, r + 1, 1] + (1 - cont[:, r]) * bwd[:, r + 1, 0])
        bwd[:, r, 0] = p_c_e0[:, r] * bwd[:, r + 1, 0]
    return fwd, bwd, ai, si


def _dbn_posteriors(m: SessionMatrix, a: np.ndarray, s: np.ndarray, gamma: float):
    """Per impression P(A=1 | clicks), P(S=1 | clicks) (clicks only), P(E=1 | clicks), and gamma's
    expected counts (continued, could continue) over all but each list's last position."""
    fwd, bwd, ai, si = _forward_backward(m, a, s, gamma)
    z = bwd[:, 0, 1][:, np.newaxis]
    not_examined = fwd[:, :-1, 0] * bwd[:, :-1, 0] / z
    post_a = np.where(m.click > 0, 1.0, ai * not_examined)
    post_s = np.where(m.click > 0, fwd[:, :-1, 1] * ai * si * bwd[:, 1:, 0] / z, 0.0)
    # E_r = 1 and S_r = 0 with the observed C_r: the shopper could go on to r + 1; did they?
    can = fwd[:, :-1, 1] * np.where(m.click > 0, ai * (1 - si), 1 - ai) / z
    went = can * gamma * bwd[:, 1:, 1]
    could = can * (gamma * bwd[:, 1:, 1] + (1 - gamma) * bwd[:, 1:, 0])
    inner = _above_last(m)
    return post_a, post_s, 1.0 - not_examined, went[inner].sum(), could[inner].sum()


def fit_dbn(m: SessionMatrix, gamma: float | None = None, iterations: int = 100, tol: float = 1e-5) -> DbnParams:
    """DBN by EM (forward-backward over examination) from a = s = 0.5 and gamma = 0.5, or a fixed ``gamma``.

    M-step: a = mean P(attractive | clicks) over the pair's impressions; s = mean P(satisfied | clicks) over its
    clicks (a never-clicked pair keeps its previous s); gamma = expected continuations / expected chances to
    continue (examined and not satisfied, above the last position).

    Raises:
        ValueError: ``gamma`` outside (0, 1], or a bad ``iterations``/``tol``.
    """
    _check_iterations(iterations, tol)
    if gamma is not None and not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1] or None (learned); got {gamma!r}")
    n_pair, n_click = _evidence(m)
    a, s = np.full(len(m.pairs) + 1, 0.5), np.full(len(m.pairs) + 1, 0.5)
    g = 0.5 if gamma is None else gamma
    done, converged = 0, False
    for done in range(1, iterations + 1):
        post_a, post_s, _, went, could = _dbn_posteriors(m, a, s, g)
        new_a = np.append(np.divide(_per_pair(m, post_a), n_pair, out=a[:-1].copy(), where=n_pair > 0), 0.0)
        new_s = np.append(np.divide(_per_pair(m, post_s), n_click, out=s[:-1].copy(), where=n_click > 0), 0.0)
        new_g = g if gamma is not None or could <= 0 else float(np.clip(went / could, _EPS, 1.0))
        new_a, new_s = np.clip(new_a, _EPS, 1 - _EPS), np.clip(new_s, _EPS, 1 - _EPS)
        moved = max(np.abs(new_a - a).max(), np.abs(new_s - s).max(), abs(new_g - g))
        a, s, g = new_a, new_s, new_g
        converged = moved <= tol
        if converged:
            break
    return DbnParams(a[:-1], s[:-1], g, done, converged)


def fit_click_model(model: str, sessions: Sequence[SerpSession], iterations: int = 100) -> ClickModelFit:
    """Fit ``model`` (one of :data:`MODELS`) to the sessions; estimates per pair with their evidence.

    Standard errors are approximate: COEC's Poisson error; PBM's binomial error of the attractiveness over the
    pair's expected examinations; DBN's delta-method error of a * s from a over expected examinations and s
    over the clicks that inform it (those above a list's last product).

    Raises:
        ValueError: an unknown ``model``, no sessions, ``iterations`` < 1.

    >>> fit_click_model("pbm", [SerpSession("lamp", ("a", "b"), (True, False))] * 3).pairs[0].doc_id
    'a'
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {model!r}")
    m = encode_sessions(sessions)
    shown, clicks = _evidence(m)
    if model == "coec":
        est, err, ctr = fit_coec(m)
        return _fit(model, m, est, err, shown, clicks, positions=tuple(ctr.tolist()))
    if model == "pbm":
        p = fit_pbm(m, iterations)
        top = float(p.examination.max())
        a, e = p.attractiveness * top, p.examination / top  # the most-examined rank is always examined
        ai, ei = np.append(a, 0.0)[m.pair], e[np.newaxis, :]
        examined = _per_pair(m, m.click + (1 - m.click) * ei * (1 - ai) / (1 - ai * ei))
        err = np.sqrt(a * (1 - a) / np.maximum(examined, 1.0))
        return _fit(model, m, a, err, shown, clicks, examined, positions=tuple(e.tolist()), iterations=p.iterations,
                    converged=p.converged)
    d = fit_dbn(m, iterations=iterations)
    examined = _per_pair(m, _dbn_posteriors(m, np.append(d.attractiveness, 0.0), np.append(d.satisfaction, 0.0),
                                            d.continuation)[2])
    # Nothing is observed after a list's last product, so a click there says nothing of satisfaction: a pair
    # clicked only there would keep EM's starting s (0.5) and be graded by it. It takes the s of the pairs whose
    # clicks do inform it (pooled over those clicks) instead; its likelihood is the same for any s.
    a, s = d.attractiveness, d.satisfaction.copy()
    informing = _per_pair(m, m.click * _above_last(m))
    if informing.sum() > 0:
        s[(informing == 0) & (clicks > 0)] = float((s * informing).sum() / informing.sum())
    var_a, var_s = a * (1 - a) / np.maximum(examined, 1.0), s * (1 - s) / np.maximum(informing, 1.0)
    err = np.sqrt(s**2 * var_a + a**2 * var_s)
    return _fit(model, m, a * s, err, shown, clicks, examined, continuation=d.continuation, iterations=d.iterations,
                converged=d.converged)


def _fit(model: str, m: SessionMatrix, est: np.ndarray, err: np.ndarray, shown: np.ndarray, clicks: np.ndarray,
         examined: np.ndarray | None = None, **params) -> ClickModelFit:
    looked = np.full(len(m.pairs), math.nan) if examined is None else examined
    pairs = [PairEstimate(q, d, float(est[i]), float(err[i]), int(shown[i]), int(clicks[i]), float(looked[i]))
             for i, (q, d) in enumerate(m.pairs)]
    pairs.sort(key=lambda p: (p.query, -p.estimate, p.doc_id))
    return ClickModelFit(model, tuple(pairs), **params)


def grade_for(relative: float) -> int:
    """The 0..3 grade of an estimate relative to the reference (see :data:`GRADE_CUTS`).

    >>> [grade_for(r) for r in (0.0, 0.1, 0.5, 1.0)]
    [0, 1, 2, 3]
    """
    return sum(relative >= cut for cut in GRADE_CUTS)


def grade_pairs(pairs: Iterable[PairEstimate], min_impressions: int = 10,
                reference_quantile: float = REFERENCE_QUANTILE) -> list[GradedPair]:
    """Grade the pairs shown at least ``min_impressions`` times; the others are left out, and so is a pair never
    clicked that the model thinks was looked at fewer than ``min_impressions`` times (``examinations``): shown
    deep in lists nobody scrolled, it has no evidence either way, and DBN, whose satisfaction a click alone informs,
    would keep its starting guess for it (graded 2 on a simulated cascade). COEC's pairs with no evidence (shown
    only at ranks nobody clicked: infinite standard error) are left out likewise.

    The reference is the ``reference_quantile`` of the graded pairs' estimates; each pair's grade is
    :func:`grade_for` of estimate / reference. When fewer of the pairs were clicked than lie above that quantile,
    the quantile would fall on pairs nobody clicked (0 for COEC, the EM's starting guess for PBM: every pair then
    graded 0, or 3), so it is taken over the clicked pairs instead; the switch is a step (at that share of clicked
    pairs the grades can jump), and logs that close to it are too thin to grade many pairs well either way. Query
    ids are :func:`shopsearch.judgments.query_id_for` of the normalised query.

    Raises:
        ValueError: ``min_impressions`` < 1 or ``reference_quantile`` outside (0, 1]; or no pair shown
            ``min_impressions`` times was ever clicked (nothing to grade from).

    >>> p = [PairEstimate("lamp", "a", 0.6, 0.1, 20, 9), PairEstimate("lamp", "b", 0.02, 0.01, 20, 0)]
    >>> [(g.doc_id, g.grade) for g in grade_pairs(p, reference_quantile=1.0)]
    [('a', 3), ('b', 0)]
    """
    if isinstance(min_impressions, bool) or not isinstance(min_impressions, int) or min_impressions < 1:
        raise ValueError(f"min_impressions must be an integer >= 1; got {min_impressions!r}")
    if not 0 < reference_quantile <= 1:
        raise ValueError(f"reference_quantile must be in (0, 1]; got {reference_quantile!r}")
    kept = [p for p in pairs if p.impressions >= min_impressions]
    if not kept:
        return []
    clicked = [p.estimate for p in kept if p.clicks > 0]
    if not clicked:
        raise ValueError(f"none of the {len(kept)} pairs shown {min_impressions} times or more was clicked: "
                         f"there is nothing to grade them from yet")
    # examinations nan (no examination model): kept; infinite stderr (COEC: shown only where nobody clicked): not
    kept = [p for p in kept if p.clicks > 0 or (not p.examinations < min_impressions and math.isfinite(p.stderr))]
    above = 1.0 - reference_quantile
    ref = float(np.quantile([p.estimate for p in kept] if len(clicked) > above * len(kept) else clicked,
                            reference_quantile))
    return [GradedPair(query_id_for(p.query), p.query, p.doc_id, grade_for(p.estimate / ref) if ref > 0 else 0,
                       p.estimate, p.stderr, p.impressions, p.clicks, p.examinations) for p in kept]


def _check_iterations(iterations: int, tol: float) -> None:
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1; got {iterations!r}")
    if not (tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a finite number >= 0; got {tol!r}")
