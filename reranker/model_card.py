"""The model card of a trained reranker: ``model_card.json`` (machine-readable) and ``README.md`` (for people)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shopsearch.atomic_write import write_atomically
from shopsearch.timestamps import format_timestamp, utcnow

CARD_JSON = "model_card.json"
CARD_README = "README.md"
REQUIRED_KEYS = ("model", "base_model", "data", "parameters", "seed", "metrics", "training_seconds", "created")


def created_now() -> str:
    """A card's ``created``: now, to the second, in the stored form (``2026-12-06T08:00:00Z``)."""
    return format_timestamp(utcnow().replace(microsecond=0))


def write_model_card(model_dir: str | Path, card: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``card`` as model_card.json and a README.md summarising it.

    Args:
        model_dir: the trained model's folder (must exist).
        card: a JSON-able dict with at least the keys in ``REQUIRED_KEYS``.
    Returns:
        The two paths written.
    Raises:
        ValueError: a required key is missing.
    Example:
        >>> write_model_card("models/ce-minilm", card)  # doctest: +SKIP
    """
    missing = [k for k in REQUIRED_KEYS if k not in card]
    if missing:
        raise ValueError(f"card lacks required keys {missing}; required: {list(REQUIRED_KEYS)}")
    root = Path(model_dir)
    json_path, readme_path = root / CARD_JSON, root / CARD_README
    write_atomically(json_path, json.dumps(card, indent=1, sort_keys=True))
    write_atomically(readme_path, render_readme(card))
    return json_path, readme_path


def read_model_card(model_dir: str | Path) -> dict[str, Any]:
    """The card stored in ``model_dir`` (raises FileNotFoundError when there is none)."""
    path = Path(model_dir) / CARD_JSON
    if not path.is_file():
        raise FileNotFoundError(f"model_dir={str(model_dir)!r} has no {CARD_JSON}")
    return json.loads(path.read_text(encoding="utf-8"))


def render_readme(card: dict[str, Any]) -> str:
    """Markdown summary of a card (pure)."""
    m = card["metrics"]
    lines = [
        f"# {card['model']}",
        "",
        f"Cross-encoder reranker fine-tuned from `{card['base_model']}` on human-judged product-search pairs.",
        f"Created {card['created']}; training took {card['training_seconds']:.0f} s; seed {card['seed']}.",
        "",
        "## Data",
        "",
        "| data dir | train queries | train pairs | valid queries | valid pairs | test queries (held out) |",
        "|---|---|---|---|---|---|",
    ]
    for d in card["data"]["dirs"]:
        lines.append(f"| {d['path']} | {d['train_queries']} | {d['train_pairs']} | {d['valid_queries']} "
                     f"| {d['valid_pairs']} | {d['test_queries']} |")
    lines += [
        "",
        f"Training pairs sha256: `{card['data']['pairs_sha256']}`. Splits are by query "
        f"(seed {card['seed']}, valid fraction {card['parameters']['valid_fraction']}, " + _test_split(card) + ").",
        "",
        "## Parameters",
        "",
        *(f"- {k}: {v}" for k, v in sorted(card["parameters"].items())),
        "",
        "## Validation metrics",
        "",
        f"nDCG@10 over each validation query's judged pool: {m['valid_ndcg@10_before']:.4f} (base model) -> "
        f"{m['valid_ndcg@10_after']:.4f} " + _after(card) + ".",
        "",
        *(f"- {name}: nDCG@10 {v['ndcg@10_before']:.4f} -> {v['ndcg@10_after']:.4f}; calibrated RMSE "
          f"{v['rmse_calibrated']:.4f} vs predict-the-mean {v['rmse_mean']:.4f}" for name, v in
          sorted(m.get("per_dataset", {}).items())),
        "",
        "Scores map to each dataset's raw rating scale with the isotonic calibration in `calibration.json`.",
        "",
    ]
    return "\n".join(lines)


def _after(card: dict[str, Any]) -> str:
    """What the trained figure of a card is: its best checkpoint, or an ensemble's mean of its members."""
    if "members" in card:
        each = "; ".join(f"{m['folder']} {m['valid_ndcg@10_after']:.4f}, step {m['best_step']} of {m['steps']}"
                         for m in card["members"])
        return f"(the mean score of {len(card['members'])} members, in `ensemble.toml`: {each})"
    m = card["metrics"]
    return f"(best checkpoint, step {m['best_step']} of {m['steps']})"


def trained_on(card: dict[str, Any]) -> list[str]:
    """The names of the data folders a model card's run trained on (their queries were split).

    Raises:
        ValueError: the card names none (it is not a trained cross-encoder's).
    """
    try:
        return [d["name"] for d in card["data"]["dirs"]]
    except (KeyError, TypeError):
        raise ValueError("its model card names no data folders it trained on: not a cross-encoder's card "
                         "(train one with `shopsearch train cross-encoder`)") from None


def _test_split(card: dict[str, Any]) -> str:
    """How the card's run chose its test queries: a share of them, or one fold of a cross-validation."""
    p = card["parameters"]
    if p.get("folds"):
        return f"test fold {p['fold']} of {p['folds']}"
    return f"test fraction {p['test_fraction']}"
