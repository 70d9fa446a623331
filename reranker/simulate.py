"""A seeded click/purchase simulator over judged queries: sessions -> impression/click/add_to_cart/purchase events.

Model (every parameter is in :class:`SimParams` and documented in docs/simulator.md):

* a session is one simulated user issuing one judged query; the result list is the query's judged pool in the
  order of a ranking file when given, else a noisy lexical order (query-title token overlap + Gaussian noise,
  drawn afresh per session), cut to ``page_size``; every shown product gets an impression;
* examination: the user looks at rank r with probability ``1 / r**eta``;
* attraction: P(click | examined) = noise + (click_max - noise) * (2**g - 1) / (2**g_max - 1), times
  (1 + brand_boost) when the user likes the product's brand and (1 + category_boost) for a liked category;
* after a click, add_to_cart and then purchase each follow a logistic model that rises with the grade, the
  rating and the user's affinity and falls with log(price / median price of the shown list);
* cascade: the session ends after the first purchase.

:func:`decide` is that shopper's behaviour on one shown list, the one model :func:`simulate` (offline, over judged
pools) and ``shopsearch simulate-traffic`` (through the served API) share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from shopsearch.events import Event
from shopsearch.timestamps import format_timestamp, parse_timestamp
from shopsearch.indexer.records import Product

from .features import tokens
from .sim_catalog import SIM_BRANDS, SIM_CATEGORIES, JudgedData

ORDERS = ("lexical", "random")


@dataclass(frozen=True)
class SimParams:
    """Every knob of the simulator; defaults are the documented ones."""

    sessions: int = 2000
    users: int = 200
    seed: int = 0
    page_size: int = 10
    eta: float = 1.0  # examination exponent: P(examine rank r) = 1 / r**eta
    click_noise: float = 0.05  # P(click | examined) of a grade-0 product
    click_max: float = 0.6  # P(click | examined) of a top-grade product
    order: str = "lexical"  # "lexical" (noisy overlap order) or "random" (uniform shuffle: unbiased evaluation)
    order_noise: float = 0.35  # std of the noise added to the lexical overlap in the default order
    brand_boost: float = 0.6
    category_boost: float = 0.3
    liked_brands: int = 3
    liked_categories: int = 2
    cart_bias: float = -1.5
    cart_grade: float = 1.5
    cart_rating: float = 0.8
    cart_price: float = 1.0
    cart_affinity: float = 0.8
    buy_bias: float = -0.5
    buy_grade: float = 1.0
    buy_rating: float = 0.6
    buy_price: float = 1.2
    buy_affinity: float = 0.6
    start: str = "2024-01-01T00:00:00Z"
    mean_gap_s: float = 60.0  # mean seconds between session starts
    # After a purchase, the probability that the shopper goes on to a list of related products (the bought one's
    # simulated category) in a follow-up session; 0 (default): never, and the output is what it always was.
    related_purchase: float = 0.0

    def __post_init__(self) -> None:
        for name in ("sessions", "users", "page_size", "liked_brands", "liked_categories"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
        if not 0 <= self.click_noise <= self.click_max <= 1:
            raise ValueError(f"need 0 <= click_noise <= click_max <= 1; got {self.click_noise}, {self.click_max}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {self.order!r}")
        if not 0 <= self.related_purchase <= 1:
            raise ValueError(f"related_purchase must be between 0 and 1; got {self.related_purchase!r}")
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0; got {self.eta!r}")
        if self.liked_brands > len(SIM_BRANDS) or self.liked_categories > len(SIM_CATEGORIES):
            raise ValueError(f"liked_brands <= {len(SIM_BRANDS)} and liked_categories <= {len(SIM_CATEGORIES)}")
        parse_timestamp(self.start)


@dataclass(frozen=True)
class SimUser:
    """A simulated shopper and the brands/categories they like."""

    id: str
    brands: frozenset[str]
    categories: frozenset[str]


@dataclass
class SimSummary:
    """Counts of a simulation; CTR = clicks / impressions, CVR = purchases / clicks."""

    sessions: int = 0
    impressions: int = 0
    clicks: int = 0
    add_to_carts: int = 0
    purchases: int = 0

    def add(self, other: SimSummary) -> None:
        """Add ``other``'s counts to this summary (summaries of parallel runs)."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    @property
    def cvr(self) -> float:
        return self.purchases / self.clicks if self.clicks else 0.0

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        return (f"{self.sessions} sessions, {self.impressions} impressions, {self.clicks} clicks, "
                f"{self.add_to_carts} add_to_carts, {self.purchases} purchases, CTR {self.ctr:.3f}, "
                f"CVR {self.cvr:.3f} (SIMULATED)")


