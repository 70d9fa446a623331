"""A tiny hand-made judged data folder (products, queries, qrels) for simulator and ranker tests."""

from __future__ import annotations

import json
from pathlib import Path

PRODUCTS = [
    {"id": "p1", "title": "Red Lamp", "description": "a red desk lamp"},
    {"id": "p2", "title": "Blue Lamp", "description": ""},
    {"id": "p3", "title": "Lamp Shade", "description": "shade for lamps"},
    {"id": "p4", "title": "Red Mug", "description": "ceramic"},
    {"id": "p5", "title": "Coffee Mug Set", "description": "four mugs"},
    {"id": "p6", "title": "Tea Cup", "description": ""},
]
QUERIES = {"q1": "red lamp", "q2": "coffee mug", "q3": "tea cup", "q4": "lamp shade"}
QRELS = [("q1", "p1", 3), ("q1", "p2", 1), ("q1", "p3", 0), ("q2", "p5", 3), ("q2", "p4", 1), ("q2", "p6", 0),
         ("q3", "p6", 3), ("q3", "p5", 1), ("q4", "p3", 3), ("q4", "p1", 1), ("q4", "p2", 0)]


def write_tiny_data(d: Path) -> Path:
    """Write products.jsonl, queries-dev.tsv and qrels-dev.txt into ``d``; returns ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "products.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PRODUCTS))
    (d / "queries-dev.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()))
    (d / "qrels-dev.txt").write_text("".join(f"{q} 0 {p} {g}\n" for q, p, g in QRELS))
    return d
