"""Query spelling correction against the catalog's vocabulary (SymSpell lookup, symspellpy).

One speller serves both uses: the query is corrected before it is embedded (the vector leg sees what the shopper
meant; the response says "showing results for ...") and a query that finds nothing gets the corrected query as
its "did you mean". It is built from a :class:`~.vocabulary.Vocabulary` (the index's words and document
frequencies), the same for both engines, once per index version (:class:`SpellerCache`), never per request.

What is protected, so a clean query is left as typed:
- only words of letters of at least ``min_chars`` characters are looked at (part numbers, sizes, short words
  and stopwords never change);
- a word the catalog holds is kept, unless it is rare (held by at most ``rare_df`` products: a typo in a
  description) and a one-edit neighbour is ``rare_ratio`` times as frequent, or fits the query's neighbouring
  words (an adjacent pair the catalog holds) and is :data:`RARE_CONTEXT_RATIO` times as frequent;
- an inflection of a catalog word (``fryers`` when only ``fryer`` is indexed) is kept;
- a correction is a vocabulary word within one edit (words of up to 5 letters) or two (longer; a transposition
  is one edit): one that forms a pair the catalog holds with a neighbouring query word first, then the closest,
  then the most frequent.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Collection, Sequence

from symspellpy import SymSpell, Verbosity

from .text_analysis import ENGLISH_STOPWORDS, stem, word_spans
from .vocabulary import Vocabulary, is_word

log = logging.getLogger(__name__)

SYMSPELL_PREFIX = 7  # symspellpy's default prefix length: deletes are generated from the first 7 characters
# A rare catalog word next to query words it never sits beside is replaced by a one-edit neighbour that does,
# when that neighbour is this many times as frequent ("nina turtle" -> "ninja turtle").
RARE_CONTEXT_RATIO = 10.0


@dataclass(frozen=True)
class Correction:
    """A query and its spelling correction.

    ``changes`` lists ``(typed word, corrected word)`` pairs; ``corrected`` is the query with those words
    replaced (the rest as typed), equal to ``original`` when nothing changed.
    """

    original: str
    corrected: str
    changes: tuple[tuple[str, str], ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)


class Speller:
    """Corrects query words against a catalog vocabulary.

    Args:
        vocabulary: the index's words and document frequencies.
        min_chars: words shorter than this are never corrected (>= 3).
        rare_df: a catalog word held by at most this many products may still be corrected (0: never).
        rare_ratio: ...when a one-edit neighbour is held by at least this many times as many products.

    Raises:
        ValueError: a bad ``min_chars``, ``rare_df`` or ``rare_ratio``.

    >>> sp = Speller(Vocabulary("v", {"mattress": 40, "queen": 90, "lamp": 12}))
    >>> sp.correct("Queen matress 60x80").corrected
    'Queen mattress 60x80'
    """

    def __init__(self, vocabulary: Vocabulary, *, min_chars: int = 4, rare_df: int = 5, rare_ratio: float = 100.0):
        if not isinstance(min_chars, int) or min_chars < 3:
            raise ValueError(f"min_chars={min_chars!r} must be an integer >= 3")
        if not isinstance(rare_df, int) or rare_df < 0:
            raise ValueError(f"rare_df={rare_df!r} must be an integer >= 0")
        if not isinstance(rare_ratio, (int, float)) or rare_ratio < 1:
            raise ValueError(f"rare_ratio={rare_ratio!r} must be a number >= 1")
        self.version = vocabulary.version
        self.min_chars = min_chars
        self.rare_df = rare_df
        self.rare_ratio = float(rare_ratio)
        self.words = vocabulary.words
        self.pairs = vocabulary.pairs
        self._symspell = SymSpell(max_dictionary_edit_distance=2, prefix_length=SYMSPELL_PREFIX)
        for word, df in self.words.items():
            self._symspell.create_dictionary_entry(word, df)

    def __len__(self) -> int:
        return len(self.words)

    def _context(self, word: str, before: str | None, after: str | None) -> int:
        """How many products hold ``word`` next to the query's neighbouring words (pair document frequencies)."""
        n = self.pairs.get(f"{before} {word}", 0) if before else 0
        return n + (self.pairs.get(f"{word} {after}", 0) if after else 0)

    def correct_word(self, word: str, before: str | None = None, after: str | None = None) -> str | None:
        """The correction of one folded, lowercased word between the query words ``before`` and ``after``
        (None at either end), or None to keep it.

        >>> sp = Speller(Vocabulary("v", {"cable": 90, "candle": 40, "holders": 30}, {"candle holders": 12}))
        >>> sp.correct_word("canle"), sp.correct_word("canle", after="holders")
        ('cable', 'candle')
        """
        if len(word) < self.min_chars or not is_word(word) or word in ENGLISH_STOPWORDS:
            return None
        df = self.words.get(word, 0)
        if df > self.rare_df:
            return None
        edits = 1 if (len(word) <= 5 or df) else 2
        found = []
        for s in self._symspell.lookup(word, Verbosity.ALL, max_edit_distance=edits):
            if s.term != word and word.startswith(s.term) and stem(word) == stem(s.term):
                # An inflection of a catalog word ("fryers" when only "fryer" is indexed) is kept as typed: the
                # lexical leg stems it anyway, and the shopper did not misspell it.
                return None
            if s.term != word and s.term not in ENGLISH_STOPWORDS:  # "fork" is never "for": the analyzer drops it
                found.append((self._context(s.term, before, after), s.distance, s.count, s.term))
        if not found:
            return None
        # Context first (a pair the catalog holds beats a more frequent word), then closeness, then frequency.
        ctx, _, count, term = min(found, key=lambda c: (c[0] == 0, c[1], -c[0], -c[2], c[3]))
        if df and not (count >= self.rare_ratio * df
                       or (ctx and not self._context(word, before, after) and count >= RARE_CONTEXT_RATIO * df)):
            return None  # a catalog word is only replaced by a far more frequent (or fitting) neighbour
        return term

    def correct(self, query: str, keep: Collection[str] = ()) -> Correction:
        """The query with every misspelt word corrected (see the module notes for what is left alone), but the
        words in ``keep`` (those of the synonym rules: "cellphone" is known, though no product says it).

        >>> Speller(Vocabulary("v", {"lamp": 3})).correct("Red lamb 40w").changes
        (('lamb', 'lamp'),)
        """
        tokens = [t for _, _, t in word_spans(query)]
        fixes = [None if t in keep else
                 self.correct_word(t, tokens[i - 1] if i else None, tokens[i + 1] if i + 1 < len(tokens) else None)
                 for i, t in enumerate(tokens)]
        return rewrite(query, fixes)

    def did_you_mean(self, query: str) -> list[str]:
        """Suggestions for a query that found nothing: each word the catalog holds kept, and numbers and short words
        beside one, each other word replaced by its closest catalog word (up to two edits, whatever its length) or
        dropped when none is close.

        Returns:
            ``[suggestion]``, or ``[]`` when that is empty or the query itself (nothing close to suggest).

        >>> sp = Speller(Vocabulary("v", {"sofa": 9, "velvet": 4}))
        >>> sp.did_you_mean("zzzzqqq velvit sifaa"), sp.did_you_mean("zzzzqqq xylophone")
        (['velvet sofa'], [])
        """
        words = []
        for token in (t for _, _, t in word_spans(query)):
            if token in self.words or not is_word(token) or len(token) < self.min_chars:
                words.append(token)
                continue
            found = self._symspell.lookup(token, Verbosity.CLOSEST, max_edit_distance=2)
            if found:
                words.append(min(found, key=lambda s: (s.distance, -s.count, s.term)).term)
        if not any(w in self.words for w in words):  # numbers and short words alone suggest nothing
            words = []
        text = " ".join(words)
        return [text] if text and text != " ".join(t for _, _, t in word_spans(query)) else []

    def replaces(self, correction: Correction) -> bool:
        """Whether ``correction`` replaces what was typed: every word it changes is one the catalog does not hold
        (a misspelling), not a rare word it also holds and serves beside its correction.

        >>> sp = Speller(Vocabulary("v", {"lamp": 300, "lamb": 2}))
        >>> typo, rare = Correction("lanp", "lamp", (("lanp", "lamp"),)), Correction("lamb", "lamp", (("lamb", "lamp"),))
        >>> sp.replaces(typo), sp.replaces(rare)
        (True, False)
        """
        return correction.changed and all(t not in self.words for typed, _ in correction.changes
                                          for _, _, t in word_spans(typed))  # "Lamb" is the catalog's "lamb"

    def known_words(self, query: str) -> str:
        """``query`` without the words the catalog does not hold (the relaxed query of a search that found
        nothing); numbers and short words are kept.

        >>> Speller(Vocabulary("v", {"sofa": 9})).known_words("zzzzqqq sofa 3m")
        'sofa 3m'
        """
        return " ".join(t for _, _, t in word_spans(query) if t in self.words or not is_word(t))


