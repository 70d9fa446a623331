"""Refuse runs that would wipe a live catalog: a truncated export must not delete half the shop.

An ``--incremental`` run deletes every stored product missing from the file, and a ``--full`` rebuild replaces
the live index with whatever the file holds. Before anything is written the job counts the catalog
(:func:`scan_catalog_ids`, a cheap read + validate pass) and these checks refuse, naming exactly how many
products would disappear, when the loss is above the configured share (settings ``index_max_delete_share``,
default 5%, and ``index_max_shrink_share``, default 10%), unless ``allow_shrink``.

    >>> check_deletes("shop", "shop-v1", live_count=100, deletes=3, limits=ShrinkLimits())
    >>> check_deletes("shop", "shop-v1", live_count=100, deletes=50, limits=ShrinkLimits())
    Traceback (most recent call last):
    ...
    shopsearch.indexer.catalog_guard.CatalogShrinkRefused: refusing to delete 50 of the 100 products of 'shop' (shop-v1): 50.00% of the live catalog, above index_max_delete_share=5%. Nothing was written and the alias is unchanged; check the catalog file, or rerun with --allow-shrink to delete them
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from shopsearch.settings import default

from .fields import FieldMapping
from .readers import read_rows
from .validate import Validator


class CatalogShrinkRefused(ValueError):
    """The run would remove more of the live catalog than allowed; nothing live was changed."""


@dataclass(frozen=True)
class ShrinkLimits:
    """How much of the live catalog one run may remove (shares in 0..1), and the override."""

    max_delete_share: float = default("index_max_delete_share")
    max_shrink_share: float = default("index_max_shrink_share")
    allow_shrink: bool = False

    def __post_init__(self) -> None:
        for name in ("max_delete_share", "max_shrink_share"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name}={value!r} must be a share between 0 and 1")


@dataclass(frozen=True)
class CatalogIds:
    """What a catalog file would give: the ids its rows name (valid or not) and how many products are valid."""

    ids: frozenset[str]
    valid: int


def scan_catalog_ids(catalog: Path, mapping: FieldMapping | None, fmt: str | None) -> CatalogIds:
    """Read and validate ``catalog`` without embedding: the ids it names and its count of valid products.

    A row that fails validation or cannot be read but names an id keeps that product's stored version (the job's
    rule), so its id counts as present.
    """
    validator = Validator(mapping)
    ids: set[str] = set()
    valid = 0
    for row in read_rows(catalog, fmt):
        if row.error is not None:
            if row.data is not None and (pid := validator.id_of(row.data)) is not None:
                ids.add(pid)
            continue
        verdict = validator.check(row.data or {}, row.line)
        if verdict.id is not None:
            ids.add(verdict.id)
        valid += verdict.product is not None
    return CatalogIds(frozenset(ids), valid)


_WAY_OUT = "check the catalog file, or rerun with --allow-shrink"


def _too_many(lost: int, live_count: int, share: float, limits: ShrinkLimits) -> bool:
    """Over ``share`` of the live count, exactly: 29 of 100 is not over 0.29 (0.29 * 100 is 28.999... in floats)."""
    return not limits.allow_shrink and Fraction(lost, max(live_count, 1)) > Fraction(str(share))


def _pct(part: int, whole: int) -> str:
    """``part`` of ``whole`` to two decimals: 148 of 2940 is 5.03%, which a limit of 5% must read as over."""
    return f"{100.0 * part / whole:.2f}%" if whole else "0%"


def _limit(share: float) -> str:
    """A share setting as a percentage, unrounded: 0.025 is 2.5%."""
    return f"{share * 100:g}%"


def check_deletes(alias: str, live: str, live_count: int, deletes: int, limits: ShrinkLimits) -> None:
    """Refuse an incremental run that would delete more than ``limits.max_delete_share`` of ``live_count``.

    Raises:
        CatalogShrinkRefused: too many deletes (the message gives the count and the share).
    """
    if _too_many(deletes, live_count, limits.max_delete_share, limits):
        raise CatalogShrinkRefused(
            f"refusing to delete {deletes} of the {live_count} products of {alias!r} ({live}): "
            f"{_pct(deletes, live_count)} of the live catalog, above index_max_delete_share="
            f"{_limit(limits.max_delete_share)}. Nothing was written and the alias is unchanged; {_WAY_OUT} to delete "
            "them")


def check_shrink(alias: str, live: str, live_count: int, new_count: int, limits: ShrinkLimits) -> None:
    """Refuse a full rebuild whose count falls more than ``limits.max_shrink_share`` below ``live_count``.

    Raises:
        CatalogShrinkRefused: the new index would be too small (the message says how many products disappear).

    >>> check_shrink("shop", "shop-v1", 100, 91, ShrinkLimits())
    """
    lost = live_count - new_count
    if _too_many(lost, live_count, limits.max_shrink_share, limits):
        raise CatalogShrinkRefused(
            f"refusing to rebuild {alias!r} with {new_count} products: {lost} of the {live_count} products in the "
            f"live index {live} would disappear ({_pct(lost, live_count)}, above index_max_shrink_share="
            f"{_limit(limits.max_shrink_share)}). The alias stays on {live}; {_WAY_OUT}")
