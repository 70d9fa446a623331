"""Turn a raw catalog row into a Product, or a reason it cannot be indexed.

Reasons read ``"<code>: <detail>"``; the codes are the constants below (tests and the summary group by code).
Pure logic except ``Validator``, which remembers ids already accepted so a repeated id is caught.
"""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shopsearch.text import collapse_whitespace, strip_html

from .fields import FieldLimits, FieldMapping, apply_mapping
from .records import MAX_CATEGORY_PATH_CHARS, PATH_SEPARATOR, Product, java_length

MISSING_ID = "missing_id"
MISSING_TITLE = "missing_title"
BAD_PRICE = "bad_price"
BAD_RATING = "bad_rating"
BAD_NUMBER = "bad_number"
BAD_IN_STOCK = "bad_in_stock"
BAD_TEXT = "bad_text"
DUPLICATE_ID = "duplicate_id"
UNDECODABLE = "undecodable"
OVERSIZE = "oversize"  # reported as oversize_<field>
UNPARSABLE_JSON = "unparsable_json"  # from the reader
BAD_CSV_ROW = "bad_csv_row"  # from the reader
REJECTED = "rejected"  # the engine refused the document

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TRUE = {"true", "yes", "y", "1", "in stock", "instock", "available", "t"}
_FALSE = {"false", "no", "n", "0", "out of stock", "outofstock", "unavailable", "f"}


