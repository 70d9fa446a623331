"""Merchandising rules files: ``<merchandising_dir>/<index>.rules.toml``, validated, reloaded when they change.

A file holds ``[[rule]]`` tables (plugin/config/rules.example.toml is the fully commented example). A rule fires
for a query (``exact`` or ``contains``, both compared after :func:`shopsearch.text.query_words`: case, width and
punctuation do not count) inside an optional date window, and acts on the results: pin products at positions,
bury or hide products, boost or filter by product attribute, redirect the shopper. :mod:`.merchandising` applies
what fired. The pydantic model :class:`RulesFile` validates a file (strict types, unknown keys are errors naming
the file, key, value and, for a rule, the line of its ``[[rule]]`` header) and produces
docs/schemas/rules.schema.json (``shopsearch schema``).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, model_validator

from shopsearch.config_files import FILE_MODEL, IndexFiles, file_schema, read_toml, validate_file
from shopsearch.indexer.validate import RATING_SCALE, clean_category_level
from shopsearch.text import query_words
from shopsearch.timestamps import as_utc

from .engine import Filters

SUFFIX = ".rules.toml"
MAX_PIN_POSITION = 100
_RULE_HEADER = re.compile(r"^\s*\[\[\s*rule\s*\]\]")
_RULE_KEY = re.compile(r": rule\.(\d+)")

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=256)]
ProductId = Annotated[str, StringConstraints(min_length=1, max_length=256)]


def _category(value: str) -> str:
    level = clean_category_level(value)
    if not level:
        raise ValueError(f"category {value!r} has no text once cleaned as the indexer cleans a category")
    return level


# A category as the catalog names it matches the level the indexer stored ("Screens >= 55 in" as "Screens ›= 55 in")
Category = Annotated[Text, AfterValidator(_category)]
# A site path may not start "//" or "/\" (browsers read both as another host), nor hold a backslash at all.
Url = Annotated[str, StringConstraints(pattern=r"^(https?://\S+|/([^/\\\s][^\\\s]*)?)?$", max_length=2048)]


class RulesError(ValueError):
    """A rules file is malformed; the message names the file, the key, the value and what is allowed."""


class Attributes(BaseModel):
    """Product attributes a rule filters or boosts on (the mapping's keyword and numeric fields); all must hold."""

    model_config = FILE_MODEL
    brand: list[Text] = Field([], description="Any of these brands")
    category: list[Category] = Field([], description="Any of these categories (a level anywhere in the path)")
    price_min: float | None = Field(None, ge=0, description="Price at least this")
    price_max: float | None = Field(None, ge=0, description="Price at most this")
    in_stock: bool | None = Field(None, description="In stock (true) or out of stock (false)")
    rating_min: float | None = Field(None, ge=0, le=RATING_SCALE, description="Rating at least this, out of 5 (a "
                                                                              "catalog's ratings are stored so)")

    @model_validator(mode="after")
    def _something(self) -> Attributes:
        if not (self.brand or self.category or self.in_stock is not None
                or self.price_min is not None or self.price_max is not None or self.rating_min is not None):
            raise ValueError("an attribute table must set at least one of brand, category, price_min, price_max, "
                             "in_stock, rating_min")
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError(f"price_min ({self.price_min}) must be <= price_max ({self.price_max})")
        return self

    def filters(self) -> Filters:
        """These attributes as engine filters."""
        return Filters(brand=tuple(self.brand), category=tuple(self.category), price_min=self.price_min,
                       price_max=self.price_max, in_stock=self.in_stock, rating_min=self.rating_min)


class Boost(Attributes):
    """Products with these attributes rank as if their position were divided by ``factor``."""

    factor: float = Field(..., gt=1, le=100, description="2: a boosted product at position 10 competes as if at 5")


class Pin(BaseModel):
    """A product shown at a position of the ranking (1 = first)."""

    model_config = FILE_MODEL
    id: ProductId = Field(..., description="Product id")
    position: int = Field(..., ge=1, le=MAX_PIN_POSITION, description="1-based position in the ranking")


class Rule(BaseModel):
    """One rule: when it fires (queries, match, date window) and what it does (at least one action)."""

    model_config = FILE_MODEL
    name: Name = Field(..., description="Unique name, reported in rules_applied")
    description: str = Field("", description="Free text for the merchandiser")
    queries: list[Text] = Field(..., min_length=1, description="Queries the rule fires for")
    match: Literal["exact", "contains"] = Field("exact", description="exact: the whole query; contains: the "
                                                                      "query holds these words in this order")
    active_from: datetime | date | None = Field(None, description="Fires from this moment (UTC unless an offset is "
                                                                  "given; a date: that day's start)")
    active_until: datetime | date | None = Field(None, description="Stops at this moment (a date: after that day)")
    pin: list[Pin] = Field([], description="Products shown at positions")
    bury: list[ProductId] = Field([], description="Products moved to the end of the results")
    hide: list[ProductId] = Field([], description="Products removed from the results, the total and the facets")
    boost: list[Boost] = Field([], description="Attributes that move products up")
    filter: Attributes | None = Field(None, description="Only products with these attributes")
    redirect: Url = Field("", description='Send the shopper to this URL (http(s) or a "/path"; "": none)')

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if not (self.pin or self.bury or self.hide or self.boost or self.filter or self.redirect):
            raise ValueError(f"rule {self.name!r} must have an action: pin, bury, hide, boost, filter or redirect")
        if not all(query_words(q) for q in self.queries):
            raise ValueError(f"rule {self.name!r}: queries must have a word (punctuation alone never matches)")
        if len({p.id for p in self.pin}) < len(self.pin) or len({p.position for p in self.pin}) < len(self.pin):
            raise ValueError(f"rule {self.name!r}: each pin needs its own product id and its own position")
        start, end = self.window()
        if start is not None and end is not None and start >= end:
            raise ValueError(f"rule {self.name!r}: active_from must be before active_until")
        return self

    def window(self) -> tuple[datetime | None, datetime | None]:
        """``(start, end)`` as aware UTC datetimes (a date: its start; an end date: the next day's start)."""
        return _moment(self.active_from, 0), _moment(self.active_until, 1)

    def fires(self, query: str, now: datetime) -> bool:
        """Whether the rule fires for ``query`` (its :func:`~shopsearch.text.query_words`: punctuation does not
        count, so "gift-card?" fires a rule for "gift card") at ``now`` (aware).

        >>> r = Rule(name="r", queries=["TV"], match="contains", hide=["x"])
        >>> r.fires("led tv 40", datetime.now(timezone.utc)), r.fires("tvs", datetime.now(timezone.utc))
        (True, False)
        """
        start, end = self.window()
        if (start is not None and now < start) or (end is not None and now >= end):
            return False
        for q in self.queries:
            wanted = query_words(q)
            if query == wanted or (self.match == "contains" and f" {wanted} " in f" {query} "):
                return True
        return False


def _moment(value: datetime | date | None, days: int) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    return datetime.combine(value + timedelta(days=days), time(), tzinfo=timezone.utc)


class RulesFile(BaseModel):
    """What a rules file holds: its ``[[rule]]`` tables, applied in file order."""

    model_config = FILE_MODEL
    rule: list[Rule] = Field([], description="The rules, in the order they apply")

    @model_validator(mode="after")
    def _unique_names(self) -> RulesFile:
        names = [r.name for r in self.rule]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(dup)}")
        return self


