"""Training rows from behaviour events (or UBI logs): one row per impression, labelled by later outcomes in the same
list.

A list is (session_id, query_id). A click/add_to_cart/purchase labels the impression of the same product in
its list; one without ``query_id`` (real purchase logs) goes to the latest list of the session that showed the
product. Features use only events strictly before the list was shown (:class:`EventHistory`), so a row never
sees its own outcome.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from shopsearch.atomic_write import write_atomically
from shopsearch.events import Event
from shopsearch.indexer.records import Product
from shopsearch.plugin.search_types import ScoredHit
from shopsearch.text import normalise_query
from shopsearch.ubi import UbiEvent, UbiQuery, from_ubi_event

from .event_history import EventHistory, affinity_key, by_affinity
from .features import DEFAULT_MODEL_FEATURES, check_names, list_features

log = logging.getLogger(__name__)

# (query text, product ids) -> one stages dict per product, e.g. {"bm25": 7.1}
StagesFn = Callable[[str, Sequence[str]], list[dict[str, float]]]


@dataclass(frozen=True)
class TrainingRows:
    """Feature matrix and labels; rows of one list are contiguous, lists in the order they were shown."""

    names: tuple[str, ...]
    X: np.ndarray  # (n, len(names))
    list_ids: np.ndarray  # "session_id|query_id" per row
    query_ids: np.ndarray  # the CV group per row: the normalised query (events), the judged qid (judgments)
    positions: np.ndarray  # shown 1-based position
    clicked: np.ndarray  # 0/1
    carted: np.ndarray
    purchased: np.ndarray
    grades: np.ndarray  # graded label: behaviour 0 none, 1 click, 2 add_to_cart, 3 purchase; judgments: the grade
    stages: list[dict[str, float]] = field(default_factory=list, repr=False)  # retrieval stages per row

    def __len__(self) -> int:
        return len(self.list_ids)

    def subset(self, mask: np.ndarray) -> "TrainingRows":
        """The rows where ``mask`` is true (order kept, so lists stay contiguous)."""
        idx = np.flatnonzero(mask)
        return TrainingRows(self.names, self.X[idx], self.list_ids[idx], self.query_ids[idx], self.positions[idx],
                            self.clicked[idx], self.carted[idx], self.purchased[idx], self.grades[idx],
                            [self.stages[i] for i in idx] if self.stages else [])


_ROW_ARRAYS = ("X", "list_ids", "query_ids", "positions", "clicked", "carted", "purchased", "grades")


def concat_rows(parts: Sequence[TrainingRows]) -> TrainingRows:
    """Several row sets (same features, disjoint lists) as one, in the order given.

    Raises:
        ValueError: no parts, or parts with different feature names.
    """
    if not parts or len({p.names for p in parts}) != 1:
        raise ValueError(f"concat_rows: needs row sets with the same features; got {[p.names for p in parts]}")
    arrays = {k: np.concatenate([getattr(p, k) for p in parts]) for k in _ROW_ARRAYS}
    return TrainingRows(parts[0].names, stages=[s for p in parts for s in p.stages], **arrays)


def save_rows(rows: TrainingRows, path: str | Path, fingerprint: Mapping[str, object]) -> None:
    """Write ``rows`` to an ``.npz`` file with the ``fingerprint`` of what built them (:func:`load_rows` checks it).

    Raises:
        OSError: the file cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file, not a name: np.savez would add ".npz" to the temporary one
            np.savez_compressed(fh, **{k: getattr(rows, k) for k in _ROW_ARRAYS}, names=np.asarray(rows.names),
                                stages=np.asarray(json.dumps(rows.stages)),
                                fingerprint=np.asarray(json.dumps(dict(fingerprint), sort_keys=True)))

    write_atomically(path, write)  # a cut-off write never leaves a half file under the real name


def load_rows(path: str | Path, fingerprint: Mapping[str, object] | None) -> TrainingRows | None:
    """The rows :func:`save_rows` wrote to ``path``, or None when there is no such file or it was built from
    something else (another ``fingerprint``: other judgments, index version, profile or features; None: any)."""
    path = Path(path)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        if fingerprint is not None and str(z["fingerprint"]) != json.dumps(dict(fingerprint), sort_keys=True):
            return None
        arrays = {k: z[k] for k in _ROW_ARRAYS}
        return TrainingRows(tuple(str(n) for n in z["names"]), stages=json.loads(str(z["stages"])), **arrays)