def rewrite(query: str, fixes: Sequence[str | None]) -> Correction:
    """``query`` with its i-th word (:func:`~.text_analysis.word_spans`) replaced by ``fixes[i]`` where that is
    not None (the rest as typed).

    >>> rewrite("Red lamb!", [None, "lamp"]).corrected
    'Red lamp!'
    """
    parts: list[str] = []
    changes: list[tuple[str, str]] = []
    at = 0
    for (start, end, token), new in zip(word_spans(query), fixes):
        if new is not None and new != token:
            parts += [query[at:start], new]
            changes.append((query[start:end], new))
            at = end
    if not changes:
        return Correction(query, query)
    return Correction(query, "".join(parts) + query[at:], tuple(changes))


class SpellerCache:
    """The speller of an index's current vocabulary, rebuilt only when the vocabulary's version changes.

    Only the first :meth:`get` builds in the caller's thread (the API warms it before any shopper's deadline
    starts); after that the version is checked every ``refresh_s`` seconds in a background thread, so a search
    never waits for a vocabulary scan after a reindex or an upsert: it keeps the last speller until the new one
    is built.

    Args:
        load: returns the index's current :class:`Vocabulary` (the engine's ``vocabulary(index)``; cheap when
            unchanged, the engines cache it per index version).
        refresh_s: how often the version is checked (seconds).
        clock: monotonic seconds (tests pass a fake).
        **options: passed to :class:`Speller`.
    """

    def __init__(self, load: Callable[[], Vocabulary], *, refresh_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, **options: float):
        self._load = load
        self._options = options
        self._refresh_s = refresh_s
        self._clock = clock
        self._speller: Speller | None = None
        self._checked = 0.0
        self._refreshing = False
        self._lock = threading.Lock()

    def get(self) -> Speller:
        """The speller for the index (built on first use; afterwards refreshed in the background)."""
        speller = self._speller
        if speller is None:
            with self._lock:
                if self._speller is None:
                    self._speller = Speller(self._load(), **self._options)  # type: ignore[arg-type]
                    self._checked = self._clock()
                return self._speller
        if self._clock() - self._checked >= self._refresh_s:
            with self._lock:
                start = not self._refreshing
                self._refreshing, self._checked = True, self._clock()
            if start:
                threading.Thread(target=self._refresh_quietly, name="speller-refresh", daemon=True).start()
        return speller

    def refresh(self) -> None:
        """Load the vocabulary now and rebuild the speller if its version changed (what the background does)."""
        vocab = self._load()
        if self._speller is None or self._speller.version != vocab.version:
            self._speller = Speller(vocab, **self._options)  # type: ignore[arg-type]

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # noqa: BLE001 - the last speller keeps serving; the next check retries
            log.warning("spelling vocabulary not refreshed: %s", exc)
        finally:
            self._refreshing = False
