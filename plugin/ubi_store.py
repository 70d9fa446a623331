"""Where UBI records live: the ``ubi_queries`` / ``ubi_events`` indices on OpenSearch, JSONL files otherwise.

One store per engine kind, both behind :class:`UbiStore` (``write``, ``iter_queries``, ``iter_events``):

- :class:`OpenSearchUbiStore` writes the indices the UBI plugin, OpenSearch Dashboards and the Search Relevance
  Workbench read (mappings in ``plugin/config/ubi-queries.json`` / ``ubi-events.json``, created on first write),
  each record under its own id (``query_id``; an event's ``event_attributes.event_id`` scoped to its client and
  session), so writing a batch twice (a retry after a crash) stores it once;
- :class:`JsonlUbiStore` appends ``ubi_queries.jsonl`` / ``ubi_events.jsonl`` under ``<home>/ubi/`` (embedded
  engine); a batch written twice is read back once.

Writes come from the spool's drainer (:mod:`.ubi_spool`), never from a request.

    >>> store = open_ubi_store(load_settings({"engine": "embedded", "home": "/tmp/ss-doc"}))  # doctest: +SKIP
    >>> store.write([], [to_ubi_event(event)]); [e.action_name for e in store.iter_events()]  # doctest: +SKIP
    ['click']
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence, TypeVar

from shopsearch.events import append_lines
from shopsearch.settings import Settings
from shopsearch.timestamps import utc_time
from shopsearch.ubi import UbiEvent, UbiQuery, stored_event

from .engine import EngineUnavailable

log = logging.getLogger(__name__)

QUERIES_INDEX, EVENTS_INDEX = "ubi_queries", "ubi_events"
CONFIG_DIR = Path(__file__).parent / "config"
STORE_TIMEOUT_S = 30.0  # one bulk of a few hundred records (the drainer's, never a request's)

R = TypeVar("R", UbiQuery, UbiEvent)


def read_record(model: type[R], data: dict[str, Any]) -> R:
    """A stored record: queries as they are, events leniently (:func:`~shopsearch.ubi.stored_event`)."""
    return stored_event(data) if model is UbiEvent else model.model_validate(data)  # type: ignore[return-value]


class UbiStore(Protocol):
    """Where the spool's records end up (see the module docstring)."""

    def write(self, queries: Sequence[UbiQuery], events: Sequence[UbiEvent]) -> None: ...

    def iter_queries(self) -> Iterator[UbiQuery]: ...

    def iter_events(self) -> Iterator[UbiEvent]: ...


def record_json(record: UbiQuery | UbiEvent) -> str:
    """One record as compact JSON (absent optional fields left out, as UBI readers expect)."""
    return record.model_dump_json(exclude_none=True)


def record_id(record: UbiQuery | UbiEvent) -> str | None:
    """The id a record is stored under: the query_id of a query, an event's event_id scoped to its client and
    session (:attr:`~shopsearch.ubi.UbiEvent.stored_id`)."""
    return record.query_id if isinstance(record, UbiQuery) else record.stored_id


def ubi_index_body(kind: str) -> dict[str, Any]:
    """The create-index body (settings and mappings) of the ``queries`` or ``events`` index.

    >>> ubi_index_body("queries")["mappings"]["properties"]["query_attributes"]
    {'type': 'flat_object'}
    """
    if kind not in ("queries", "events"):
        raise ValueError(f"kind must be queries or events; got {kind!r}")
    return json.loads((CONFIG_DIR / f"ubi-{kind}.json").read_text(encoding="utf-8"))