@dataclass
class _List:
    key: tuple[str, str]
    query: str
    user: str | None
    start: object
    items: dict[str, int] = field(default_factory=dict)  # product id -> position
    outcomes: dict[str, set[str]] = field(default_factory=dict)


def _collect_lists(events: list[Event]) -> list[_List]:
    """The shown lists and each product's outcomes there (``events`` in time order).

    An outcome goes to the list its ``query_id`` names, even when stamped before it (clients send their own
    clock), and only if that list shows the product (one shown below the logged depth has no row: the event is
    not credited to another search). One without a known query_id (a checkout's purchase) goes to the session's
    latest earlier list where the shopper already engaged with the product, else its latest earlier list that
    showed it.
    """
    lists: dict[tuple[str, str], _List] = {}
    by_session: dict[str, list[_List]] = {}
    by_query: dict[str, _List] = {}  # a served query_id names one search, whatever session its events name
    for e in events:
        if e.type != "impression":
            continue
        key = (e.session_id, e.query_id or "")
        lst = lists.get(key)
        if lst is None:
            lst = lists[key] = _List(key, e.query or "", e.user_id, e.time)
            by_session.setdefault(e.session_id, []).append(lst)
            if e.query_id:
                by_query.setdefault(e.query_id, lst)
        lst.items.setdefault(e.product_id, e.position)
    for e in events:
        if e.type == "impression":
            continue
        named = (lists.get((e.session_id, e.query_id)) or by_query.get(e.query_id)) if e.query_id else None
        if named is not None:
            lst = named if e.product_id in named.items else None
        else:
            shown = [x for x in by_session.get(e.session_id, []) if e.product_id in x.items and x.start <= e.time]
            engaged = [x for x in shown if e.product_id in x.outcomes]
            lst = (engaged or shown or [None])[-1]
        if lst is not None:
            lst.outcomes.setdefault(e.product_id, set()).add(e.type)
    return sorted(lists.values(), key=lambda x: x.start)


class LoggedEvents(NamedTuple):
    """UBI logs as :func:`build_rows` reads them: impressions and outcomes as Events, the logged stage values
    of each query's top K (query_id -> product id -> stages), and the posted events as the serving history counted
    them (``history``: the clients' impressions, clicks, carts and purchases)."""

    events: list[Event]
    stages: dict[str, dict[str, dict[str, float]]]
    history: list[Event] | None = None


def logged_events(queries: Iterable[UbiQuery], events: Iterable[UbiEvent]) -> LoggedEvents:
    """The UBI query and event logs as impressions + outcomes, keeping only the products whose features were
    logged (``query_attributes.features``, the served top K): those are the rows a ranker can learn from
    without recomputing a stage.

    Searches no shopper saw (explained, redirected: :attr:`~shopsearch.ubi.UbiQuery.seen_by_shopper`), sorted by
    another key than relevance or served degraded are left out. A query's impressions carry its session
    (``query_attributes.session_id``, else its client_id, else the search alone), user, text and
    served position (page offset included); click / add_to_cart / purchase events are converted with
    :func:`~shopsearch.ubi.from_ubi_event`, other actions ignored.

    >>> logged_events(ubi_queries, ubi_events).stages["q1"]["p7"]  # doctest: +SKIP
    {'bm25': 7.1, 'bm25_rank': 1.0, 'knn': 0.83, 'knn_rank': 4.0, 'fused': 0.031}
    """
    out: list[Event] = []
    stages: dict[str, dict[str, dict[str, float]]] = {}
    for q in queries:
        attrs = q.query_attributes
        logged = attrs.get("features") or {}
        # The ranker orders relevance lists as its profile serves them: a list sorted by another key, or served
        # degraded (a stage cut short), is not one it would have ranked, and its positions would skew the debiasing.
        ranked = q.in_relevance_order and not attrs.get("degraded")
        if not logged or not q.user_query.strip() or not q.seen_by_shopper or not ranked or q.page is None:
            continue
        try:  # UBI stores query_attributes as strings ("10"); a list whose positions cannot be read is left out
            offset = (q.page - 1) * int(attrs.get("size", len(q.query_response_hit_ids)))
        except (TypeError, ValueError):
            continue
        # A search that named no shopper (a plain API call) is a session of its own.
        session = attrs.get("session_id") or q.client_id or f"search-{q.query_id}"
        stages[q.query_id] = {pid: dict(v) for pid, v in logged.items()}
        out += [Event(type="impression", query_id=q.query_id, query=q.user_query, product_id=pid,
                      position=offset + i, user_id=attrs.get("user_id"), session_id=session,
                      timestamp=q.timestamp, simulated=q.simulated)
                for i, pid in enumerate(q.query_response_hit_ids, 1) if pid in logged]
    posted: list[Event] = []
    unreadable = 0
    for e in events:
        if e.action_name in _HISTORY:
            try:
                posted.append(from_ubi_event(e))
            except ValueError:  # another UBI client's event without a product: nothing to count or credit
                unreadable += 1
    if unreadable:
        log.warning("%d UBI events without a product left out", unreadable)
    out += [e for e in posted if e.type in _OUTCOMES]
    # The serving history (reranker/event_context.py) counts what clients post, their impressions included, not
    # the logged top K: ctr and impressions_log learnt from the logs must count the same way.
    return LoggedEvents(out, stages, posted)


