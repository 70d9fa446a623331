"""Running product stats and user affinities from a time-ordered event stream (state, no I/O).

Feed events with :meth:`EventHistory.add` in time order and ask :meth:`EventHistory.context` for the
:class:`~shopsearch.reranker.features.FeatureContext` "as of now", so features of a list never see its own
outcome.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from shopsearch.events import Event
from shopsearch.indexer.records import Product

from .features import Affinity, FeatureContext, ProductStats

# Interaction weight per event type for user affinity: a purchase says more than a click.
AFFINITY_WEIGHTS = {"click": 1.0, "add_to_cart": 2.0, "purchase": 3.0}


class EventHistory:
    """Counts impressions/clicks/purchases per product and brand/category weight per user.

    >>> h = EventHistory({})
    >>> h.context("u1", ["p1"]).stats["p1"].impressions
    0
    """

    def __init__(self, products: Mapping[str, Product]) -> None:
        self.products = products
        self._counts: dict[str, list[int]] = {}  # product id -> [impressions, clicks, purchases]
        self._users: dict[str, tuple[dict[str, float], dict[str, float], list[float]]] = {}

    def add(self, e: Event) -> None:
        """Account one event (unknown products still count for stats, not for affinity)."""
        c = self._counts.setdefault(e.product_id, [0, 0, 0])
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
        total[0] += w
        if p.brand:
            brands[p.brand] = brands.get(p.brand, 0.0) + w
        for cat in p.category:
            cats[cat] = cats.get(cat, 0.0) + w

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