class RowError(ValueError):
    """A row cannot be indexed; ``reason`` is ``"<code>: <detail>"``."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.reason = f"{code}: {detail}"


def reason_code(reason: str) -> str:
    """The code part of a reason (``"bad_price: 'abc'"`` -> ``"bad_price"``)."""
    return reason.split(":", 1)[0]


def clean_text(value: Any, name: str) -> str:
    """Text normalised for indexing: :func:`~shopsearch.text.strip_html`, control characters and whitespace runs
    as one space, composed (NFC: a "Café" typed with a combining accent is one brand, one facet value).

    Raises:
        RowError: bytes that are not UTF-8 (``undecodable``) or a value that is not text.

    >>> clean_text("<b>Red&amp;Black</b>\\n lamp", "title")
    'Red&Black lamp'
    """
    if value is None:
        return ""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RowError(UNDECODABLE, f"{name} is not UTF-8 at byte {exc.start}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    elif not isinstance(value, str):
        raise RowError(BAD_TEXT, f"{name} must be text, got {type(value).__name__}")
    if "\ufffd" in value and value.count("\ufffd") == len(value.strip()):
        raise RowError(UNDECODABLE, f"{name} is only replacement characters")
    return unicodedata.normalize("NFC", collapse_whitespace(_CONTROL.sub(" ", strip_html(value))))


def _check_len(text: str, limit: int, name: str) -> str:
    if len(text) > limit:
        raise RowError(f"{OVERSIZE}_{name}", f"{len(text)} chars > limit {limit}")
    return text


def _parse_float(value: Any, code: str, name: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise RowError(code, f"{name} {value!r} is not a number")
    if isinstance(value, (numbers.Real, Decimal)):  # Decimal: SQL's and Parquet's money columns
        number = float(value)
    elif isinstance(value, str):
        number = _number_text(value)
        if number is None:
            raise RowError(code, f"{name} {value!r} is not a number") from None
    else:
        raise RowError(code, f"{name} {value!r} is not a number")
    if not math.isfinite(number):
        raise RowError(code, f"{name} {value!r} is not finite")
    return number


_THOUSANDS_COMMA = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")  # 1,299 and 1,299.00
_DECIMAL_COMMA = re.compile(r"[+-]?\d{1,3}(\.\d{3})*,\d+|[+-]?\d+,\d{1,2}")  # 1.299,00 and 12,5
_THOUSANDS_DOT = re.compile(r"[+-]?\d{1,3}(\.\d{3}){2,}")  # 1.299.000


def _number_text(value: str) -> float | None:
    """A number written as catalogs write prices, None when it is not one read this way:

    a comma before groups of exactly three digits separates thousands (1,299.00; so 12,500 is twelve thousand
    five hundred), otherwise it is the decimal mark (12,50; 1.299,00); a lone dot is the decimal point (1.299),
    several dots before three digits each separate thousands (1.299.000). Currency signs and spaces are dropped.

    >>> [_number_text(s) for s in ("$1,299.00", "12,500", "1.299,00 €", "12,5", "1 299,90", "1,2,3", "12.5.6")]
    [1299.0, 12500.0, 1299.0, 12.5, 1299.9, None, None]
    """
    s = "".join(value.split()).strip("$€£¥")
    try:
        return float(s)
    except ValueError:
        pass
    if _THOUSANDS_COMMA.fullmatch(s):
        return float(s.replace(",", ""))
    if _DECIMAL_COMMA.fullmatch(s):
        return float(s.replace(".", "").replace(",", "."))
    if _THOUSANDS_DOT.fullmatch(s):
        return float(s.replace(".", ""))
    return None


def parse_price(value: Any) -> float | None:
    """Price as a float >= 0 ("$1,299.00" -> 1299.0); None when absent.

    Raises:
        RowError: ``bad_price`` for text that is not a number, NaN/inf or a negative price.

    >>> parse_price("$1,299.00")
    1299.0
    """
    price = _parse_float(value, BAD_PRICE, "price")
    if price is not None and price < 0:
        raise RowError(BAD_PRICE, f"price {value!r} is negative")
    return price


RATING_SCALE = 5  # ratings are stored, filtered (rating_min), faceted and shown as stars out of 5


def parse_rating(value: Any, rating_max: float = RATING_SCALE) -> float | None:
    """Rating in 0..rating_max (the catalog's scale) as a float on the stored 0..:data:`RATING_SCALE` scale; None
    when absent. Raises RowError (``bad_rating``).

    >>> parse_rating("9.2", rating_max=10), parse_rating(4)
    (4.6, 4.0)
    """
    rating = _parse_float(value, BAD_RATING, "rating")
    if rating is not None and not 0 <= rating <= rating_max:
        raise RowError(BAD_RATING, f"rating {value!r} outside 0..{rating_max:g}")
    if rating is None or rating_max == RATING_SCALE:
        return rating
    return round(rating * RATING_SCALE / rating_max, 4)  # 7.3 of 10 is 3.65, not 3.6499999999999995


def parse_count(value: Any, name: str) -> int | None:
    """A non-negative integer (``"12"``, ``12.0``); None when absent. Raises RowError (``bad_number``)."""
    number = _parse_float(value, BAD_NUMBER, name)
    if number is None:
        return None
    if number < 0 or number != int(number):
        raise RowError(BAD_NUMBER, f"{name} {value!r} is not a whole number >= 0")
    return int(number)


def parse_bool(value: Any) -> bool | None:
    """true/false, 1/0, yes/no, "in stock"/"out of stock"; None when absent. Raises RowError (``bad_in_stock``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        s = value.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    raise RowError(BAD_IN_STOCK, f"in_stock {value!r} is not a yes/no value")


def clean_category_level(value: Any) -> str:
    """A category level as the index stores it: cleaned (:func:`clean_text`) and a ``>`` in it written ``›``, which
    reads the same (the facet reads a path's levels at ``>``, so a level holding one could never be drilled into);
    '' when nothing is left. For whatever names a level to match it: a merchandising rule, the API's ``category``
    filter.

    >>> clean_category_level("Screens  &gt;=  55 in")
    'Screens ›= 55 in'
    """
    return clean_text(value, "category").replace(">", "\u203a")


def parse_category(value: Any, separator: str, limits: FieldLimits) -> tuple[str, ...]:
    """Category path from a list or a separated string, each level cleaned (a ``>`` in it written ``›``), empty
    levels dropped; at most ``limits.category_levels`` levels of ``limits.category_level_chars`` each, and
    MAX_CATEGORY_PATH_CHARS (UTF-16 units) in all."""
    if value is None:
        return ()
    parts = value if isinstance(value, (list, tuple)) else str(value).split(separator) if isinstance(
        value, str) else [value]
    levels = tuple(p for p in (clean_category_level(v) for v in parts) if p)
    if len(levels) > limits.category_levels:
        raise RowError(f"{OVERSIZE}_category", f"{len(levels)} levels > limit {limits.category_levels}")
    for level in levels:
        _check_len(level, limits.category_level_chars, "category")
    path = java_length(PATH_SEPARATOR.join(levels))
    if path > MAX_CATEGORY_PATH_CHARS:
        raise RowError(f"{OVERSIZE}_category", f"a path of {path} chars > limit {MAX_CATEGORY_PATH_CHARS} (the "
                                               f"longest a storefront can filter on)")
    return levels


def parse_id(value: Any, limits: FieldLimits) -> str:
    """The product id as a non-empty string (integral numbers without ``.0``). Raises RowError."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = clean_text(value, "id") if value is not None else ""
    if not text:
        raise RowError(MISSING_ID, "no id")
    return _check_len(text, limits.id_chars, "id")


def to_product(row: dict[str, Any], mapping: FieldMapping) -> Product:
    """Validate one raw row (catalog column names) into a Product.

    Raises:
        RowError: the first problem found; its ``reason`` goes to the quarantine file.

    >>> to_product({"id": 7, "title": " Desk &amp; Lamp ", "price": "9.50"}, FieldMapping()).title
    'Desk & Lamp'
    """
    m = apply_mapping(row, mapping)
    lim = mapping.limits
    pid = parse_id(m["id"], lim)
    title = _check_len(clean_text(m["title"], "title"), lim.title_chars, "title")
    if not title:
        raise RowError(MISSING_TITLE, "no title" if m["title"] is None else "empty title")
    description = _check_len(clean_text(m["description"], "description"), lim.description_chars, "description")
    brand = _check_len(clean_text(m["brand"], "brand"), lim.brand_chars, "brand") or None
    attrs: dict[str, str] = {}
    for key, value in m["attributes"].items():
        if value is None or value == "":
            continue
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        text = _check_len(clean_text(value if not isinstance(value, dict) else str(value), f"attribute {key}"),
                          lim.attribute_chars, "attribute")
        if text:
            attrs[str(key)] = text
    if len(attrs) > lim.attributes:
        raise RowError(f"{OVERSIZE}_attributes", f"{len(attrs)} attributes > limit {lim.attributes}")
    popularity = _parse_float(m["popularity"], BAD_NUMBER, "popularity")
    return Product(
        id=pid, title=title, description=description, brand=brand,
        category=parse_category(m["category"], mapping.category_separator, lim),
        price=parse_price(m["price"]), rating=parse_rating(m["rating"], lim.rating_max),
        review_count=parse_count(m["review_count"], "review_count"), popularity=popularity,
        in_stock=parse_bool(m["in_stock"]), attributes=attrs)


@dataclass(frozen=True)
class Verdict:
    """Outcome of validating one row: a product, or a reason (with the row's id when it had one)."""

    product: Product | None
    reason: str | None = None
    id: str | None = None


class Validator:
    """Validates rows in catalog order and quarantines repeated ids (the first valid row with an id wins).

    Remembers every accepted id (a set of strings: memory grows with the catalog, about 60 bytes an id).
    """

    def __init__(self, mapping: FieldMapping | None = None):
        self.mapping = mapping or FieldMapping()
        self._seen: dict[str, int] = {}

    def check(self, row: dict[str, Any], line: int) -> Verdict:
        """Validate ``row`` (read at ``line``); see :func:`to_product` for the rules."""
        try:
            product = to_product(row, self.mapping)
        except RowError as exc:
            return Verdict(None, exc.reason, self.id_of(row))
        first = self._seen.get(product.id)
        if first is not None:
            return Verdict(None, f"{DUPLICATE_ID}: {product.id!r} first seen at line {first}", product.id)
        self._seen[product.id] = line
        return Verdict(product, None, product.id)

    def id_of(self, row: dict[str, Any]) -> str | None:
        """The id ``row`` names, None when it names none that could be a product's (the row is not checked)."""
        try:
            return parse_id(row.get(self.mapping.id), self.mapping.limits)
        except RowError:
            return None
