"""compare(): hand-computed means, wins/losses, p-values; reports; ``shopsearch compare`` on a tiny index."""

from __future__ import annotations

import argparse
import json
import math
import re

import pytest

from shopsearch.api import cmd_compare
from shopsearch.api.cli import main
from shopsearch.api.compare import compare, paired_ttest, parse_metrics, randomization_test
from shopsearch.api.report import box_plot_svg, delta_bars_svg, render_html, render_markdown
from shopsearch.judgments import Qrel

QRELS = [Qrel("q1", "a", 1), Qrel("q2", "x", 1), Qrel("q3", "y", 1), Qrel("q3", "n", 0)]
RUN_A = {"q1": ["b", "a"], "q2": ["x"]}  # q3 missing: scores 0
RUN_B = {"q1": ["a"], "q2": ["z", "x"], "q3": ["y"]}
TEXTS = {"q1": "red <lamp> & co", "q2": "oak table", "q3": "kettle"}


def _report(**kw):
    return compare(QRELS, RUN_A, RUN_B, names=("base", "cand"), metrics=["mrr@10", "ndcg@10"],
                   queries=TEXTS, **kw)


def test_means_deltas_and_wins_by_hand():
    r = _report()
    m = r.metrics["mrr@10"]
    # per query A: 0.5, 1.0, 0 (missing); B: 1.0, 0.5, 1.0
    assert [q.a["mrr@10"] for q in r.per_query] == [0.5, 1.0, 0.0]
    assert [q.b["mrr@10"] for q in r.per_query] == [1.0, 0.5, 1.0]
    assert m.mean_a == pytest.approx(0.5) and m.mean_b == pytest.approx(5 / 6)
    assert m.delta == pytest.approx(1 / 3) and m.relative == pytest.approx(2 / 3)
    assert (m.wins, m.losses, m.ties) == (2, 1, 0)
    # nDCG@10 of q1 in A: one grade-1 product at rank 2 -> 1/log2(3)
    assert r.per_query[0].a["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert r.missing_a == ("q3",) and r.missing_b == ()
    assert r.queries == 3 and list(r.metrics) == ["mrr@10", "ndcg@10"]


def test_p_values_by_hand():
    m = _report().metrics["mrr@10"]
    # d = [0.5, -0.5, 1.0]: t = 2/sqrt(7) with 2 df, whose two-sided p is 1 - |t| / sqrt(t^2 + 2) = 1 - 2/sqrt(18)
    assert m.p_ttest == pytest.approx(1 - 2 / math.sqrt(18))
    # exact sign flips: |sum| >= 1 in 6 of the 8 sign vectors
    assert m.p_randomization == pytest.approx(0.75)
    assert not m.significant
    # 95% CI: mean 1/3 ± t(0.975, 2) * sd / sqrt(3), sd = sqrt(7/12); it spans 0 as p > 0.05 says
    half = 4.302653 * math.sqrt(7 / 12) / math.sqrt(3)
    assert m.ci_low == pytest.approx(1 / 3 - half, rel=1e-5) and m.ci_high == pytest.approx(1 / 3 + half, rel=1e-5)
    assert _report().to_dict()["metrics"]["mrr@10"]["ci"] == [m.ci_low, m.ci_high]



def test_the_interval_is_at_the_confidence_its_significance_mark_uses():
    """At alpha 0.6 the t-test marks mrr@10 (p ~ 0.53) and its 40% interval excludes 0; the tables say 40%."""
    wide, narrow = _report().metrics["mrr@10"], _report(alpha=0.6, stat_test="ttest").metrics["mrr@10"]
    half = 0.617213 * math.sqrt(7 / 12) / math.sqrt(3)  # t(0.7, 2): the 40% interval's
    assert narrow.significant and narrow.ci_low > 0
    assert narrow.ci_low == pytest.approx(1 / 3 - half, rel=1e-5) and wide.ci_low < narrow.ci_low
    report = _report(alpha=0.6, stat_test="ttest")
    assert report.to_dict()["confidence"] == pytest.approx(0.4)
    assert "Δ 40% CI" in render_markdown(report) and "Δ 40% CI" in render_html(report)
    assert "Δ 95% CI" in render_markdown(_report())

def test_randomization_is_seeded_and_marks_significance():
    diffs = [0.1] * 12 + [-0.01]
    p1, p2 = randomization_test(diffs, 999, 42), randomization_test(diffs, 999, 42)
    assert p1 == p2 and 0 < p1 < 0.01
    assert (p1 * 1000) == pytest.approx(round(p1 * 1000))  # (count + 1) / (permutations + 1)
    assert randomization_test([0.0, 0.0]) == 1.0 and paired_ttest([0.0, 0.0, 0.0]) == 1.0
    assert paired_ttest([0.2, 0.2, 0.2]) == 0.0
    qrels = [Qrel(f"q{i}", "a", 1) for i in range(12)]
    r = compare(qrels, {f"q{i}": ["b", "a"] for i in range(12)}, {f"q{i}": ["a"] for i in range(12)},
                metrics=["mrr@10"], stat_test="ttest")
    assert r.metrics["mrr@10"].significant and r.metrics["mrr@10"].wins == 12


def test_unjudged_and_validation():
    r = compare(QRELS, RUN_A, RUN_B, metrics=["mrr@10"], qids=["q1", "q9"])
    assert r.queries == 1 and r.unjudged == ("q9",)
    assert parse_metrics(" NDCG@10 ,recall@100") == ("ndcg@10", "recall@100")
    with pytest.raises(ValueError, match=r"metrics has 'map'; allowed: ndcg@10, recall@100, mrr@10"):
        compare(QRELS, RUN_A, RUN_B, metrics=["map"])
    with pytest.raises(ValueError, match=r"stat_test must be one of randomization, ttest; got 'wilcoxon'"):
        compare(QRELS, RUN_A, RUN_B, stat_test="wilcoxon")
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\); got 1.5"):
        compare(QRELS, RUN_A, RUN_B, alpha=1.5)


