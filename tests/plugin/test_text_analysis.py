"""The analyzer mirror, synonyms, fuzzy expansion and BM25 against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shopsearch.plugin.embedded_bm25 import best_fields, build_field_index, score_field
from shopsearch.plugin.text_analysis import (
    SynonymMap, analyze, analyze_query, fuzzy_expand, lucene_length, parse_fuzziness, parse_synonyms, tokenize)


def test_stemming_stopwords_possessives_and_folding():
    assert analyze("The Men's Running Shoes") == ["men", "run", "shoe"]
    assert analyze("televisions and a TV") == ["televis", "tv"]
    assert analyze("Café Crème, straße") == ["cafe", "creme", "strass"]
    assert tokenize("3.5mm U.S. red-blue 1,000") == ["3.5mm", "u.s", "red", "blue", "1,000"]


def test_html_is_stripped_at_index_time_only():
    assert analyze("<p>Red <b>lamp</b> &amp; shade</p>") == ["red", "lamp", "shade"]
    assert analyze_query("<b>lamp</b>")[0].alternatives == (("b",),)  # search analyzer has no html_strip


def test_synonyms_equivalent_rewrite_and_multiword():
    syn = SynonymMap.from_lines(["couch, sofa", "tv => television", "laptop, notebook computer", "# comment", ""])
    assert [(c.kind, c.alternatives) for c in analyze_query("red couches", syn)] == [
        ("term", (("red",),)), ("term", (("couch",),))]  # rules match pre-stemming tokens: "couches" is no rule
    assert analyze_query("couch", syn)[0].alternatives == (("couch",), ("sofa",))
    assert analyze_query("tv", syn)[0].alternatives == (("televis",),)  # rewritten, tv itself dropped
    graph = analyze_query("notebook computer", syn)[0]
    assert graph.kind == "graph" and graph.alternatives == (("laptop",), ("notebook", "comput"))
    with pytest.raises(ValueError, match="empty side"):
        parse_synonyms(["=> tv"])


def test_fuzzy_expansion_follows_lucene_rules():
    vocab = sorted(["lamp", "lamb", "damp", "lampshad", "lmap", "la"])
    assert fuzzy_expand("lamp", vocab, 1) == [("lamp", 1.0), ("lamb", 0.75), ("lmap", 0.75)]  # OSA transposition
    assert ("damp", 0.75) not in fuzzy_expand("lamp", vocab, 1)  # the first letter must match
    assert fuzzy_expand("la", vocab, parse_fuzziness("AUTO", "la")) == [("la", 1.0)]
    assert [parse_fuzziness("AUTO", t) for t in ("ab", "abc", "abcde", "abcdef")] == [0, 1, 1, 2]
    assert fuzzy_expand("lampshade", vocab, 2) == [("lampshad", 1 - 1 / 8)]
    with pytest.raises(ValueError, match="fuzziness"):
        parse_fuzziness("3", "lamp")


def test_lucene_norm_encoding_is_exact_below_24_and_lossy_above():
    assert [lucene_length(n) for n in range(24)] == list(range(24))
    assert lucene_length(100) == 96 and lucene_length(1000) == 984


def _lucene_bm25(tf, dl, avgdl, df, n, k1=1.2, b=0.75):
    """Independent hand formula (LegacyBM25Similarity, as OpenSearch scores)."""
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * (k1 + 1) * tf / (tf + k1 * (1 - b + b * dl / avgdl))


def test_bm25_matches_hand_computation_on_three_docs():
    docs = ["red lamp lamp", "blue lamp", "green chair with red cushion"]
    counts = [dict(zip(*np.unique(analyze(d), return_counts=True))) for d in docs]
    counts = [{str(k): int(v) for k, v in c.items()} for c in counts]
    fi = build_field_index(counts)
    lengths = [3, 2, 4]  # "with" is a stop word
    avgdl = sum(lengths) / 3
    scores, matched = score_field(fi, analyze_query("red lamp"), None)
    expected = [
        _lucene_bm25(1, 3, avgdl, 2, 3) + _lucene_bm25(2, 3, avgdl, 2, 3),
        _lucene_bm25(1, 2, avgdl, 2, 3),
        _lucene_bm25(1, 4, avgdl, 2, 3),
    ]
    assert scores.tolist() == pytest.approx(expected, rel=1e-5)
    assert matched.tolist() == [True, True, True]
    none, nothing = score_field(fi, analyze_query("sofa"), None)
    assert not nothing.any() and not none.any()


def test_fuzzy_scores_blend_document_frequencies():
    fi = build_field_index([{"lamp": 1}, {"lamb": 1}, {"lamb": 1}, {"chair": 1}])
    scores, _ = score_field(fi, analyze_query("lamp"), "AUTO")
    idf_max_df = math.log(1 + (4 - 2 + 0.5) / (2 + 0.5))  # both expansions use the larger df (2)
    tf_part = 2.2 * 1 / (1 + 1.2)
    assert scores.tolist() == pytest.approx([idf_max_df * tf_part, 0.75 * idf_max_df * tf_part,
                                             0.75 * idf_max_df * tf_part, 0.0], rel=1e-5)


def test_best_fields_takes_max_plus_tie_breaker():
    a = (np.array([1.0, 0.0], dtype=np.float32), np.array([True, False]))
    b = (np.array([0.5, 0.2], dtype=np.float32), np.array([True, True]))
    total, matched = best_fields([a, b], [3.0, 1.0], 0.3)
    assert total.tolist() == pytest.approx([3.0 + 0.3 * 0.5, 0.2])
    assert matched.tolist() == [True, True]
