"""Field mapping: which of a catalog's own columns feeds each Product field, plus the size limits.

A mapping file (TOML; see indexer/fields.example.toml) names the source column for each field; without a file
every field reads the column of the same name. ``apply_mapping`` is pure: raw row in, Product-keyed values out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields as dc_fields
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# Product fields read from one column each (attributes are handled separately).
SCALAR_FIELDS = ("id", "title", "description", "brand", "category", "price", "rating", "review_count",
                 "popularity", "in_stock")
REST = "rest"


@dataclass(frozen=True)
class FieldLimits:
    """Largest accepted values; a row over any limit is quarantined (never silently truncated)."""

    id_chars: int = 512  # OpenSearch's _id limit is 512 bytes
    title_chars: int = 1_000
    description_chars: int = 50_000
    brand_chars: int = 200
    category_levels: int = 10
    category_level_chars: int = 200
    attribute_chars: int = 1_000
    attributes: int = 100
    rating_max: float = 5.0


@dataclass(frozen=True)
class FieldMapping:
    """Source column per Product field (None: the catalog has no such column).

    ``attributes`` is ``"rest"`` (every column not mapped to another field) or a tuple of column names.
    A column holding an object (JSON dict) contributes its keys as attributes.
    """

    id: str = "id"
    title: str = "title"
    description: str | None = "description"
    brand: str | None = "brand"
    category: str | None = "category"
    category_separator: str = " > "
    price: str | None = "price"
    rating: str | None = "rating"
    review_count: str | None = "review_count"
    popularity: str | None = "popularity"
    in_stock: str | None = "in_stock"
    attributes: str | tuple[str, ...] = REST
    limits: FieldLimits = field(default_factory=FieldLimits)

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


def load_field_mapping(path: str | Path | None = None) -> FieldMapping:
    """Read a field-mapping TOML file (None: the identity mapping).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unknown key, a value of the wrong type, or a limit <= 0.

    >>> load_field_mapping().title
    'title'
    """
    if path is None:
        return FieldMapping()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"field mapping file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from exc
    return mapping_from_dict(data, where=str(path))


def mapping_from_dict(data: dict[str, Any], where: str = "field mapping") -> FieldMapping:
    """Build a FieldMapping from parsed TOML (the top-level keys plus an optional ``[limits]`` table).

    Raises:
        ValueError: an unknown key or a value of the wrong type.

    >>> mapping_from_dict({"title": "name", "limits": {"title_chars": 200}}).limits.title_chars
    200
    """
    data = dict(data)
    limits_data = data.pop("limits", {}) or {}
    if not isinstance(limits_data, dict):
        raise ValueError(f"{where}: limits must be a table, got {limits_data!r}")
    allowed = set(SCALAR_FIELDS) | {"category_separator", "attributes"}
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)} and [limits]")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "attributes":
            if value == REST:
                kwargs[key] = REST
            elif isinstance(value, list) and all(isinstance(c, str) for c in value):
                kwargs[key] = tuple(value)
            else:
                raise ValueError(f"{where}: attributes must be \"rest\" or a list of column names, got {value!r}")
        elif key in ("id", "title", "category_separator"):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{where}: {key} must be a non-empty string, got {value!r}")
            kwargs[key] = value
        else:
            # "" switches an optional field off (the catalog has no such column)
            if not isinstance(value, str):
                raise ValueError(f"{where}: {key} must be a column name (\"\" for none), got {value!r}")
            kwargs[key] = value or None
    kwargs["limits"] = _limits_from_dict(limits_data, where)
    return FieldMapping(**kwargs)


def _limits_from_dict(data: dict[str, Any], where: str) -> FieldLimits:
    names = {f.name: f.type for f in dc_fields(FieldLimits)}
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"{where}: unknown limit(s) {sorted(unknown)}; allowed: {sorted(names)}")
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{where}: limits.{key} must be a number > 0, got {value!r}")
    return FieldLimits(**{k: (float(v) if k == "rating_max" else int(v)) for k, v in data.items()})
