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
import datetime as dt
import fcntl
import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from shopsearch.text import normalise_query

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


def _parse(path: Path, text: str) -> list[Grade]:
    """The rows of a list's ``text``; a hand-edited list may leave out ``graded_by`` and ``graded_at``.

    Raises:
        ValueError: ``name:line: ...`` for a missing column, a bad grade or a repeated (query, product).
    """
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in HEADER[:3] if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path.name}:1: needs the columns {', '.join(HEADER)}; missing {', '.join(missing)}")
    out, seen = [], set()
    for row in reader:
        n = reader.line_num
        query, doc = (row.get("query") or "").strip(), (row.get("product_id") or "").strip()
        grade = (row.get("grade") or "").strip()
        if not query or not doc or not (grade.isascii() and grade.isdigit() and int(grade) <= MAX_GRADE):
            raise ValueError(f"{path.name}:{n}: expected a query, a product id and a grade from 0 to {MAX_GRADE}")
        key = (normalise_query(query), doc)
        if key in seen:
            raise ValueError(f"{path.name}:{n}: {doc!r} is graded twice for {query!r}")
        seen.add(key)
        out.append(Grade(query, doc, int(grade), (row.get("graded_by") or "").strip(),
                         (row.get("graded_at") or "").strip()))
    return out


def render(grades: list[Grade]) -> bytes:
    """The list's bytes: the header, then a row per grade."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows((g.query, g.product_id, g.grade, g.graded_by, g.graded_at) for g in grades)
    return buf.getvalue().encode("utf-8")


class ConsoleGrades:
    """The console's grade list at ``path`` (created on the first grade).

    >>> store = ConsoleGrades("/tmp/console-grades.csv")  # doctest: +SKIP
    >>> store.give("Lamp", "p6", 3, graded_by="alice").query  # doctest: +SKIP
    'Lamp'
    >>> store.for_query("lamp")  # doctest: +SKIP
    {'p6': 3}
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._cache: tuple[tuple[int, int, int], list[Grade]] | None = None
        self._cache_lock = threading.Lock()

    def read(self) -> list[Grade]:
        """Every grade, in the order first given (re-read only when the file changes).

        Raises:
            ValueError: the file cannot be parsed (``name:line: ...``).
        """
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._cache_lock:
            if self._cache and self._cache[0] == stamp:
                return self._cache[1]
        grades = _parse(self.path, self.path.read_text(encoding="utf-8-sig"))
        with self._cache_lock:
            self._cache = (stamp, grades)
        return grades

    def for_query(self, query: str) -> dict[str, int]:
        """product id -> grade given for ``query`` (matched after normalisation)."""
        key = normalise_query(query)
        return {g.product_id: g.grade for g in self.read() if normalise_query(g.query) == key}

    def give(self, query: str, product_id: str, grade: int | None, graded_by: str) -> Grade | None:
        """Store ``grade`` for (``query``, ``product_id``), replacing an earlier one, or withdraw it (None).

        Returns:
            The stored row (its ``query`` is the text the query was first graded under), or None when withdrawn.
        Raises:
            GradesFull: a new row would pass :data:`MAX_GRADES`.
            ValueError: the file on disk cannot be parsed.
            OSError: it could not be written (nothing changed).
        """
        key = normalise_query(query)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # held until the new list is in place; released on close
            current = _parse(self.path, self.path.read_text(encoding="utf-8-sig")) if self.path.exists() else []
            texts = [g.query for g in current if normalise_query(g.query) == key]
            at = next((i for i, g in enumerate(current)
                       if g.product_id == product_id and normalise_query(g.query) == key), None)
            if grade is None:
                if at is None:
                    return None
                del current[at]
                row = None
            else:
                now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                row = Grade(texts[0] if texts else query.strip(), product_id, grade, graded_by, now)
                if at is not None:
                    current[at] = row
                elif len(current) >= MAX_GRADES:
                    raise GradesFull(f"{self.path.name} holds {MAX_GRADES} grades")
                else:
                    current.append(row)
            self._replace(render(current))
        return row

    def _replace(self, data: bytes) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut
        finally:
            os.close(dir_fd)