def make_users(params: SimParams, rng: np.random.Generator) -> list[SimUser]:
    """``params.users`` users, each liking ``liked_brands`` brands and ``liked_categories`` categories."""
    return [SimUser(id=f"simu-{i:05d}",
                    brands=frozenset(rng.choice(SIM_BRANDS, params.liked_brands, replace=False).tolist()),
                    categories=frozenset(rng.choice(SIM_CATEGORIES, params.liked_categories, replace=False).tolist()))
            for i in range(params.users)]


def read_ranking(path: str | Path) -> dict[str, list[str]]:
    """A run file as qid -> product ids, best first: TREC (``qid Q0 pid rank score tag``) or ``qid pid score``.

    Raises:
        ValueError: a line with neither 6 nor 3 columns, or a score that is not a number (file:line).
    """
    scored: dict[str, list[tuple[float, str]]] = {}
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) not in (6, 3):
                raise ValueError(f"{path}:{n}: ranking lines are 'qid Q0 pid rank score tag' or 'qid pid score'")
            qid, pid, score = (parts[0], parts[2], parts[4]) if len(parts) == 6 else parts
            try:
                scored.setdefault(qid, []).append((float(score), pid))
            except ValueError:
                raise ValueError(f"{path}:{n}: score must be a number; got {score!r}") from None
    return {q: [pid for _, pid in sorted(v, key=lambda t: -t[0])] for q, v in scored.items()}


def lexical_overlap(query: str, product: Product) -> float:
    """Share of the query's distinct tokens found in the product's title or description (0..1)."""
    q = set(tokens(query))
    if not q:
        return 0.0
    return len(q & set(tokens(f"{product.title} {product.description}"))) / len(q)


def result_list(qid: str, data: JudgedData, params: SimParams, rng: np.random.Generator,
                ranking: dict[str, list[str]] | None) -> list[str]:
    """The shown list for one session: ranking-file order when it covers ``qid``, else ``params.order``."""
    pool = sorted(data.qrels[qid])
    if ranking and qid in ranking:
        ranked = [pid for pid in ranking[qid] if pid in data.qrels[qid]]
        seen = set(ranked)
        rest = [pid for pid in pool if pid not in seen]
        order = ranked + [rest[i] for i in rng.permutation(len(rest))]
    elif params.order == "random":
        order = [pool[i] for i in rng.permutation(len(pool))]
    else:
        noise = rng.normal(0.0, params.order_noise, len(pool))
        score = [lexical_overlap(data.queries[qid], data.products[pid]) + z for pid, z in zip(pool, noise)]
        order = [pool[i] for i in np.argsort(-np.asarray(score), kind="stable")]
    return order[: params.page_size]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _affinity(user: SimUser, p: Product) -> tuple[int, int]:
    return int(p.brand in user.brands), int(any(c in user.categories for c in p.category))


class ShownProduct(NamedTuple):
    """One product of a shown list as the shopper sees it: its 1-based position, its attributes (price, rating,
    brand, category) and its relevance grade for the query (an unjudged product: 0)."""

    position: int
    product: Product
    grade: int


class Action(NamedTuple):
    """What a shopper did to a shown product (``click``, ``add_to_cart`` or ``purchase``), ``delay_s`` seconds
    after their previous action (the first: after the list was shown)."""

    type: str
    position: int
    product_id: str
    delay_s: float


def median_price(products: Iterable[Product]) -> float:
    """The median price of the priced products (1.0 when none has a price): the reference for price sensitivity."""
    prices = [p.price for p in products if p.price]
    return float(np.median(prices)) if prices else 1.0