def test_biggest_wins_and_losses_order():
    r = _report()
    wins, losses = r.biggest("mrr@10", 5)
    assert [q.qid for q in wins] == ["q3", "q1"] and [q.qid for q in losses] == ["q2"]


def test_markdown_summary():
    md = render_markdown(_report())
    assert "| mrr@10 | 0.5000 | 0.8333 | +0.3333 | [-1.5640, +2.2306] | +66.7% | 2 / 1 / 0 | 0.7500 |" in md
    assert "`base` → `cand` (3 judged queries)" in md
    assert "| red \\<lamp\\> & co (q1) | 0.500 | 1.000 | +0.500 |" in md  # query text, its markup escaped
    assert "Queries with no results (scored 0): base: 1, cand: 0." in md


def test_html_is_self_contained():
    html = render_html(_report())
    assert html.startswith("<!doctype html>") and html.count("<svg") == 3  # box plots + one delta chart per metric
    assert "red &lt;lamp&gt; &amp; co" in html and "<lamp>" not in html
    assert "<script" not in html and not re.search(r"(src|href)=", html)
    assert not re.sub(r'xmlns="http://www.w3.org/2000/svg"', "", html).count("http")
    assert "+0.3333" in html and "0.7500" in html


def test_judged_at_10_is_compared_and_explained():
    r = compare(QRELS, RUN_A, RUN_B, names=("base", "cand"), queries=TEXTS)  # every metric, judged@10 included
    m = r.metrics["judged@10"]
    # base: q1 [b (unjudged), a] 0.5, q2 [x] 1, q3 no results 0; cand: q1 [a] 1, q2 [z (unjudged), x] 0.5, q3 [y] 1
    assert (m.mean_a, m.mean_b, m.wins, m.losses) == (pytest.approx(0.5), pytest.approx(2.5 / 3), 2, 1)
    assert "judged@10 is the share of each top 10 that was judged" in render_markdown(r)
    html = render_html(r)
    assert "judged@10 is the share of each top 10 that was judged" in html
    header = html.split("<table>", 1)[1].split("</tr>", 1)[0]
    first_row = html.split("<table>", 1)[1].split("</tr>", 2)[1]
    assert header.count("<th>") == first_row.count("<td") == 9  # the CI column has its heading
    assert "judged@10" not in render_markdown(_report())


def test_judged_only_scores_what_the_judges_saw():
    # q2: cand shows z (unjudged) above x; with it taken out x is first, as in base
    r = compare(QRELS, RUN_A, RUN_B, names=("base", "cand"), metrics=["mrr@10", "judged@10"], judged_only=True)
    assert r.judged_only and r.to_dict()["judged_only"] is True
    assert [q.b["mrr@10"] for q in r.per_query] == [1.0, 1.0, 1.0]
    assert [q.a["mrr@10"] for q in r.per_query] == [1.0, 1.0, 0.0]  # q3: no results still scores 0
    assert r.metrics["judged@10"].mean_b == pytest.approx(2.5 / 3)  # read from the rankings as shown
    assert "judged products only (trec_eval -J)" in render_markdown(r) and "trec_eval -J" in render_html(r)
    only_unjudged = compare(QRELS, RUN_A, {"q1": ["b"], "q2": ["x"], "q3": ["y"]}, judged_only=True)
    assert only_unjudged.missing_b == ("q1",) and only_unjudged.missing_a == ("q3",)
    assert "Queries with no judged results (scored 0)" in render_markdown(only_unjudged)
    assert not _report().judged_only