_OUTCOMES = ("click", "add_to_cart", "purchase")
_HISTORY = ("impression", *_OUTCOMES)


def build_rows(events: Iterable[Event], products: Mapping[str, Product],
               names: Sequence[str] = DEFAULT_MODEL_FEATURES, stages_fn: StagesFn | None = None,
               progress: bool = False, logged: Mapping[str, Mapping[str, dict[str, float]]] | None = None,
               history_events: Iterable[Event] | None = None) -> TrainingRows:
    """Turn an event stream into labelled feature rows.

    Args:
        events: any order; they are sorted by timestamp (stable).
        products: product id -> Product (price, brand...); unknown products get NaN product features.
        names: the feature columns.
        stages_fn: retrieval stages per (query, list), e.g. :class:`Bm25Scorer`; none -> retrieval features NaN.
        progress: show a tqdm bar over lists.
        logged: stage values as served, query_id -> product id -> stages (:func:`logged_events`); a list whose
            query_id is there takes them instead of ``stages_fn``.
        history_events: what the event features (ctr, affinity...) count, as the serving history counts it
            (:attr:`LoggedEvents.history`); None: ``events`` themselves.

    Raises:
        ValueError: an unknown feature name, or no impressions at all.
    """
    check_names(names)
    evs = sorted(events, key=lambda e: e.time)
    lists = _collect_lists(evs)
    if not lists:
        raise ValueError("events contain no impressions; nothing to train on")
    history = EventHistory(products)
    counted = evs if history_events is None else sorted(history_events, key=lambda e: e.time)
    X, lids, qids, pos, clk, crt, pur, stages_out = [], [], [], [], [], [], [], []
    j = 0
    iterator = lists
    if progress:
        from tqdm import tqdm

        iterator = tqdm(lists, desc="features", unit="list")
    for lst in iterator:
        while j < len(counted) and counted[j].time < lst.start:
            history.add(by_affinity(counted[j]))  # keyed as serving keys them (an anonymous session's own affinity)
            j += 1
        pids = sorted(lst.items, key=lst.items.get)
        if logged is not None and lst.key[1] in logged:
            stages = [dict(logged[lst.key[1]].get(pid, {})) for pid in pids]
        else:
            stages = stages_fn(lst.query, pids) if stages_fn else [{} for _ in pids]
        hits = [ScoredHit(id=pid, rank=lst.items[pid], score=0.0,
                          source=products[pid].to_source() if pid in products else {"id": pid, "title": ""},
                          stages=st) for pid, st in zip(pids, stages)]
        rows = list_features(lst.query, hits, history.context(affinity_key(lst.user, lst.key[0]), pids))
        for pid, row, st in zip(pids, rows, stages):
            out = lst.outcomes.get(pid, set())
            X.append([row[n] for n in names])
            lids.append(f"{lst.key[0]}|{lst.key[1]}")
            # The CV group: the query as typed, normalised (a served query_id names one search, so grouping by it
            # would put the same query's searches in training and held-out folds alike).
            qids.append(normalise_query(lst.query) or lst.key[1])
            pos.append(lst.items[pid])
            clk.append(int("click" in out or "add_to_cart" in out or "purchase" in out))
            crt.append(int("add_to_cart" in out or "purchase" in out))
            pur.append(int("purchase" in out))
            stages_out.append(st)
    clk_a, crt_a, pur_a = np.asarray(clk, dtype=int), np.asarray(crt, dtype=int), np.asarray(pur, dtype=int)
    return TrainingRows(tuple(names), np.asarray(X, dtype=np.float64).reshape(len(X), len(names)),
                        np.asarray(lids), np.asarray(qids), np.asarray(pos), clk_a, crt_a, pur_a,
                        clk_a + crt_a + pur_a, stages_out)


