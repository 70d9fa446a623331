"""Typed records that cross module boundaries: a validated catalog ``Product`` and a quarantined row."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

# How a category path is written as one string ("Home > Lighting > Lamps"): in the category facet, the subtree
# filter and a storefront's category links. The facet reads a path's levels at ">", so no level holds one.
PATH_SEPARATOR = " > "
# The longest path a storefront can filter on (the API's category_path), in UTF-16 units as OpenSearch counts: it
# lists a path's children with a regular expression of it, escaped (at most two units a unit), and refuses one
# over index.max_regex_length (1,000). A product whose path is longer is quarantined, so the facet never offers a
# path OpenSearch or the API then refuses.
MAX_CATEGORY_PATH_CHARS = 400


def java_length(text: str) -> int:
    """The length of ``text`` as OpenSearch (Java, UTF-16) counts it: a character outside the BMP is two.

    >>> java_length("lamp"), java_length("lamp 💡")
    (4, 7)
    """
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class Product:
    """One validated catalog product, in the project's schema.

    ``category`` is the category path from root to leaf (``("Home", "Lighting", "Lamps")``).
    ``attributes`` holds free string attributes (colour, size...) that have no column of their own.
    """

    id: str
    title: str
    description: str = ""
    brand: str | None = None
    category: tuple[str, ...] = ()
    price: float | None = None
    rating: float | None = None
    review_count: int | None = None
    popularity: float | None = None
    in_stock: bool | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    def embed_text(self) -> str:
        """The text the bi-encoder embeds: title, then description (truncated by the model's max length)."""
        return f"{self.title}. {self.description}".strip() if self.description else self.title

    def content_hash(self) -> str:
        """Stable hash of every indexed field; an incremental run rewrites a product only when it changes."""
        return hashlib.sha1(json.dumps(self.to_source(), sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def to_source(self) -> dict[str, Any]:
        """The product as a plain JSON-able dict (the stored document, without vector or hash)."""
        d = asdict(self)
        d["category"] = list(self.category)
        return d

    @classmethod
    def from_source(cls, src: dict[str, Any]) -> "Product":
        """Rebuild a Product from a stored document (extra engine fields are ignored)."""
        return cls(
            id=str(src["id"]),
            title=src["title"],
            description=src.get("description") or "",
            brand=src.get("brand"),
            category=tuple(src.get("category") or ()),
            price=src.get("price"),
            rating=src.get("rating"),
            review_count=src.get("review_count"),
            popularity=src.get("popularity"),
            in_stock=src.get("in_stock"),
            attributes=dict(src.get("attributes") or {}),
        )


@dataclass(frozen=True)
class QuarantinedRow:
    """A catalog row that was not indexed, with where it came from and why; ``run``: when the run that quarantined
    it started (ISO 8601 UTC), as the quarantine file is appended to by every run."""

    source: str
    line: int
    reason: str
    raw: str
    run: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)
