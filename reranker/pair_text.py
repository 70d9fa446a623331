"""The product text a cross-encoder reads: title, then description with HTML removed.

Training and serving must build exactly the same text, so both call :func:`product_text`.
"""

from __future__ import annotations

from typing import Any, Mapping

from shopsearch.text import collapse_whitespace, strip_html


def product_text(product: Mapping[str, Any]) -> str:
    """``"title. description"`` of a product dict (stored source or products.jsonl row), HTML stripped.

    Args:
        product: a mapping with ``title`` and optionally ``description``.
    Returns:
        The text; the title alone when there is no description.
    Example:
        >>> product_text({"title": "Red Lamp", "description": "<b>LED</b> lamp"})
        'Red Lamp. LED lamp'
    """
    title = _clean(product.get("title") or "")
    description = _clean(product.get("description") or "")
    return f"{title}. {description}" if description else title


def _clean(text: Any) -> str:
    """Markup stripped (:func:`~shopsearch.text.strip_html`) and whitespace collapsed."""
    return collapse_whitespace(strip_html(str(text)))
