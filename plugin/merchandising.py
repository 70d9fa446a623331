"""Merchandising: what the rules that fire for a query do to its results, identically on both engines.

:class:`Merchandising` holds each index's rules (:mod:`.merchandising_rules`) and synonyms (:mod:`.synonyms`),
both reloaded when their files change. For a query, :meth:`Merchandising.plan` collects the rules that fire into
a :class:`Plan`; :class:`~.hybrid.HybridSearcher` applies it (the engine calls), the functions here are pure.

Decisions worth knowing:
- ``hide`` and ``filter`` narrow the request's filters (``Filters.exclude_ids`` and ``Filters.required``), so
  every leg, the total and every facet count obey them exactly; a rule's filter is never left out of a facet's
  count (picking another brand cannot undo it).
- ``pin``, ``bury`` and ``boost`` rearrange the relevance ranking once, on the fused ranking the ranking stages
  start from; after the rerank and conversion stages of reranker/pipeline.py reorder their fixed head,
  :func:`rearrange` puts pinned and buried products back in place, and boosts the head again only when its last
  stage's order replaced its input's (``combine = "none"``: a ranker's own order had dropped them; RRF kept them).
  Only the head: boosting what lies past it as well would depend on how deep the page asked for reached. A field sort
  (price, rating) is the shopper's explicit order and they leave it alone.
- A pinned product is shown at its position when it exists and passes the request's filters, even if the query
  does not match it; such a product counts in ``total`` (so the pages walk exactly ``total`` results) and in the
  facets (``MatchRule.also``: the match takes it in besides). A position past the ranked head (the fused legs)
  puts it at the head's end.
- A buried product that the query matches comes after every other result (it stays in ``total`` and the facets);
  one the query does not match is not shown.
- ``boost``: a product with the attributes ranks as if its position in the ranked head were divided by
  ``factor`` (scale-free, so it means the same after fusion, the cross-encoder or the conversion model); several
  boosts on one product multiply.
- Conflicts: hide beats pin and bury; pin beats bury; for one product or position the first rule in the file wins
  (but see Spelling).
- ``redirect``: the response carries the first firing rule's URL; the results are still computed.
- ``rules_applied`` names every rule that fired, in file order (but see Spelling); hits carry ``pinned``
  (position), ``boost`` (factor) or ``buried`` in their ``stages`` (shown with ``explain``).
- A blank query (browse) fires no rule.
- Spelling: a rule fires for the query as typed or for the query the response serves instead (the spelling
  correction of words the catalog does not hold, ``correction``: "televsion" served as "television" fires a rule
  for "television"; a relaxed search's query). A rare word the catalog holds and the speller serves beside its
  correction ("lamb" beside "lamp") keeps to its own rules. Where the two queries' rules conflict (one product or
  position, the redirect) the typed query wins: the rules it fires come first, in file order, then those only the
  served query fires (the order of ``rules_applied``); a hide of the latter does not remove a product the former
  pin, nor a pin of the latter lift one the former bury; filter rules of both apply. A merchandiser who writes a
  rule for a misspelling means that misspelling.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Collection, Mapping, Sequence, TypeVar

from shopsearch.settings import Settings
from shopsearch.text import query_words

from shopsearch.deadline import Deadline

from .engine import Engine, Filters, Hit, MatchRule
from .fusion import Fused
from .merchandising_rules import Rule, RuleFiles, RulesFile
from .search_types import ScoredHit
from .synonyms import SynonymFiles
from .text_analysis import SynonymMap

X = TypeVar("X")
PINNED, BOOST, BURIED = "pinned", "boost", "buried"  # the stages keys that mark a merchandised hit


@dataclass(frozen=True)
class Plan:
    """What the rules that fired for one query ask for (empty: no rule fired)."""

    rules: tuple[str, ...] = ()
    pins: dict[str, int] = field(default_factory=dict)  # product id -> 1-based position
    bury: tuple[str, ...] = ()
    hide: tuple[str, ...] = ()
    boosts: tuple[tuple[Filters, float], ...] = ()
    filters: tuple[Filters, ...] = ()
    redirect: str | None = None

    @property
    def arranges(self) -> bool:
        """Whether the plan rearranges the relevance ranking (pins, bury or boosts)."""
        return bool(self.pins or self.bury or self.boosts)

    def narrow(self, filters: Filters) -> Filters:
        """``filters`` with the hidden products excluded and every rule filter required.

        >>> narrowed = Plan(hide=("p1",), filters=(Filters(brand=("Acme",)),)).narrow(Filters(brand=("Other",)))
        >>> narrowed.brand, narrowed.exclude_ids, narrowed.required == Filters(brand=("Acme",))
        (('Other',), ('p1',), True)
        """
        out = replace(filters, exclude_ids=tuple(dict.fromkeys(filters.exclude_ids + self.hide)))
        for f in self.filters:
            out = replace(out, required=replace(f, required=out.required))
        return out


def plan_for(rules: RulesFile, query: str, now: datetime | None = None, served: str | None = None) -> Plan:
    """Collect the rules of ``rules`` that fire at ``now`` (default: the current time, UTC) for ``query`` (as typed)
    or for ``served``, the query the response serves instead (its spelling correction; None or the same words:
    none). The typed query's rules come first, in file order, so it wins conflicts; then those only ``served``
    fires.

    >>> rules = RulesFile.model_validate({"rule": [
    ...     {"name": "tv", "queries": ["television"], "pin": [{"id": "p6", "position": 1}]},
    ...     {"name": "typo", "queries": ["televsion"], "pin": [{"id": "p7", "position": 1}]}]})
    >>> plan_for(rules, " Television ").pins
    {'p6': 1}
    >>> plan = plan_for(rules, "televsion", served="television")  # both fire; the typed query's rule wins place 1
    >>> plan.rules, plan.pins
    (('typo', 'tv'), {'p7': 1})
    """
    now = now or datetime.now(timezone.utc)

    def firing(text: str) -> list[Rule]:
        q = query_words(text)
        return [r for r in rules.rule if r.fires(q, now)] if q else []  # a blank query (browse) fires nothing

    typed = firing(query)
    names = {r.name for r in typed}
    return _plan(typed, [r for r in firing(served or "") if r.name not in names])


def _plan(typed: list[Rule], served: list[Rule]) -> Plan:
    """The plan of the rules that fired, in the order they apply (the first wins a product or a position): those
    of the query as typed, then those only the served query fired, whose hides leave the former's pins shown and
    whose pins leave the former's buried products buried."""
    fired = typed + served
    if not fired:
        return Plan()
    kept = {p.id for r in typed for p in r.pin}
    buried = {i for r in typed for i in r.bury}
    hidden = tuple(dict.fromkeys([*(i for r in typed for i in r.hide),
                                  *(i for r in served for i in r.hide if i not in kept)]))
    pins: dict[str, int] = {}
    for rules, blocked in ((typed, set()), (served, buried)):
        for p in (p for r in rules for p in r.pin):
            if p.id not in pins and p.id not in hidden and p.id not in blocked and p.position not in pins.values():
                pins[p.id] = p.position
    bury = tuple(dict.fromkeys(i for r in fired for i in r.bury if i not in pins and i not in hidden))
    return Plan(rules=tuple(r.name for r in fired), pins=pins, bury=bury, hide=hidden,
                boosts=tuple((b.filters(), b.factor) for r in fired for b in r.boost),
                filters=tuple(r.filter.filters() for r in fired if r.filter is not None),
                redirect=next((r.redirect for r in fired if r.redirect), None))


