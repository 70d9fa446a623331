"""Running product stats and user affinities from a time-ordered event stream (state, no I/O).

Feed events with :meth:`EventHistory.add` in time order and ask :meth:`EventHistory.context` for the
:class:`~shopsearch.reranker.features.FeatureContext` "as of now", so features of a list never see its own
outcome.

Serving bounds it (``max_products``, ``max_users``): the least recently active product or shopper is dropped
first, so a flood of events for random ids costs a fixed amount of memory. Training replays a finite log and
leaves it unbounded.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Iterator, Mapping

from shopsearch.events import Event
from shopsearch.indexer.records import Product

from .features import Affinity, FeatureContext, ProductStats

# Interaction weight per event type for user affinity: a purchase says more than a click.
AFFINITY_WEIGHTS = {"click": 1.0, "add_to_cart": 2.0, "purchase": 3.0}


def affinity_key(user_id: str | None, session_id: str | None) -> str | None:
    """Whose affinity a search uses: the user, else the (anonymous) session, else nobody.

    >>> affinity_key(None, "s1")
    'session:s1'
    """
    if user_id:
        return user_id
    return f"session:{session_id}" if session_id else None


def by_affinity(e: Event) -> Event:
    """``e`` as :meth:`EventHistory.add` takes it, which keys affinity by ``user_id``: an anonymous session's
    events under their session's :func:`affinity_key` (serving and training alike)."""
    key = affinity_key(e.user_id, e.session_id)
    return e if key == e.user_id else e.model_copy(update={"user_id": key})


class EventHistory:
    """Counts impressions/clicks/purchases per product and brand/category weight per user.

    Args:
        products: product id -> Product, for the brand and category of interacted products.
        max_products: products whose counts are kept (None: all); the least recently active goes first.
        max_users: users whose affinity is kept (None: all); the least recently active goes first.
    Raises:
        ValueError: a bound < 1.

    >>> h = EventHistory({})
    >>> h.context("u1", ["p1"]).stats["p1"].impressions
    0
    """

    def __init__(self, products: Mapping[str, Product], max_products: int | None = None,
                 max_users: int | None = None) -> None:
        for name, bound in (("max_products", max_products), ("max_users", max_users)):
            if bound is not None and bound < 1:
                raise ValueError(f"{name} must be >= 1 or None; got {bound!r}")
        self.products = products
        self.max_products, self.max_users = max_products, max_users
        self._counts: OrderedDict[str, list[int]] = OrderedDict()  # product id -> [impressions, clicks, purchases]
        self._users: OrderedDict[str, tuple[dict[str, float], dict[str, float], list[float]]] = OrderedDict()

    def sizes(self) -> tuple[int, int]:
        """How many products and users the history holds now."""
        return len(self._counts), len(self._users)

    def add(self, e: Event) -> None:
        """Account one event (unknown products still count for stats, not for affinity)."""
        c = self._counts.setdefault(e.product_id, [0, 0, 0])
        _touch(self._counts, e.product_id, self.max_products)
        if e.type == "impression":
            c[0] += 1
        elif e.type == "click":
            c[1] += 1
        elif e.type == "purchase":
            c[2] += 1
        w = AFFINITY_WEIGHTS.get(e.type)
        p = self.products.get(e.product_id)
        if w is None or e.user_id is None or p is None:
            return
        brands, cats, total = self._users.setdefault(e.user_id, ({}, {}, [0.0]))
        _touch(self._users, e.user_id, self.max_users)
        total[0] += w
        if p.brand:
            brands[p.brand] = brands.get(p.brand, 0.0) + w
        for cat in p.category:
            cats[cat] = cats.get(cat, 0.0) + w

    def click_purchase_counts(self) -> Iterator[tuple[str, int, int]]:
        """(product id, clicks, purchases) of every product the history holds (popularity, reranker/
        recommendations.py)."""
        return ((pid, c[1], c[2]) for pid, c in self._counts.items())

    def extend(self, events: Iterable[Event]) -> None:
        """Account every event in order."""
        for e in events:
            self.add(e)

    def affinity(self, user_id: str | None) -> Affinity:
        """A snapshot of the user's affinity (empty for an unknown or anonymous user)."""
        if user_id is None or user_id not in self._users:
            return Affinity()
        brands, cats, total = self._users[user_id]
        return Affinity(brands=dict(brands), categories=dict(cats), total=total[0])

    def context(self, user_id: str | None, product_ids: Iterable[str], **priors: float) -> FeatureContext:
        """A FeatureContext with the current stats of ``product_ids`` and the user's affinity.

        ``priors`` are passed to FeatureContext (ctr_prior, cvr_prior, prior_strength).
        """
        stats = {pid: ProductStats(*self._counts.get(pid, (0, 0, 0))) for pid in product_ids}
        return FeatureContext(stats=stats, user=self.affinity(user_id), **priors)


def _touch(items: OrderedDict, key: str, bound: int | None) -> None:
    """Mark ``key`` most recently active; drop the least recently active entries past ``bound``."""
    if bound is None:
        return
    items.move_to_end(key)
    while len(items) > bound:
        items.popitem(last=False)
