"""Judgments for the relevance console: find a typed query's judged grades and score rankings per query.

Pure except :func:`load_judgments`, which reads a judgment list with the team's reader
(:func:`shopsearch.judgments.read_judgments`: TREC qrels, CSV, ESCI, WANDS, Quepid) and, for formats without
query text (TREC), a ``qid<TAB>query`` file (:func:`shopsearch.judgments.query_texts`). nDCG@10 is computed by
:func:`shopsearch.evaluation.evaluate` (the same ir-measures declaration), so the console and ``shopsearch eval``
agree on every judged query.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from shopsearch.evaluation import evaluate
from shopsearch.judgments import Qrel, query_ids_by_text, query_texts, read_judgments
from shopsearch.text import normalise_query

METRIC = "ndcg@10"
MAX_RANKINGS = 4
MAX_RANKING_DEPTH = 100
MAX_JUDGMENTS = 5000  # judged products for one query sent by the page (an uploaded list, filtered client-side)


@dataclass(frozen=True)
class JudgmentList:
    """Graded judgments by query: ``qids`` maps a normalised query text to its qid, ``grades`` qid -> doc -> grade."""

    qids: dict[str, str]
    grades: dict[str, dict[str, int]]
    source: str = ""
    judged_queries: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "judged_queries", sum(1 for q in self.qids.values() if self.grades.get(q)))

    def lookup(self, query: str) -> tuple[str | None, dict[str, int]]:
        """The qid of ``query`` (matched after :func:`~shopsearch.text.normalise_query`) and its grades.

        ``(None, {})`` when the query is not judged.

        >>> JudgmentList({"lamp": "q1"}, {"q1": {"p1": 3}}).lookup(" LAMP")
        ('q1', {'p1': 3})
        """
        qid = self.qids.get(normalise_query(query))
        return qid, dict(self.grades.get(qid, {})) if qid else {}


def build_judgments(queries: Iterable[tuple[str, str]], qrels: Iterable[Qrel], source: str = "") -> JudgmentList:
    """A JudgmentList from (qid, text) pairs and judgments; a text's qid as
    :func:`~shopsearch.judgments.query_ids_by_text` resolves it.

    >>> build_judgments([("q0", "LAMP"), ("q1", "Lamp")], [Qrel("q1", "p1", 2)]).lookup("lamp")
    ('q1', {'p1': 2})
    """
    grades: dict[str, dict[str, int]] = {}
    for q in qrels:
        grades.setdefault(q.query_id, {})[q.doc_id] = int(q.relevance)
    return JudgmentList(qids=query_ids_by_text(queries, judged=grades), grades=grades, source=source)


_cache: dict[tuple[str, str], tuple[tuple[float, float], JudgmentList]] = {}
_cache_lock = threading.Lock()


def load_judgments(qrels_path: str | Path, queries_path: str | Path | None = None) -> JudgmentList:
    """Read a judgment list and, when given, its queries TSV (re-read only when a file changes).

    Args:
        qrels_path: a judgment file in any format :func:`~shopsearch.judgments.read_judgments` detects.
        queries_path: ``qid<TAB>query text`` lines; required for TREC qrels, which carry no query text (its texts
            are added to, and win over, any the judgment file carries).

    Returns:
        The JudgmentList; ``source`` names the judgment file.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a malformed line (``path:line: ...``), or no query text at all (names the fix).

    >>> load_judgments("qrels-dev.txt", "queries-dev.tsv").lookup("16 gb memory card")[0]  # doctest: +SKIP
    'cfq001'
    """
    qp, tp = Path(qrels_path), Path(queries_path) if queries_path else None
    key = (str(qp), str(tp or ""))
    stamp = (qp.stat().st_mtime, tp.stat().st_mtime if tp else 0.0)
    with _cache_lock:
        hit = _cache.get(key)
        if hit and hit[0] == stamp:
            return hit[1]
    read = read_judgments(qp)
    texts = query_texts(read, tp)
    if not texts:
        raise ValueError(f"{qp}: {read.format} judgments carry no query text; give the qid<TAB>query file too "
                         "(CONSOLE_QUERIES)")
    judgments = build_judgments(texts.items(), read.qrels, source=str(qp))
    with _cache_lock:
        _cache[key] = (stamp, judgments)
    return judgments


def scores_per_ranking(grades: Mapping[str, int],
                       rankings: Sequence[Sequence[str]]) -> list[dict[str, float]] | None:
    """Every metric of :data:`shopsearch.evaluation.METRICS` (nDCG@10, judged@10, ...) of each ranking for one
    query judged by ``grades`` (doc -> grade); None when nothing is judged.

    Computed by :func:`shopsearch.evaluation.evaluate`, so an empty ranking scores 0 and unjudged products
    count as not relevant, exactly as offline.

    >>> [s[METRIC] for s in scores_per_ranking({"a": 1}, [["a"], ["b", "a"], []])]
    [1.0, 0.6309297535714575, 0.0]
    >>> scores_per_ranking({"a": 1}, [["b", "a"]])[0]["judged@10"]
    0.5
    >>> scores_per_ranking({}, [["a"]]) is None
    True
    """
    if not grades:
        return None
    qrels = [Qrel("q", doc, int(g)) for doc, g in grades.items()]
    return [evaluate(qrels, {"q": list(r)}, qids=["q"]).per_query["q"] for r in rankings]