def product_probabilities(params: SimParams, product: Product, grade: int, max_grade: int, user: SimUser,
                          median: float) -> tuple[float, float, float]:
    """P(click | examined), P(add_to_cart | click), P(purchase | add_to_cart) of one shown product.

    Args:
        params: the simulator's parameters.
        product: the product with its price, rating, brand and category (missing price: ``median``, missing
            rating: 4.0).
        grade: its relevance grade for the query, 0..``max_grade``.
        max_grade: the top grade of the judgments.
        user: the shopper (liked brands and categories).
        median: the median price of the shown list.
    Returns:
        The three probabilities; their product is the examination-free purchase propensity.

    >>> p = Product(id="p1", title="lamp", price=40.0, rating=4.0)
    >>> product_probabilities(SimParams(), p, 3, 3, SimUser("u", frozenset(), frozenset()), 40.0)[0]
    0.6
    """
    gain = (2.0 ** grade - 1.0) / (2.0 ** max_grade - 1.0)
    likes_brand, likes_cat = _affinity(user, product)
    attract = params.click_noise + (params.click_max - params.click_noise) * gain
    attract *= (1 + params.brand_boost * likes_brand) * (1 + params.category_boost * likes_cat)
    rel_price = math.log(max(product.price or median, 0.01) / median)
    rating = (product.rating if product.rating is not None else 4.0) - 4.0
    aff = likes_brand + likes_cat
    cart = _sigmoid(params.cart_bias + params.cart_grade * gain + params.cart_rating * rating
                    - params.cart_price * rel_price + params.cart_affinity * aff)
    buy = _sigmoid(params.buy_bias + params.buy_grade * gain + params.buy_rating * rating
                   - params.buy_price * rel_price + params.buy_affinity * aff)
    return min(attract, 0.95), cart, buy


def outcome_probabilities(params: SimParams, data: JudgedData, user: SimUser, qid: str, pid: str,
                          median_price: float) -> tuple[float, float, float]:
    """:func:`product_probabilities` of judged product ``pid`` for query ``qid`` of ``data``.

    Their product is the examination-free purchase propensity, the ground truth for unbiased evaluation.
    """
    return product_probabilities(params, data.products[pid], data.qrels[qid][pid], data.max_grade, user,
                                 median_price)


def decide(params: SimParams, shown: Sequence[ShownProduct], user: SimUser, max_grade: int,
           rng: np.random.Generator) -> list[Action]:
    """What one shopper does with one shown list: the clicks, add-to-carts and purchase, in order.

    The one shopper model of the offline simulator (:func:`simulate`) and of ``shopsearch simulate-traffic``:
    position ``r`` is examined with probability ``1 / r**eta``; an examined product is clicked, carted and bought
    with :func:`product_probabilities` (price relative to the list's :func:`median_price`); the first purchase
    ends the list. Draws from ``rng`` in a fixed order (examination, click, delay, cart, delay, purchase, delay per
    product), so the same generator state and list give the same actions.

    Args:
        params: the simulator's parameters (``eta`` and the click/cart/purchase coefficients).
        shown: the list as shown, best first.
        user: the shopper.
        max_grade: the top grade of the judgments.
        rng: the generator to draw from (advanced).
    Returns:
        The actions, in the order they happen; empty when the shopper leaves without clicking.

    >>> user = SimUser("u", frozenset(), frozenset())
    >>> shown = [ShownProduct(1, Product(id="p1", title="lamp", price=40.0, rating=4.5), 3)]
    >>> [a.type for a in decide(SimParams(), shown, user, 3, np.random.default_rng(3))]
    ['click', 'add_to_cart', 'purchase']
    """
    median = median_price(s.product for s in shown)
    actions: list[Action] = []
    for item in shown:
        r, pid = item.position, item.product.id
        examined = rng.random() < 1.0 / r ** params.eta
        if not examined:
            continue
        attract, cart, buy = product_probabilities(params, item.product, item.grade, max_grade, user, median)
        if rng.random() >= attract:
            continue
        actions.append(Action("click", r, pid, float(3 + rng.exponential(10))))
        if rng.random() >= cart:
            continue
        actions.append(Action("add_to_cart", r, pid, float(5 + rng.exponential(20))))
        if rng.random() < buy:
            actions.append(Action("purchase", r, pid, float(10 + rng.exponential(60))))
            break  # cascade: a purchase ends the session
    return actions