class Merchandising:
    """Each index's rules and synonyms, from files reloaded when they change.

    Args:
        folder: the merchandising folder (``<index>.rules.toml``, ``<index>.synonyms.txt``); None: no rules, the
            default synonyms.
        default_synonyms: Solr-format lines for an index without a synonyms file.

    >>> Merchandising(None, ["couch, sofa"]).plan("products", "couch")
    Plan(rules=(), pins={}, bury=(), hide=(), boosts=(), filters=(), redirect=None)
    """

    def __init__(self, folder: str | Path | None, default_synonyms: Sequence[str] = ()):
        self.rule_files = RuleFiles(folder)
        self.synonym_files = SynonymFiles(folder, tuple(default_synonyms))

    @classmethod
    def from_settings(cls, settings: Settings) -> Merchandising:
        """The ``merchandising_dir`` setting's files, with the packaged synonyms (plugin/config/index.toml) as the
        default."""
        from .index_config import load_index_config

        return cls(settings.merchandising_dir, load_index_config().synonyms)

    def synonyms(self, index: str) -> SynonymMap:
        """The synonyms in force for ``index``."""
        return self.synonym_files.get(index)

    def plan(self, index: str, query: str, now: datetime | None = None, served: str | None = None) -> Plan:
        """The :class:`Plan` of ``index``'s rules for ``query`` as typed or ``served``, the query the response
        serves instead (see :func:`plan_for`)."""
        return plan_for(self.rule_files.get(index), query, now, served)


