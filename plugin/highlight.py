"""Highlighting for the embedded engine, with the markup OpenSearch's unified highlighter (HTML encoder) writes.

The whole field comes back (``number_of_fragments: 0``), every character HTML-escaped as Lucene's
``SimpleHTMLEncoder`` does, with ``<em>``...``</em>`` around each word whose analyzed term is one the query matched
in that field (query terms, their synonyms and their fuzzy expansions in the field's vocabulary). Markup in the
stored text is not a word (the mapping strips it before tokenizing): it is escaped and shown as text. Pure.
"""

from __future__ import annotations

import re
from typing import Collection, Sequence

from shopsearch.text import MARKUP  # the html_strip shape strip_html uses: markup is blanked the same way here

from .text_analysis import ENGLISH_STOPWORDS, QueryClause, fuzzy_expand, parse_fuzziness, stem, word_spans

PRE, POST = "<em>", "</em>"
# Lucene's SimpleHTMLEncoder: these and nothing else.
_ESCAPES = {'"': "&quot;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&#x27;", "/": "&#x2F;"}
_ESCAPE = re.compile("[\"&<>'/]")


def escape(text: str) -> str:
    """HTML-escape ``text`` like Lucene's SimpleHTMLEncoder.

    >>> escape("<b>5' & 3/4\\"</b>")
    '&lt;b&gt;5&#x27; &amp; 3&#x2F;4&quot;&lt;&#x2F;b&gt;'
    """
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group()], text)


def matched_terms(clauses: Sequence[QueryClause], vocab: Sequence[str], fuzziness: str | None = "AUTO") -> set[str]:
    """The field's terms the analyzed query matches: each query term's fuzzy expansions in the sorted ``vocab``
    (synonym alternatives included; a phrase alternative contributes its terms).

    >>> sorted(matched_terms([QueryClause("term", (("lamp",),))], ["lamb", "lamp", "light"]))
    ['lamb', 'lamp']
    """
    found: set[str] = set()
    for clause in clauses:
        for alt in clause.alternatives:
            for term in alt:
                edits = parse_fuzziness(fuzziness, term) if len(alt) == 1 else 0
                found.update(t for t, _ in fuzzy_expand(term, vocab, edits))
    return found


def highlight(text: str | None, terms: Collection[str]) -> str | None:
    """``text`` HTML-escaped with ``<em>`` around the words whose analyzed term is in ``terms``; None when no word
    matches (as OpenSearch leaves such a field out of the highlights).

    >>> highlight("Red <i>running</i> shoes & socks", {"run", "shoe"})
    'Red &lt;i&gt;<em>running</em>&lt;&#x2F;i&gt; <em>shoes</em> &amp; socks'
    >>> highlight("Red lamp", {"shoe"}) is None
    True
    """
    if not text or not terms:
        return None
    # Markup is blanked (same length, so offsets hold) before finding words, as the html_strip char filter does.
    words = MARKUP.sub(lambda m: " " * len(m.group()), text) if "<" in text else text
    out: list[str] = []
    last = 0
    for start, end, token in word_spans(words):
        if token in ENGLISH_STOPWORDS or stem(token) not in terms:
            continue
        out += [escape(text[last:start]), PRE, escape(text[start:end]), POST]
        last = end
    if not out:
        return None
    out.append(escape(text[last:]))
    return "".join(out)
