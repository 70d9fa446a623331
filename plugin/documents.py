"""The stored document shape, shared by both engines so they index and return the same fields."""

from __future__ import annotations

from typing import Any, Sequence

from shopsearch.indexer.fields import ATTRIBUTE_NAME
from shopsearch.indexer.records import PATH_SEPARATOR
from shopsearch.indexer.sink import IndexDoc

VECTOR_FIELD = "embedding"
CATEGORY_LEVELS = 3  # category_lvl0..2 keyword facets; deeper levels still match the ``category`` filter

# Fields a ranking profile may boost in the BM25 leg (text fields in the mapping).
TEXT_FIELDS = ("title", "description", "brand_text", "category_text")
# Every prefix of the category path, joined by PATH_SEPARATOR ("Home", "Home > Furniture", ...): the
# hierarchical facet and the subtree filter.
CATEGORY_PATHS = "category_paths"
# The facetable catalog attributes (the field mapping's ``facet_attributes``) are stored as keyword fields
# ``attr.<name>`` (OpenSearch maps them with a dynamic template) and faceted as ``attr.<name>``.
ATTR_PREFIX = "attr."
# The facets every index has: keyword values (brand, category levels), category paths, price buckets, ratings.
FACET_FIELDS = ("brand",) + tuple(f"category_lvl{i}" for i in range(CATEGORY_LEVELS)) + (
    "category_path", "price", "rating")
# In a facet list: "every attribute facet the index declares" (its index meta, indexer.sink.FACET_ATTRIBUTES_META).
ALL_ATTRIBUTES = "attr.*"
DEFAULT_FACETS = FACET_FIELDS + (ALL_ATTRIBUTES,)


def attribute_facet(name: str) -> str | None:
    """The attribute a facet name ``attr.<name>`` counts, or None when ``name`` is not one.

    >>> attribute_facet("attr.color"), attribute_facet("color"), attribute_facet("attr.a.b")
    ('color', None, None)
    """
    if not isinstance(name, str) or not name.startswith(ATTR_PREFIX):
        return None
    attr = name[len(ATTR_PREFIX):]
    return attr if ATTRIBUTE_NAME.match(attr) else None


def is_facet(name: str) -> bool:
    """Whether ``name`` is a facet an engine counts: one of FACET_FIELDS or ``attr.<attribute>``."""
    return name in FACET_FIELDS or attribute_facet(name) is not None


def category_paths(category: Sequence[str]) -> list[str]:
    """Every prefix of a category path, root first.

    >>> category_paths(["Home", "Furniture", "Sofas"])
    ['Home', 'Home > Furniture', 'Home > Furniture > Sofas']
    """
    return [PATH_SEPARATOR.join(category[:i + 1]) for i in range(len(category))]


def to_engine_doc(doc: IndexDoc) -> dict[str, Any]:
    """Flatten an IndexDoc into the stored source: product fields, derived search/facet fields, hash, vector."""
    src = doc.product.to_source()
    cat = list(doc.product.category)
    src["category"] = cat
    src["category_text"] = " > ".join(cat)
    src["brand_text"] = doc.product.brand or ""
    for i in range(CATEGORY_LEVELS):
        src[f"category_lvl{i}"] = cat[i] if i < len(cat) else None
    if cat:
        src[CATEGORY_PATHS] = category_paths(cat)
    attrs = {name: str(doc.product.attributes[name]) for name in doc.facet_attributes
             if doc.product.attributes.get(name) not in (None, "")}
    if attrs:  # only when declared: an index created before attribute facets existed accepts the document
        src["attr"] = attrs
    src["content_hash"] = doc.content_hash
    src[VECTOR_FIELD] = [float(x) for x in doc.vector]
    return src


def public_source(src: dict[str, Any]) -> dict[str, Any]:
    """Drop derived and internal fields before a document leaves the engine layer."""
    hidden = {"category_text", "brand_text", "content_hash", VECTOR_FIELD, CATEGORY_PATHS, "attr"} | {
        f"category_lvl{i}" for i in range(CATEGORY_LEVELS)}
    return {k: v for k, v in src.items() if k not in hidden}
