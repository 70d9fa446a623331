"""Pure helpers of the latency bench: percentiles, the per-query samples -> columns table, and the verdicts."""

from __future__ import annotations

import math
from typing import Any, Sequence

TARGET_OVERHEAD_P50_MS = 3.0
TARGET_TOTAL_P95_MS = 60.0

# (key in the samples dict, label, how it is measured) -- in print order; the docstring of latency.py expands them.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("embed_cold", "embed cold", "API timings_ms.embed, query-embedding cache emptied before each request"),
    ("embed_warm", "embed warm", "API timings_ms.embed, LRU hit"),
    ("bm25_took", "BM25 took", "OpenSearch `took` of the BM25 item of the replayed _msearch"),
    ("knn_took", "k-NN took", "OpenSearch `took` of the k-NN item of the replayed _msearch"),
    ("facets_took", "facets took", "OpenSearch `took` of the facets search (its own request or an msearch item)"),
    ("bm25_alone", "BM25 alone", "wall: the BM25 body alone as a _search, bare http.client"),
    ("knn_alone", "k-NN alone", "wall: the k-NN body alone as a _search, bare http.client"),
    ("direct", "direct", "wall: every request the adapter sent, replayed byte for byte (bare http.client)"),
    ("engine_api", "engine in API", "API timings_ms retrieve + facets + fetch (opensearch-py calls)"),
    ("fetch", "page fetch", "API timings_ms.fetch: the page's products by id (an ids _search) when folded"),
    ("fusion", "fusion", "API timings_ms.fusion (fuse + sources)"),
    ("total_cold", "total cold", "wall around the API request, embedding cache emptied"),
    ("total_warm", "total warm", "wall around the API request, embedding cached"),
    ("api_own", "API own", "total warm - embed - engine in API (Flask, parsing, fusion, JSON)"),
    ("overhead", "overhead", "total warm - embed - direct, paired per query (target p50 <= 3 ms)"),
)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation (numpy's default); NaN when empty.

    Raises:
        ValueError: ``q`` outside 0..100.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    """
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q!r}")
    xs = sorted(float(v) for v in values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarise(values: Sequence[float]) -> dict[str, float]:
    """``{"n", "p50", "p95", "p99", "mean"}`` of ``values`` (milliseconds).

    >>> summarise([1.0, 2.0, 3.0])["p50"]
    2.0
    """
    n = len(values)
    return {"n": n, "p50": percentile(values, 50), "p95": percentile(values, 95), "p99": percentile(values, 99),
            "mean": sum(values) / n if n else math.nan}


def paired(a: Sequence[float], b: Sequence[float], *subtract: Sequence[float]) -> list[float]:
    """Per-query ``a - b - c - ...`` (every sequence aligned on the same queries).

    Raises:
        ValueError: the sequences differ in length.

    >>> paired([10, 20], [4, 5], [1, 1])
    [5.0, 14.0]
    """
    seqs = (a, b, *subtract)
    if len({len(s) for s in seqs}) != 1:
        raise ValueError(f"paired samples must be aligned; lengths {[len(s) for s in seqs]}")
    return [float(x[0]) - sum(float(v) for v in x[1:]) for x in zip(*seqs)]


def table_rows(summaries: dict[str, dict[str, float]]) -> list[str]:
    """The compact table: one line per column present in ``summaries`` (n, p50, p95, p99 in ms)."""
    lines = [f"{'stage':14s} {'n':>5s} {'p50':>8s} {'p95':>8s} {'p99':>8s}   measured as"]
    for key, label, how in COLUMNS:
        s = summaries.get(key)
        if s is None or not s["n"]:
            continue
        lines.append(f"{label:14s} {s['n']:5d} {s['p50']:8.2f} {s['p95']:8.2f} {s['p99']:8.2f}   {how}")
    return lines


def verdicts(summaries: dict[str, dict[str, float]]) -> list[str]:
    """One line per target, met / NOT met, with the numbers.

    >>> verdicts({"overhead": summarise([2.0]), "total_cold": summarise([50.0]), "total_warm": summarise([40.0])})[0]
    'API overhead (embedding excluded) p50 2.00 ms -> met (target <= 3 ms)'
    """
    out = []
    ov = summaries["overhead"]["p50"]
    out.append(f"API overhead (embedding excluded) p50 {ov:.2f} ms -> "
               f"{'met' if ov <= TARGET_OVERHEAD_P50_MS else 'NOT met'} (target <= {TARGET_OVERHEAD_P50_MS:g} ms)")
    cold, warm = summaries["total_cold"]["p95"], summaries["total_warm"]["p95"]
    out.append(f"total p95 {cold:.1f} ms with every query embedded (warm cache: {warm:.1f} ms) -> "
               f"{'met' if cold <= TARGET_TOTAL_P95_MS else 'NOT met'} (target <= {TARGET_TOTAL_P95_MS:g} ms)")
    return out


def summarise_all(samples: dict[str, list[float]]) -> dict[str, Any]:
    """:func:`summarise` of every sample list, keyed the same."""
    return {k: summarise(v) for k, v in samples.items()}
