"""What durability costs a file the project replaces (shopsearch/atomic_write.py).

Every replaced file (API keys, console grades, the embedded engine's aliases and snapshot, model cards, judgment
lists, ...) is written by ``write_atomically``: temporary file, fsync, rename, fsync of the folder. This prints,
per file size, the median ms of that write beside the baseline: the same temporary file renamed into place
without either fsync, which is how all but the console grades were written before. The largest default size is
that of the embedded crowdflower index's snapshot (76 MB), rewritten at each refresh after writes.

    python bench/atomic_write.py --sizes 1024,1048576,76044127 --repeat 9
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from _timing import median_ms
from tqdm import tqdm

from shopsearch.atomic_write import write_atomically


def renamed_only(path: Path, data: bytes) -> None:
    """The baseline: a temporary file renamed into place, nothing flushed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    ap.add_argument("--sizes", default="1024,1048576,76044127", help="file sizes in bytes, comma-separated")
    ap.add_argument("--repeat", type=int, default=9, help="timed writes per figure (the median is printed)")
    ap.add_argument("--dir", default=None, help="folder to write in (default: a temporary folder; use the disk "
                                                "the home folder is on)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in tqdm(sizes, desc="file sizes", unit="size"):
            data = os.urandom(n)
            path = Path(tmp) / f"file-{n}"
            base = median_ms(lambda: renamed_only(path, data), args.repeat)
            durable = median_ms(lambda: write_atomically(path, data), args.repeat)
            rows.append((n, base, durable))
    print("| file size | renamed only (baseline), ms | write_atomically (fsync file + folder), ms | cost, ms |")
    print("|---:|---:|---:|---:|")
    for n, base, durable in rows:
        print(f"| {n:,} B | {base:.2f} | {durable:.2f} | {durable - base:+.2f} |")
    print(f"{len(rows)} sizes, {args.repeat} writes each, median ms")


if __name__ == "__main__":
    from _main import finish

    finish(main)
