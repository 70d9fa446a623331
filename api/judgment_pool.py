"""Judgment pooling: the products that ranking profiles show in their top k and nobody judged, as a worklist.

A metric counts an unjudged product as not relevant, so a profile that shows products the judges never saw scores
lower than it may deserve, and one that hides them scores higher (``compare`` reports judged@10 for this reason).
Pooling the profiles' top k, as TREC builds its judgment pools, lists what to grade before the delta is trusted.

The worklist is a CSV in Quepid's export columns, ``Query Text,Doc ID,Title,Rating``, followed by ``Best Rank``,
``Shown By`` and ``Console``:

- fill in ``Rating`` in a spreadsheet (the judgment readers skip unrated rows, as they do Quepid's), or load the
  worklist into the console, which steps through its queries, and grade there (the console's grade list);
- then ``shopsearch judgments merge QRELS worklist.csv --queries Q.tsv --out merged.txt`` (or the console's list)
  puts the grades into a copy of the team's list by query text, for ``eval`` and ``compare``. Read alone, the
  worklist judges only what nobody had judged.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Collection, Mapping, NamedTuple, Sequence
from urllib.parse import urlencode

from shopsearch.atomic_write import write_atomically
from shopsearch.judgments import as_text_cell

WORKLIST_COLUMNS = ("Query Text", "Doc ID", "Title", "Rating", "Best Rank", "Shown By", "Console")


class Hole(NamedTuple):
    """An unjudged product in some profile's top k: its query, best rank there and the profiles that show it."""

    qid: str
    query: str
    product_id: str
    best_rank: int
    shown_by: tuple[str, ...]


def pool_holes(judged: Mapping[str, Collection[str]], queries: Mapping[str, str],
               runs: Mapping[str, Mapping[str, Sequence[str]]], depth: int) -> list[Hole]:
    """The unjudged products in each profile's top ``depth``, pooled over the profiles.

    Args:
        judged: qid -> the product ids judged for it (any grade, 0 included).
        queries: qid -> text, in the order the worklist lists them.
        runs: profile -> qid -> product ids, best first.
        depth: how much of each ranking is pooled.

    Returns:
        Per query in ``queries`` order, its holes by best rank (then product id).

    >>> pool_holes({"q1": {"a"}}, {"q1": "lamp"}, {"x": {"q1": ["a", "b", "c"]}, "y": {"q1": ["c", "a"]}}, 2)
    [Hole(qid='q1', query='lamp', product_id='c', best_rank=1, shown_by=('y',)), \
Hole(qid='q1', query='lamp', product_id='b', best_rank=2, shown_by=('x',))]
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    out: list[Hole] = []
    for qid, text in queries.items():
        seen = judged.get(qid, ())
        best: dict[str, int] = {}
        by: dict[str, list[str]] = {}
        for profile, run in runs.items():
            for rank, doc in enumerate(run.get(qid, [])[:depth], start=1):
                if doc in seen:
                    continue
                best[doc] = min(best.get(doc, rank), rank)
                by.setdefault(doc, []).append(profile)
        out.extend(Hole(qid, text, doc, best[doc], tuple(by[doc])) for doc in sorted(best, key=lambda d: (best[d], d)))
    return out


def unjudged_counts(holes: Sequence[Hole], profiles: Sequence[str]) -> dict[str, int]:
    """profile -> how many of the holes it shows."""
    return {p: sum(1 for h in holes if p in h.shown_by) for p in profiles}


def console_link(base_url: str, query: str, profiles: Sequence[str]) -> str:
    """The console showing ``query`` with the first two profiles side by side.

    >>> console_link("http://127.0.0.1:8000/", "red lamp", ["default", "ltr-ce"])
    'http://127.0.0.1:8000/console?q=red+lamp&a=default&b=ltr-ce'
    """
    pair = dict(zip(("a", "b"), profiles))
    return f"{base_url.rstrip('/')}/console?{urlencode({'q': query, **pair})}"


def write_worklist(path: str | Path, holes: Sequence[Hole], titles: Mapping[str, str], console_url: str,
                   profiles: Sequence[str]) -> int:
    """Write the worklist CSV (:data:`WORKLIST_COLUMNS`, Rating left blank); returns the rows written.

    Query texts (a list judged from shoppers' logs holds what anyone typed) and catalog titles are written as text
    cells (:func:`~shopsearch.judgments.as_text_cell`), so a spreadsheet never runs one as a formula; the
    judgment readers take the mark off a query text again.
    """
    out = io.StringIO()
    writer = csv.writer(out)  # RFC 4180 line ends: a text holding a bare carriage return is quoted, not split
    writer.writerow(WORKLIST_COLUMNS)
    for h in holes:
        writer.writerow((as_text_cell(h.query), h.product_id, as_text_cell(titles.get(h.product_id, "")), "",
                         h.best_rank, " ".join(h.shown_by), console_link(console_url, h.query, profiles)))
    write_atomically(path, out.getvalue())
    return len(holes)
