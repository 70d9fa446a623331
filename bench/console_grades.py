"""What a grade given in the relevance console costs as the list grows (api/console_grades.py).

Each grade rewrites the list (fsynced, renamed into place), and each judge call of the console looks the query's
grades up in it. This fills lists of several sizes and prints, per size: the ms of one more grade, of the first
read after a change (parsing the file), and of a query's lookup once read. The baseline column is the lookup
without the per-query index (normalising every row's query on each call).

    python bench/console_grades.py --sizes 1000,10000,100000 --repeat 20
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _timing import median_ms
from tqdm import tqdm

from shopsearch.api.console_grades import ConsoleGrades, Grade, render
from shopsearch.text import normalise_query


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    ap.add_argument("--sizes", default="1000,10000,100000", help="list sizes (rows), comma-separated")
    ap.add_argument("--repeat", type=int, default=20, help="timed calls per figure (the median is printed)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print("| rows | list size, KiB | one more grade, ms | first read after a change, ms | lookup, ms | "
          "lookup without the index (baseline), ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in tqdm(sizes, desc="list sizes", unit="size"):
            path = Path(tmp) / f"grades-{n}.csv"
            # 30 grades a query, as a grader working through a query's shown products would give; the timed
            # grades fill the list to n rows (its limit at the largest size)
            start = n - args.repeat
            path.write_bytes(render([Grade(f"query number {i // 30}", f"p{i}", i % 4, "bench", "2026-12-06T00:00:00Z")
                                     for i in range(start)]))
            store = ConsoleGrades(path)
            i = iter(range(start, n))
            give = median_ms(lambda: store.give("query number 7", f"p{next(i)}", 2, graded_by="bench"),
                             args.repeat)
            first = median_ms(lambda: ConsoleGrades(path).read(), max(3, args.repeat // 4))
            store.read()
            lookup = median_ms(lambda: store.for_query("Query  Number 7"), args.repeat)
            rows = store.read()
            key = normalise_query("Query  Number 7")
            naive = median_ms(lambda: {g.product_id: g.grade for g in rows if normalise_query(g.query) == key},
                              args.repeat)
            print(f"| {n:,} | {path.stat().st_size / 1024:,.0f} | {give:.2f} | {first:.2f} | {lookup:.3f} | "
                  f"{naive:.2f} |")
    print(f"console grades: {len(sizes)} list sizes, {args.repeat} calls each (medians)")


if __name__ == "__main__":
    main()
