"""Field mapping: which of a catalog's own columns feeds each Product field, plus the size limits.

A mapping file (TOML; see indexer/fields.example.toml) names the source column for each field; without a file
every field reads the column of the same name. The pydantic model :class:`FieldMapping` validates the file (strict
types, unknown keys are errors naming the file, key, value and what is allowed) and produces its JSON Schema,
docs/schemas/fields.schema.json (written by ``shopsearch schema``). ``apply_mapping`` is pure: raw row in,
Product-keyed values out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema

from shopsearch.config_files import FILE_MODEL, file_schema, must, read_toml, validate_file
from shopsearch.events import MAX_ID

# Product fields read from one column each (attributes are handled separately).
SCALAR_FIELDS = ("id", "title", "description", "brand", "category", "price", "rating", "review_count",
                 "popularity", "in_stock")
REST = "rest"
# A facetable attribute's name: it becomes the keyword field ``attr.<name>`` (no dots: they would nest objects).
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
MAX_FACET_ATTRIBUTES = 20


def _column(value: Any) -> str | None:
    """A source column name; "" (None) when the catalog has no such column."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise must('be a column name, or "" when the catalog has none')
    return value or None


def _attribute_columns(value: Any) -> str | tuple[str, ...]:
    """``"rest"`` or a list of column names (kept as a tuple, so a mapping is hashable)."""
    if value == REST:
        return REST
    if isinstance(value, (list, tuple)) and all(isinstance(c, str) for c in value):
        return tuple(value)
    raise must('be "rest" or a list of column names')


def _facet_attributes(value: Any) -> tuple[str, ...]:
    """A list of distinct attribute names, each matching ATTRIBUTE_NAME (kept as a tuple, so hashable)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(a, str) for a in value):
        raise must("be a list of attribute names")
    bad = [a for a in value if not ATTRIBUTE_NAME.match(a)]
    if bad:
        raise must(f"hold names of letters, digits, '_' and '-' (at most 64, no dots); {bad[0]!r} is not")
    if len(set(value)) != len(value) or len(value) > MAX_FACET_ATTRIBUTES:
        raise must(f"hold at most {MAX_FACET_ATTRIBUTES} distinct names")
    return tuple(value)


Column = Annotated[str | None, BeforeValidator(_column), WithJsonSchema({"type": "string"})]
Required = Annotated[str, Field(min_length=1)]
Limit = Annotated[int, Field(gt=0)]


class FieldLimits(BaseModel):
    """Largest accepted values; a row over any limit is quarantined (never silently truncated)."""

    model_config = FILE_MODEL
    id_chars: Annotated[int, Field(gt=0, le=MAX_ID)] = Field(
        MAX_ID, description=f"At most {MAX_ID}, UBI's limit on an object id: a longer id could be searched but "
                            "never clicked, bought or fetched by id")
    title_chars: Limit = 1_000
    description_chars: Limit = 50_000
    brand_chars: Limit = 200
    category_levels: Limit = 10
    category_level_chars: Limit = 200
    attribute_chars: Limit = Field(1_000, description="Per attribute value")
    attributes: Limit = Field(100, description="Attributes per product")
    rating_max: float = Field(5.0, gt=0, description="The catalog's rating scale: ratings lie in 0..rating_max and "
                                                      "are stored on the 0..5 scale the API filters and shows")


class FieldMapping(BaseModel):
    """Source column per Product field (None, "" in a file: the catalog has no such column).

    ``attributes`` is ``"rest"`` (every column not mapped to another field) or a tuple of column names.
    A column holding an object (JSON dict) contributes its keys as attributes.
    """

    model_config = FILE_MODEL
    id: Required = Field("id", description="The product id column (required)")
    title: Required = Field("title", description="The title column (required)")
    description: Column = "description"
    brand: Column = "brand"
    category: Column = Field("category", description="A list column, or a string split on category_separator; a '>' "
                                                 "inside a level is written '›'; at most 400 characters in all")
    category_separator: Required = " > "
    price: Column = "price"
    rating: Column = "rating"
    review_count: Column = "review_count"
    popularity: Column = "popularity"
    in_stock: Column = "in_stock"
    attributes: Annotated[Literal["rest"] | tuple[str, ...], BeforeValidator(_attribute_columns)] = Field(
        REST, description='"rest" (every column not mapped above) or a list of column names')
    facet_attributes: Annotated[tuple[str, ...], BeforeValidator(_facet_attributes),
                                WithJsonSchema({"type": "array", "items": {"type": "string",
                                                                           "pattern": ATTRIBUTE_NAME.pattern},
                                                "maxItems": MAX_FACET_ATTRIBUTES, "uniqueItems": True})] = Field(
        (), description="Attributes shoppers can facet and filter on (keyword fields attr.<name>); default none")
    limits: FieldLimits = Field(default_factory=FieldLimits, description="Size limits; over one, a row is "
                                                                          "quarantined")

    def mapped_columns(self) -> set[str]:
        """The source columns that feed a named field (everything else is "the rest")."""
        return {c for c in (getattr(self, f) for f in SCALAR_FIELDS) if c}


def apply_mapping(row: dict[str, Any], mapping: FieldMapping) -> dict[str, Any]:
    """Rename a raw row's columns to Product field names (values untouched; missing columns are None).

    Returns:
        A dict with every key of SCALAR_FIELDS plus ``attributes`` (a dict of raw values).

    >>> apply_mapping({"sku": "1", "name": "Lamp", "colour": "red"}, FieldMapping(id="sku", title="name"))["id"]
    '1'
    """
    out: dict[str, Any] = {f: (row.get(getattr(mapping, f)) if getattr(mapping, f) else None)
                           for f in SCALAR_FIELDS}
    if mapping.attributes == REST:
        used = mapping.mapped_columns()
        columns = [c for c in row if c not in used]
    else:
        columns = [c for c in mapping.attributes if c in row]
    attrs: dict[str, Any] = {}
    for col in columns:
        value = row[col]
        if isinstance(value, dict):
            attrs.update(value)  # e.g. a JSONL "attributes": {...} object
        else:
            attrs[col] = value
    out["attributes"] = attrs
    return out


def field_mapping_schema() -> dict[str, Any]:
    """The JSON Schema of field-mapping files (docs/schemas/fields.schema.json).

    >>> field_mapping_schema()["properties"]["limits"]["$ref"]
    '#/$defs/FieldLimits'
    """
    return file_schema(FieldMapping, title="shopsearch field mapping", source="indexer/fields.py")


def load_field_mapping(path: str | Path | None = None) -> FieldMapping:
    """Read a field-mapping TOML file (None: the identity mapping).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: invalid TOML, an unknown key, a value of the wrong type, or a limit <= 0 (the message names
            the file, the key, the value and what is allowed).

    >>> load_field_mapping().title
    'title'
    """
    if path is None:
        return FieldMapping()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"field mapping file not found: {path}")
    return mapping_from_dict(read_toml(path), where=str(path))


def mapping_from_dict(data: Mapping[str, Any], where: str = "field mapping") -> FieldMapping:
    """Build a FieldMapping from parsed TOML (the top-level keys plus an optional ``[limits]`` table).

    Raises:
        ValueError: an unknown key or a value of the wrong type (one line per bad key).

    >>> mapping_from_dict({"title": "name", "limits": {"title_chars": 200}}).limits.title_chars
    200
    """
    return validate_file(FieldMapping, data, where)
