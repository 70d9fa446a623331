"""What a catalog export loses on the way in: products read back from one catalog written three common ways.

A CSV or TSV catalog comes from a spreadsheet, a database or a script. Written the csv module's (or Excel's)
way, a field holding a quote, a delimiter or a line break is quoted. Written as ``jq @tsv`` or a database's
tab export writes it, nothing is quoted, and a description that merely starts with a quote made the csv module
read the rows below it into that field. This prints, per export, the products ``read_rows`` (what ``shopsearch
index`` reads) gets back beside the baseline, the csv module's own reader:

    python bench/catalog_exports.py --data ../shared/data/crowdflower
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

from shopsearch.indexer.readers import read_rows

COLUMNS = ("id", "title", "description", "price")


def _text(value) -> str:
    return "" if value is None else str(value)


def write_exports(products: list[dict], folder: Path) -> dict[str, Path]:
    """The catalog as a quoted CSV, a quoted TSV and an unquoted TSV (tabs and line breaks escaped as \\t, \\n)."""
    paths = {"csv, quoted": folder / "quoted.csv", "tsv, quoted": folder / "quoted.tsv",
             "tsv, unquoted (jq @tsv)": folder / "plain.tsv"}
    for name, dialect in (("csv, quoted", csv.excel), ("tsv, quoted", csv.excel_tab)):
        with paths[name].open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, dialect)
            writer.writerow(COLUMNS)
            writer.writerows([[_text(p.get(c)) for c in COLUMNS] for p in products])

    def escaped(value) -> str:
        return _text(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")

    with paths["tsv, unquoted (jq @tsv)"].open("w", encoding="utf-8", newline="") as f:
        f.write("\t".join(COLUMNS) + "\n")
        f.writelines("\t".join(escaped(p.get(c)) for c in COLUMNS) + "\n" for p in products)
    return paths


def whole(rows: list[dict[str, str]], products: list[dict], unquoted: bool) -> tuple[int, int]:
    """How many products came back (their id read), and how many with their title and description as written."""
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r") if unquoted else v

    want = {_text(p["id"]): (esc(_text(p.get("title"))), esc(_text(p.get("description")))) for p in products}
    got = {}
    for r in rows:
        got.setdefault(r.get("id"), (r.get("title"), r.get("description")))
    return sum(k in got for k in want), sum(got.get(k) == v for k, v in want.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    ap.add_argument("--data", default="../shared/data/crowdflower", help="folder with products.jsonl")
    args = ap.parse_args()
    products = [json.loads(line) for line in (Path(args.data) / "products.jsonl").open(encoding="utf-8")]
    starting = sum(any(_text(p.get(c)).startswith('"') for c in COLUMNS) for p in products)
    print(f"{len(products)} products, {starting} with a field that starts with a quote")
    print(f"{'export':<26} {'baseline: csv module, read / whole':>36} {'read_rows, read / whole':>25}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in write_exports(products, Path(tmp)).items():
            with path.open(encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f, dialect=csv.excel_tab if path.suffix == ".tsv" else csv.excel)
                baseline = whole(list(reader), products, "unquoted" in name)
            ours = whole([r.data for r in read_rows(path) if r.error is None], products, "unquoted" in name)
            print(f"{name:<26} {f'{baseline[0]:,} / {baseline[1]:,}':>36} {f'{ours[0]:,} / {ours[1]:,}':>25}")
    print(f"of {len(products):,} products: read = its id came back; whole = its title and description too, as "
          f"written")


if __name__ == "__main__":
    from _main import finish

    finish(main)
