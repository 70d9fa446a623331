"""The quarantine file: one JSON line per row that was not indexed (source, line, reason, raw text)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import IO

from shopsearch.timestamps import format_timestamp, utcnow

from .records import QuarantinedRow
from .validate import reason_code


class QuarantineWriter:
    """Appends QuarantinedRow lines to ``path``, opened at once so a path that cannot be written (a read-only
    working folder, as a container's may be) fails before a job writes anything; a file the run created that is
    still empty is removed at close.

    >>> with QuarantineWriter("/tmp/q.jsonl") as q:  # doctest: +SKIP
    ...     q.write(QuarantinedRow("cat.jsonl", 3, "missing_title: no title", '{"id": "3"}'))
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)  # FileExistsError where a file stands for a folder
        if self.path.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(self.path))
        self.count = 0
        self.run = format_timestamp(utcnow())  # marks this run's rows (to the microsecond)
        self.by_code: Counter[str] = Counter()
        self._created = not self.path.exists()
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8", buffering=1)

    def write(self, row: QuarantinedRow) -> None:
        """Append one row (flushed at close; the file is line-buffered so a crash loses at most one line)."""
        if self._file is None:
            raise ValueError(f"quarantine file {self.path} is closed")
        self._file.write(replace(row, run=row.run or self.run).to_json() + "\n")
        self.count += 1
        self.by_code[reason_code(row.reason)] += 1

    def summary(self) -> str:
        """``"3 quarantined (missing_title 2, bad_price 1) -> PATH"`` or ``"0 quarantined"``."""
        if not self.count:
            return "0 quarantined"
        parts = ", ".join(f"{code} {n}" for code, n in self.by_code.most_common())
        return f"{self.count} quarantined ({parts}) -> {self.path} (rows of run {self.run})"

    def close(self) -> None:
        if self._file is not None:
            # another run sharing the path may have written to the file this run created: only an empty one goes
            empty = not self.count and os.fstat(self._file.fileno()).st_size == 0
            self._file.close()
            self._file = None
            if self._created and empty:
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> "QuarantineWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_quarantine(path: str | Path) -> list[QuarantinedRow]:
    """Every row of a quarantine file (for tests and for re-checking a fixed catalog)."""
    import json

    rows = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(QuarantinedRow(**json.loads(line)))
    return rows
