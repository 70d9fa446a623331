"""The grades search engineers give in the relevance console, kept on disk as a CSV judgment list.

A grade is acknowledged only once it is on disk: the list is rewritten beside itself, fsynced and renamed into
place under an exclusive lock that every worker shares, so a reload, a restart or a second worker never loses it
and two graders never overwrite each other's rows. The file is a judgment list the team's tools read as it is:

    query,product_id,grade,graded_by,graded_at
    lamp,p6,3,alice,2026-12-05T23:40:12Z

``compare --qrels`` reads it, and ``shopsearch judgments merge`` folds it into a TREC list for ``eval``. A
(query, product) has one row: a new grade replaces the old one in place, and a withdrawn grade removes it. Queries
match as the console matches them (:func:`shopsearch.text.normalise_query`), and every row of a query carries the
text it was first graded under, so the CSV reader gives them one query id.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from shopsearch.atomic_write import write_atomically
from shopsearch.judgments import as_text_cell, from_text_cell, int_grade, table_rows
from shopsearch.text import normalise_query
from shopsearch.timestamps import format_timestamp, utcnow

HEADER = ("query", "product_id", "grade", "graded_by", "graded_at")
MAX_GRADES = 100_000  # rows in the list: each grade rewrites it, so it stays a size a person merges and reviews
MAX_GRADE = 100


class GradesFull(Exception):
    """The list holds :data:`MAX_GRADES` rows; a new (query, product) is refused, regrades still work."""


@dataclass(frozen=True)
class Grade:
    """One row of the list: the query as first graded, the product, its grade, who gave it and when (UTC)."""

    query: str
    product_id: str
    grade: int
    graded_by: str
    graded_at: str
    key: str = field(init=False, repr=False, compare=False)  # the query as the console matches it

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", normalise_query(self.query))


def _parse(name: str, text: str) -> list[Grade]:
    """The rows of a list's ``text``, read as every CSV judgment list is (:func:`shopsearch.judgments.table_rows`);
    a hand-edited list may leave out ``graded_by`` and ``graded_at``.

    Raises:
        ValueError: ``name:line: ...`` for a missing column, a bad grade or a (query, product) graded twice
            (queries compared as the console compares them); never the file's folder.
    """
    path = Path(name)
    out, seen = [], set()
    for n, row in table_rows(path, text):
        missing = [c for c in HEADER[:3] if c not in row]
        if missing:
            raise ValueError(f"{name}:1: needs the columns {', '.join(HEADER)}; missing {', '.join(missing)}")
        query, doc = from_text_cell(row["query"].strip()), row["product_id"].strip()
        if not query or not doc:
            raise ValueError(f"{name}:{n}: empty {'query' if not query else 'product_id'}")
        grade = int_grade(path, n, row["grade"], "grade")
        if not 0 <= grade <= MAX_GRADE:  # what POST /console/api/grades takes, a hand-edited list too
            raise ValueError(f"{name}:{n}: grade must be from 0 to {MAX_GRADE}, got {grade}")
        g = Grade(query, doc, grade, row.get("graded_by", "").strip(), row.get("graded_at", "").strip())
        if (g.key, doc) in seen:
            raise ValueError(f"{name}:{n}: {doc!r} is graded twice for {query!r}")
        seen.add((g.key, doc))
        out.append(g)
    return out


def render(grades: list[Grade]) -> bytes:
    """The list's bytes: the header, then a row per grade, its query as a text cell (a spreadsheet never runs a
    query that starts like a formula; every judgment reader takes the mark off)."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)  # RFC 4180 line ends: a query holding a bare carriage return is quoted, not split
    writer.writerow(HEADER)
    writer.writerows((as_text_cell(g.query), g.product_id, g.grade, g.graded_by, g.graded_at) for g in grades)
    return buf.getvalue().encode("utf-8")


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    """What tells one version of the list from another: every write renames a new inode into place."""
    return st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size


class ConsoleGrades:
    """The console's grade list at ``path`` (created on the first grade).

    >>> store = ConsoleGrades("/tmp/console-grades.csv")  # doctest: +SKIP
    >>> store.give("Lamp", "p6", 3, graded_by="alice")[0].query  # doctest: +SKIP
    'Lamp'
    >>> store.for_query("lamp")  # doctest: +SKIP
    {'p6': 3}
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        # (the file's stamp (_stamp), its rows, normalised query -> {product: grade})
        self._cache: tuple[tuple[int, ...], list[Grade], dict[str, dict[str, int]]] | None = None
        self._cache_lock = threading.Lock()

    def read(self) -> list[Grade]:
        """Every grade, in the order first given (re-read only when the file changes).

        Raises:
            ValueError: the file cannot be parsed (``name:line: ...``).
            OSError: it cannot be read.
        """
        return self._load()[0]

    def for_query(self, query: str) -> dict[str, int]:
        """product id -> grade given for ``query`` (matched after normalisation)."""
        return dict(self._load()[1].get(normalise_query(query), {}))

    def _load(self) -> tuple[list[Grade], dict[str, dict[str, int]]]:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return [], {}
        with f:  # stat and read one open file, so a rename between the two cannot pair new rows with an old stamp
            st = os.fstat(f.fileno())
            stamp = _stamp(st)
            with self._cache_lock:
                if self._cache and self._cache[0] == stamp:
                    return self._cache[1], self._cache[2]
            data = f.read()
        return self._remember(stamp, _parse(self.path.name, data.decode("utf-8-sig")))

    def _remember(self, stamp: tuple[int, ...], grades: list[Grade]) -> tuple[list[Grade], dict]:
        by_query: dict[str, dict[str, int]] = {}
        for g in grades:
            by_query.setdefault(g.key, {})[g.product_id] = g.grade
        with self._cache_lock:
            self._cache = (stamp, grades, by_query)
        return grades, by_query

    def give(self, query: str, product_id: str, grade: int | None, graded_by: str) -> tuple[Grade | None, int]:
        """Store ``grade`` for (``query``, ``product_id``), replacing an earlier one, or withdraw it (None).

        Returns:
            (the stored row, or None when withdrawn; the number of grades in the list). The row's ``query`` is the
            text the query was first graded under.
        Raises:
            GradesFull: a new row would pass :data:`MAX_GRADES`.
            ValueError: the file on disk cannot be parsed (it is left as it is).
            OSError: the list could not be written. The grade may or may not be stored (a failure after the
                rename); sending it again is safe, as a regrade replaces in place.
        """
        key = normalise_query(query)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # held until the new list is in place; released on close
            current = list(self.read())
            mine = [i for i, g in enumerate(current) if g.key == key]
            at = next((i for i in mine if current[i].product_id == product_id), None)
            row = None
            if grade is None:
                if at is None:
                    return None, len(current)
                del current[at]
            else:
                now = format_timestamp(utcnow().replace(microsecond=0))
                row = Grade(current[mine[0]].query if mine else query.strip(), product_id, grade, graded_by, now)
                if at is not None:
                    current[at] = row
                elif len(current) >= MAX_GRADES:
                    raise GradesFull(f"{self.path.name} holds {MAX_GRADES} grades")
                else:
                    current.append(row)
            write_atomically(self.path, render(current))
            st = os.stat(self.path)  # ours until the lock is released
            self._remember(_stamp(st), current)
        return row, len(current)