class Bm25Scorer:
    """BM25 (bm25s, English stemming, title + description) over a product set, as a :data:`StagesFn`.

    Gives ``{"bm25": score}`` per product; training uses it to fill the lexical features that logs lack.
    """

    def __init__(self, products: Mapping[str, Product]) -> None:
        import bm25s
        import Stemmer

        self._stemmer = Stemmer.Stemmer("english")
        self._ids = list(products)
        self._index = {pid: i for i, pid in enumerate(self._ids)}
        corpus = [f"{p.title} {p.description}" for p in products.values()]
        self._bm25 = bm25s.BM25()
        self._bm25.index(bm25s.tokenize(corpus, stopwords="en", stemmer=self._stemmer, show_progress=False),
                         show_progress=False)
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, query: str, product_ids: Sequence[str]) -> list[dict[str, float]]:
        import bm25s

        scores = self._cache.get(query)
        if scores is None:
            toks = bm25s.tokenize([query], stopwords="en", stemmer=self._stemmer, return_ids=False,
                                  show_progress=False)[0]
            scores = self._bm25.get_scores(toks) if toks else np.zeros(len(self._ids))
            self._cache[query] = scores
        return [{"bm25": float(scores[self._index[pid]])} if pid in self._index else {} for pid in product_ids]


class CrossEncoderScorer:
    """A trained cross-encoder's score per product, as a :data:`StagesFn` giving ``{"cross_encoder": score}``.

    The pipeline feeds the conversion model the cross-encoder stage's score; training rows need the same number
    for the same (query, product), so this scores with the served model and text. Scores are cached per pair.

    Args:
        reranker: a :class:`~.cross_encoder.CrossEncoderReranker` (anything with ``score(query, products)``).
        products: product id -> Product.
    """

    def __init__(self, reranker, products: Mapping[str, Product]) -> None:
        self._rr = reranker
        self._products = products
        self._cache: dict[tuple[str, str], float] = {}

    def __call__(self, query: str, product_ids: Sequence[str]) -> list[dict[str, float]]:
        todo = [pid for pid in dict.fromkeys(product_ids)
                if pid in self._products and (query, pid) not in self._cache]
        if todo:
            scores = self._rr.score(query, [self._products[pid].to_source() for pid in todo])
            self._cache.update({(query, pid): float(s) for pid, s in zip(todo, scores)})
        return [{"cross_encoder": self._cache[(query, pid)]} if (query, pid) in self._cache else {}
                for pid in product_ids]


class VectorScorer:
    """The k-NN leg's score per product, as a :data:`StagesFn` giving ``{"knn": (1 + cos) / 2}``.

    Logs do not carry retrieval scores, so training recomputes the vector similarity with the index's
    bi-encoder, on the engines' scale (lucene ``cosinesimil``). Product and query vectors are cached.

    Args:
        encoder: anything with ``encode(texts) -> (n, d)`` unit vectors (indexer.embedder.BiEncoder).
        products: product id -> Product (embedded as the indexer does, :meth:`Product.embed_text`).
    """

    def __init__(self, encoder, products: Mapping[str, Product]) -> None:
        self._encoder = encoder
        self._products = products
        self._vectors: dict[str, np.ndarray] = {}
        self._queries: dict[str, np.ndarray] = {}

    def __call__(self, query: str, product_ids: Sequence[str]) -> list[dict[str, float]]:
        todo = [pid for pid in dict.fromkeys(product_ids) if pid in self._products and pid not in self._vectors]
        if todo:
            vecs = self._encoder.encode([self._products[pid].embed_text() for pid in todo])
            self._vectors.update(zip(todo, np.asarray(vecs, dtype=np.float32)))
        q = self._queries.get(query)
        if q is None:
            q = self._queries[query] = np.asarray(self._encoder.encode([query]), dtype=np.float32)[0]
        return [{"knn": float((1.0 + self._vectors[pid] @ q) / 2.0)} if pid in self._vectors else {}
                for pid in product_ids]


def combine_stages(*fns: StagesFn) -> StagesFn:
    """One :data:`StagesFn` whose dict per product merges those of ``fns`` (later ones win on a shared key)."""
    def stages(query: str, product_ids: Sequence[str]) -> list[dict[str, float]]:
        out: list[dict[str, float]] = [{} for _ in product_ids]
        for fn in fns:
            for merged, part in zip(out, fn(query, product_ids)):
                merged.update(part)
        return out
    return stages