def arrange(items: Sequence[X], key: Callable[[X], str], pins: Mapping[str, int],
            boosts: Mapping[str, float] | None = None, buried: Collection[str] = ()) -> list[X]:
    """``items`` (a ranking, best first) with boosts, pins and buried items applied.

    Items not pinned or buried are ordered by ``position / boost`` (ties: the incoming order); pinned items go
    to their positions (past the end: at the end); buried items follow, in their incoming order.

    >>> arrange(list("abcdef"), str, {"f": 1}, {"e": 2.0}, ["a"])
    ['f', 'b', 'e', 'c', 'd', 'a']
    """
    boosts = boosts or {}
    free = [(i, x) for i, x in enumerate(items) if key(x) not in pins and key(x) not in buried]
    free.sort(key=lambda ix: ((ix[0] + 1) / boosts.get(key(ix[1]), 1.0), ix[0]))
    out = [x for _, x in free]
    pinned = sorted((pins[key(x)], i, x) for i, x in enumerate(items) if key(x) in pins)
    for position, _, x in pinned:
        out.insert(min(position - 1, len(out)), x)
    return out + [x for x in items if key(x) in buried and key(x) not in pins]


def mark(hit: ScoredHit, pins: Mapping[str, int], boosts: Mapping[str, float], buried: Collection[str]) -> ScoredHit:
    """``hit`` with its merchandising in ``stages`` (``pinned``, ``boost``, ``buried``), when it has any."""
    marks = {PINNED: float(pins[hit.id])} if hit.id in pins else {}
    if hit.id in boosts:
        marks[BOOST] = float(boosts[hit.id])
    if hit.id in buried:
        marks[BURIED] = 1.0
    return replace(hit, stages={**hit.stages, **marks}) if marks else hit


def rearrange(hits: Sequence[ScoredHit], *, boost: bool = False) -> list[ScoredHit]:
    """Put the pinned and buried products marked in ``hits[i].stages`` back in place after a stage reordered
    ``hits`` (a whole ranking, or its head from rank 1); ranks 1, 2, ...

    Boosts are applied again only with ``boost``: a stage that fused its order with its input's (RRF) kept the
    boosts the searcher applied, one whose order replaces its input's (a ranker's own score) dropped them.

    >>> hs = [ScoredHit("a", 1, 0.9), ScoredHit("b", 2, 0.5, stages={"pinned": 1.0})]
    >>> [(h.id, h.rank) for h in rearrange(hs)]
    [('b', 1), ('a', 2)]
    """
    pins = {h.id: int(h.stages[PINNED]) for h in hits if PINNED in h.stages}
    boosts = {h.id: h.stages[BOOST] for h in hits if BOOST in h.stages} if boost else {}
    buried = {h.id for h in hits if BURIED in h.stages}
    if not (pins or boosts or buried):
        return list(hits)
    ordered = arrange(hits, lambda h: h.id, pins, boosts or None, buried)
    return [replace(h, rank=i) for i, h in enumerate(ordered, start=1)]