def rules_schema() -> dict[str, Any]:
    """The JSON Schema of rules files (docs/schemas/rules.schema.json).

    >>> sorted(rules_schema()["properties"])
    ['rule']
    """
    return file_schema(RulesFile, title="shopsearch merchandising rules", source="plugin/merchandising_rules.py")


def load_rules(path: str | Path) -> RulesFile:
    """Read and validate one rules file.

    Raises:
        FileNotFoundError: no such file.
        RulesError: invalid TOML (the parser gives the line) or an invalid key (each line names the key, the value,
            what is allowed and the line of the rule's ``[[rule]]`` header).

    >>> len(load_rules(Path(__file__).parent / "config" / "rules.example.toml").rule) > 0
    True
    """
    path = Path(path)
    data = read_toml(path, RulesError)
    try:
        return validate_file(RulesFile, data, path, RulesError)
    except RulesError as exc:
        headers = [n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                   if _RULE_HEADER.match(line)]

        def at_line(message: str) -> str:
            m = _RULE_KEY.search(message)
            i = int(m.group(1)) if m else -1
            return f"{message} (rule at line {headers[i]})" if 0 <= i < len(headers) else message

        raise RulesError("\n".join(at_line(line) for line in str(exc).splitlines())) from None


class RuleFiles:
    """Each index's rules, ``<folder>/<index>.rules.toml``, reloaded when the file changes (a stat per search).

    A file that fails to load is logged and the last good rules stay in force; no file: no rules.

    >>> RuleFiles(None).get("products").rule
    []
    """

    def __init__(self, folder: str | Path | None):
        self.files = IndexFiles(folder, SUFFIX, load_rules, RulesFile())

    def path(self, index: str) -> Path | None:
        """Where ``index``'s rules file is (whether or not it exists); None without a folder."""
        return self.files.path(index)

    def get(self, index: str) -> RulesFile:
        """The rules in force for ``index``."""
        return self.files.get(index)
