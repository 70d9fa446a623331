"""The stored document shape, shared by both engines so they index and return the same fields."""

from __future__ import annotations

from typing import Any

from shopsearch.indexer.sink import IndexDoc

VECTOR_FIELD = "embedding"
CATEGORY_LEVELS = 3  # category_lvl0..2 keyword facets; deeper levels still match the ``category`` filter

# Fields a ranking profile may boost in the BM25 leg (text fields in the mapping).
TEXT_FIELDS = ("title", "description", "brand_text", "category_text")
# Keyword fields that can be faceted on.
FACET_FIELDS = ("brand",) + tuple(f"category_lvl{i}" for i in range(CATEGORY_LEVELS))


def to_engine_doc(doc: IndexDoc) -> dict[str, Any]:
    """Flatten an IndexDoc into the stored source: product fields, derived search/facet fields, hash, vector."""
    src = doc.product.to_source()
    cat = list(doc.product.category)
    src["category"] = cat
    src["category_text"] = " > ".join(cat)
    src["brand_text"] = doc.product.brand or ""
    for i in range(CATEGORY_LEVELS):
        src[f"category_lvl{i}"] = cat[i] if i < len(cat) else None
    src["content_hash"] = doc.content_hash
    src[VECTOR_FIELD] = [float(x) for x in doc.vector]
    return src


def public_source(src: dict[str, Any]) -> dict[str, Any]:
    """Drop derived and internal fields before a document leaves the engine layer."""
    hidden = {"category_text", "brand_text", "content_hash", VECTOR_FIELD} | {
        f"category_lvl{i}" for i in range(CATEGORY_LEVELS)}
    return {k: v for k, v in src.items() if k not in hidden}
