"""The ranking pipeline: hybrid top-N -> cross-encoder top-K -> LightGBM conversion order -> page.

This is the one search path: GET /search, ``shopsearch eval`` and ``shopsearch compare`` all call
:meth:`RankingPipeline.search`, so offline numbers measure what shoppers get.

Decisions worth knowing:
- The head (``max(rerank.depth, conversion.depth)``) is always reranked as a whole and the page is cut afterwards,
  so page 2 continues page 1. A page entirely below the head is served straight from the fused ranking (the
  stages only permute the head, so the result is the same, without the model cost).
- Each stage degrades on its own: a missing model, a failure or a blown budget passes its input order through,
  sets ``degraded=True`` and adds a note naming the stage. Nothing escapes but the searcher's own errors (bad
  parameters, engine outages). When the cross-encoder degraded and the conversion model uses its score as a
  feature, the conversion stage is skipped too (its input would be off the distribution it was trained on).
- A ``deadline`` (shopsearch.deadline, the API's end-to-end one) reaches every engine call, and the cross-encoder
  gets the smaller of its budget and the time left; a stage with no time left passes its input through, marked
  degraded with a ``:deadline`` reason code (:data:`~shopsearch.plugin.search_types.DEGRADED_REASONS`).
- Scores: a hit's ``score`` is that of the last stage that scored it (conversion probability in the conversion
  head, cross-encoder score in the rest of the rerank head, fused score below), ``stages`` keeps each one.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Any, Iterable, NamedTuple, Protocol

import numpy as np

from shopsearch.deadline import Deadline, DeadlineExceeded
from shopsearch.plugin.hybrid import HybridSearcher, validate_request
from shopsearch.plugin.merchandising import rearrange
from shopsearch.plugin.profiles import Profile, ProfileStore
from shopsearch.plugin.search_types import ScoredHit, SearchRequest, SearchResponse
from shopsearch.settings import Settings

from .batch_cost import BatchCost
from .conversion import check_folder
from .cross_encoder import STAGE as CE_STAGE, rrf_with_incoming
from .features import LIST_REFERENCE, FeatureContext, feature_matrix, with_list_features
from .model_registry import ModelNotFound, ModelRegistry

log = logging.getLogger(__name__)

CONVERSION = "conversion"


@dataclass(frozen=True)
class SearchContext:
    """Who is searching, for the conversion features (both optional: anonymous shoppers get no affinity)."""

    user_id: str | None = None
    session_id: str | None = None


class RankerInput(NamedTuple):
    """The head a profile's conversion stage orders, the feature context it scores it with, and whether an
    earlier stage (or the history) degraded."""

    hits: list[ScoredHit]
    context: FeatureContext
    degraded: bool


class ContextSource(Protocol):
    """Where conversion-feature context comes from (e.g. :class:`~.event_context.EventLogHistory`)."""

    def context(self, user_id: str | None, session_id: str | None,
                product_ids: Iterable[str]) -> FeatureContext: ...


def check_models(profiles: ProfileStore, models: ModelRegistry, profile_name: str) -> Profile:
    """Fail fast when a profile names a model that cannot be found (before a long evaluation or a deploy).

    Returns:
        The profile.
    Raises:
        UnknownProfile / ProfileError (ValueErrors): no such profile or an invalid one.
        ModelNotFound (a FileNotFoundError): the message names the profile, the stage, the model and where it
            looked; or a conversion model's folder lacks a file its card lists.
        ValueError: a conversion model this version would refuse (an older card version: retrain it), or a model
            name the registry rejects (any stage).

    >>> check_models(ProfileStore(), ModelRegistry(), "default").name
    'default'
    """
    profile = profiles.get(profile_name)
    for kind, model in model_stages(profile):
        try:
            path = models.check(kind, model)
            if kind == "conversion":
                check_folder(path)
        except FileNotFoundError as exc:
            raise type(exc)(f"profile {profile.name!r} ({kind} stage): {exc}") from None
        except ValueError as exc:
            raise ValueError(f"profile {profile.name!r} ({kind} stage): model {model!r}: {exc}") from None
    return profile


def model_stages(profile: Profile) -> list[tuple[str, str]]:
    """(model kind, model name) of each enabled model stage of ``profile``: rerank, then conversion."""
    return [(kind, stage.model) for kind, stage in (("cross_encoder", profile.rerank),
                                                    ("conversion", profile.conversion)) if stage.enabled]


# A product of about 150 tokens, past the max_length cross-encoders are trained with here (48-128), so the warm-up
# prices a full pair; far longer text would also time tokenizing what is then cut off. WARM_PAIRS of them price a
# stage of any depth (the cost is per pair), keeping a worker's start short.
_WARM_PRODUCT = {"title": "warm up " * 8, "description": "warm up " * 64}
WARM_PAIRS = 64


def _estimates(reranker: Any) -> list[BatchCost]:
    """The cost estimates a cross-encoder's budget checks read: its own, or each ensemble member's."""
    owners = getattr(reranker, "members", None) or [reranker]
    return [o.cost for o in owners if isinstance(getattr(o, "cost", None), BatchCost)]


def _why(exc: Exception) -> str:
    """Why a model is unavailable, as a response's note says it: the model registry's message names the folders it
    searched, which is for the server's log, not for every API client."""
    return "not installed" if isinstance(exc, ModelNotFound) else type(exc).__name__


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)