@dataclass(frozen=True)
class Arranged:
    """The ranked head after a plan's pins, boosts and bury (:func:`arrange_head`), and what the page needs.

    ``fused``: the head in its new order (pinned products in it, buried ones out); ``extra``: the ids of pinned
    products the query does not match (the match counts and facets them: ``MatchRule.also``); ``buried``: the
    buried products the query matches, with their products, shown after every other result; ``pins``/``boosts``:
    what :func:`mark` writes on the hits.
    """

    fused: list[Fused]
    extra: tuple[str, ...] = ()
    buried: list[Hit] = field(default_factory=list)
    pins: dict[str, int] = field(default_factory=dict)
    boosts: dict[str, float] = field(default_factory=dict)

    def buried_page(self, position: int, room: int, total: int) -> list[Hit]:
        """The buried products for a page that has reached 0-based ``position`` with ``room`` places left, in a
        ranking of ``total`` results (they hold its last places).

        >>> arranged = Arranged([], buried=[Hit("x", 1.0), Hit("y", 1.0)])  # places 9 and 10 of 11 (0-based)
        >>> [[h.id for h in arranged.buried_page(*args, 11)] for args in ((9, 5), (10, 5), (9, 1), (3, 5))]
        [['x', 'y'], ['y'], ['x'], []]
        """
        first = position - (total - len(self.buried))
        return self.buried[first:first + room] if first >= 0 and room > 0 else []

    def marked(self, hits: Sequence[ScoredHit]) -> list[ScoredHit]:
        """``hits`` with their merchandising marks (see :func:`mark`)."""
        buried = {h.id for h in self.buried}
        return [mark(h, self.pins, self.boosts, buried) for h in hits]


def arrange_head(engine: Engine, index: str, plan: Plan, fused: Sequence[Fused], rule: MatchRule,
                 deadline: Deadline | None = None) -> Arranged:
    """Apply ``plan``'s pins, boosts and bury to the fused head of a relevance ranking.

    Engine calls, each only when the plan needs it: which pinned and buried products the query matches (one
    ``match`` restricted to their ids), which pinned products pass the filters (one), and per boost which head
    products have its attributes (one each).

    Args:
        engine, index: where to look the products up.
        plan: the rules that fired.
        fused: the fused head, best first.
        rule: the request's match rule (its filters already narrowed by the plan).
        deadline: passed to every engine call.

    Raises:
        IndexNotFound, EngineUnavailable, DeadlineExceeded: from the engine.
    """
    def only(ids: Sequence[str], r: MatchRule) -> list[Hit]:
        if not ids:
            return []
        r = replace(r, filters=replace(r.filters, ids=tuple(ids)))
        return engine.match(index, r, size=len(ids), deadline=deadline).hits

    pinned = list(plan.pins)
    matched = {h.id: h for h in only(pinned + list(plan.bury), rule)}
    shown = {h.id for h in only(pinned, MatchRule(filters=rule.filters))}
    pins = {i: p for i, p in plan.pins.items() if i in shown}
    head_ids = [f.id for f in fused]
    boosts: dict[str, float] = {}
    for filters, factor in plan.boosts:
        for h in only(head_ids, MatchRule(filters=filters)):
            boosts[h.id] = boosts.get(h.id, 1.0) * factor
    by_id = {f.id: f for f in fused}
    items = [f for f in fused if f.id not in plan.bury] + [Fused(i, 0.0) for i in pins if i not in by_id]
    head = arrange(items, lambda f: f.id, pins, boosts)
    buried = [matched[i] for i in plan.bury if i in matched]
    # Every pin the query does not match, whatever the filters: the engine applies them per facet, so a pin that
    # fails only the brand filter still counts in the brand facet, which ignores its own filter.
    return Arranged(head, extra=tuple(i for i in plan.pins if i not in matched), buried=buried, pins=pins,
                    boosts=boosts)
