"""Autocomplete: titles whose words start with every word typed so far; shared by both engines.

Matching mirrors the mapping's ``title.autocomplete`` field (edge n-grams of lowercased, ASCII-folded tokens,
searched with operator AND). Both engines then order candidates with :func:`rank_suggestions`, so the storefront
sees the same suggestions whichever engine serves it. /suggest mixes them with popular past queries
(:mod:`.popular_queries`) by :func:`mix_suggestions`.
"""

from __future__ import annotations

import bisect
from typing import Any, Iterable, NamedTuple, Sequence

from shopsearch.text import normalise_query

from .text_analysis import tokenize

MAX_PREFIX_CHARS = 100
MAX_SUGGESTIONS = 50  # the most suggestions one request may ask for (/suggest's bound too)
CANDIDATES_PER_SUGGESTION = 5  # how many matches OpenSearch returns per suggestion asked for, before ranking


def check_suggest_size(size: int) -> None:
    """Raise ValueError unless ``size`` (suggestions asked for) is in 1..MAX_SUGGESTIONS; both engines call it.

    >>> check_suggest_size(0)
    Traceback (most recent call last):
    ValueError: size=0 must be an integer in 1..50
    """
    if not 1 <= size <= MAX_SUGGESTIONS:
        raise ValueError(f"size={size!r} must be an integer in 1..{MAX_SUGGESTIONS}")


def suggest_terms(prefix: str) -> list[str]:
    """The typed prefix as folded tokens ('' or only punctuation gives [])."""
    return tokenize(prefix[:MAX_PREFIX_CHARS])


def _starts_with(toks: list[str], terms: list[str]) -> bool:
    """True when the title's first words are the typed words (the last one typed as a prefix)."""
    n = len(terms)
    return 0 < n <= len(toks) and toks[: n - 1] == terms[:-1] and toks[n - 1].startswith(terms[-1])


def rank_suggestions(prefix: str, titles: Iterable[str], size: int) -> list[str]:
    """Distinct titles, best first: a title starting with the typed words, then shorter titles, then A–Z.

    >>> rank_suggestions("red la", ["Blue lamp", "Red lamp shade", "Red lamp"], 2)
    ['Red lamp', 'Red lamp shade']
    """
    terms = suggest_terms(prefix)
    seen: dict[str, tuple] = {}
    for title in titles:
        key = normalise_query(title)
        if not key or key in seen:
            continue
        toks = tokenize(title)
        seen[key] = (not _starts_with(toks, terms), len(toks), key, title.strip())
    return [v[3] for v in sorted(seen.values())[:size]]


class Suggestion(NamedTuple):
    """One /suggest completion: its text and its ``kind``: ``query`` (what shoppers searched) or ``product`` (a
    product title)."""

    text: str
    kind: str


def mix_suggestions(queries: Sequence[str], titles: Sequence[str], size: int) -> list[Suggestion]:
    """Up to ``size`` suggestions: popular queries first, then product titles, each kind given at least half the
    places when it has enough (the other kind fills what one leaves); a title equal to a suggested query is
    dropped.

    >>> [s.text for s in mix_suggestions(["red lamp", "red rug"], ["Red lamp", "Red lamp shade"], 3)]
    ['red lamp', 'red rug', 'Red lamp shade']
    """
    queries = list(dict.fromkeys(queries))
    taken_q = {normalise_query(q) for q in queries}
    titles = [t for t in dict.fromkeys(titles) if normalise_query(t) not in taken_q]
    n_queries = min(len(queries), max(size - size // 2, size - len(titles)))
    out = [Suggestion(q, "query") for q in queries[:n_queries]]
    return out + [Suggestion(t, "product") for t in titles[: size - n_queries]]


def opensearch_suggest_body(prefix: str, size: int) -> dict[str, Any]:
    """The OpenSearch request for autocomplete candidates (ranked afterwards with :func:`rank_suggestions`)."""
    return {
        "size": size * CANDIDATES_PER_SUGGESTION,
        "_source": ["title"],
        "query": {"match": {"title.autocomplete": {"query": prefix[:MAX_PREFIX_CHARS], "operator": "and"}}},
    }


class PrefixIndex:
    """In-memory edge-n-gram equivalent for the embedded engine: sorted vocabulary + postings per token."""

    def __init__(self, titles: Sequence[str]):
        self.titles = list(titles)
        postings: dict[str, set[int]] = {}
        for row, title in enumerate(self.titles):
            for tok in tokenize(title):
                postings.setdefault(tok, set()).add(row)
        self.vocab = sorted(postings)
        self.postings = [postings[t] for t in self.vocab]

    def _rows_with_prefix(self, term: str) -> set[int]:
        lo = bisect.bisect_left(self.vocab, term)
        hi = bisect.bisect_left(self.vocab, term + "\uffff")
        out: set[int] = set()
        for i in range(lo, hi):
            out |= self.postings[i]
        return out

    def lookup(self, prefix: str, size: int) -> list[str]:
        """Up to ``size`` titles matching every typed word as a word prefix, ranked by :func:`rank_suggestions`."""
        terms = suggest_terms(prefix)
        if not terms:
            return []
        rows: set[int] | None = None
        for term in sorted(terms, key=len, reverse=True):  # longest first: smallest posting union
            hit = self._rows_with_prefix(term)
            rows = hit if rows is None else rows & hit
            if not rows:
                return []
        return rank_suggestions(prefix, (self.titles[r] for r in rows or ()), size)
