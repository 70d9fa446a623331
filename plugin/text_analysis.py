"""A pure-Python mirror of the mapping's ``product_english`` analyzers, Solr synonyms and fuzzy expansion.

Index time (``product_english``): strip HTML, standard tokenizer, possessive ``'s`` removal, lowercase,
ASCII folding, English stopwords, Porter stemming. Search time (``product_english_search``): the same chain
without HTML stripping and with search-time synonyms between ASCII folding and the stopword filter, as in
plugin/config/index.json. The embedded engine uses this so its BM25 leg matches OpenSearch's terms.

Approximations (documented so nobody is surprised): the tokenizer is a regex close to Unicode UAX#29 word
breaks (letters/digits/underscore, joined across ``.'’:`` between letters and ``.,;'`` between digits);
PyStemmer's ``porter`` is the Snowball port of the same Porter algorithm Lucene's ``english`` stemmer runs.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

import Stemmer

from shopsearch.text import split_escaped, strip_html

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (what "_english_" means in the mapping).
ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split())

_TOKEN = re.compile(
    r"\w+(?:(?:(?<=[^\W\d_])[.'’:](?=[^\W\d_])|(?<=\d)[.,;'’](?=\d))\w+)*")
_POSSESSIVE = re.compile(r"['’][sS]$")
# Letters NFKD cannot decompose that Lucene's ASCIIFoldingFilter still folds.
_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "đ": "d",
                       "Đ": "D", "ł": "l", "Ł": "L", "þ": "th", "Þ": "TH", "ð": "d", "Ð": "D", "ı": "i"})
_STEMMER = Stemmer.Stemmer("porter")
_STEM_LOCK = threading.Lock()  # PyStemmer objects are not thread-safe; the API searches from several threads
_STEM_CACHE: dict[str, str] = {}


def fold(token: str) -> str:
    """ASCII-fold one token (``café`` -> ``cafe``, ``straße`` -> ``strasse``)."""
    token = token.translate(_FOLD)
    if token.isascii():
        return token
    decomposed = unicodedata.normalize("NFKD", token)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def tokenize(text: str) -> list[str]:
    """Standard-tokenizer-like split, then possessive removal, lowercase and ASCII folding (no stop/stem).

    >>> tokenize("Men's U.S. Café 3.5mm cable")
    ['men', 'u.s', 'cafe', '3.5mm', 'cable']
    """
    out = []
    for tok in _TOKEN.findall(text):
        tok = fold(_POSSESSIVE.sub("", tok).lower())
        if tok:
            out.append(tok)
    return out


def word_spans(text: str) -> list[tuple[int, int, str]]:
    """:func:`tokenize` with each token's character span in ``text``: ``(start, end, token)`` (for highlighting).

    >>> word_spans("Men's shoes")
    [(0, 5, 'men'), (6, 11, 'shoes')]
    """
    out = []
    for m in _TOKEN.finditer(text):
        tok = fold(_POSSESSIVE.sub("", m.group()).lower())
        if tok:
            out.append((m.start(), m.end(), tok))
    return out


def stem(token: str) -> str:
    """Porter-stem one lowercased token (cached: catalogs repeat a small vocabulary)."""
    hit = _STEM_CACHE.get(token)
    if hit is None:
        with _STEM_LOCK:
            hit = _STEMMER.stemWord(token)
        if len(_STEM_CACHE) < 500_000:
            _STEM_CACHE[token] = hit
    return hit


def analyze(text: str | None, *, html_input: bool = True) -> list[str]:
    """Index-time analysis: the terms ``product_english`` stores for ``text``, in order (stopwords dropped).

    >>> analyze("The <i>Running</i> Shoes")
    ['run', 'shoe']
    """
    return [t for _, t in analyze_positions(text, html_input=html_input)]


def analyze_positions(text: str | None, *, html_input: bool = True) -> list[tuple[int, str]]:
    """Like :func:`analyze`, with each term's position (removed stopwords leave gaps, as in Lucene).

    >>> analyze_positions("shoes for running")
    [(0, 'shoe'), (2, 'run')]
    """
    if not text:
        return []
    if html_input:
        text = strip_html(text)
    return [(i, stem(t)) for i, t in enumerate(tokenize(text)) if t not in ENGLISH_STOPWORDS]


def adjacent_pairs(positions: Sequence[tuple[int, str]]) -> list[str]:
    """Space-joined pairs of terms at consecutive positions: what a 2-term phrase query matches.

    >>> adjacent_pairs([(0, "run"), (1, "shoe"), (3, "red")])
    ['run shoe']
    """
    return [f"{a} {b}" for (i, a), (j, b) in zip(positions, positions[1:]) if j == i + 1]


# ---------------------------------------------------------------------------------------------- synonyms

@dataclass(frozen=True)
class SynonymRule:
    """One parsed rule: every phrase in ``inputs`` becomes the phrases in ``outputs`` (tokens pre-stemming)."""

    inputs: tuple[tuple[str, ...], ...]
    outputs: tuple[tuple[str, ...], ...]


def parse_synonyms(lines: Iterable[str]) -> list[SynonymRule]:
    r"""Parse Solr-format synonym lines: ``a, b, c`` (all equivalent) or ``a, b => c`` (rewrite a and b to c).

    Phrases are tokenized like the search analyzer before its synonym filter. Blank and ``#`` lines are skipped;
    ``\,`` is a comma within a phrase (as Solr reads it).

    Raises:
        ValueError: a rule has an empty side (``"=> tv"``) or two ``=>``; the message gives its line number (1-based).

    >>> parse_synonyms(["couch, sofa"])[0].outputs
    (('couch',), ('sofa',))
    """
    rules = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.count("=>") > 1:
            raise ValueError(f"synonyms line {number}: rule {line!r} has more than one '=>'")
        if "=>" in line:
            left, right = line.split("=>", 1)
            ins = tuple(p for p in (tuple(tokenize(s)) for s in split_escaped(left)) if p)
            outs = tuple(p for p in (tuple(tokenize(s)) for s in split_escaped(right)) if p)
        else:
            ins = outs = tuple(p for p in (tuple(tokenize(s)) for s in split_escaped(line)) if p)
        if not ins or not outs:
            raise ValueError(f"synonyms line {number}: rule {line!r} has an empty side; use 'a, b' or 'a => b'")
        rules.append(SynonymRule(ins, outs))
    return rules


class SynonymMap:
    """Input phrase -> the phrases it stands for (itself included for equivalence rules)."""

    def __init__(self, rules: Sequence[SynonymRule]):
        self._map: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for rule in rules:
            for phrase in rule.inputs:
                alts = self._map.setdefault(phrase, [])
                alts.extend(o for o in rule.outputs if o not in alts)
        self.max_len = max((len(p) for p in self._map), default=0)
        self._words = frozenset(t for phrase in self._map for t in phrase)

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> "SynonymMap":
        """Build from Solr-format lines (see :func:`parse_synonyms`)."""
        return cls(parse_synonyms(lines))

    def __len__(self) -> int:
        return len(self._map)

    @property
    def words(self) -> frozenset[str]:
        """Every token of the rules' inputs: words the search knows though no product may hold them.

        >>> sorted(SynonymMap.from_lines(["cellphone, smart phone"]).words)
        ['cellphone', 'phone', 'smart']
        """
        return self._words

    def fires(self, text: str) -> bool:
        """Whether a rule's input occurs in ``text`` (tokenized like the search analyzer).

        >>> SynonymMap.from_lines(["couch, sofa"]).fires("Red couch"), SynonymMap([]).fires("couch")
        (True, False)
        """
        tokens = tokenize(text) if self._map else []
        return any(self.lookup(tokens, i) for i in range(len(tokens)))

    def lookup(self, tokens: Sequence[str], start: int) -> tuple[int, list[tuple[str, ...]]] | None:
        """Longest rule input starting at ``tokens[start]``: ``(length, alternatives)`` or None."""
        for n in range(min(self.max_len, len(tokens) - start), 0, -1):
            alts = self._map.get(tuple(tokens[start:start + n]))
            if alts:
                return n, alts
        return None


@dataclass(frozen=True)
class QueryClause:
    """One SHOULD clause of the analyzed query: alternatives (stemmed term tuples) for one span of the input.

    ``kind``: ``term`` (one term, fuzzy allowed) or ``graph`` (a synonym's alternatives: each scored on its own,
    single terms fuzzy, phrases exact, summed: a bool of SHOULD clauses, which is how both engines send a query
    that a synonym fired in; see :mod:`.synonyms`).
    """

    kind: str
    alternatives: tuple[tuple[str, ...], ...]


def analyze_query(text: str, synonyms: SynonymMap | None = None) -> list[QueryClause]:
    """Search-time analysis of ``text`` into clauses (``product_english_search``; no HTML stripping).

    >>> analyze_query("the sofas", SynonymMap.from_lines(["couch, sofa"]))
    [QueryClause(kind='term', alternatives=(('sofa',),))]
    >>> analyze_query("couch", SynonymMap.from_lines(["couch, sofa"]))[0].alternatives
    (('couch',), ('sofa',))
    """
    tokens = tokenize(text)
    clauses: list[QueryClause] = []
    i = 0
    while i < len(tokens):
        found = synonyms.lookup(tokens, i) if synonyms else None
        if found is None:
            if tokens[i] not in ENGLISH_STOPWORDS:
                clauses.append(QueryClause("term", ((stem(tokens[i]),),)))
            i += 1
            continue
        n, alts = found
        stemmed = []
        for alt in alts:
            terms = tuple(stem(t) for t in alt if t not in ENGLISH_STOPWORDS)
            if terms and terms not in stemmed:
                stemmed.append(terms)
        i += n
        if not stemmed:
            continue
        if len(stemmed) == 1 and len(stemmed[0]) == 1:
            clauses.append(QueryClause("term", tuple(stemmed)))
        else:
            clauses.append(QueryClause("graph", tuple(stemmed)))
    return clauses


# ------------------------------------------------------------------------------------------------- fuzzy

def auto_edits(term: str) -> int:
    """Edits ``fuzziness: AUTO`` allows for an analyzed term: 0 for 0–2 chars, 1 for 3–5, 2 for longer."""
    n = len(term)
    return 0 if n < 3 else 1 if n < 6 else 2


def parse_fuzziness(fuzziness: str | None, term: str) -> int:
    """Max edits for ``term`` under ``fuzziness`` (None, "AUTO", "0", "1" or "2").

    Raises:
        ValueError: any other value.
    """
    if fuzziness is None:
        return 0
    value = str(fuzziness).upper()
    if value == "AUTO":
        return auto_edits(term)
    if value in ("0", "1", "2"):
        return int(value)
    raise ValueError(f"fuzziness must be None, 'AUTO', '0', '1' or '2'; got {fuzziness!r}")


@lru_cache(maxsize=1)
def _osa():
    from rapidfuzz.distance import OSA

    return OSA


def fuzzy_expand(term: str, vocab: Sequence[str], max_edits: int, *, prefix_length: int = 1,
                 max_expansions: int = 50) -> list[tuple[str, float]]:
    """Vocabulary terms within ``max_edits`` (optimal string alignment, i.e. transpositions count as one edit).

    Mirrors Lucene's FuzzyQuery: the first ``prefix_length`` characters must match exactly; each hit gets the
    boost ``1 - edits / min(len(hit), len(term))`` (1.0 for the exact term); the ``max_expansions`` best are kept
    (highest boost, then alphabetical). ``vocab`` must be sorted (a binary search finds the prefix range).

    Returns:
        ``[(vocab_term, boost), ...]`` best first; empty when nothing is close enough.

    >>> fuzzy_expand("lamp", ["damp", "lamb", "lamp", "lampshad"], 1)
    [('lamp', 1.0), ('lamb', 0.75)]
    """
    import bisect

    if max_edits <= 0 or len(term) <= prefix_length:
        i = bisect.bisect_left(vocab, term)
        return [(term, 1.0)] if i < len(vocab) and vocab[i] == term else []
    prefix = term[:prefix_length]
    lo = bisect.bisect_left(vocab, prefix)
    hi = bisect.bisect_left(vocab, prefix + "\U0010ffff")
    osa = _osa()
    tail = term[prefix_length:]
    found = []
    for cand in vocab[lo:hi]:
        if abs(len(cand) - len(term)) > max_edits:
            continue
        ed = osa.distance(tail, cand[prefix_length:], score_cutoff=max_edits)
        if ed <= max_edits:
            boost = 1.0 if ed == 0 else 1.0 - ed / min(len(cand), len(term))
            found.append((cand, boost))
    found.sort(key=lambda tb: (-tb[1], tb[0]))
    return found[:max_expansions]


# ------------------------------------------------------------------------------------------ lucene norms

def _long_to_int4(i: int) -> int:
    bits = i.bit_length()
    if bits < 4:
        return i
    shift = bits - 4
    return ((i >> shift) & 0x07) | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    bits, shift = i & 0x07, (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_NUM_FREE_VALUES = 255 - _long_to_int4(2**31 - 1)


def lucene_length(num_terms: int) -> int:
    """The field length Lucene's BM25 sees: ``num_terms`` after its lossy one-byte norm encoding.

    >>> [lucene_length(n) for n in (3, 23, 24, 100, 1000)]
    [3, 23, 24, 96, 984]
    """
    if num_terms < _NUM_FREE_VALUES:
        return num_terms
    byte = _NUM_FREE_VALUES + _long_to_int4(num_terms - _NUM_FREE_VALUES)
    return _NUM_FREE_VALUES + _int4_to_long(byte - _NUM_FREE_VALUES)
