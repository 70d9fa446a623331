"""Render a :class:`~shopsearch.api.compare.CompareReport`, an
:class:`~shopsearch.api.experiment_report.ExperimentReport` or a :class:`~shopsearch.api.query_report.QueriesReport`:
a markdown summary (for pull requests) and a self-contained HTML page (inline CSS and hand-drawn SVG, no external
assets or scripts), in one style.

Pure string building; the CLI writes the files.
"""

from __future__ import annotations

import re
from html import escape
from typing import Sequence

from .compare import CompareReport, MetricComparison, QueryScores
from .experiment_report import METRIC_NAMES, POWER, ArmDelta, Estimate, ExperimentReport
from .query_report import QueriesReport

WARNINGS = ("SIMULATED", "DEGRADED")  # the notes a report shows in bold / red

POS, NEG, NEUTRAL, A_COLOR, B_COLOR = "#2e7d32", "#c62828", "#9e9e9e", "#5c6bc0", "#ef6c00"


def _sig(m: MetricComparison) -> str:
    return "†" if m.significant else ""


def _rel(m: MetricComparison) -> str:
    return f"{m.relative:+.1%}" if m.relative is not None else "n/a"


def _ci(m: MetricComparison) -> str:
    return f"[{m.ci_low:+.4f}, {m.ci_high:+.4f}]" if m.ci_low == m.ci_low else "n/a"  # nan: < 2 queries


def _p(m: MetricComparison, report: CompareReport) -> float:
    return m.p_randomization if report.stat_test == "randomization" else m.p_ttest


def render_markdown(report: CompareReport, *, top: int = 5) -> str:
    """A short markdown summary: the metric table A -> B with significance marks, then the biggest moves.

    Args:
        report: the comparison.
        top: wins and losses listed for the first metric.

    Returns:
        Markdown text ending in a newline.

    >>> print(render_markdown(report))  # doctest: +SKIP
    """
    a, b = report.name_a, report.name_b
    only = ", judged products only (trec_eval -J)" if report.judged_only else ""
    lines = [f"### Relevance: `{a}` → `{b}` ({report.queries} judged queries{only})", "",
             f"| metric | {a} | {b} | Δ | Δ {_level(report)} CI | Δ% | wins / losses / ties | "
             f"p ({report.stat_test}) |",
             "|---|---:|---:|---:|:---:|---:|:---:|---:|"]
    for m in report.metrics.values():
        lines.append(f"| {m.name} | {m.mean_a:.4f} | {m.mean_b:.4f} | {m.delta:+.4f}{_sig(m)} | {_ci(m)} | "
                     f"{_rel(m)} | {m.wins} / {m.losses} / {m.ties} | {_p(m, report):.4f} |")
    lines += ["", f"† significant at α = {report.alpha} ({_test_words(report)}). "
                  f"Wins/losses count queries where `{b}` scores above/below `{a}`."]
    if "judged@10" in report.metrics:
        lines.append(_judged_note(report))
    if report.missing_a or report.missing_b:
        what = "no judged results" if report.judged_only else "no results"
        lines.append(f"Queries with {what} (scored 0): {a}: {len(report.missing_a)}, {b}: {len(report.missing_b)}.")
    first = next(iter(report.metrics))
    wins, losses = report.biggest(first, top)
    for title, rows in ((f"Biggest wins ({first})", wins), (f"Biggest losses ({first})", losses)):
        if rows:
            lines += ["", f"**{title}**", "", f"| query | {a} | {b} | Δ |", "|---|---:|---:|---:|"]
            lines += [f"| {_md(_label(q))} | {q.a[first]:.3f} | {q.b[first]:.3f} | {q.delta(first):+.3f} |"
                      for q in rows]
    return "\n".join(lines) + "\n"


def _judged_note(report: CompareReport) -> str:
    """Why judged@10 sits in the table: the other metrics score an unjudged product as not relevant."""
    if report.judged_only:
        return ("judged@10 is the share of each top 10 as shown that was judged; the other metrics score the judged "
                "products alone.")
    return ("judged@10 is the share of each top 10 that was judged. The other metrics count an unjudged product as "
            "not relevant, so a profile that shows more of them loses score whether or not they are relevant.")