def simulate(data: JudgedData, params: SimParams, ranking: dict[str, list[str]] | None = None,
             progress: bool = False) -> Iterator[tuple[int, list[Event]]]:
    """Yield ``(session index, events of that session)`` for every simulated session, in time order.

    Same ``data``, ``params`` and ``ranking`` give identical events. Every event has ``simulated=True``;
    ``query_id`` is the judged query's id and ``session_id`` is ``sims-<index>``.

    Raises:
        ValueError: no judged query has at least two judged products.

    >>> sessions = list(simulate(load_judged("data/crowdflower"), SimParams(sessions=3)))  # doctest: +SKIP
    >>> len(sessions)  # doctest: +SKIP
    3
    """
    qids = sorted(q for q, pool in data.qrels.items() if len(pool) >= 2)
    if not qids:
        raise ValueError("the data folder has no query with at least two judged products to simulate")
    rng = np.random.default_rng(params.seed)
    users = make_users(params, rng)
    clock = parse_timestamp(params.start)
    iterator = range(params.sessions)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="simulate", unit="session")
    for s in iterator:
        clock += timedelta(seconds=float(rng.exponential(params.mean_gap_s)))
        user = users[int(rng.integers(len(users)))]
        qid = qids[int(rng.integers(len(qids)))]
        shown = result_list(qid, data, params, rng, ranking)
        sid = f"sims-{s:06d}"
        t = clock

        def event(kind: str, pid: str, pos: int, at) -> Event:
            return Event(type=kind, query_id=qid, query=data.queries[qid], product_id=pid, position=pos,
                         user_id=user.id, session_id=sid, timestamp=format_timestamp(at),
                         price=data.products[pid].price, simulated=True)

        events = [event("impression", pid, r, t) for r, pid in enumerate(shown, 1)]
        items = [ShownProduct(r, data.products[pid], data.qrels[qid][pid]) for r, pid in enumerate(shown, 1)]
        bought = None
        for action in decide(params, items, user, data.max_grade, rng):
            t += timedelta(seconds=action.delay_s)
            events.append(event(action.type, action.product_id, action.position, t))
            bought = action.product_id if action.type == "purchase" else bought
        if bought is not None and params.related_purchase > 0 and rng.random() < params.related_purchase:
            t = _related_session(data, params, rng, user, qid, bought, sid, t, events)
        clock = max(clock, t)
        yield s, events


def _related_session(data: JudgedData, params: SimParams, rng: np.random.Generator, user: SimUser, qid: str,
                     bought: str, sid: str, t, events: list[Event]):
    """A follow-up session ``<sid>-r`` after buying ``bought`` (``related_purchase``): ``page_size`` other judged
    products of its simulated category, in random order, each taken as grade 1 (somewhat relevant: related, not
    asked for), decided on by the same shopper model; its events are appended to ``events`` (query_id
    ``related:<qid>``). Returns the time of its last event."""
    cats = set(data.products[bought].category)
    pool = sorted(pid for pid, p in data.products.items() if pid != bought and cats & set(p.category))
    shown = [pool[i] for i in rng.permutation(len(pool))[: params.page_size]]
    t += timedelta(seconds=float(5 + rng.exponential(30)))
    related_qid, related_sid = f"related:{qid}", f"{sid}-r"

    def event(kind: str, pid: str, pos: int, at) -> Event:
        return Event(type=kind, query_id=related_qid, product_id=pid, position=pos, user_id=user.id,
                     session_id=related_sid, timestamp=format_timestamp(at), price=data.products[pid].price,
                     simulated=True)

    events.extend(event("impression", pid, r, t) for r, pid in enumerate(shown, 1))
    items = [ShownProduct(r, data.products[pid], 1) for r, pid in enumerate(shown, 1)]
    for action in decide(params, items, user, data.max_grade, rng):
        t += timedelta(seconds=action.delay_s)
        events.append(event(action.type, action.product_id, action.position, t))
    return t


def summarize(events: list[Event], summary: SimSummary) -> None:
    """Add one session's events to ``summary``."""
    summary.sessions += 1
    for e in events:
        if e.type == "impression":
            summary.impressions += 1
        elif e.type == "click":
            summary.clicks += 1
        elif e.type == "add_to_cart":
            summary.add_to_carts += 1
        else:
            summary.purchases += 1
