"""Recommendations from behaviour events: "for you", "frequently bought together", "recently viewed", "popular".

Two halves, so serving and the offline evaluation (bench/recommendations.py) run the same code:

- :class:`RecommendationMemory` (state, no I/O) is fed event by event by the serving history's background
  refresh (:class:`~shopsearch.reranker.event_context.EventLogHistory`, which also keeps the brand/category
  affinity and product counts this module reads), so a request never reads the event log. It is bounded: at most
  ``max_clients`` shoppers' recent products (``recent_per_client`` each, least recently active shopper dropped
  first), at most ``max_pair_products`` products' co-purchase partners (``pairs_per_product`` each; the rarest
  partner goes first), the latest ``max_counted_pairs`` (shopper, pair) it counted and a ``popular_size`` list of
  the most popular products, recomputed per refresh.
- :class:`Recommender` answers one request from a snapshot of that memory (:class:`RecInputs`) and the catalog
  (:class:`Catalog`: product vectors, k-NN, stored fields; :class:`EngineCatalog` over the search engine).

The lists (each labelled with its :data:`SOURCES` name):

- ``for_you``: the weighted mean of the vectors of the shopper's recent products (click 1, add_to_cart 2,
  purchase 3: :data:`~.event_history.AFFINITY_WEIGHTS`) -> k-NN, blended with the shopper's brand/category
  affinity (``(1 - w) * knn + w * affinity``); the shopper's recent products are left out (they are "recently
  viewed").
- ``bought_together``: products bought by the same shopper (user, else session) within ``basket_window_s`` of a
  seed product (context ``product``: that product; ``cart``: it and the shopper's carted products), bought by the
  most shoppers first (a shopper counts a pair once, however often they buy it); the seeds and the shopper's
  purchases left out.
- ``recently_viewed``: the shopper's own recent products (clicks, carts, purchases), newest first.
- ``popular``: clicks + 3 x purchases over the history's products; the cold-start fallback when a personal list
  is empty, the shopper's purchases left out.

``for_you``, ``bought_together`` and ``popular`` leave out products stored with ``in_stock`` false (they cannot be
bought; a product without the field stays) and fill up from the next candidates; ``recently_viewed`` is the
shopper's own history and keeps them.

A shopper is ``client_id``: the user id of a signed-in shopper, else the session (``session:<id>`` in the
history), as the storefront sends it.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Callable, Iterable, Literal, Mapping, NamedTuple, Protocol, Sequence, get_args

import numpy as np

from shopsearch.events import Event
from shopsearch.indexer.records import Product

from .event_history import AFFINITY_WEIGHTS
from .features import Affinity

Source = Literal["for_you", "bought_together", "recently_viewed", "popular"]
SOURCES: tuple[str, ...] = get_args(Source)
Context = Literal["home", "product", "cart"]
CONTEXTS: tuple[str, ...] = get_args(Context)
POPULAR_WEIGHTS = {"click": 1.0, "purchase": 3.0}  # a purchase says more than a click
MAX_CANDIDATES = 200  # k-NN candidates for "for you", whatever the size asked


@dataclass(frozen=True)
class RecLimits:
    """The memory's bounds and the blend; every count >= 1, ``affinity_weight`` in [0, 1].

    >>> RecLimits(recent_per_client=0)
    Traceback (most recent call last):
    ...
    ValueError: recent_per_client must be an integer >= 1; got 0
    """

    max_clients: int = 100_000
    recent_per_client: int = 20
    basket_size: int = 10  # a shopper's latest purchases a new purchase pairs with
    basket_window_s: float = 86_400.0  # ... when bought at most this long before it
    max_pair_products: int = 100_000
    pairs_per_product: int = 50
    max_counted_pairs: int = 500_000  # (shopper, pair) already counted, so a shopper counts a pair once; ~140 B each
    popular_size: int = 100
    affinity_weight: float = 0.3

    def __post_init__(self) -> None:
        for name in ("max_clients", "recent_per_client", "basket_size", "max_pair_products", "pairs_per_product",
                     "max_counted_pairs", "popular_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
        if not 0 <= self.affinity_weight <= 1:
            raise ValueError(f"affinity_weight must be between 0 and 1; got {self.affinity_weight!r}")
        if not self.basket_window_s > 0:
            raise ValueError(f"basket_window_s must be > 0; got {self.basket_window_s!r}")


class Interaction(NamedTuple):
    """A product a shopper interacted with and the strongest thing they did to it (click < add_to_cart <
    purchase)."""

    product_id: str
    type: str


class MemorySizes(NamedTuple):
    """How much the memory holds: shoppers, products with co-purchase partners, partner entries in all."""

    clients: int
    pair_products: int
    pairs: int


class RecInputs(NamedTuple):
    """A snapshot of what one request needs from the memory (copies: safe to use without the lock)."""

    recent: list[Interaction]  # newest first
    purchased: list[str]  # the shopper's latest purchases, newest first
    together: list[tuple[str, float]]  # co-purchased with the seeds: shoppers, most first (seeds left out)
    popular: list[tuple[str, float]]  # most popular first
    affinity: Affinity


@dataclass
class _Client:
    recent: OrderedDict[str, str] = field(default_factory=OrderedDict)  # product -> strongest type; newest last
    basket: deque = field(default_factory=deque)  # (epoch seconds, product) of the latest purchases


class RecommendationMemory:
    """Per-shopper recent products, co-purchase counts and the popular list (module docstring); no I/O.

    Not thread-safe: the owner (EventLogHistory) holds its lock around :meth:`add` and :meth:`inputs`.

    >>> m = RecommendationMemory()
    >>> for pid in ("p1", "p2"):
    ...     m.add(Event(type="purchase", product_id=pid, session_id="s", user_id="u",
    ...                 timestamp="2024-01-01T00:00:00Z"), "u")
    >>> m.inputs("u", seeds=["p1"], affinity=Affinity()).together
    [('p2', 1.0)]
    """

    def __init__(self, limits: RecLimits = RecLimits()) -> None:
        self.limits = limits
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._pairs: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._counted: OrderedDict[int, None] = OrderedDict()  # hashes of counted (shopper, pair); LRU
        self._popular: list[tuple[str, float]] = []

    def sizes(self) -> MemorySizes:
        """How many shoppers, co-purchase products and partner entries the memory holds now."""
        return MemorySizes(len(self._clients), len(self._pairs), sum(len(p) for p in self._pairs.values()))

    def add(self, e: Event, key: str | None) -> None:
        """Account one event of shopper ``key`` (its affinity key; None: anonymous, ignored). Impressions are not
        interest in a product and are ignored; events must come in time order."""
        rank = _STRENGTH.get(e.type)
        if key is None or rank is None:
            return
        lim = self.limits
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = _Client()
        self._clients.move_to_end(key)
        while len(self._clients) > lim.max_clients:
            self._clients.popitem(last=False)
        before = client.recent.pop(e.product_id, None)
        client.recent[e.product_id] = e.type if before is None or _STRENGTH[before] < rank else before
        while len(client.recent) > lim.recent_per_client:
            client.recent.popitem(last=False)
        if e.type != "purchase":
            return
        now = e.time.timestamp()
        for at, other in client.basket:
            near = abs(now - at) <= lim.basket_window_s  # abs: logs may come out of order
            if other != e.product_id and near and self._first_count(key, e.product_id, other):
                self._pair(e.product_id, other)
                self._pair(other, e.product_id)
        client.basket.append((now, e.product_id))
        while len(client.basket) > lim.basket_size:
            client.basket.popleft()

    def _first_count(self, key: str, a: str, b: str) -> bool:
        """Whether shopper ``key`` is not yet counted for the pair ``a``/``b`` (either order); records it: counts
        are shoppers, so one shopper re-buying a product never outranks several who bought the pair once."""
        # A hash, not the strings: under half the memory; a collision (odds ~ n^2 / 2^64) only skips one count.
        h = hash((key, a, b) if a < b else (key, b, a))
        if h in self._counted:
            self._counted.move_to_end(h)  # a shopper who keeps re-buying stays remembered
            return False
        self._counted[h] = None
        while len(self._counted) > self.limits.max_counted_pairs:
            self._counted.popitem(last=False)
        return True

    def _pair(self, a: str, b: str) -> None:
        partners = self._pairs.get(a)
        if partners is None:
            partners = self._pairs[a] = {}
        self._pairs.move_to_end(a)
        while len(self._pairs) > self.limits.max_pair_products:
            self._pairs.popitem(last=False)
        partners[b] = partners.get(b, 0.0) + 1.0
        if len(partners) > self.limits.pairs_per_product:  # drop the rarest partner (not the one just counted)
            del partners[min((p for p in partners if p != b), key=partners.__getitem__)]

    def set_popular(self, ranked: Iterable[tuple[str, float]]) -> None:
        """Replace the popular list (best first; cut to ``popular_size``)."""
        self._popular = list(ranked)[: self.limits.popular_size]

    def client(self, client_id: str | None) -> str | None:
        """The history key of ``client_id``: the user id when the memory knows it, else its session key, else
        the user id (unknown: cold start)."""
        if not client_id:
            return None
        if client_id in self._clients:
            return client_id
        session = f"session:{client_id}"
        return session if session in self._clients else client_id

    def inputs(self, key: str | None, seeds: Sequence[str], affinity: Affinity, *,
               context: str = "home") -> RecInputs:
        """A snapshot for one request: ``key``'s recent products and purchases, the co-purchases of ``seeds``
        (for context ``cart`` also of the shopper's carted products), the popular list and ``affinity``."""
        client = self._clients.get(key) if key is not None else None
        recent = [Interaction(p, t) for p, t in reversed(client.recent.items())] if client else []
        purchased = [p for _, p in reversed(client.basket)] if client else []
        seeds = list(dict.fromkeys(seeds))
        if context == "cart":
            seeds += [i.product_id for i in recent if i.type == "add_to_cart" and i.product_id not in seeds]
        counts: dict[str, float] = {}
        for seed in seeds:
            for other, n in self._pairs.get(seed, {}).items():
                counts[other] = counts.get(other, 0.0) + n
        leave_out = set(seeds)
        together = sorted(((p, n) for p, n in counts.items() if p not in leave_out), key=lambda t: (-t[1], t[0]))
        return RecInputs(recent, purchased, together, list(self._popular), affinity)


_STRENGTH = {t: i for i, t in enumerate(AFFINITY_WEIGHTS)}  # click < add_to_cart < purchase


def in_stock(source: Mapping[str, Any]) -> bool:
    """Whether a product (its stored fields) can be bought: only a stored ``in_stock`` false says no.

    >>> in_stock({"in_stock": False}), in_stock({"in_stock": True}), in_stock({})
    (False, True, True)
    """
    return source.get("in_stock") is not False


def top_popular(counts: Iterable[tuple[str, int, int]], n: int) -> list[tuple[str, float]]:
    """The ``n`` most popular products of ``(product id, clicks, purchases)`` rows: clicks + 3 x purchases, ties by
    id; products never clicked nor bought are left out.

    >>> top_popular([("a", 5, 0), ("b", 1, 2), ("c", 0, 0)], 2)
    [('b', 7.0), ('a', 5.0)]
    """
    scored = ((pid, POPULAR_WEIGHTS["click"] * c + POPULAR_WEIGHTS["purchase"] * b) for pid, c, b in counts)
    return heapq.nsmallest(n, ((pid, s) for pid, s in scored if s > 0), key=lambda t: (-t[1], t[0]))


# ------------------------------------------------------------------------------------------------ the catalog

class Catalog(Protocol):
    """What recommendations need from the catalog."""

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of ``ids`` (unknown ids left out)."""

    def nearest(self, vector: np.ndarray, k: int, exclude: Sequence[str]) -> list[tuple[str, float, dict]]:
        """The ``k`` products nearest to ``vector`` (id, score in [0, 1], stored fields), ``exclude`` left out."""

    def sources(self, ids: Sequence[str]) -> dict[str, dict]:
        """The stored fields of ``ids`` (unknown ids left out)."""


class EngineCatalog:
    """:class:`Catalog` over a search engine's index; vectors cached (LRU, ``max_vectors``, each for ``vector_ttl_s``
    so a product deleted or re-embedded since stops steering ``for_you``); ``only``: the k-NN searches these
    products only (none: all; the offline evaluation's simulated catalog).

    >>> EngineCatalog(engine, "catalog").vectors(["p1"])["p1"].shape  # doctest: +SKIP
    (384,)
    """

    def __init__(self, engine: Any, index: str, max_vectors: int = 10_000, only: Sequence[str] = (), *,
                 vector_ttl_s: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine, self.index, self.max_vectors, self.only = engine, index, max_vectors, tuple(only)
        self.vector_ttl_s, self.clock = vector_ttl_s, clock
        self._vectors: OrderedDict[str, tuple[np.ndarray, float]] = OrderedDict()  # id -> (vector, read at)
        self._lock = threading.Lock()  # requests share the cache; the engine is asked outside the lock

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        from shopsearch.plugin.documents import VECTOR_FIELD

        out = {}
        now = self.clock()
        for pid in ids:
            with self._lock:
                cached = self._vectors.get(pid)
                if cached is not None and now - cached[1] < self.vector_ttl_s:
                    self._vectors.move_to_end(pid)
                    out[pid] = cached[0]
                    continue
            doc = self.engine.get(self.index, pid, with_vector=True)
            raw = (doc.get("vector") or doc.get(VECTOR_FIELD)) if doc else None
            with self._lock:
                self._vectors.pop(pid, None)
                if not raw:
                    continue
                v = np.asarray(raw, dtype=np.float32)
                self._vectors[pid] = (v, now)
                if len(self._vectors) > self.max_vectors:
                    self._vectors.popitem(last=False)
            out[pid] = v
        return out

    def nearest(self, vector: np.ndarray, k: int, exclude: Sequence[str]) -> list[tuple[str, float, dict]]:
        from shopsearch.plugin.engine import Filters, KnnLeg

        leg = KnnLeg(vector=[float(x) for x in vector], k=k, filters=Filters(exclude_ids=tuple(exclude), ids=self.only))
        (hits,) = self.engine.search(self.index, [leg])
        leave_out = set(exclude)
        return [(h.id, float(h.score), h.source) for h in hits if h.id not in leave_out]

    def sources(self, ids: Sequence[str]) -> dict[str, dict]:
        if not ids:
            return {}
        return {pid: hit.source for pid, hit in self.engine.sources(self.index, list(ids)).items()}


# ---------------------------------------------------------------------------------------------- recommending

class Recommendation(NamedTuple):
    """One recommended product: its id, its score within its list and its stored fields."""

    id: str
    score: float
    source: Mapping[str, Any]


class RecList(NamedTuple):
    """One labelled list (``source``: one of :data:`SOURCES`)."""

    source: str
    items: list[Recommendation]


def affinity_score(product: Product, affinity: Affinity) -> float:
    """How much the shopper's history favours ``product``: mean of its brand's share and its best category's
    share of their interaction weight, in [0, 1] (0 for no history).

    >>> affinity_score(Product(id="p", title="t", brand="b", category=("c",)),
    ...                Affinity(brands={"b": 2.0}, categories={"c": 4.0}, total=4.0))
    0.75
    """
    if affinity.total <= 0:
        return 0.0
    brand = affinity.brands.get(product.brand, 0.0) if product.brand else 0.0
    cat = max((affinity.categories.get(c, 0.0) for c in product.category), default=0.0)
    return (brand + cat) / (2.0 * affinity.total)


class Recommender:
    """The lists for one request, from a memory snapshot and the catalog (module docstring).

    >>> Recommender(EngineCatalog(engine, "catalog")).recommend(inputs, "home", None, 10)  # doctest: +SKIP
    [RecList(source='for_you', items=[...]), RecList(source='recently_viewed', items=[...])]
    """

    def __init__(self, catalog: Catalog, affinity_weight: float = RecLimits.affinity_weight) -> None:
        self.catalog, self.affinity_weight = catalog, affinity_weight

    def recommend(self, inputs: RecInputs, context: str, product_id: str | None, size: int) -> list[RecList]:
        """The non-empty lists for ``context`` (:data:`CONTEXTS`), each at most ``size`` long.

        home: for_you (popular when empty), recently_viewed; product and cart: bought_together (popular when
        empty), for_you, recently_viewed. ``product_id`` (the product shown) is left out of every list.

        Raises:
            ValueError: an unknown context or a size < 1.
        """
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {', '.join(CONTEXTS)}; got {context!r}")
        if size < 1:
            raise ValueError(f"size must be >= 1; got {size!r}")
        shown = {product_id} if product_id else set()
        lists: list[RecList] = []
        personal = self.for_you(inputs, size, shown)
        if context != "home":
            together = self.bought_together(inputs, size, shown)
            lists.append(together if together.items else self.popular(inputs, size, shown))
            if personal.items:
                lists.append(personal)
        else:
            lists.append(personal if personal.items else self.popular(inputs, size, shown))
        lists.append(self.recently_viewed(inputs, size, shown))
        return [rl for rl in lists if rl.items]

    def for_you(self, inputs: RecInputs, size: int, leave_out: AbstractSet[str] = frozenset()) -> RecList:
        """k-NN of the weighted mean vector of the shopper's recent products, blended with their affinity."""
        recent = inputs.recent
        if not recent:
            return RecList("for_you", [])
        vectors = self.catalog.vectors([i.product_id for i in recent])
        weights = [AFFINITY_WEIGHTS[i.type] for i in recent if i.product_id in vectors]
        if not weights:
            return RecList("for_you", [])
        mean = np.average(np.stack([vectors[i.product_id] for i in recent if i.product_id in vectors]), axis=0,
                          weights=weights)
        norm = float(np.linalg.norm(mean))
        if norm > 0:
            mean = mean / norm
        exclude = sorted(leave_out | {i.product_id for i in recent})
        k = min(MAX_CANDIDATES, size * 3 + len(exclude))
        # Out-of-stock products are dropped after the k-NN: its in_stock filter (a term, as /similar's) would also
        # drop products without the field. So ask for more while fewer than ``size`` are left and more may exist.
        while True:
            hits = self.catalog.nearest(mean, k, exclude)
            candidates = [h for h in hits if in_stock(h[2])]
            if len(candidates) >= size or len(hits) < k or k >= MAX_CANDIDATES:
                break
            k = min(MAX_CANDIDATES, 2 * k)
        w = self.affinity_weight
        scored = []
        for pid, knn, src in candidates:
            aff = affinity_score(Product.from_source({"id": pid, "title": "", **src}), inputs.affinity) if w else 0.0
            scored.append(Recommendation(pid, (1.0 - w) * knn + w * aff, src))
        scored.sort(key=lambda r: (-r.score, r.id))
        return RecList("for_you", scored[:size])

    def bought_together(self, inputs: RecInputs, size: int, leave_out: AbstractSet[str] = frozenset()) -> RecList:
        """The seeds' co-purchases, most first; the shopper's own purchases and ``leave_out`` left out."""
        skip = leave_out | set(inputs.purchased)
        return self._with_sources("bought_together", [(p, n) for p, n in inputs.together if p not in skip], size)

    def recently_viewed(self, inputs: RecInputs, size: int, leave_out: AbstractSet[str] = frozenset()) -> RecList:
        """The shopper's recent products, newest first (score: 1 for the newest, falling)."""
        ids = [i.product_id for i in inputs.recent if i.product_id not in leave_out]
        # What they saw, sold out or not: a history to go back to, not an offer to buy.
        return self._with_sources("recently_viewed", [(p, 1.0 / (r + 1)) for r, p in enumerate(ids)], size,
                                  sold_out=True)

    def popular(self, inputs: RecInputs, size: int, leave_out: AbstractSet[str] = frozenset()) -> RecList:
        """The most popular products; the shopper's purchases and ``leave_out`` left out."""
        skip = leave_out | set(inputs.purchased)
        return self._with_sources("popular", [(p, s) for p, s in inputs.popular if p not in skip], size)

    def _with_sources(self, source: str, ranked: list[tuple[str, float]], size: int, *,
                      sold_out: bool = False) -> RecList:
        """The first ``size`` of ``ranked`` that the catalog still holds (and in stock, unless ``sold_out``), with
        their stored fields (looked up twice as many at a time, until ``size`` are found or ``ranked`` ends: products
        deleted or sold out since their events)."""
        out: list[Recommendation] = []
        at = 0
        while len(out) < size and at < len(ranked):
            head, at = ranked[at:at + 2 * (size - len(out))], at + 2 * (size - len(out))
            found = self.catalog.sources([p for p, _ in head])
            out += [Recommendation(p, float(s), found[p]) for p, s in head
                    if p in found and (sold_out or in_stock(found[p]))][:size - len(out)]
        return RecList(source, out)
