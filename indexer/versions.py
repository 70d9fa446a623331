"""Versioned index names behind an alias: ``<alias>-v<UTC timestamp>``, and which old versions to delete."""

from __future__ import annotations

import re
from datetime import datetime, timezone

STAMP = "%Y%m%d-%H%M%S-%f"  # a version's UTC build time
WENT_LIVE = "went_live"  # index meta: when a full run, its version checked whole, moved the alias onto it


def version_name(alias: str, now: datetime | None = None) -> str:
    """A new concrete index name for ``alias`` (sorts chronologically).

    >>> version_name("products", datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc))
    'products-v20250102-030405-000006'
    """
    now = now or datetime.now(timezone.utc)
    return f"{alias}-v{now.astimezone(timezone.utc).strftime(STAMP)}"


def is_version_of(alias: str, name: str) -> bool:
    """True when ``name`` is a versioned index of ``alias`` (not of ``alias-other``)."""
    return re.fullmatch(re.escape(alias) + r"-v\d{8}-\d{6}-\d{6}", name) is not None


def versions_to_delete(alias: str, indices: list[str], current: str, previous: str | None,
                       keep_previous: bool = True) -> list[str]:
    """The versions of ``alias`` to drop after ``current`` went live: everything except ``current`` and
    (when ``keep_previous``) the ``previous`` live index, kept for a quick rollback with ``swap_alias``.

    Stale partial versions left by a crashed or interrupted rebuild are among those dropped.

    >>> versions_to_delete("p", ["p-v20250101-000000-000000", "p-v20250102-000000-000000",
    ...     "p-v20250103-000000-000000"], "p-v20250103-000000-000000", "p-v20250102-000000-000000")
    ['p-v20250101-000000-000000']
    """
    keep = {current} | ({previous} if keep_previous and previous else set())
    return [n for n in indices if is_version_of(alias, n) and n not in keep]


def unfinished_versions(alias: str, indices: list[str], live: str | None) -> list[str]:
    """Versions of ``alias`` newer than the ``live`` one (all of them when there is none): builds that never
    went live, left by a crashed or refused run. Only called under the alias's indexing lock, so none is being
    built. (After a manual rollback the rolled-back-from version counts too: it is no longer wanted.)

    >>> unfinished_versions("p", ["p-v20250101-000000-000000", "p-v20250103-000000-000000"],
    ...                     "p-v20250102-000000-000000")
    ['p-v20250103-000000-000000']
    """
    versions = [n for n in indices if is_version_of(alias, n)]
    if live is None:
        return versions
    if not is_version_of(alias, live):
        return []
    return [n for n in versions if n > live]  # the UTC stamps sort chronologically
