"""Text normalisation shared by every layer: one HTML stripper, one whitespace collapser, one query normaliser.

Indexing (``indexer.validate.clean_text``), the pure-Python analyzer (``plugin.text_analysis``), the
cross-encoder's product text (``reranker.pair_text``), the query-embedding cache and the relevance console all
build on these, so a product or a query reads the same wherever it is looked at.
"""

from __future__ import annotations

import html
import re
import unicodedata

# Comments, script and style bodies go whole (a ``>`` inside them does not end them); then any other tag. The
# shape of OpenSearch's ``html_strip`` char filter, which the index mapping runs on the same text.
MARKUP = re.compile(r"<!--.*?-->|<script.*?</script>|<style.*?</style>|<[^>]*>", re.S | re.I)


def strip_html(text: str) -> str:
    """Drop tags, comments, scripts and styles, then decode entities; each tag leaves a space in its place.

    Spaces are kept where tags were (``<b>x</b>y`` must not glue ``x`` to ``y``); callers that want tidy text
    compose it with :func:`collapse_whitespace`.

    Args:
        text: the raw text, HTML or not.
    Returns:
        The text without markup, entities decoded.
    Example:
        >>> strip_html("<b>Red</b> lamp &amp; shade<!-- a > b -->")
        ' Red  lamp & shade '
    """
    return html.unescape(MARKUP.sub(" ", text) if "<" in text else text)


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (any Unicode space, tab or newline) as one space, trimmed.

    >>> collapse_whitespace("  red \\t\\n lamp ")
    'red lamp'
    """
    return " ".join(text.split())


def query_words(text: str) -> str:
    """A query's words: :func:`normalise_query` with punctuation read as spaces. For matching a shopper's query
    against queries an operator wrote (merchandising rules), where "Gift-card?" is "gift card".

    >>> query_words(" Gift-Card? "), query_words("television!")
    ('gift card', 'television')
    """
    return collapse_whitespace(_PUNCTUATION.sub(" ", normalise_query(text)))


_PUNCTUATION = re.compile(r"[\W_]+")


def normalise_query(text: str) -> str:
    """The canonical form of a shopper's query: NFKC, case-folded, whitespace collapsed.

    The key queries are matched and cached on (the query-embedding cache embeds this form, so a cached vector never
    depends on which spelling came first; the relevance console looks judged queries up by it). NFKC makes
    full-width and compatibility characters match their plain forms.

    Args:
        text: the query as typed.
    Returns:
        The normalised query ('' for blank input).
    Example:
        >>> normalise_query("  Red   ＬＡＭＰ ")
        'red lamp'
    """
    return collapse_whitespace(unicodedata.normalize("NFKC", text).casefold())


_ESCAPED = re.compile(r"\\([,\\])|(,)")


def split_escaped(text: str) -> list[str]:
    r"""``text`` split at commas, where ``\,`` is a comma within an item and ``\\`` a backslash (any other backslash
    is kept as written): the API's list parameters and the synonym files' phrases (Solr's escaping).

    >>> split_escaped(r"Acme,Sonix\, Inc.,a\\b\c")
    ['Acme', 'Sonix, Inc.', 'a\\b\\c']
    """
    out, start, item = [], 0, []
    for m in _ESCAPED.finditer(text):
        item.append(text[start:m.start()])
        if m.group(1):
            item.append(m.group(1))
        else:
            out.append("".join(item))
            item = []
        start = m.end()
    item.append(text[start:])
    out.append("".join(item))
    return out


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone UTF-16 surrogate: what a bad byte read with ``surrogateescape`` or a JSON
    ``"\\ud800"`` decodes to; no text, and no UTF-8 can carry it.

    >>> has_lone_surrogate("caf\\udce9"), has_lone_surrogate("café")
    (True, False)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