class JsonlUbiStore:
    """The embedded engine's UBI logs: ``ubi_queries.jsonl`` and ``ubi_events.jsonl`` under ``directory``.

    A batch is one ``write`` + ``fsync`` under an exclusive file lock (several worker processes drain); a failed
    write is truncated away, and a line a crash tore is ended before the next batch. Reading loads a file, skips
    torn lines (logged), drops records already seen (by id) and orders them by timestamp.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.queries_path = self.directory / f"{QUERIES_INDEX}.jsonl"
        self.events_path = self.directory / f"{EVENTS_INDEX}.jsonl"

    def __repr__(self) -> str:
        return f"JsonlUbiStore({str(self.directory)!r})"

    def write(self, queries: Sequence[UbiQuery], events: Sequence[UbiEvent]) -> None:
        """Append the records (queries first). Raises OSError when the disk fails."""
        for path, records in ((self.queries_path, queries), (self.events_path, events)):
            if records:
                append_lines(path, "".join(record_json(r) + "\n" for r in records).encode())

    def iter_queries(self) -> Iterator[UbiQuery]:
        """Every query record once, oldest first."""
        return self._read(self.queries_path, UbiQuery)

    def iter_events(self) -> Iterator[UbiEvent]:
        """Every event once, oldest first."""
        return self._read(self.events_path, UbiEvent)

    @staticmethod
    def _read(path: Path, model: type[R]) -> Iterator[R]:
        if not path.exists():
            return iter(())
        seen: set[str] = set()
        records: list[R] = []
        skipped = 0
        with path.open("rb") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    record = read_record(model, json.loads(line))
                except ValueError:  # a line torn by a crash (pydantic's ValidationError is a ValueError too)
                    skipped += 1
                    continue
                rid = record_id(record)
                if rid is not None and rid in seen:
                    continue  # the same batch drained twice (a crash between store write and spool delete)
                if rid is not None:
                    seen.add(rid)
                records.append(record)
        if skipped:
            log.warning("UBI log %s: skipped %d torn or invalid lines", path, skipped)
        return iter(sorted(records, key=lambda r: utc_time(r.timestamp)))


class OpenSearchUbiStore:
    """The ``ubi_queries`` / ``ubi_events`` indices of an OpenSearch cluster, through an opensearch-py client.

    Args:
        client: an ``opensearchpy.OpenSearch`` client.
        url: the cluster's display URL, for error messages.
        prefix: prepended to both index names (tests on a shared cluster).
    """

    def __init__(self, client: Any, url: str, prefix: str = "") -> None:
        self.client, self.url = client, url
        self.indices = {"queries": prefix + QUERIES_INDEX, "events": prefix + EVENTS_INDEX}
        self._ready: set[str] = set()

    def __repr__(self) -> str:
        return f"OpenSearchUbiStore({self.url!r})"

    def _errors(self, index: str):  # noqa: ANN202 - a context manager
        from .opensearch_errors import engine_errors

        return engine_errors(index=index, url=self.url)

    def ensure_index(self, kind: str) -> None:
        """Create the ``kind`` (queries, events) index from its mapping unless it exists (concurrent creation is
        fine)."""
        from opensearchpy.exceptions import RequestError

        index = self.indices[kind]
        if index in self._ready:
            return
        with self._errors(index):
            if not self.client.indices.exists(index=index):
                try:
                    self.client.indices.create(index=index, body=ubi_index_body(kind))
                except RequestError as exc:
                    if "resource_already_exists_exception" not in str(exc):
                        raise
        self._ready.add(index)

    def write(self, queries: Sequence[UbiQuery], events: Sequence[UbiEvent]) -> None:
        """Index the records under their ids (idempotent).

        A record OpenSearch rejects (400: it breaks the mapping) is logged and dropped, so it cannot block the
        spool; anything else a retry may fix raises.

        Raises:
            EngineUnavailable: the cluster is unreachable, timed out, busy (429) or failed (5xx).
        """
        from opensearchpy import helpers

        batches = [(kind, records) for kind, records in (("queries", queries), ("events", events)) if records]
        if not batches:
            return
        for kind, _ in batches:
            self.ensure_index(kind)
        actions = [{"_index": self.indices[kind], "_id": record_id(r), "_source": json.loads(record_json(r))}
                   for kind, records in batches for r in records]
        with self._errors(actions[0]["_index"]):
            _, errors = helpers.bulk(self.client, actions, raise_on_error=False, raise_on_exception=True,
                                     max_retries=0, request_timeout=STORE_TIMEOUT_S)
        retry = [e for e in errors if _status(e) == 429 or _status(e) >= 500]
        if retry:
            raise EngineUnavailable(f"OpenSearch at {self.url} failed {len(retry)} UBI records: {retry[0]}")
        for e in errors:
            log.error("UBI record rejected by OpenSearch and dropped: %s", e)

    def iter_queries(self) -> Iterator[UbiQuery]:
        """Every query record, oldest first (refreshes the index first)."""
        return self._scan(self.indices["queries"], UbiQuery)

    def iter_events(self) -> Iterator[UbiEvent]:
        """Every event, oldest first (refreshes the index first)."""
        return self._scan(self.indices["events"], UbiEvent)

    def _scan(self, index: str, model: type[R]) -> Iterator[R]:
        from opensearchpy import helpers

        with self._errors(index):
            if not self.client.indices.exists(index=index):
                return
            self.client.indices.refresh(index=index)
        hits = helpers.scan(self.client, index=index, query={"sort": [{"timestamp": "asc"}]}, preserve_order=True,
                            request_timeout=STORE_TIMEOUT_S)
        skipped = 0
        with self._errors(index):
            for hit in hits:
                try:
                    record = read_record(model, hit["_source"])
                except ValueError:  # another client's record shopsearch cannot read: skipped, as in the JSONL store
                    skipped += 1
                    continue
                yield record
        if skipped:
            log.warning("UBI index %s: skipped %d records that are not readable UBI records", index, skipped)

    def delete(self) -> None:
        """Delete both indices (tests, and starting the logs over)."""
        with self._errors(self.indices["queries"]):
            self.client.indices.delete(index=list(self.indices.values()), ignore_unavailable=True)
        self._ready.clear()


def _status(error: dict[str, Any]) -> int:
    """The HTTP status of one failed bulk item."""
    item = next(iter(error.values()), {})
    status = item.get("status", 500) if isinstance(item, dict) else 500
    return status if isinstance(status, int) else 500


def open_ubi_store(settings: Settings, engine: Any = None, *, writer: bool = False) -> UbiStore:
    """The UBI store of the configured engine: the OpenSearch indices, or JSONL files under ``<home>/ubi``.

    Args:
        settings: the resolved settings (engine kind, cluster URL and credentials, home).
        engine: an open OpenSearchEngine whose client to share; default: a client of the store's own, with a
            timeout for bulk writes and no client retries (the spool's drainer retries with backoff).
        writer: the store only writes (the spool's drainer): its own client moves a refused or reset bulk write
            on to the cluster's next node at once (the records carry their ids: a write sent twice is stored
            once). A reader's does not: a scroll page sent again elsewhere could skip a page.
    """
    if settings.engine != "opensearch":
        return JsonlUbiStore(settings.ubi_dir)
    from .connection import display_url, make_client

    client = getattr(engine, "client", None)
    if client is None:
        retries = len(settings.opensearch_urls) - 1 if writer else 0
        client = make_client(settings=settings, timeout=STORE_TIMEOUT_S, max_retries=retries, retry_on_timeout=False)
    return OpenSearchUbiStore(client, display_url(settings.opensearch_url))