def _test_words(report: CompareReport) -> str:
    if report.stat_test == "randomization":
        return f"paired randomisation test, {report.permutations} permutations, seed {report.random_seed}"
    return "paired t-test"


def _label(q: QueryScores) -> str:
    return f"{q.text} ({q.qid})" if q.text else q.qid


def _md(text: str) -> str:
    r"""A table cell's text: a query is anything a shopper typed, so what markdown reads as markup (HTML, links,
    images, code, the cell's end) is backslash-escaped; the text reads as typed in a terminal too.

    >>> print(_md("a|b <b>[x](y)</b> & `c`"))
    a\|b \<b\>\[x\](y)\</b\> & \`c\`
    """
    return _MD_SPECIAL.sub(r"\\\g<0>", text).replace("\n", " ")


_MD_SPECIAL = re.compile(r"[\\|<>\[\]`]")


# ---------------------------------------------------------------- SVG


def delta_bars_svg(deltas: Sequence[float], *, width: int = 760, height: int = 220, title: str = "") -> str:
    """Per-query delta bar chart, sorted from the largest win to the largest loss, zero line in the middle.

    >>> "<rect" in delta_bars_svg([0.5, -0.25, 0.0])
    True
    """
    d = sorted(deltas, reverse=True)
    pad_l, pad_r, pad_t, pad_b = 44, 10, 24, 20
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    top = max([abs(x) for x in d] + [1e-9])
    zero_y = pad_t + plot_h / 2
    bw = plot_w / max(len(d), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}">', f'<text x="{pad_l}" y="15" font-size="12">{escape(title)}</text>']
    for frac in (1.0, 0.5, -0.5, -1.0):
        y = zero_y - frac * plot_h / 2
        parts.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{pad_l - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{frac * top:+.2f}</text>')
    for i, x in enumerate(d):
        h = abs(x) / top * plot_h / 2
        y = zero_y - h if x > 0 else zero_y
        color = POS if x > 0 else NEG if x < 0 else NEUTRAL
        parts.append(f'<rect x="{pad_l + i * bw:.2f}" y="{y:.2f}" width="{max(bw - 1, 0.5):.2f}" '
                     f'height="{max(h, 0.5):.2f}" fill="{color}"><title>{x:+.4f}</title></rect>')
    parts.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{zero_y:.1f}" y2="{zero_y:.1f}" stroke="#333"/>')
    parts.append("</svg>")
    return "".join(parts)


def _quantiles(values: Sequence[float]) -> tuple[float, float, float, float, float]:
    """min, q1, median, q3, max (linear interpolation, as numpy's default)."""
    import numpy as np

    q = np.quantile(np.asarray(values, dtype=float), [0, 0.25, 0.5, 0.75, 1.0]) if values else [0.0] * 5
    return tuple(float(x) for x in q)  # type: ignore[return-value]


def box_plot_svg(series: dict[str, tuple[Sequence[float], Sequence[float]]], names: tuple[str, str], *,
                 width: int = 760, row_h: int = 46) -> str:
    """Horizontal box plots of A and B per metric on a 0..1 axis (whiskers at min/max, mean as a diamond).

    >>> box_plot_svg({"ndcg@10": ([0.1, 0.9], [0.5, 0.6])}, ("a", "b")).count("<rect")  # 2 legend keys + 2 boxes
    4
    """
    pad_l, pad_r, pad_t = 110, 20, 28
    plot_w = width - pad_l - pad_r
    height = pad_t + row_h * len(series) + 24
    x = lambda v: pad_l + max(0.0, min(1.0, v)) * plot_w  # noqa: E731 - tiny local scale
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="per-query score distributions">',
             f'<rect x="{pad_l}" y="6" width="10" height="10" fill="{A_COLOR}"/>'
             f'<text x="{pad_l + 14}" y="15" font-size="11">{escape(names[0])}</text>'
             f'<rect x="{pad_l + 160}" y="6" width="10" height="10" fill="{B_COLOR}"/>'
             f'<text x="{pad_l + 174}" y="15" font-size="11">{escape(names[1])}</text>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{pad_t - 4}" y2="{height - 18}" stroke="#eee"/>'
                     f'<text x="{x(tick):.1f}" y="{height - 6}" font-size="10" text-anchor="middle">{tick:g}</text>')
    for r, (metric, pair) in enumerate(series.items()):
        y0 = pad_t + r * row_h
        parts.append(f'<text x="{pad_l - 8}" y="{y0 + row_h / 2:.1f}" font-size="12" text-anchor="end">'
                     f'{escape(metric)}</text>')
        for k, (values, color) in enumerate(zip(pair, (A_COLOR, B_COLOR))):
            lo, q1, med, q3, hi = _quantiles(values)
            mean = sum(values) / len(values) if values else 0.0
            cy, bh = y0 + 6 + k * (row_h / 2 - 2), row_h / 2 - 10
            mid = cy + bh / 2
            parts.append(
                f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{mid:.1f}" y2="{mid:.1f}" stroke="{color}"/>'
                f'<rect x="{x(q1):.1f}" y="{cy:.1f}" width="{max(x(q3) - x(q1), 1):.1f}" height="{bh:.1f}" '
                f'fill="{color}" fill-opacity="0.35" stroke="{color}"><title>{escape(metric)}: min {lo:.3f}, q1 '
                f'{q1:.3f}, median {med:.3f}, q3 {q3:.3f}, max {hi:.3f}, mean {mean:.3f}</title></rect>'
                f'<line x1="{x(med):.1f}" x2="{x(med):.1f}" y1="{cy:.1f}" y2="{cy + bh:.1f}" stroke="{color}" '
                f'stroke-width="2"/>'
                f'<path d="M{x(mean):.1f},{mid - 4:.1f} l4,4 l-4,4 l-4,-4 z" fill="#000"/>')
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------- HTML

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:820px;color:#222}
table{border-collapse:collapse;margin:8px 0 16px}th,td{padding:4px 10px;border-bottom:1px solid #ddd}
td.n{text-align:right;font-variant-numeric:tabular-nums}.pos{color:#2e7d32}.neg{color:#c62828}
.sig{font-weight:700}h1{font-size:20px}h2{font-size:16px;margin-top:28px}small{color:#666}"""


def render_html(report: CompareReport, *, top: int = 10) -> str:
    """A self-contained HTML report: metric table, per-query delta bars per metric, box plots, wins and losses.

    Args:
        report: the comparison.
        top: wins and losses listed per metric.

    Returns:
        One HTML document (no external assets).

    >>> render_html(report).startswith("<!doctype html>")  # doctest: +SKIP
    True
    """
    a, b = escape(report.name_a), escape(report.name_b)
    rows = []
    for m in report.metrics.values():
        cls = "pos" if m.delta > 0 else "neg" if m.delta < 0 else ""
        rows.append(f'<tr><td>{escape(m.name)}</td><td class="n">{m.mean_a:.4f}</td><td class="n">{m.mean_b:.4f}'
                    f'</td><td class="n {cls}{" sig" if m.significant else ""}">{m.delta:+.4f}{_sig(m)}</td>'
                    f'<td class="n">{_ci(m)}</td><td class="n">{_rel(m)}</td>'
                    f'<td class="n">{m.wins} / {m.losses} / {m.ties}</td>'
                    f'<td class="n">{m.p_ttest:.4f}</td><td class="n">{m.p_randomization:.4f}</td></tr>')
    only = ", scored on judged products only (trec_eval -J)" if report.judged_only else ""
    body = [f"<h1>{a} → {b}</h1>",
            f"<p>{report.queries} judged queries{only}. † marks a delta significant at α = {report.alpha} "
            f"({escape(_test_words(report))}). Wins / losses / ties count queries where {b} scores above / below /"
            f" equal to {a}. A judged query with no {'judged ' if report.judged_only else ''}results scores 0"
            f" ({a}: {len(report.missing_a)}, {b}: {len(report.missing_b)} such queries)"
            + (f"; {len(report.unjudged)} queries without judgements were left out" if report.unjudged else "")
            + "." + (" " + escape(_judged_note(report)) if "judged@10" in report.metrics else "") + "</p>",
            "<table><tr><th>metric</th><th>" + a + "</th><th>" + b
            + f"</th><th>Δ</th><th>Δ {_level(report)} CI</th><th>Δ%</th>"
            "<th>W / L / T</th><th>p (t-test)</th><th>p (randomisation)</th></tr>" + "".join(rows) + "</table>",
            "<h2>Per-metric distributions</h2>",
            box_plot_svg({m: ([q.a[m] for q in report.per_query], [q.b[m] for q in report.per_query])
                          for m in report.metrics}, (report.name_a, report.name_b))]
    for m in report.metrics:
        body.append(f"<h2>{escape(m)}: per-query Δ ({b} − {a}), sorted</h2>")
        body.append(delta_bars_svg([q.delta(m) for q in report.per_query],
                                   title=f"{m}: {report.metrics[m].wins} wins, {report.metrics[m].losses} losses"))
        wins, losses = report.biggest(m, top)
        body.append(_moves_table(f"Biggest wins on {m}", wins, m, a, b))
        body.append(_moves_table(f"Biggest losses on {m}", losses, m, a, b))
    return _page(f"{a} vs {b}", body)


def _page(title_html: str, body: list[str]) -> str:
    """One self-contained HTML document: the reports' CSS, ``title_html`` (already escaped), ``body`` parts."""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + title_html
            + f"</title><style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def _moves_table(title: str, rows: list[QueryScores], metric: str, a: str, b: str) -> str:
    if not rows:
        return f"<p><small>{escape(title)}: none.</small></p>"
    cells = "".join(f'<tr><td>{escape(q.text) or "<i>no text</i>"}</td><td><small>{escape(q.qid)}</small></td>'
                    f'<td class="n">{q.a[metric]:.3f}</td><td class="n">{q.b[metric]:.3f}</td>'
                    f'<td class="n {"pos" if q.delta(metric) > 0 else "neg"}">{q.delta(metric):+.3f}</td></tr>'
                    for q in rows)
    return (f"<h3>{escape(title)}</h3><table><tr><th>query</th><th>qid</th><th>{a}</th><th>{b}</th><th>Δ</th></tr>"
            f"{cells}</table>")


# ---------------------------------------------------------------- online experiments


def _est(e: Estimate, digits: int = 4) -> str:
    if e.value != e.value:  # nan: no searches
        return "n/a"
    ci = f" [{e.low:.{digits}f}, {e.high:.{digits}f}]" if e.low == e.low else ""
    return f"{e.value:.{digits}f}{ci}"


def _delta_ci(d: ArmDelta) -> str:
    return f"[{d.ci_low:+.4f}, {d.ci_high:+.4f}]" if d.ci_low == d.ci_low else "n/a"


def _delta_rel(d: ArmDelta) -> str:
    return f"{d.delta / d.baseline:+.1%}" if d.baseline and d.delta == d.delta else "n/a"


def _num(x: float, fmt: str = ".4f") -> str:
    return format(x, fmt) if x == x else "n/a"  # nan: an empty arm, or no test possible


def _level(report: CompareReport | ExperimentReport) -> str:
    """The intervals' confidence as a label: 95% at alpha 0.05, 97.5% at 0.025."""
    return f"{report.confidence * 100:.10g}%"


def _experiment_lines(report: ExperimentReport) -> tuple[str, list[str], list[str]]:
    """The experiment report's title, its SIMULATED / period notes, and the footnotes, shared by both renderings."""
    kind = "interleaving" if report.mode == "interleave" else "A/B"
    title = f"Experiment {report.name} ({kind}): {report.searches} searches"
    notes = []
    if report.simulated:
        notes.append(f"SIMULATED: {report.simulated_searches} of {report.searches} searches are simulated traffic "
                     f"(`shopsearch simulate-traffic`), not shoppers.")
    notes.append(f"Searches from {report.first} to {report.last}.")
    if report.not_interleaved:
        notes.append(f"{report.not_interleaved} searches sorted by other than relevance were served by the baseline "
                     f"alone (merging two sorted lists would break the order) and are left out of the preference.")
    untested = sorted({METRIC_NAMES[d.metric] for d in report.deltas if d.p != d.p})
    if untested:
        notes.append(f"p n/a ({', '.join(untested)}): no test is possible when an arm has fewer than 2 clients or "
                     f"neither arm varies between clients; never significant. Collect more clients.")
    if report.degraded_searches:
        reasons = ", ".join(f"{r} {n}" for r, n in report.degraded_reasons.items())
        arms = "; per arm: " + ", ".join(f"{a.arm} {a.degraded}" for a in report.arms) if report.arms else ""
        notes.append(f"DEGRADED: {report.degraded_searches} of {report.searches} searches were served with a stage "
                     f"cut short ({reasons}{arms}); those did not show the profiles as designed, so the comparison "
                     f"is partly of their fallbacks.")
    pref = report.preference
    if pref is not None and not pref.significant and pref.searches_needed is not None:
        notes.append(f"At the share observed, about {pref.searches_needed} searches in all would give "
                     f"{POWER:.0%} power at α = {report.alpha} (a plan from an uncertain share, not a test).")
    if report.mode == "interleave":
        foot = [f"† significant at α = {report.alpha}. A search is won by the profile whose picks got more clicks "
                f"(team-draft interleaving); ties include searches without clicks. p: two-sided exact binomial "
                f"(sign) test of wins against losses; share: the candidate's share of decided searches, Wilson "
                f"{_level(report)} interval."]
    else:
        foot = [f"† significant at α = {report.alpha}. Rates are shares of searches with at least one such action; "
                f"revenue per search is the purchases' price x quantity per search. Arms are assigned per client, so "
                f"the client is the unit of every interval and test (delta-method variances of per-client sums): rates "
                f"with Wilson {_level(report)} intervals at the effective sample size, revenue with t intervals; "
                f"Δ: Welch's {_level(report)} interval and two-sided t-test over clients. "
                f"Δ = arm − baseline `{report.arms[0].arm}`."]
        unpriced = sum(a.unpriced_purchases for a in report.arms)
        if unpriced:
            foot.append(f"{unpriced} purchases carried no price and count as revenue 0.")
    return title, notes, foot


def render_experiment_markdown(report: ExperimentReport) -> str:
    """An experiment report as markdown: per-arm figures and the deltas against the baseline, or the
    interleaving preference; SIMULATED when the logs are simulated traffic.

    >>> print(render_experiment_markdown(report))  # doctest: +SKIP
    """
    title, notes, foot = _experiment_lines(report)
    lines = [f"### {title}", ""] + [f"**{n}**" if n.startswith(WARNINGS) else n for n in notes] + [""]
    if report.preference is not None:
        p = report.preference
        lines += [f"| baseline | candidate | wins | losses | ties | candidate share [{_level(report)} CI] | "
                  f"credited clicks | p |",
                  "|---|---|---:|---:|---:|:---:|:---:|---:|",
                  f"| {_md(p.baseline)} | {_md(p.candidate)} | {p.wins}{'†' if p.significant else ''} | {p.losses} | "
                  f"{p.ties} | {_est(p.share, 3)} | {p.clicks.get(p.baseline, 0)} / {p.clicks.get(p.candidate, 0)} "
                  f"| {p.p:.4f} |"]
    else:
        names = [METRIC_NAMES[m] for m in report.arms[0].metrics]
        lines += ["| arm | searches | clients | " + " | ".join(names) + " |", "|---|---:|---:|" + "---:|" * len(names)]
        lines += [f"| {_md(a.arm)} | {a.searches} | {a.clients} | " + " | ".join(_est(e) for e in a.metrics.values())
                  + " |" for a in report.arms]
        lines += ["", f"| arm | metric | baseline | arm | Δ | Δ {_level(report)} CI | Δ% | p | test |",
                  "|---|---|---:|---:|---:|:---:|---:|---:|---|"]
        lines += [f"| {_md(d.arm)} | {METRIC_NAMES[d.metric]} | {_num(d.baseline)} | {_num(d.value)} | "
                  f"{_num(d.delta, '+.4f')}{'†' if d.significant else ''} | {_delta_ci(d)} | {_delta_rel(d)} | "
                  f"{_num(d.p)} | "
                  f"{d.test} |" for d in report.deltas]
    return "\n".join(lines + [""] + foot) + "\n"


def render_experiment_html(report: ExperimentReport) -> str:
    """An experiment report as one self-contained HTML page (the compare report's style).

    >>> render_experiment_html(report).startswith("<!doctype html>")  # doctest: +SKIP
    True
    """
    title, notes, foot = _experiment_lines(report)
    body = [f"<h1>{escape(title)}</h1>"]
    body += [f'<p class="{"neg sig" if n.startswith(WARNINGS) else ""}">{escape(n)}</p>' for n in notes]
    if report.preference is not None:
        p = report.preference
        body.append(f"<table><tr><th>baseline</th><th>candidate</th><th>wins</th><th>losses</th><th>ties</th>"
                    f"<th>candidate share [{_level(report)} CI]</th><th>credited clicks</th><th>p</th></tr>"
                    f"<tr><td>{escape(p.baseline)}</td><td>{escape(p.candidate)}</td>"
                    f'<td class="n{" sig" if p.significant else ""}">{p.wins}{"†" if p.significant else ""}</td>'
                    f'<td class="n">{p.losses}</td><td class="n">{p.ties}</td><td class="n">{_est(p.share, 3)}</td>'
                    f'<td class="n">{p.clicks.get(p.baseline, 0)} / {p.clicks.get(p.candidate, 0)}</td>'
                    f'<td class="n">{p.p:.4f}</td></tr></table>')
    else:
        names = [METRIC_NAMES[m] for m in report.arms[0].metrics]
        rows = "".join(f"<tr><td>{escape(a.arm)}</td><td class=\"n\">{a.searches}</td><td class=\"n\">{a.clients}"
                       f"</td>" + "".join(f'<td class="n">{_est(e)}</td>' for e in a.metrics.values()) + "</tr>"
                       for a in report.arms)
        body.append("<h2>Arms</h2><table><tr><th>arm</th><th>searches</th><th>clients</th>"
                    + "".join(f"<th>{escape(n)}</th>" for n in names) + f"</tr>{rows}</table>")
        rows = "".join(f"<tr><td>{escape(d.arm)}</td><td>{escape(METRIC_NAMES[d.metric])}</td>"
                       f'<td class="n">{_num(d.baseline)}</td><td class="n">{_num(d.value)}</td>'
                       f'<td class="n {"pos" if d.delta > 0 else "neg" if d.delta < 0 else ""}'
                       f'{" sig" if d.significant else ""}">{_num(d.delta, "+.4f")}'
                       f'{"†" if d.significant else ""}</td>'
                       f'<td class="n">{_delta_ci(d)}</td><td class="n">{_delta_rel(d)}</td>'
                       f'<td class="n">{_num(d.p)}</td><td>{d.test}</td></tr>' for d in report.deltas)
        body.append("<h2>Against the baseline</h2><table><tr><th>arm</th><th>metric</th><th>baseline</th>"
                    f"<th>arm</th><th>Δ</th><th>Δ {_level(report)} CI</th><th>Δ%</th><th>p</th><th>test</th></tr>"
                    f"{rows}</table>")
    body += [f"<p><small>{escape(f)}</small></p>" for f in foot]
    return _page(escape(title), body)


# ---------------------------------------------------------------- what shoppers search


def _queries_lines(report: QueriesReport) -> tuple[str, list[str]]:
    """The queries report's title and its notes (SIMULATED first when any search is), shared by both renderings."""
    title = f"Queries: {report.searches} searches, {report.distinct_queries} distinct queries"
    notes = []
    if report.simulated:
        notes.append(f"SIMULATED: {report.simulated} of {report.searches} searches are simulated traffic "
                     f"(`shopsearch simulate-traffic`), not shoppers.")
    scope = f"index {report.index}" if report.index else "every index"
    notes.append(f"Searches from {report.first or 'n/a'} to {report.last or 'n/a'} ({scope}"
                 + (f", since {report.since}" if report.since else "") + "); first pages only, queries normalised "
                 "(case, width, spaces).")
    ctr = f"{report.overall_ctr:.1%}" if report.overall_ctr is not None else "n/a"
    notes.append(f"CTR: the share of a query's result lists with at least one click (overall {ctr}); "
                 f"listed from {report.min_impressions} result lists.")
    return title, notes


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "n/a"


def render_queries_markdown(report: QueriesReport) -> str:
    """The queries report as markdown: top queries, zero-result queries, low click-through queries.

    >>> print(render_queries_markdown(report))  # doctest: +SKIP
    """
    title, notes = _queries_lines(report)
    lines = [f"### {title}", ""] + [f"**{n}**" if n.startswith(WARNINGS) else n for n in notes]
    lines += ["", "**Top queries**", "", "| query | searches | clients | found nothing |", "|---|---:|---:|---:|"]
    lines += [f"| {_md(s.query)} | {s.searches} | {s.clients} | {_share(s.zero_results, s.searches)} |"
              for s in report.top] or ["| none | | | |"]
    lines += ["", "**Zero-result queries**", "", "| query | searches finding nothing | searches | clients |",
              "|---|---:|---:|---:|"]
    lines += [f"| {_md(s.query)} | {s.zero_results} | {s.searches} | {s.clients} |"
              for s in report.zero_results] or ["| none | | | |"]
    lines += ["", "**Low click-through queries**", "", "| query | CTR | result lists | with a click |",
              "|---|---:|---:|---:|"]
    lines += [f"| {_md(c.query)} | {c.ctr:.1%} | {c.impressions} | {c.clicked} |"
              for c in report.low_ctr] or ["| none | | | |"]
    return "\n".join(lines) + "\n"


def render_queries_html(report: QueriesReport) -> str:
    """The queries report as one self-contained HTML page (the compare report's style).

    >>> render_queries_html(report).startswith("<!doctype html>")  # doctest: +SKIP
    True
    """
    title, notes = _queries_lines(report)

    def table(head: list[str], rows: list[list[str | int]]) -> str:
        if not rows:
            return "<p><small>none.</small></p>"
        cells = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" if i == 0 else
                                         f'<td class="n">{escape(str(v))}</td>' for i, v in enumerate(r)) + "</tr>"
                        for r in rows)
        return "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + f"</tr>{cells}</table>"

    body = [f"<h1>{escape(title)}</h1>"]
    body += [f'<p class="{"neg sig" if n.startswith(WARNINGS) else ""}">{escape(n)}</p>' for n in notes]
    body += ["<h2>Top queries</h2>",
             table(["query", "searches", "clients", "found nothing"],
                   [[s.query, s.searches, s.clients, _share(s.zero_results, s.searches)] for s in report.top]),
             "<h2>Zero-result queries</h2>",
             table(["query", "searches finding nothing", "searches", "clients"],
                   [[s.query, s.zero_results, s.searches, s.clients] for s in report.zero_results]),
             "<h2>Low click-through queries</h2>",
             table(["query", "CTR", "result lists", "with a click"],
                   [[c.query, f"{c.ctr:.1%}", c.impressions, c.clicked] for c in report.low_ctr])]
    return _page(escape(title), body)