def test_svg_helpers():
    bars = delta_bars_svg([0.5, -0.25, 0.0])
    assert bars.count("<rect") == 3 and "#2e7d32" in bars and "#c62828" in bars
    assert box_plot_svg({"m": ([0.0, 1.0], [0.5])}, ("a", "b")).count("<rect") == 4  # 2 legend + 2 boxes


# --- the command on a tiny index ---------------------------------------------------------------------------------

CATALOG = [
    {"id": "p1", "title": "Red table lamp", "description": "A bedside lamp with a red shade."},
    {"id": "p2", "title": "Oak dining table", "description": "Solid oak, seats six."},
    {"id": "p3", "title": "Stainless steel kettle", "description": "Electric kettle, 1.7 litres."},
    {"id": "p4", "title": "Wool winter scarf", "description": ""},
]


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory, tiny_bi_encoder_dir):
    d = tmp_path_factory.mktemp("compare")
    (d / "products.jsonl").write_text("".join(json.dumps(p) + "\n" for p in CATALOG))
    (d / "judgments.csv").write_text("query,product_id,grade\nred lamp,p1,3\nred lamp,p2,0\noak table,p2,3\n"
                                     "kettle,p3,2\n")
    root = d / "engine"
    assert main(["index", str(d / "products.jsonl"), "--index", "tiny", "--engine", "embedded", "--root", str(root),
                 "--full", "--model", str(tiny_bi_encoder_dir), "--cache", "none", "--quarantine",
                 str(d / "q.jsonl"), "--no-progress"]) == 0
    return d, root


def _run(argv: list[str]) -> int:
    """The compare subcommand through its own parser (independent of COMMANDS in api/cli.py)."""
    parser = argparse.ArgumentParser(prog="shopsearch")
    cmd_compare.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


def test_compare_command_writes_reports(tiny_index, tiny_bi_encoder_dir, tmp_path, capsys):
    d, root = tiny_index
    argv = ["compare", "--index", "tiny", "--engine", "embedded", "--root", str(root), "--model",
            str(tiny_bi_encoder_dir), "--qrels", str(d / "judgments.csv"), "--no-progress", "--metrics", "mrr@10",
            "--html", str(tmp_path / "r.html"), "--markdown", str(tmp_path / "r.md"), "--json", "dense", "bm25"]
    assert _run(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["a"] == "dense" and out["b"] == "bm25" and out["queries"] == 3
    # BM25 ranks each query's title match first: MRR 1 for B
    assert out["metrics"]["mrr@10"]["b"] == pytest.approx(1.0)
    assert {v["text"] for v in out["per_query"].values()} == {"red lamp", "oak table", "kettle"}
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")
    assert "| mrr@10 |" in (tmp_path / "r.md").read_text()


def test_compare_selects_csv_judged_queries_by_a_queries_file_and_writes_json_null(tiny_index, tiny_bi_encoder_dir,
                                                                                   tmp_path, capsys):
    d, root = tiny_index
    (tmp_path / "q.tsv").write_text("a\tkettle\n")  # its own qid: the CSV's are ids of the texts
    argv = ["compare", "--index", "tiny", "--engine", "embedded", "--root", str(root), "--model",
            str(tiny_bi_encoder_dir), "--qrels", str(d / "judgments.csv"), "--queries", str(tmp_path / "q.tsv"),
            "--no-progress", "--json", "dense", "bm25"]
    assert _run(argv) == 0
    text = capsys.readouterr().out
    out = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert out["queries"] == 1 and [v["text"] for v in out["per_query"].values()] == ["kettle"]
    assert out["metrics"]["ndcg@10"]["ci"] == [None, None]  # one query: no interval


def test_compare_command_errors(tiny_index, tiny_bi_encoder_dir, capsys):
    d, root = tiny_index
    base = ["compare", "--index", "tiny", "--engine", "embedded", "--root", str(root), "--model",
            str(tiny_bi_encoder_dir), "--no-progress"]
    (d / "qrels.txt").write_text("t1 0 p1 3\n")
    with pytest.raises(ValueError, match="trec judgments in .* carry no query text; pass --queries"):
        _run(base + ["--qrels", str(d / "qrels.txt"), "bm25", "dense"])
    with pytest.raises(ValueError, match="profile 'nope' does not exist"):
        _run(base + ["--qrels", str(d / "judgments.csv"), "bm25", "nope"])
    argv = base + ["--qrels", str(d / "judgments.csv"), "bm25", "dense"]
    argv[argv.index("tiny")] = "missing"
    assert _run(argv) == 1
    assert "index 'missing' does not exist" in capsys.readouterr().err
