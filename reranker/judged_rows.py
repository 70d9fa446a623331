"""Training rows from human judgments: each judged query run through the served pipeline, its features taken as
the ranker stage computes them.

For every judged query, :meth:`~.pipeline.RankingPipeline.ranker_input` gives the head the profile's conversion
stage orders (retrieval and rerank as served) and its feature context; :func:`~.features.feature_matrix` over them
is the stage's own feature code. A row's label is the query's grade of that product. Products in the head that
nobody judged get 0 by default, as evaluation counts them, so the model learns to push them down too; where the
judges saw only part of what the engine finds, that teaches the ranker which products the judges saw rather than
which are relevant, and ``unjudged="skip"`` leaves them out of the lists instead (their neighbours' list-relative
features are still computed over the whole head, as served).
"""

from __future__ import annotations

import sys
from typing import Iterable, Mapping, Sequence

import numpy as np

from shopsearch.evaluation import gain
from shopsearch.judgments import Qrel
from shopsearch.plugin.search_types import SearchRequest

from .features import RELEVANCE_FEATURES, check_names, feature_matrix
from .training_rows import TrainingRows


UNJUDGED = ("zero", "skip")  # what a row nobody judged becomes: label 0, or no row


def judged_rows(pipeline, queries: Mapping[str, str], qrels: Iterable[Qrel], profile: str,
                names: Sequence[str] = RELEVANCE_FEATURES, progress: bool = False,
                unjudged: str = "zero") -> TrainingRows:
    """One row per (judged query, product in the head its profile's ranker stage orders).

    Args:
        pipeline: a :class:`~.pipeline.RankingPipeline` (the served path; build it with ``budgets=False`` so a
            slow machine does not degrade the rerank stage the ranker learns to follow).
        queries: qid -> query text (judged queries only; each becomes one list).
        qrels: the judgments; negative grades count as 0.
        profile: the profile whose ``[conversion]`` stage the model will serve in (its ``depth`` > 0).
        names: the feature columns.
        progress: a tqdm bar on stderr.
        unjudged: ``"zero"``: a product in the head nobody judged is a row labelled 0; ``"skip"``: it is no row.
    Returns:
        :class:`~.training_rows.TrainingRows` with ``grades`` = the judgments, ``positions`` = the incoming rank,
        list and query id = the qid; click/cart/purchase columns are 0.
    Raises:
        ValueError: an unknown feature name, a profile without a ranker depth, an ``unjudged`` not in
            :data:`UNJUDGED`, or no query returned a (judged) result.

    >>> rows = judged_rows(pipeline, {"q1": "red lamp"}, qrels, "ltr")  # doctest: +SKIP
    >>> rows.grades[:3]  # doctest: +SKIP
    array([3, 0, 2])
    """
    from tqdm import tqdm

    check_names(names)
    if unjudged not in UNJUDGED:
        raise ValueError(f"unjudged must be one of {', '.join(UNJUDGED)}; got {unjudged!r}")
    grade = {(q.query_id, q.doc_id): gain(q.relevance) for q in qrels}
    X, qids, pos, grades, stages = [], [], [], [], []
    for qid, text in tqdm(list(queries.items()), desc=f"features {profile}", unit="q", disable=not progress,
                          file=sys.stderr):
        inp = pipeline.ranker_input(SearchRequest(text, profile=profile, facets=()))
        if not inp.hits:
            continue
        keep = [i for i, h in enumerate(inp.hits) if unjudged == "zero" or (qid, h.id) in grade]
        if not keep:
            continue
        X.append(feature_matrix(text, inp.hits, inp.context, names)[keep])
        hits = [inp.hits[i] for i in keep]
        qids += [qid] * len(hits)
        pos += [h.rank for h in hits]
        grades += [grade.get((qid, h.id), 0) for h in hits]
        stages += [dict(h.stages) for h in hits]
    if not X:
        raise ValueError(f"queries: none of the {len(queries)} judged queries returned a result with profile "
                         f"{profile!r}; is the index the judgments' catalog?")
    ids = np.asarray(qids)
    zeros = np.zeros(len(ids), dtype=int)
    return TrainingRows(tuple(names), np.vstack(X), ids, ids, np.asarray(pos), zeros, zeros.copy(), zeros.copy(),
                        np.asarray(grades, dtype=int), stages)