class RankingPipeline:
    """Hybrid retrieval, then the profile's cross-encoder and conversion stages, then pagination.

    Args:
        searcher: the HybridSearcher (its profile store names the stages and models).
        models: where models are found by name and cached.
        history: conversion-feature context (product stats, shopper affinity); None: priors only.
        budgets: honour the profiles' latency budgets (serving). False runs every stage to completion: offline
            evaluation of what a profile ranks on hardware slower than the one it is served on.

    >>> pipeline = RankingPipeline(searcher, ModelRegistry())  # doctest: +SKIP
    >>> resp = pipeline.search(SearchRequest("red lamp", profile="rerank", explain=True))  # doctest: +SKIP
    >>> sorted(resp.hits[0].stages)  # doctest: +SKIP
    ['bm25', 'bm25_rank', 'conversion', 'conversion_raw', 'cross_encoder', 'fused', 'knn', 'knn_rank']
    """

    def __init__(self, searcher: HybridSearcher, models: ModelRegistry, history: ContextSource | None = None,
                 *, budgets: bool = True):
        self.searcher = searcher
        self.budgets = budgets
        # A stand-in searcher without a profile store or settings (a test double) gets the default ones.
        self.profiles = getattr(searcher, "profiles", None) or ProfileStore()
        self.limits: Settings = getattr(searcher, "settings", None) or Settings()
        self.models = models
        self.history = history

    def check_models(self, profile_name: str) -> Profile:
        """:func:`check_models` with this pipeline's profiles and models."""
        return check_models(self.profiles, self.models, profile_name)

    def warm_models(self) -> list[str]:
        """Load every model a profile's rerank or conversion stage names, so no shopper's request pays for it.

        A cross-encoder's first load on CPU exports its ONNX int8 copy (cached after). Models that are missing or
        fail to load are skipped (logged): requests then serve that stage degraded, as without a warm-up. Each
        cross-encoder stage is then timed on this machine (:meth:`_time_rerank`), with a warning when it cannot
        fit its budget. Returns the ``kind:name`` of each model loaded.
        """
        loaded, tried, timed = [], set(), {}
        for name in self.profiles.names():
            try:
                profile = self.profiles.get(name)
            except ValueError as exc:  # an invalid user profile: requests naming it get the 400
                log.warning("warm-up: profile %s skipped: %s", name, exc)
                continue
            for kind, model in model_stages(profile):
                if (kind, model) not in tried:  # several profiles may name one model; load (or fail) it once
                    tried.add((kind, model))
                    try:
                        self.models.get(kind, model)
                        loaded.append(f"{kind}:{model}")
                    except Exception as exc:  # noqa: BLE001 - warming is best effort
                        log.warning("warm-up: %s model %r not loaded (%s)", kind, model, exc)
                if kind == "cross_encoder" and f"{kind}:{model}" in loaded:
                    self._time_rerank(profile, timed)
        return loaded

    def _time_rerank(self, profile: Profile, timed: dict[tuple[str, int], float | None]) -> None:
        """Time one head of ``profile``'s rerank depth and warn when it takes longer than the stage's budget.

        Such a stage is skipped by every search (its cost estimate says it cannot finish), so shoppers always get
        the retrieval order, degraded: an operator should hear it at start, not find it in the notes. Up to
        ``WARM_PAIRS`` products are scored twice (the first run pays one-off costs) and the second run is scaled
        to the depth. The model's own estimate is put back as it was: full-length products scored while every
        worker boots must not decide whether shoppers' searches run the stage. ``timed`` keeps each (model,
        depth)'s milliseconds, so profiles sharing them score once.
        """
        stage = profile.rerank
        key = (stage.model, stage.depth)
        if key not in timed:
            timed[key] = None
            sample = min(stage.depth, WARM_PAIRS)
            products = [{**_WARM_PRODUCT, "id": f"w{i}"} for i in range(sample)]
            try:
                reranker = self.models.get("cross_encoder", stage.model)
                estimates = _estimates(reranker)
                saved = [e.snapshot() for e in estimates]
                try:
                    reranker.score("warm up", products)
                    t0 = time.perf_counter()
                    reranker.score("warm up", products)
                    timed[key] = _ms(t0) * stage.depth / sample
                finally:
                    for e, state in zip(estimates, saved):
                        e.restore(state)
            except Exception as exc:  # noqa: BLE001 - warming is best effort; a search reports its own failure
                log.warning("warm-up: cross-encoder %r could not be timed (%s)", stage.model, exc)
        ms = timed[key]
        if ms is not None and ms > stage.budget_ms:
            log.warning("profile %r: its cross-encoder %r scores %d products in %.0f ms on this machine, over the "
                        "stage's budget_ms %.0f: searches will serve the retrieval order instead (degraded). Raise "
                        "[rerank] budget_ms, lower depth, or serve on a GPU.", profile.name, stage.model,
                        stage.depth, ms, stage.budget_ms)

    def search(self, req: SearchRequest, *, context: SearchContext | None = None,
               deadline: Deadline | None = None) -> SearchResponse:
        """Run one search through every stage of the request's profile.

        Args:
            req: the request (query, filters, page, size, profile, facets, explain).
            context: the shopper (user/session), for the conversion features.
            deadline: when the answer is due (every engine call and stage fits in it; see the module notes).
        Returns:
            The page of hits (``rank`` = position in the final ranking), facets, ``timings_ms`` with ``rerank``
            and ``conversion`` when those stages ran, ``degraded`` and notes. With ``req.explain`` the
            conversion head's hits carry LightGBM's per-feature ``contributions`` (summing to
            ``stages["conversion_raw"]``).
        Raises:
            ValueError: a bad parameter or unknown profile (from the searcher).
            IndexNotFound, EngineUnavailable: from the engine.
            DeadlineExceeded: nothing could be retrieved before the deadline.
        """
        t_total = time.perf_counter()
        validate_request(req, self.limits)
        profile = self.profiles.get(req.profile)
        rerank, conv = profile.rerank, profile.conversion
        head = max(rerank.depth if rerank.enabled else 0, conv.depth if conv.enabled else 0)
        start = (req.page - 1) * req.size
        if head == 0 or start >= head or not req.query.strip() or req.sort != "relevance":  # field sorts: no model
            if req.sort == "relevance" and req.query.strip():
                return self._stamped(req, deadline)
            return self.searcher.search(req, deadline=deadline)  # no stage touches this page
        run = self._retrieve_and_rerank(req, profile, max(head, req.page * req.size), deadline)
        hits, notes, reasons = run.hits, run.notes, run.reasons
        if conv.enabled:
            t = time.perf_counter()
            if deadline is not None and deadline.expired():
                reasons.append("conversion:deadline")
                notes.append(f"conversion stage skipped: no time left before the {deadline.budget_s * 1000:g} ms "
                             "deadline; order kept")
            else:
                hits, conv_notes, conv_reasons = self._convert(profile, req.query.strip(), hits, context,
                                                               req.explain, run.ce_failed)
                notes.extend(conv_notes)
                reasons.extend(conv_reasons)
            run.timings[CONVERSION] = _ms(t)
        # The stages reorder only the head, so only the head needs pins and bury put back; the rest (how far n
        # reached depends on the page asked for) keeps the searcher's order, and every page slices one ranking.
        # A last stage whose order replaced its input's dropped the searcher's boosts: the head gets them again.
        last = conv if conv.enabled else rerank
        hits = rearrange(hits[:head], boost=last.combine != "rrf") + hits[head:]
        run.timings["total"] = _ms(t_total)
        return SearchResponse(query=req.query, profile=profile.name, page=req.page, size=req.size,
                              total=run.first.total, hits=hits[start:start + req.size], facets=run.first.facets,
                              timings_ms=run.timings, degraded=bool(reasons), notes=tuple(dict.fromkeys(notes)),
                              degraded_reasons=tuple(dict.fromkeys(reasons)), correction=run.first.correction,
                              did_you_mean=run.first.did_you_mean, relaxed=run.first.relaxed,
                              rules_applied=run.first.rules_applied, redirect=run.first.redirect)

    def _stamped(self, req: SearchRequest, deadline: Deadline | None) -> SearchResponse:
        """A relevance page served without stages, with the list-relative features a ranker would compute for it
        (logged with the query), taken against the retrieval's first LIST_REFERENCE hits.

        One search: the searcher returns that first page with the page (``SearchRequest.reference``). Only when
        the fused legs hold fewer (the first page then runs into the matching set) is it searched for apart; if
        that second search fails, the page goes unstamped (training then ranks it against itself) rather than
        fail the search.
        """
        # (a max_depth below the reference: the second search below, as for a searcher without it)
        reference = LIST_REFERENCE if LIST_REFERENCE <= self.limits.max_depth else 0
        resp = self.searcher.search(replace(req, reference=reference), deadline=deadline)
        if not resp.hits:
            return replace(resp, first_page=())
        if resp.first_page:
            return replace(resp, hits=with_list_features(resp.hits, resp.first_page), first_page=())
        if req.page == 1 and (len(resp.hits) >= LIST_REFERENCE or len(resp.hits) < req.size):
            return replace(resp, hits=with_list_features(resp.hits))  # it holds the first page, or all there is
        try:
            first = self.searcher.search(replace(req, page=1, size=LIST_REFERENCE, facets=(), explain=False),
                                         deadline=deadline).hits
        except Exception as exc:  # noqa: BLE001 - the page itself was found; only its logged features are at stake
            log.info("list features of page %d not stamped: %s", req.page, exc)
            return resp
        return replace(resp, hits=with_list_features(resp.hits, first))

    def ranker_input(self, req: SearchRequest, *, context: SearchContext | None = None) -> RankerInput:
        """What the profile's conversion (learned ranker) stage would order for ``req``, without running it: the
        head after retrieval and the rerank stage, and the feature context. Training from judgments calls
        :func:`~.features.feature_matrix` on exactly these, as the stage does, so it learns from the served
        features and needs no model yet.

        Raises:
            ValueError: a bad parameter, an unknown profile, or a profile whose ``conversion.depth`` is 0.
            IndexNotFound, EngineUnavailable: from the engine.

        >>> pipeline.ranker_input(SearchRequest("red lamp", profile="ltr")).hits[0].stages  # doctest: +SKIP
        {'bm25': 7.1, 'bm25_rank': 1, 'knn': 0.83, 'knn_rank': 4, 'fused': 0.031}
        """
        validate_request(req, self.limits)
        profile = self.profiles.get(req.profile)
        depth = profile.conversion.depth
        if depth == 0:
            raise ValueError(f"profile {profile.name!r}: conversion.depth is 0; the learned ranker stage needs a "
                             f"depth > 0 (the head it orders)")
        if not req.query.strip():
            return RankerInput([], FeatureContext(), False)
        rerank = profile.rerank.depth if profile.rerank.enabled else 0
        run = self._retrieve_and_rerank(replace(req, page=1), profile, max(rerank, depth))
        head = run.hits[:depth]
        notes = run.notes
        fctx = self._feature_context(context, [h.id for h in head], notes, run.reasons)
        return RankerInput(head, fctx, bool(run.reasons) or bool(notes))

    def _retrieve_and_rerank(self, req: SearchRequest, profile: Profile, n: int,
                             deadline: Deadline | None = None) -> "_Run":
        """The fused top ``n`` through the rerank stage."""
        resp, hits, cut = self._candidates(req, n, deadline)
        hits = with_list_features(hits)  # against the fused first page, before any stage reorders it
        run = _Run(first=resp, hits=hits, timings={k: v for k, v in resp.timings_ms.items() if k != "total"},
                   notes=list(resp.notes), reasons=list(resp.degraded_reasons))
        if cut:
            run.reasons.append("retrieve:deadline")
            run.notes.append(f"deadline: {len(hits)} of {n} candidates retrieved in time")
        if profile.rerank.enabled:
            t = time.perf_counter()
            # The cross-encoder reads what the shopper meant, as the vector leg did (the speller's correction).
            run.hits, note, reason = self._rerank(profile, resp.correction or req.query.strip(), hits, deadline)
            run.timings["rerank"] = _ms(t)
            if reason:
                run.notes.append(note)
                run.reasons.append(reason)
                run.ce_failed = True
        return run

    def _candidates(self, req: SearchRequest, n: int,
                    deadline: Deadline | None = None) -> tuple[SearchResponse, list[ScoredHit], bool]:
        """The fused top ``n`` (in pages of at most ``max_size``), the first page's response (facets) and whether
        the deadline cut the deeper pages short."""
        chunk = min(n, self.limits.max_size)
        first = self.searcher.search(replace(req, page=1, size=chunk), deadline=deadline)
        hits, timings = list(first.hits), dict(first.timings_ms)
        cut = False
        for page in range(2, math.ceil(n / chunk) + 1):
            if len(hits) < (page - 1) * chunk:
                break  # the fused list ended
            # Deeper heads re-run retrieval per chunk (a searcher call returns at most max_size hits).
            try:
                r = self.searcher.search(replace(req, page=page, size=chunk, facets=()), deadline=deadline)
            except DeadlineExceeded:
                cut = True  # the head is what the first pages hold
                break
            for k, v in r.timings_ms.items():
                timings[k] = round(timings.get(k, 0.0) + v, 3)
            hits.extend(r.hits)
        return replace(first, timings_ms=timings), hits[:n], cut

    def _rerank(self, profile: Profile, query: str, hits: list[ScoredHit], deadline: Deadline | None = None
                ) -> tuple[list[ScoredHit], str, str | None]:
        """Cross-encoder stage: (hits, "", None), or the input hits, a note and a reason code when it degraded.

        The model gets the smaller of the profile's budget (when budgets are on) and the time the deadline leaves.
        """
        s = profile.rerank
        budget = s.budget_ms if self.budgets else None
        left = deadline.remaining_ms() if deadline is not None else None
        by_deadline = left is not None and (budget is None or left < budget)
        if by_deadline:
            budget = left
        if budget is not None and budget <= 0:
            return hits, (f"rerank stage skipped: no time left before the {deadline.budget_s * 1000:g} ms "
                          "deadline; fused order served"), "rerank:deadline"
        try:
            model = self.models.cross_encoder(s.model)
            out, why = model.rerank(query, hits, depth=s.depth, budget_ms=budget, combine=s.combine, rrf_k=s.rrf_k)
        except Exception as exc:  # noqa: BLE001 - a missing/broken model degrades, never a 500
            log.warning("rerank stage degraded (profile %s): %s", profile.name, exc)
            return hits, (f"rerank stage degraded: cross-encoder {s.model!r} unavailable ({_why(exc)}); fused "
                          "order served"), "rerank:unavailable"
        if why == "failed":
            return hits, f"rerank stage degraded: cross-encoder {s.model!r} failed; fused order served", \
                "rerank:failed"
        if why is not None:
            limit = (f"the {budget:.0f} ms left before the request's deadline" if by_deadline
                     else f"its {s.budget_ms:g} ms budget")
            log.info("rerank stage degraded (profile %s): over %s", profile.name, limit)
            return hits, (f"rerank stage degraded: cross-encoder {s.model!r} could not fit {limit}; fused order "
                          "served"), ("rerank:deadline" if by_deadline else "rerank:budget")
        return list(out), "", None

    def _convert(self, profile: Profile, query: str, hits: list[ScoredHit], context: SearchContext | None,
                 explain: bool, ce_failed: bool) -> tuple[list[ScoredHit], list[str], list[str]]:
        """Conversion stage: LightGBM orders the head; (hits, notes, reason codes), non-empty when it degraded."""
        s = profile.conversion
        try:
            model = self.models.conversion(s.model)
        except Exception as exc:  # noqa: BLE001
            log.warning("conversion stage degraded (profile %s): %s", profile.name, exc)
            return hits, [f"conversion stage degraded: model {s.model!r} unavailable ({_why(exc)}); order kept"], \
                ["conversion:failed"]
        if ce_failed and CE_STAGE in model.names:
            return hits, [f"conversion stage skipped: model {s.model!r} needs the cross-encoder score, which "
                          f"degraded; order kept"], ["conversion:failed"]
        head, tail = hits[:s.depth], hits[s.depth:]
        notes: list[str] = []
        reasons: list[str] = []
        try:
            fctx = self._feature_context(context, [h.id for h in head], notes, reasons)
            x = feature_matrix(query, head, fctx, model.names)
            raw = model.raw_scores(x)
            probs = model.calibrated(raw)
            contribs = model.contributions(x) if explain else [{} for _ in head]
        except Exception as exc:  # noqa: BLE001
            log.warning("conversion stage degraded (profile %s): %s", profile.name, exc)
            return hits, notes + [f"conversion stage degraded: model {s.model!r} failed "
                                  f"({type(exc).__name__}: {exc}); order kept"], reasons + ["conversion:failed"]
        final = rrf_with_incoming(probs, s.rrf_k) if s.combine == "rrf" else np.asarray(probs, dtype=np.float64)
        order = sorted(range(len(head)), key=lambda i: (-float(final[i]), i))  # ties keep the incoming order
        ranked = [_scored(head[i], float(probs[i]), float(raw[i]), contribs[i],
                          float(final[i]) if s.combine == "rrf" else None) for i in order]
        return [replace(h, rank=r) for r, h in enumerate(ranked + tail, 1)], notes, reasons

    def _feature_context(self, context: SearchContext | None, ids: list[str], notes: list[str],
                         reasons: list[str]) -> FeatureContext:
        """Stats and affinity from the history; priors only (and a note and reason code) when it fails."""
        if self.history is None:
            return FeatureContext()
        ctx = context or SearchContext()
        try:
            return self.history.context(ctx.user_id, ctx.session_id, ids)
        except Exception as exc:  # noqa: BLE001 - history is an enhancement; rank without it
            log.warning("event history unavailable: %s", exc)
            notes.append(f"conversion stage degraded: event history unavailable ({type(exc).__name__}); "
                         f"priors used")
            reasons.append("history:failed")
            return FeatureContext()


@dataclass
class _Run:
    """Retrieval and the rerank stage so far: the first page's response (total, facets), the head, timings,
    notes, degradation reason codes and whether the cross-encoder degraded."""

    first: SearchResponse
    hits: list[ScoredHit]
    timings: dict[str, float]
    notes: list[str]
    reasons: list[str]
    ce_failed: bool = False


def _scored(h: ScoredHit, prob: float, raw: float, contributions: dict[str, Any],
            fused: float | None = None) -> ScoredHit:
    """``h`` scored by the conversion model (probability, raw score, per-feature contributions); with ``fused``
    (``combine = "rrf"``) that fusion is its score, also kept as the ``conversion_rrf`` stage."""
    stages = {**h.stages, CONVERSION: prob, f"{CONVERSION}_raw": raw}
    if fused is not None:
        stages[f"{CONVERSION}_rrf"] = fused
    return replace(h, score=prob if fused is None else fused, stages=stages,
                   contributions={k: float(v) for k, v in contributions.items()})

