"""The catalog's spelling vocabulary: the words of the indexed text with their document frequencies.

Both engines hand the same record to the speller (:mod:`.speller`): the surface words (tokenized, lowercased and
ASCII-folded like the analyzer, *not* stemmed, so a correction is a real word the bi-encoder knows) of the fields
in :data:`VOCABULARY_FIELDS`, each with the number of products holding it. Only words of letters go in (part
numbers, sizes and codes are never correction targets), of at least :data:`MIN_WORD_CHARS` characters.

Each engine builds it once per index version and keeps it beside the index, so a search never pays for it: the
embedded engine in a ``vocabulary.json`` file next to its snapshot, OpenSearch in a side index
(:data:`VOCABULARY_INDEX`, one document per concrete index); the serialised form is :meth:`Vocabulary.to_json`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .text_analysis import tokenize

# Stored product fields whose words form the vocabulary (what the BM25 leg searches, as the shopper sees it).
VOCABULARY_FIELDS = ("title", "brand", "description")
MIN_WORD_CHARS = 3  # shorter words are never corrected and never offered as corrections
MIN_PAIR_DF = 2  # adjacent word pairs held by fewer products are not kept (they bound the stored size)
FORMAT_VERSION = 1
# OpenSearch: the side index holding one vocabulary document per concrete product index.
VOCABULARY_INDEX = "shopsearch-vocabulary"


def is_word(token: str) -> bool:
    """Whether ``token`` may be in the vocabulary (and be corrected): letters only, long enough.

    >>> [is_word(t) for t in ("lamp", "3.5mm", "tv", "x124210")]
    [True, False, False, False]
    """
    return len(token) >= MIN_WORD_CHARS and token.isalpha()


def product_words(source: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """The distinct vocabulary words of one stored product (its :data:`VOCABULARY_FIELDS`) and its adjacent
    pairs of them (``"a b"``: the context a correction is checked against).

    >>> [sorted(s) for s in product_words({"title": "Red Lamps", "description": "A 60W lamp.", "brand": None})]
    [['lamp', 'lamps', 'red'], ['red lamps']]
    """
    words: set[str] = set()
    pairs: set[str] = set()
    for name in VOCABULARY_FIELDS:
        text = source.get(name)
        if isinstance(text, str) and text:
            tokens = tokenize(text)
            words.update(t for t in tokens if is_word(t))
            pairs.update(f"{a} {b}" for a, b in zip(tokens, tokens[1:]) if is_word(a) and is_word(b))
    return words, pairs


@dataclass(frozen=True)
class Vocabulary:
    """Words of an index version and their document frequencies.

    ``version`` names the index state it was built from (engine-specific: the concrete index and a write
    counter); a searcher rebuilds its speller only when it changes. ``pairs``: adjacent word pairs (``"a b"``)
    held by at least :data:`MIN_PAIR_DF` products, with their document frequencies.
    """

    version: str
    words: dict[str, int] = field(default_factory=dict, compare=False)
    pairs: dict[str, int] = field(default_factory=dict, compare=False)

    def to_json(self) -> str:
        """The stored form: ``{"format", "version", "words", "df", "pairs", "pair_df"}`` (parallel arrays)."""
        words, pairs = sorted(self.words), sorted(self.pairs)
        return json.dumps({"format": FORMAT_VERSION, "version": self.version, "words": words,
                           "df": [self.words[w] for w in words], "pairs": pairs,
                           "pair_df": [self.pairs[p] for p in pairs]}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> "Vocabulary | None":
        """Read :meth:`to_json`'s form (a string or the parsed object); None for another format version."""
        data = json.loads(text) if isinstance(text, str) else text
        if not isinstance(data, Mapping) or data.get("format") != FORMAT_VERSION:
            return None
        return cls(str(data["version"]), dict(zip(data["words"], (int(n) for n in data["df"]))),
                   dict(zip(data["pairs"], (int(n) for n in data["pair_df"]))))


def build_vocabulary(version: str, sources: Iterable[Mapping[str, Any]]) -> Vocabulary:
    """Count the vocabulary words and word pairs of every product (document frequency: products holding them).

    >>> v = build_vocabulary("v1", [{"title": "red lamp"}, {"title": "Red lamp 2m"}, {"title": "red sofa"}])
    >>> v.words, v.pairs
    ({'lamp': 2, 'red': 3, 'sofa': 1}, {'red lamp': 2})
    """
    df: Counter[str] = Counter()
    pair_df: Counter[str] = Counter()
    for src in sources:
        words, pairs = product_words(src)
        df.update(words)
        pair_df.update(pairs)
    return Vocabulary(version, dict(sorted(df.items())),
                      {p: n for p, n in sorted(pair_df.items()) if n >= MIN_PAIR_DF})
