"""The Engine contract on a real OpenSearch cluster (k-NN plugin, lucene HNSW), through opensearch-py.

Query bodies are built by :mod:`.opensearch_queries` (pure), bulk layering lives in :mod:`.opensearch_bulk` and
error translation in :mod:`.opensearch_errors`; this class does the I/O.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator, Sequence

from shopsearch.deadline import Deadline, DeadlineExceeded
from shopsearch.indexer.sink import Action, BulkItem, IndexHealth, LockHolder
from shopsearch.settings import Settings, load_settings

from . import opensearch_locks
from .cluster_health import ClusterHealth, cluster_health, index_health, probe_hosts
from .connection import JOB_TIMEOUT_S, display_url, make_client
from .documents import VECTOR_FIELD, public_source
from .engine import (MATCH_WINDOW, PRICE_EDGES, BM25Leg, EngineBusy, EngineUnavailable, Filters, Hit, IndexNotFound,
                     KnnLeg, MatchPage, MatchRule)
from .index_config import IndexConfig, added_mappings, load_index_config, opensearch_index_body
from .opensearch_bulk import RetryPolicy, ordered_bulk
from .opensearch_errors import engine_errors, search_failure, transient_request_failure
from .opensearch_queries import (SOURCE_EXCLUDES, count_body, field_query_name, highlight_body,
                                 leg_body, match_bodies, parse_facets)
from .suggest import check_suggest_size, opensearch_suggest_body, rank_suggestions, suggest_terms
from .vocabulary import VOCABULARY_FIELDS, VOCABULARY_INDEX, Vocabulary, build_vocabulary

log = logging.getLogger(__name__)
# How often (seconds) vocabulary() asks the cluster whether the index changed; between checks it costs nothing.
VOCABULARY_CHECK_S = 30.0
# The _search parameter that turns each hit's matched_queries into {name: score} (the named clauses' scores).
NAMED_SCORES = {"include_named_queries_score": "true"}

# A search (or a count) some shards could not answer (an _msearch item's 5xx, _shards.failed > 0: a node lost while
# its replicas take over) is sent again, only the failed searches, up to SEARCH_RETRIES times after a backoff from
# SEARCH_RETRY_BACKOFF_S seconds, doubling, while the request's deadline leaves SEARCH_RETRY_MIN_S for the attempt.
# A whole round trip that may pass in a moment (refused or reset on every node the client tried, or a 5xx that does
# not blame the request: the moment a node dies) takes one of those rounds, once: an outage costs one more round.
SEARCH_RETRIES = 3
SEARCH_RETRY_BACKOFF_S = 0.05
SEARCH_RETRY_MIN_S = 0.05

# OpenSearch index/alias names: lowercase, no wildcards, separators or leading -_+ (we reject rather than guess).
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def _hit(h: dict[str, Any], score: float | None = None, leg: BM25Leg | KnnLeg | None = None) -> Hit:
    """A Hit from one OpenSearch hit (its source, when fetched, and its highlights, joined per field); for a BM25
    ``leg``, each field's own score from the named clauses' scores, unboosted (0.0: the field did not match)."""
    marks = {name: " ".join(parts) for name, parts in (h.get("highlight") or {}).items()}
    src = h.get("_source")
    fields = {}
    named = h.get("matched_queries", {})
    if isinstance(leg, BM25Leg) and leg.field_scores and isinstance(named, dict):  # a list: no scores, so none
        fields = {f: float(named.get(field_query_name(f), 0.0)) / boost for f, boost in leg.fields.items()}
    return Hit(id=h["_id"], score=float(h.get("_score") or 0.0) if score is None else score,
               source=public_source(src) if src else {}, highlights=marks, fields=fields)


def _check_name(param: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value) or len(value) > 255:
        raise ValueError(f"{param}={value!r} is not a valid index name: lowercase letters, digits, '.', '_', '-', "
                         "starting with a letter or digit")
    return value


class OpenSearchEngine:
    """Index, bulk-load and search products in OpenSearch.

    Args:
        url: node URL, instead of the settings' ``opensearch_url``.
        settings: the resolved settings, for the credentials and TLS options (default: ``load_settings()``).
        config: index settings (default plugin/config/index.toml).
        timeout: per-request timeout in seconds.
        max_retries: client retries on connection errors, timeouts and 502/503/504, each on the next node.
        retry_on_timeout: False keeps a hung node's timeout from being retried (a search API with a deadline).

    Raises:
        ValueError: invalid URL, timeout or connection settings. Nothing is contacted until the first call.

    >>> engine = OpenSearchEngine("http://127.0.0.1:9200")  # doctest: +SKIP
    >>> engine.search("products", [BM25Leg("tv", {"title": 3.0})])  # doctest: +SKIP
    """

    def __init__(self, url: str | None = None, *, settings: Settings | None = None, config: IndexConfig | None = None,
                 timeout: float = JOB_TIMEOUT_S, max_retries: int = 2, retry_on_timeout: bool = True) -> None:
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout={timeout!r} must be > 0 seconds")
        self.settings = settings or load_settings()
        if url:
            self.settings = self.settings.replace(opensearch_url=url)
        self.url = display_url(self.settings.opensearch_url)
        self.config = config or load_index_config()
        self.timeout = float(timeout)
        self.client = make_client(settings=self.settings, timeout=self.timeout, max_retries=max_retries,
                                  retry_on_timeout=retry_on_timeout)
        self._vocabularies: dict[str, tuple[float, Vocabulary]] = {}  # index name -> (checked at, vocabulary)
        self._vocabulary_lock = threading.Lock()
        # Sends a leg that cannot ride in the _msearch (field_scores) while the _msearch is under way: one thread
        # per pooled connection, so a busy API's searches do not queue behind each other here.
        self._legs = ThreadPoolExecutor(max_workers=self.settings.opensearch_pool_maxsize,
                                        thread_name_prefix="opensearch-leg")

    def __repr__(self) -> str:
        return f"OpenSearchEngine({self.url!r})"

    def _errors(self, index: str):  # noqa: ANN202 - a context manager
        return engine_errors(index=index, url=self.url, user=self.settings.opensearch_user)

    def _timed(self, stage: str, deadline: Deadline | None, index: str, call: Any) -> Any:
        """``call(**kwargs)`` with the request timeout cut to the time ``deadline`` leaves; a timeout (or any
        outage) once the deadline has passed raises DeadlineExceeded, so the caller knows time ran out."""
        if deadline is None:
            with self._errors(index):
                return call()
        timeout = deadline.timeout_s(stage, cap=self.timeout)
        try:
            with self._errors(index):
                return call(request_timeout=timeout)
        except EngineUnavailable as exc:
            if deadline.expired():
                raise DeadlineExceeded(stage, f"OpenSearch at {self.url} did not answer {stage} within the "
                                              f"request's deadline ({deadline.budget_s:g} s)") from exc
            raise

    def _answers(self, stage: str, deadline: Deadline | None, index: str, n: int,
                 send: Any) -> list[dict[str, Any]]:
        """The answers of ``n`` searches; ``send(positions)`` sends those (one round trip) and returns their answers
        in order. Those that fail transiently (:func:`~.opensearch_errors.search_failure`) are sent again, alone,
        up to :data:`SEARCH_RETRIES` times with backoff within ``deadline``; then the first one's error raises
        (EngineUnavailable). A round trip that failed whole but may pass in a moment
        (:func:`~.opensearch_errors.transient_request_failure`) is sent again once, taking one of those rounds.
        Any other failure raises at once, translated."""
        answers: list[dict[str, Any]] = [{} for _ in range(n)]
        todo = list(range(n))
        whole_sent_again = False
        for attempt in range(SEARCH_RETRIES + 1):
            failed: list[int] = []
            first: Exception | None = None
            try:
                got = send(todo)
            except EngineUnavailable as whole:
                if whole_sent_again or not transient_request_failure(whole):
                    raise
                whole_sent_again = True
                failed, first, got = list(todo), whole, []
            if first is None and len(got) != len(todo):
                raise EngineUnavailable(f"OpenSearch at {self.url} gave {len(got)} answers to {len(todo)} searches")
            for pos, answer in zip(todo, got):
                failure = search_failure(answer, index=index, url=self.url, user=self.settings.opensearch_user)
                if failure is None:
                    answers[pos] = answer
                    continue
                exc, transient = failure
                if not transient:
                    raise exc
                failed.append(pos)
                first = first or exc
            if first is None:
                return answers
            delay = SEARCH_RETRY_BACKOFF_S * 2 ** attempt
            if attempt == SEARCH_RETRIES or (deadline is not None
                                             and deadline.remaining_s() < delay + SEARCH_RETRY_MIN_S):
                raise first
            log.warning("%s: %d of %d searches on %s failed (%s); sending them again in %.2f s",
                        stage, len(failed), len(todo), index, first, delay)
            time.sleep(delay)
            todo = failed
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, index: str, what: str, call: Any) -> Any:
        """``call()``, translated; a whole failure that may pass in a moment
        (:func:`~.opensearch_errors.transient_request_failure`, e.g. the node that held the connection just died) is
        sent once more after :data:`SEARCH_RETRY_BACKOFF_S`, as a search is. For reads outside a search's deadline."""
        try:
            with self._errors(index):
                return call()
        except EngineUnavailable as exc:
            if not transient_request_failure(exc):
                raise
            log.warning("%s on %s failed (%s); sending it again in %.2f s", what, index, exc, SEARCH_RETRY_BACKOFF_S)
            time.sleep(SEARCH_RETRY_BACKOFF_S)
        with self._errors(index):
            return call()

    def _search_once(self, stage: str, deadline: Deadline | None, index: str, body: dict[str, Any],
                     **params: Any) -> dict[str, Any]:
        """One ``_search`` answer (timed by ``deadline``). An error raises, translated, for :meth:`_answers` to judge
        (the client has already sent a refused or reset request, or a 502/503/504, to the other nodes)."""
        return self._timed(stage, deadline, index, lambda **kw: self.client.search(index=index, body=body, **params,
                                                                                   **kw))

    # --- indices and aliases -----------------------------------------------------------------------------------

    def create_index(self, name: str, dims: int) -> None:
        """Create an empty index from the project's mapping with ``dims``-dimensional vectors.

        Raises:
            ValueError: bad name or dims, or the index/alias already exists (OpenSearch's reason).
        """
        body = opensearch_index_body(self.config, dims)
        with self._errors(_check_name("name", name)):
            self.client.indices.create(index=name, body=body)

    def delete_index(self, name: str) -> None:
        """Delete an index; no error if it does not exist."""
        with self._errors(_check_name("name", name)):
            self.client.indices.delete(index=name, ignore_unavailable=True)
            self.client.delete(index=VOCABULARY_INDEX, id=name, ignore=404)  # its vocabulary, if one was built

    def index_exists(self, name: str) -> bool:
        """Whether an index (or an alias) called ``name`` exists."""
        with self._errors(_check_name("name", name)):
            return bool(self.client.indices.exists(index=name))

    def list_indices(self, prefix: str) -> list[str]:
        """Concrete (open, non-hidden) index names starting with ``prefix``, sorted."""
        if prefix and not _NAME_RE.match(prefix):
            raise ValueError(f"prefix={prefix!r} may hold only lowercase letters, digits, '.', '_' and '-'")
        with self._errors(prefix):
            rows = self.client.cat.indices(index=f"{prefix}*", format="json", h="index",
                                           expand_wildcards="open")
        return sorted(row["index"] for row in rows if row["index"].startswith(prefix))

    def resolve_alias(self, alias: str) -> str | None:
        """The concrete index ``alias`` points to, or None when the alias does not exist.

        Raises:
            ValueError: the alias points to several indices (never the case when only swap_alias writes it).
        """
        from opensearchpy.exceptions import NotFoundError

        with self._errors(_check_name("alias", alias)):
            try:
                found = self.client.indices.get_alias(name=alias)
            except NotFoundError:
                return None
        indices = sorted(found)
        if len(indices) > 1:
            raise ValueError(f"alias {alias!r} points to several indices: {indices}")
        return indices[0] if indices else None

    def swap_alias(self, alias: str, index: str) -> None:
        """Point ``alias`` at ``index`` atomically, removing it from every other index, in one ``_aliases`` call.

        Raises:
            IndexNotFound: ``index`` does not exist.
            ValueError: ``alias`` is the name of a concrete index.
        """
        from opensearchpy.exceptions import NotFoundError

        _check_name("alias", alias)
        with self._errors(_check_name("index", index)):
            try:
                holders = sorted(self.client.indices.get_alias(name=alias))
            except NotFoundError:
                holders = []
            actions: list[dict[str, Any]] = [{"remove": {"index": old, "alias": alias}}
                                             for old in holders if old != index]
            actions.append({"add": {"index": index, "alias": alias}})
            self.client.indices.update_aliases(body={"actions": actions})

    def set_bulk_mode(self, index: str, on: bool) -> None:
        """Tune ``index`` for bulk loading (no replicas, the bulk refresh interval) or back to serving (the
        configured replicas and refresh interval: :meth:`IndexConfig.serving_settings`)."""
        body = self.config.bulk_settings() if on else self.config.serving_settings()
        with self._errors(_check_name("index", index)):
            self.client.indices.put_settings(index=index, body={"index": body})
            if not on:
                # The bulk load's translog was fsynced lazily: commit it before the alias can move, so a node
                # killed right after the swap cannot lose acknowledged documents.
                self.client.indices.flush(index=index, wait_if_ongoing=True)

    def set_index_meta(self, index: str, meta: dict[str, str]) -> None:
        """Record ``meta`` on ``index`` (merged over what it holds) in its mapping's ``_meta.shopsearch``."""
        merged = {**self.index_meta(index), **meta}
        # Every indexing run records its meta before it writes: the fields added to the mapping since ``index``
        # was created (category paths, attribute keywords) go in with it, so a run into an older index is not
        # refused by its strict mapping (adding fields is allowed and idempotent).
        added = added_mappings()
        with self._errors(_check_name("index", index)):
            self.client.indices.put_mapping(index=index, body={"_meta": {"shopsearch": merged}, **added})

    def index_meta(self, index: str) -> dict[str, str]:
        """What :meth:`set_index_meta` recorded on ``index`` (an index or alias); {} when nothing was.

        Raises:
            IndexNotFound: no such index or alias.
        """
        with self._errors(_check_name("index", index)):
            found = self.client.indices.get_mapping(index=index)
        for body in found.values():
            return dict(((body.get("mappings") or {}).get("_meta") or {}).get("shopsearch") or {})
        return {}

    def wait_ready(self, index: str) -> IndexHealth:
        """Wait up to ``config.ready_timeout_s`` for ``index`` to turn green (its replicas copied).

        Returns:
            IndexHealth: ready when green, or yellow on a one-node cluster (said in ``note``).

        Raises:
            IndexNotFound: ``index`` does not exist.
        """
        wait = f"{max(1, round(self.config.ready_timeout_s))}s"
        slow = self.config.ready_timeout_s + self.timeout
        with self._errors(_check_name("index", index)):
            # Primaries first; a one-node cluster stops there (it can never place a replica), a cluster waits
            # for green. A wait that times out answers 408 with the health body, which is what we want.
            health = self.client.cluster.health(index=index, wait_for_status="yellow", timeout=wait,
                                                request_timeout=slow, ignore=408)
            if health.get("status") == "yellow" and int(health.get("number_of_data_nodes", 0)) > 1:
                health = self.client.cluster.health(index=index, wait_for_status="green", timeout=wait,
                                                    request_timeout=slow, ignore=408)
        return index_health(health)

    def create_lock(self, name: str, holder: LockHolder) -> LockHolder | None:
        """Take the indexing lock ``name`` (a document in :data:`~.opensearch_locks.LOCK_INDEX`); None when
        taken, else its holder."""
        with self._errors(_check_name("name", name)):
            return opensearch_locks.create_lock(self.client, name, holder)

    def touch_lock(self, name: str, holder: LockHolder) -> bool:
        """Refresh ``holder``'s heartbeat if it still holds lock ``name``."""
        with self._errors(_check_name("name", name)):
            return opensearch_locks.touch_lock(self.client, name, holder)

    def delete_lock(self, name: str, holder: LockHolder) -> bool:
        """Release lock ``name`` if ``holder`` still holds it."""
        with self._errors(_check_name("name", name)):
            return opensearch_locks.delete_lock(self.client, name, holder)

    def refresh(self, index: str) -> None:
        """Make every write so far visible to searches and counts."""
        with self._errors(_check_name("index", index)):
            self.client.indices.refresh(index=index)

    def count(self, index: str) -> int:
        """How many products ``index`` holds (as of the last refresh); as :meth:`filtered_count` for failed shards."""
        return self._count(index, None)

    def _count(self, index: str, body: dict[str, Any] | None) -> int:
        """One ``_count`` answer's count. A count some shards did not give is too low, as a partial hit list is
        incomplete (a shrink check would misread it): sent again and raised like a search's (:meth:`_answers`)."""
        _check_name("index", index)
        resp = self._answers("count", None, index, 1, lambda _: [self._timed(
            "count", None, index, lambda **kw: self.client.count(index=index, body=body, **kw))])[0]
        return int(resp["count"])

    # --- writes ------------------------------------------------------------------------------------------------

    def bulk(self, index: str, actions: Iterable[Action]) -> Iterator[BulkItem]:
        """Write actions in chunks (config.chunk_size docs / config.max_chunk_bytes); documents and chunks that
        fail with 429, a 5xx, a timeout or a lost connection are retried with exponential backoff and jitter
        (config.max_retries rounds from config.initial_backoff; :func:`~.opensearch_bulk.ordered_bulk`).

        Yields one BulkItem per action, in order; a rejected document (e.g. wrong vector dimension) is
        ``ok=False`` with OpenSearch's reason while the rest are written. Deleting an absent id is ok.

        Raises:
            IndexNotFound: ``index`` does not exist (checked first, so bulk never auto-creates an index).
            EngineUnavailable: OpenSearch is unreachable, timed out or failed (5xx) after the retries.
        """
        from opensearchpy import helpers

        if not self.index_exists(index):
            raise IndexNotFound(index)
        cfg = self.config

        def send(bodies: Iterable[dict[str, Any]]) -> Iterator[Any]:
            # No retries here: ordered_bulk retries 429s, 5xx and lost chunks alike, with backoff.
            return helpers.streaming_bulk(
                self.client, bodies, chunk_size=cfg.chunk_size, max_chunk_bytes=cfg.max_chunk_bytes,
                max_retries=0, raise_on_error=False, raise_on_exception=False,
                # A chunk of vectors can take longer than an interactive request; never less than 60s.
                request_timeout=max(self.timeout, 60.0))

        policy = RetryPolicy(max_retries=cfg.max_retries, initial_backoff=cfg.initial_backoff)
        with self._errors(index):
            yield from ordered_bulk(index, actions, send, url=self.url, policy=policy)

    # --- reads -------------------------------------------------------------------------------------------------

    def get(self, index: str, id: str, with_vector: bool = False) -> dict[str, Any] | None:
        """The stored product ``id`` (public fields; plus ``"vector"`` when asked), or None when absent.

        Raises:
            IndexNotFound: ``index`` does not exist.
        """
        from opensearchpy.exceptions import NotFoundError

        kwargs = {} if with_vector else {"_source_excludes": VECTOR_FIELD}

        def fetch() -> dict[str, Any] | None:
            try:
                return self.client.get(index=index, id=str(id), **kwargs)
            except NotFoundError as exc:
                if isinstance(exc.info, dict) and "error" in exc.info:
                    raise  # index_not_found_exception -> IndexNotFound
                return None

        doc = self._read(_check_name("index", index), "get", fetch)
        if doc is None:
            return None
        src = doc.get("_source") or {}
        out = public_source(src)
        if with_vector:
            out["vector"] = [float(x) for x in src.get(VECTOR_FIELD) or []]
        return out

    def search(self, index: str, legs: Sequence[BM25Leg | KnnLeg], *, with_source: bool = True,
               deadline: Deadline | None = None) -> list[list[Hit]]:
        """Run every leg in one ``_msearch`` round trip (a BM25 leg with ``field_scores`` as a ``_search`` sent
        beside it); one hit list per leg, best first.

        ``with_source=False`` returns ids and scores only: skipping every candidate's stored source saves ~5 ms per
        leg of 100 on the crowdflower index (bench/latency.py); fetch a page's products with :meth:`sources`.

        Raises:
            IndexNotFound: ``index`` does not exist.
            ValueError: a leg is invalid or OpenSearch rejected its query (reason included).
            EngineUnavailable: OpenSearch is unreachable, timed out or failed (EngineBusy: it rejected the request
                with 429, its queues full). A leg some shards could not answer (a 5xx item, ``_shards.failed``, e.g.
                a node just lost) is first sent again, alone, a few times within ``deadline``, and a whole round
                trip that may pass in a moment (refused or reset on every node, or a 5xx that does not blame
                the query) once (:meth:`_answers`).
            DeadlineExceeded: no answer within the time ``deadline`` leaves (the one round trip carries every leg,
                so none is served; a BM25 leg with ``field_scores`` goes in a second one, sent beside it).
        """
        _check_name("index", index)
        bodies = [leg_body(leg) for leg in legs]
        if not with_source:
            for body in bodies:
                body["_source"] = False
        alone = [i for i, leg in enumerate(legs) if isinstance(leg, BM25Leg) and leg.field_scores]
        together = [i for i in range(len(legs)) if i not in alone]

        def solo(i: int) -> dict[str, Any]:
            # Each hit's named clauses with their scores (the per-field BM25) is a _search option that OpenSearch
            # 2.19's _msearch rejects: such a leg goes as a _search of its own.
            return self._answers("search", deadline, index, 1, lambda _: [self._search_once(
                "search", deadline, index, bodies[i], params=NAMED_SCORES)])[0]

        if not together:
            subs = {i: solo(i) for i in alone}
        else:  # sent beside the _msearch
            pending = {i: self._legs.submit(solo, i) for i in alone}
            try:
                subs = dict(zip(together, self._msearch(index, [bodies[i] for i in together], deadline, "search")))
            except BaseException:
                for future in pending.values():
                    future.cancel()
                raise
            subs.update({i: future.result() for i, future in pending.items()})
        return [[_hit(h, leg=leg) for h in subs[i]["hits"]["hits"]] for i, leg in enumerate(legs)]

    def _msearch(self, index: str, bodies: list[dict[str, Any]], deadline: Deadline | None = None,
                 stage: str = "search") -> list[dict[str, Any]]:
        """The responses of ``bodies`` sent in one ``_msearch`` (timed by ``deadline``); an item that failed
        transiently (its 5xx, or some shards not answering) is sent again (:meth:`_answers`); the first failed item
        raises, translated."""
        if not bodies:
            return []

        def send(positions: list[int]) -> list[Any]:
            lines: list[dict[str, Any]] = []
            for i in positions:
                lines += [{"index": index}, bodies[i]]

            # A whole _msearch that fails raises, translated, for _answers to judge (as _search_once).
            return self._timed(stage, deadline, index, lambda **kw: self.client.msearch(body=lines, **kw)["responses"])

        return self._answers(stage, deadline, index, len(bodies), send)

    def match(self, index: str, rule: MatchRule, *, sort: str = "relevance", offset: int = 0, size: int = 0,
              exclude: Sequence[str] = (), facets: Sequence[str] = (), facet_size: int = 10,
              highlight: str | None = None, deadline: Deadline | None = None,
              price_edges: Sequence[float] = PRICE_EDGES) -> MatchPage:
        """The products matching ``rule`` (lexical multi_match OR radial k-NN with ``min_score``), in one
        ``_msearch``: the exact count, the slice ``offset:offset+size`` in ``sort`` order (ties by id; ``exclude``
        ids skipped in the slice only) and disjunctive facet counts (each facet ignores its own filter; their
        shapes: :meth:`.engine.Engine.match`).

        Raises:
            ValueError: an unknown sort or facet field, a bad offset/size/min_score.
            IndexNotFound, EngineUnavailable, DeadlineExceeded: as :meth:`search`.

        >>> engine.match("products", MatchRule(BM25Leg("sofa", {"title": 1.0})), size=10)  # doctest: +SKIP
        MatchPage(total=20, hits=[...], facets={})
        """
        _check_name("index", index)
        bodies = match_bodies(rule, sort=sort, offset=offset, size=size, exclude=exclude, facets=facets,
                              facet_size=facet_size, highlight=highlight, price_edges=price_edges)
        subs = self._msearch(index, bodies, deadline, "match")
        fields = list(dict.fromkeys(facets))
        return MatchPage(total=int(subs[0]["hits"]["total"]["value"]),
                         hits=[_hit(h) for h in subs[-1]["hits"]["hits"]],
                         facets=parse_facets(subs[0].get("aggregations") or {}, fields, price_edges))

    def sources(self, index: str, ids: Sequence[str], highlight: str | None = None,
                deadline: Deadline | None = None) -> dict[str, Hit]:
        """The stored products (public fields) of ``ids`` as Hits (score 0), in one request; ids not found are
        left out. ``highlight``: the query whose matches are marked in ``Hit.highlights`` (OpenSearch's unified
        highlighter, HTML encoder).

        An ``ids`` query rather than ``_mget``: it reads the same refreshed view the legs searched, and measured
        ~3 ms against ~4.7 ms for ``_mget`` of 12 products on crowdflower (bench/latency.py's index).

        Raises:
            ValueError: more than 10,000 ids.
            IndexNotFound: ``index`` does not exist.
            DeadlineExceeded: no answer within the time ``deadline`` leaves.

        >>> engine.sources("products", ["p1", "nope"])["p1"].source["title"]  # doctest: +SKIP
        'Red desk lamp'
        """
        ids = [str(i) for i in dict.fromkeys(ids)]
        if not ids:
            return {}
        if len(ids) > MATCH_WINDOW:
            raise ValueError(f"ids holds {len(ids)} ids; at most {MATCH_WINDOW} per call")
        body = {"size": len(ids), "query": {"ids": {"values": ids}}, "_source": {"excludes": SOURCE_EXCLUDES},
                "track_total_hits": False}
        if highlight and highlight.strip():
            body["highlight"] = highlight_body(highlight)
        _check_name("index", index)
        resp = self._answers("sources", deadline, index, 1,
                             lambda _: [self._search_once("sources", deadline, index, body)])[0]
        return {h["_id"]: _hit(h, score=0.0) for h in resp["hits"]["hits"]}

    def suggest(self, index: str, prefix: str, size: int = 8) -> list[str]:
        """Autocomplete titles from the ``title.autocomplete`` edge-n-gram field, ranked as in plugin/suggest.py.

        Raises:
            ValueError: size outside 1..MAX_SUGGESTIONS (50).
            IndexNotFound: ``index`` does not exist.
            EngineUnavailable: as :meth:`search`; an answer some shards did not give would leave their titles out,
                so it is sent again, then raised (:meth:`_answers`).
        """
        check_suggest_size(size)
        if not suggest_terms(prefix):
            return []
        body = opensearch_suggest_body(prefix, size)
        _check_name("index", index)
        resp = self._answers("suggest", None, index, 1,
                             lambda _: [self._search_once("suggest", None, index, body)])[0]
        return rank_suggestions(prefix, (h["_source"].get("title", "") for h in resp["hits"]["hits"]), size)

    def vocabulary(self, index: str) -> Vocabulary:
        """The spelling vocabulary of ``index`` (words of the indexed text with their document frequencies:
        :mod:`.vocabulary`), versioned ``<concrete index>:<uuid>:<indexing and delete operations on primaries>``.

        Kept in the side index :data:`~.vocabulary.VOCABULARY_INDEX` (one document per concrete index): the first
        caller after a change scans the products once and stores it, every other process reads that document.
        In memory it is reused for :data:`VOCABULARY_CHECK_S` seconds before the version is checked again (one
        ``_stats`` request), so a search never pays for it.

        Raises:
            IndexNotFound: ``index`` does not exist.
            EngineUnavailable: OpenSearch is unreachable, timed out or failed.
        """
        _check_name("index", index)
        now = time.monotonic()
        cached = self._vocabularies.get(index)
        if cached is not None and now - cached[0] < VOCABULARY_CHECK_S:
            return cached[1]
        with self._vocabulary_lock:
            version = self._vocabulary_version(index)
            if cached is not None and cached[1].version == version:
                self._vocabularies[index] = (now, cached[1])
                return cached[1]
            found = self._stored_vocabulary(version)
            if found is None:
                found = self._build_vocabulary(index, version)
            self._vocabularies[index] = (now, found)
            return found

    def _vocabulary_version(self, index: str) -> str:
        """``<concrete index>:<uuid>:<operations>``: changes whenever a product is written or deleted."""
        with self._errors(index):
            stats = self.client.indices.stats(index=index, metric="indexing")
        (name, entry), = stats["indices"].items()
        ops = entry["primaries"]["indexing"]
        return f"{name}:{entry.get('uuid', '')}:{int(ops['index_total']) + int(ops['delete_total'])}"

    def _stored_vocabulary(self, version: str) -> Vocabulary | None:
        """The side index's vocabulary of this version's concrete index, if it is of this version."""
        from opensearchpy.exceptions import NotFoundError

        with self._errors(VOCABULARY_INDEX):
            try:
                doc = self.client.get(index=VOCABULARY_INDEX, id=version.split(":", 1)[0])
            except NotFoundError:
                return None
        src = doc.get("_source") or {}
        if src.get("version") != version:
            return None
        return Vocabulary.from_json(src.get("vocabulary") or "{}")

    def _build_vocabulary(self, index: str, version: str) -> Vocabulary:
        """Scan the products' text once, count the vocabulary and store it in the side index."""
        from opensearchpy import helpers

        query = {"query": {"match_all": {}}, "_source": list(VOCABULARY_FIELDS)}
        read = 0

        def sources() -> Iterator[dict]:
            nonlocal read
            for hit in helpers.scan(self.client, query=query, index=index, size=1000, scroll="2m"):
                read += 1
                yield hit.get("_source") or {}

        for attempt in range(2):
            read = 0
            try:
                with self._errors(index):
                    found = build_vocabulary(version, sources())
                break
            except EngineUnavailable as exc:
                # Lost mid-scan (the scroll's context expired, or the node holding it or some of its shards
                # left): read again from the start, once. An engine that answered nothing is not asked again.
                if attempt or not read or isinstance(exc, EngineBusy):
                    raise
                log.warning("vocabulary of %s: %s; scanning again", index, exc)
        try:
            self._store_vocabulary(found)
        except (EngineUnavailable, ValueError) as exc:  # e.g. no right to write the side index: serve it anyway
            log.warning("vocabulary of %s not stored in %s (%s); kept in memory", index, VOCABULARY_INDEX, exc)
        return found

    def _store_vocabulary(self, found: Vocabulary) -> None:
        """Write ``found`` to the side index (created on first use)."""
        with self._errors(VOCABULARY_INDEX):
            if not self.client.indices.exists(index=VOCABULARY_INDEX):
                # Only ``version`` is indexed; the vocabulary itself is stored, never analysed.
                self.client.indices.create(index=VOCABULARY_INDEX, ignore=400, body={
                    "settings": {"number_of_shards": 1, "auto_expand_replicas": "0-1"},
                    "mappings": {"dynamic": False, "properties": {"version": {"type": "keyword"}}}})
            self.client.index(index=VOCABULARY_INDEX, id=found.version.split(":", 1)[0],
                              body={"version": found.version, "vocabulary": found.to_json()})

    def filtered_count(self, index: str, filters: Filters) -> int:
        """How many products pass ``filters``.

        Raises:
            IndexNotFound: ``index`` does not exist.
            EngineUnavailable: as :meth:`search`; a count some shards did not give (``_shards.failed``) is sent
                again a few times, never returned as if complete.
        """
        return self._count(index, count_body(filters))

    def scan_hashes(self, index: str) -> Iterator[tuple[str, str]]:
        """Yield ``(id, content_hash)`` for every stored product via a scroll (order unspecified)."""
        from opensearchpy import helpers

        _check_name("index", index)
        query = {"query": {"match_all": {}}, "_source": ["content_hash"]}
        with self._errors(index):
            for hit in helpers.scan(self.client, query=query, index=index, size=1000, scroll="2m"):
                yield hit["_id"], (hit.get("_source") or {}).get("content_hash", "")

    def close(self) -> None:
        """Close the client's HTTP connections."""
        self._legs.shutdown(wait=False)
        self.client.close()

    def ping(self) -> None:
        """Check the node answers.

        Raises:
            EngineUnavailable: it does not.
        """
        with self._errors(""):
            self.client.info()

    def cluster_health(self) -> ClusterHealth:
        """The cluster's status and node count, and which of the configured (or sniffed) nodes answer.

        Raises:
            EngineUnavailable: no node answers the health request.
        """
        transport = self.client.transport
        pool = transport.connection_pool
        conns = {id(c): c for c in [*transport.seed_connections, *getattr(pool, "connections", [])]}
        hosts = probe_hosts(conns.values(), timeout=min(self.timeout, 2.0))
        with self._errors(""):
            health = self.client.cluster.health()
        return cluster_health(health, hosts)
