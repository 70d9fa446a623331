"""Query-string parsing for the search endpoints: pure functions from a MultiDict to typed records.

Errors are ``ApiError`` naming the parameter: 400 when a value is malformed or over a limit, 422 when values
are valid alone but inconsistent together (``price_min > price_max``, ``page * size`` past the depth limit).
"""

from __future__ import annotations

import math
import re
from typing import Iterable

from werkzeug.datastructures import MultiDict

from shopsearch.plugin.documents import FACET_FIELDS
from shopsearch.plugin.engine import Filters
from shopsearch.plugin.search_types import SearchRequest

from .config import ApiConfig
from .errors import ApiError, bad_parameter

FILTER_PARAMS = ("brand", "category", "price_min", "price_max", "in_stock", "rating_min")
SEARCH_PARAMS = ("q", *FILTER_PARAMS, "facets", "page", "size", "profile", "explain", "user_id", "session_id")
SIMILAR_PARAMS = (*FILTER_PARAMS, "size")
SUGGEST_PARAMS = ("q", "size")
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
PROFILE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_LIST_VALUES = 50  # brand/category values per request


def check_known(args: MultiDict, allowed: Iterable[str]) -> None:
    """Reject parameters the endpoint does not take (a typo would otherwise be silently ignored)."""
    allowed = tuple(allowed)
    for name in args.keys():
        if name not in allowed:
            raise bad_parameter(name, f"unknown parameter {name!r}; allowed: {', '.join(allowed)}")


def _single(args: MultiDict, name: str) -> str | None:
    values = args.getlist(name)
    if len(values) > 1:
        raise bad_parameter(name, f"{name} may be given once; got {len(values)} values")
    return values[0] if values else None


def parse_int(args: MultiDict, name: str, default: int, lo: int, hi: int) -> int:
    """An integer parameter in ``[lo, hi]`` (``default`` when absent)."""
    raw = _single(args, name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_parameter(name, f"{name} must be an integer; got {raw!r}") from None
    if not lo <= value <= hi:
        raise bad_parameter(name, f"{name} must be between {lo} and {hi}; got {value}")
    return value


def parse_float(args: MultiDict, name: str, lo: float, hi: float = math.inf) -> float | None:
    """A finite number parameter in ``[lo, hi]``, or None when absent."""
    raw = _single(args, name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise bad_parameter(name, f"{name} must be a number; got {raw!r}") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise bad_parameter(name, f"{name} must be a number between {lo:g} and {hi:g}; got {raw!r}")
    return value


def parse_bool(args: MultiDict, name: str) -> bool | None:
    """true/false (also 1/0, yes/no, on/off), or None when absent."""
    raw = _single(args, name)
    if raw is None or raw == "":
        return None
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise bad_parameter(name, f"{name} must be true or false; got {raw!r}")


def parse_list(args: MultiDict, name: str) -> tuple[str, ...]:
    """Values of a repeatable parameter; each occurrence may also be a comma-separated list."""
    out: list[str] = []
    for raw in args.getlist(name):
        out.extend(v.strip() for v in raw.split(",") if v.strip())
    if len(out) > MAX_LIST_VALUES:
        raise bad_parameter(name, f"{name} takes at most {MAX_LIST_VALUES} values; got {len(out)}")
    return tuple(dict.fromkeys(out))  # dedupe, keep order


def parse_query(args: MultiDict, cfg: ApiConfig, required: bool = True) -> str:
    """The ``q`` text: stripped, non-empty (when required), at most ``cfg.max_query_length`` characters."""
    q = (_single(args, "q") or "").strip()
    if required and not q:
        raise bad_parameter("q", "q is required and must not be blank")
    if len(q) > cfg.max_query_length:
        raise bad_parameter("q", f"q must be at most {cfg.max_query_length} characters; got {len(q)}")
    return q


def parse_filters(args: MultiDict) -> Filters:
    """The filter parameters shared by /search and /products/<id>/similar."""
    price_min = parse_float(args, "price_min", 0.0)
    price_max = parse_float(args, "price_max", 0.0)
    if price_min is not None and price_max is not None and price_min > price_max:
        raise ApiError(422, "inconsistent_parameters",
                       f"price_min ({price_min:g}) must not exceed price_max ({price_max:g})", "price_min")
    return Filters(
        brand=parse_list(args, "brand"),
        category=parse_list(args, "category"),
        price_min=price_min,
        price_max=price_max,
        in_stock=parse_bool(args, "in_stock"),
        rating_min=parse_float(args, "rating_min", 0.0, 5.0),
    )


def parse_facets(args: MultiDict) -> tuple[str, ...]:
    """Facet fields to count: default all; ``facets=`` or ``facets=none`` for none; else a comma list."""
    raw = _single(args, "facets")
    if raw is None:
        return FACET_FIELDS
    if raw.strip().lower() in ("", "none"):
        return ()
    names = tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
    unknown = [n for n in names if n not in FACET_FIELDS]
    if unknown:
        raise bad_parameter("facets", f"facets has unknown field {unknown[0]!r}; allowed: {', '.join(FACET_FIELDS)}")
    return names


def parse_search(args: MultiDict, cfg: ApiConfig) -> SearchRequest:
    """Turn /search query parameters into a SearchRequest.

    Raises:
        ApiError: 400 naming a malformed/over-limit parameter; 422 for inconsistent values.

    >>> parse_search(MultiDict({"q": "lamp", "brand": "a,b"}), ApiConfig()).filters.brand
    ('a', 'b')
    """
    check_known(args, SEARCH_PARAMS)
    query = parse_query(args, cfg, required=False)  # blank: browse (facets over the filtered products)
    filters = parse_filters(args)
    size = parse_int(args, "size", 10, 1, cfg.max_size)
    page = parse_int(args, "page", 1, 1, cfg.max_depth)
    if page * size > cfg.max_depth:
        raise ApiError(422, "page_too_deep",
                       f"page * size must be at most {cfg.max_depth}; got {page} * {size} = {page * size}",
                       "page")
    profile = _single(args, "profile") or "default"
    if not PROFILE_RE.match(profile):
        raise bad_parameter("profile", f"profile must match {PROFILE_RE.pattern}; got {profile!r}")
    return SearchRequest(query=query, filters=filters, page=page, size=size, profile=profile,
                         facets=parse_facets(args), explain=bool(parse_bool(args, "explain")))
