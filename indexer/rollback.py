"""An alias's versions, and rolling it back: the operator's undo of a full rebuild that went live with a bad catalog.

A full run builds ``<alias>-v<stamp>``, swaps the alias onto it and keeps the version it replaced
(:func:`~.versions.versions_to_delete`), so the catalog before the last rebuild is one swap away. Rolling back
takes the indexing lock (no run may be writing), checks the version can take traffic and swaps the alias. The
version rolled back from is kept until the next indexing run, which drops it as a version newer than the live one
(:func:`~.versions.unfinished_versions`); until then ``--to`` rolls forward onto it again.

    >>> roll_back(engine, "products")  # doctest: +SKIP
    Rollback(alias='products', previous='products-v20250102-...', live='products-v20250101-...', ...)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple

from shopsearch.settings import default

from .rebuild_lock import rebuild_lock
from .sink import IndexSink
from .versions import STAMP, WENT_LIVE, is_version_of, unfinished_versions


@dataclass(frozen=True)
class Version:
    """One version of an alias: its index, the products it holds, when it was built (UTC), whether it is live,
    and, for one newer than the live version, why it is not: ``rolled back`` (it went live, a rollback moved the
    alias off it) or ``unfinished`` (a crashed, refused or running build); the next indexing run drops either."""

    name: str
    products: int
    built: datetime
    live: bool
    newer: str | None = None  # "rolled back" or "unfinished", for a version newer than the live one


class Rollback(NamedTuple):
    """What a rollback did: ``alias`` moved from ``previous`` to ``live``, which hold these many products."""

    alias: str
    previous: str
    live: str
    previous_products: int = 0
    live_products: int = 0


def alias_versions(sink: IndexSink, alias: str) -> list[Version]:
    """The versions of ``alias`` the engine keeps, newest first.

    Raises:
        ValueError: ``alias`` is not an alias (naming what to do).
    """
    live = sink.resolve_alias(alias)
    if live is None:
        raise ValueError(f"{alias!r} is not an alias on this engine; build it with `shopsearch index CATALOG --index "
                         f"{alias}`")
    names = sorted((n for n in sink.list_indices(f"{alias}-v") if is_version_of(alias, n)), reverse=True)
    newer = {n: "rolled back" if WENT_LIVE in sink.index_meta(n) else "unfinished"
             for n in unfinished_versions(alias, names, live)}  # what the next indexing run drops
    return [Version(n, sink.count(n), _built(alias, n), n == live, newer.get(n)) for n in names]


def roll_back(sink: IndexSink, alias: str, *, to: str | None = None,
              lock_stale_s: float = default("index_lock_stale_s")) -> Rollback:
    """Swap ``alias`` onto the version before the live one, or onto ``to``.

    Raises:
        IndexLocked: an indexing run holds the alias.
        ValueError: no such alias, no older version kept, ``to`` is not a version of ``alias`` or is live, or the
            version cannot take traffic (its health says why).
    """
    with rebuild_lock(sink, alias, stale_after_s=lock_stale_s):
        versions = alias_versions(sink, alias)
        live = sink.resolve_alias(alias)
        kept = ", ".join(v.name for v in versions) or "none"
        if to is None:
            older = [v.name for v in versions if v.name < live]
            if not older:
                raise ValueError(f"no version of {alias!r} older than the live {live} is kept (kept: {kept}); a full "
                                 "run keeps the version it replaces")
            target = older[0]
        elif to == live:
            raise ValueError(f"{to} is already the live version of {alias!r}")
        elif to not in {v.name for v in versions}:
            raise ValueError(f"{to!r} is not a kept version of {alias!r} (kept: {kept})")
        elif to > live and WENT_LIVE not in sink.index_meta(to):  # an older one was live before this one
            raise ValueError(f"{to} is not marked as having gone live: a run that crashed or was refused left it, "
                             "maybe half built (or a run of a shopsearch older than the mark moved the alias off it)")
        else:
            target = to
        ready = sink.wait_ready(target)
        if not ready.ready:
            raise ValueError(f"{target} cannot take traffic ({ready.status}{': ' + ready.note if ready.note else ''}); "
                             f"{alias!r} left on {live}")
        sink.swap_alias(alias, target)
        products = {v.name: v.products for v in versions}
        return Rollback(alias, live, target, products.get(live, 0), products.get(target, 0))


def _built(alias: str, name: str) -> datetime:
    return datetime.strptime(name[len(alias) + 2:], STAMP).replace(tzinfo=timezone.utc)
