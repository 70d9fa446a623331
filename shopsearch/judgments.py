"""Relevance judgments: the one record type (:class:`Qrel`) and every reader of judgment and query files.

The record is ir-measures' own ``Qrel(query_id, doc_id, relevance, iteration="0")`` — the class itself, not a copy —
so what a reader returns goes straight into :func:`shopsearch.evaluation.evaluate` and ir-measures. Readers:

- :func:`read_judgments`: a judgment list in any supported format (:data:`FORMATS`) -> :class:`Judgments` (the
  qrels in file order plus the query texts the file carries);
- :func:`read_qrels`: TREC qrels (``qid iteration doc_id grade``) -> ``list[Qrel]``;
- :func:`read_queries`: a ``qid<TAB>query text`` file -> ``list[Query]``.

Writers, the inverse of the last two: :func:`write_qrels` (TREC qrels) and :func:`write_queries`.

Relevance grades are integers; the label mappings are:

- ESCI (Amazon Shopping Queries): Exact = 3, Substitute = 2, Complement = 1, Irrelevant = 0
  (``E``/``S``/``C``/``I`` or the full words, any case). "Relevant" (grade >= 1) therefore includes Complements,
  as the ESCI paper's gains do; filter them yourself if a complement should not count.
- WANDS (Wayfair): Exact = 2, Partial = 1, Irrelevant = 0.
- CSV (``query,product_id,grade``) and Quepid (``Query Text``, ``Doc ID``, ``Rating``): the grade as written
  (an integer; Quepid's ``3.0`` is read as 3). Query ids are generated from the query text
  (:func:`query_id_for`), so the same text gets the same id in every file and run. A query text marked as a
  spreadsheet's text cell (:func:`as_text_cell`: an apostrophe before a start like ``=``, ``+``, ``-``, ``@``) is
  read without the mark; so a query that really was typed as an apostrophe and then one of those loses its
  apostrophe (and its query id with it) in a list written without marks.

Formats are detected from the file's shape (:func:`detect_format`); pass ``fmt`` to override. Errors are
``ValueError("path:line: ...")``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Container, Iterable, Iterator, NamedTuple

from ir_measures import Qrel

from shopsearch.atomic_write import write_atomically
from shopsearch.text import normalise_query

__all__ = ["ESCI_GRADES", "FORMATS", "WANDS_GRADES", "Judgments", "Qrel", "Query", "detect_format", "int_grade",
           "query_id_for", "query_ids_by_text", "query_texts", "read_judgments", "read_qrels", "read_queries",
           "table_rows", "write_qrels", "write_queries"]

FORMATS = ("trec", "csv", "esci", "wands", "quepid")
ESCI_GRADES = {"e": 3, "exact": 3, "s": 2, "substitute": 2, "c": 1, "complement": 1, "i": 0, "irrelevant": 0}
WANDS_GRADES = {"exact": 2, "partial": 1, "irrelevant": 0}

# Header columns (normalised: lower case, spaces/dashes as underscores) that identify each tabular format.
_CSV_COLS = ("query", "product_id", "grade")
_ESCI_COLS = ("query_id", "query", "product_id", "esci_label")
_WANDS_COLS = ("query_id", "product_id", "label")
_QUEPID_COLS = ("query_text", "doc_id", "rating")


class Query(NamedTuple):
    """One judged query: its id and text."""

    qid: str
    text: str


@dataclass(frozen=True)
class Judgments:
    """The judgments of one file, its format, and the query texts it carries (empty for TREC qrels)."""

    qrels: tuple[Qrel, ...]
    queries: dict[str, str] = field(default_factory=dict)
    format: str = "trec"
    source: str = ""

    @property
    def query_ids(self) -> list[str]:
        """Judged query ids, in first-seen order."""
        return list(dict.fromkeys(q.query_id for q in self.qrels))


def query_id_for(text: str) -> str:
    """A stable id for a query text (whitespace-trimmed, case kept): ``q`` + 12 hex digits of its sha1.

    >>> query_id_for("red lamp") == query_id_for(" red lamp ")
    True
    """
    return "q" + hashlib.sha1(text.strip().encode("utf-8")).hexdigest()[:12]


def query_texts(judgments: Judgments, queries_path: str | Path | None = None) -> dict[str, str]:
    """qid -> query text of a judgment list: the texts its file carries, and over them those of a ``qid<TAB>text``
    file when given (TREC qrels carry none), in that order. The console and ``judgments merge`` read a list's
    queries so, and then :func:`query_ids_by_text` decides which query a typed text is."""
    texts = dict(judgments.queries)
    if queries_path:
        texts.update((q.qid, q.text) for q in read_queries(queries_path))
    return texts


def query_ids_by_text(queries: Iterable[tuple[str, str]], judged: Container[str] = ()) -> dict[str, str]:
    """Which query a typed text is: its :func:`~shopsearch.text.normalise_query` form -> qid, for ``(qid, text)``
    pairs in file order. Of the qids whose texts normalise alike, the first judged one (in ``judged``) wins, else the
    first: a queries file may list "Red Lamp" unjudged beside a judged "red lamp". The relevance console and
    ``judgments merge`` resolve a query this way, so a grade given in the console lands on the query it showed
    (the console's page mirrors the rule for uploaded lists).

    >>> query_ids_by_text([("q0", "LAMP"), ("q1", "Lamp"), ("q2", "lamp")], judged={"q1", "q2"})
    {'lamp': 'q1'}
    """
    out: dict[str, str] = {}
    for qid, text in queries:
        key = normalise_query(text)
        if key not in out or (out[key] not in judged and qid in judged):
            out[key] = qid
    return out


def read_queries(path: str | Path) -> list[Query]:
    """Read a ``qid<TAB>query text`` file (blank lines skipped; qid and text trimmed).

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``path:line: ...`` for a line without a tab, an empty qid or text, or a repeated qid.

    >>> read_queries("queries-dev.tsv")[0]  # doctest: +SKIP
    Query(qid='cfq001', text='16 gb memory card')
    """
    path = Path(path)
    out: list[Query] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            qid, sep, text = line.partition("\t")
            qid, text = qid.strip(), text.strip()
            if not sep:
                raise ValueError(f"{path}:{n}: expected 'qid<TAB>query text', found no tab in {line[:80]!r}")
            if not qid or not text:
                raise ValueError(f"{path}:{n}: empty {'qid' if not qid else 'query text'} in {line[:80]!r}")
            if qid in seen:
                raise ValueError(f"{path}:{n}: qid {qid!r} appears twice")
            seen.add(qid)
            out.append(Query(qid, text))
    return out


def read_qrels(path: str | Path) -> list[Qrel]:
    """Read TREC qrels: ``qid iteration doc_id grade`` per line, whitespace-separated (blank lines skipped).

    A grade written ``2.0`` reads as 2; the iteration field is kept as written.

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``path:line: ...`` for a wrong field count, a non-integer grade or a repeated (qid, doc_id).

    >>> read_qrels("qrels-dev.txt")[0]  # doctest: +SKIP
    Qrel(query_id='cfq001', doc_id='cf00153', relevance=3, iteration='0')
    """
    path = Path(path)
    out: list[Qrel] = []
    seen: set[tuple[str, str]] = set()
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise ValueError(f"{path}:{n}: expected 4 fields 'qid iteration doc_id grade', got {len(parts)} "
                                 f"in {line.strip()[:80]!r}")
            qid, iteration, doc, grade = parts
            _add(out, seen, path, n, qid, doc, int_grade(path, n, grade, "grade"), iteration)
    return out


def qrels_field(value: object) -> bool:
    """Whether ``value`` can be a field of a TREC qrels line: non-empty, without whitespace (it would split the
    line).

    >>> qrels_field("p9"), qrels_field("SKU 1"), qrels_field("")
    (True, False, False)
    """
    return bool(value) and len(str(value).split()) == 1


def write_qrels(path: str | Path, qrels: Iterable[Qrel]) -> int:
    """Write TREC qrels, ``qid iteration doc_id grade`` per line, in the order given (what :func:`read_qrels` reads).

    Returns:
        The number of lines written.
    Raises:
        ValueError: an empty id or one with whitespace (it would split the line), or a repeated (qid, doc_id).

    >>> write_qrels("qrels-clicks.txt", [Qrel("q1", "p9", 3)])  # doctest: +SKIP
    1
    """
    lines, seen = [], set()
    for q in qrels:
        for name, value in (("query_id", q.query_id), ("doc_id", q.doc_id), ("iteration", q.iteration)):
            if not qrels_field(value):
                raise ValueError(f"qrels {name} must be non-empty without whitespace; got {value!r}")
        if (q.query_id, q.doc_id) in seen:
            raise ValueError(f"judgment for ({q.query_id}, {q.doc_id}) appears twice")
        seen.add((q.query_id, q.doc_id))
        lines.append(f"{q.query_id} {q.iteration} {q.doc_id} {int(q.relevance)}\n")
    write_atomically(path, "".join(lines))
    return len(lines)


def write_queries(path: str | Path, queries: Iterable[Query]) -> int:
    """Write a ``qid<TAB>query text`` file (what :func:`read_queries` reads).

    Returns:
        The number of lines written.
    Raises:
        ValueError: an empty or repeated qid, a qid with whitespace, or a text that is blank or holds a tab or
            line break.

    >>> write_queries("queries-clicks.tsv", [Query("q1", "red lamp")])  # doctest: +SKIP
    1
    """
    lines, seen = [], set()
    for q in queries:
        if not q.qid or len(q.qid.split()) != 1 or q.qid in seen:
            raise ValueError(f"query qid must be non-empty, without whitespace and unique; got {q.qid!r}")
        if not q.text.strip() or any(c in q.text for c in "\t\r\n"):
            raise ValueError(f"query text must be non-blank without tabs or line breaks; got {q.text!r}")
        seen.add(q.qid)
        lines.append(f"{q.qid}\t{q.text}\n")
    write_atomically(path, "".join(lines))
    return len(lines)


def _norm(name: str) -> str:
    return name.strip().lstrip("\ufeff").lower().replace(" ", "_").replace("-", "_")


def _first_line(path: Path) -> str:
    with path.open(encoding="utf-8-sig") as f:
        for line in f:
            if line.strip():
                return line.rstrip("\r\n")
    return ""


def _delimiter(header: str) -> str:
    """Tab when the header has one (WANDS ships tab-separated .csv files), else comma (or semicolon)."""
    if "\t" in header:
        return "\t"
    return ";" if header.count(";") > header.count(",") else ","


def detect_format(path: str | Path) -> str:
    """Guess a judgment file's format from its header (or, for TREC, its first line's shape).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the shape matches no format (the message lists what each format looks like).

    >>> detect_format("qrels-dev.txt")  # doctest: +SKIP
    'trec'
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"judgments file not found: {path}")
    if path.suffix.lower() == ".parquet":
        return "esci"
    first = _first_line(path)
    if not first.strip():
        raise ValueError(f"{path}: the file is empty: no judgments to read")
    cols = {_norm(c) for c in next(csv.reader([first], delimiter=_delimiter(first)), [])}
    for fmt, needed in (("esci", _ESCI_COLS), ("quepid", _QUEPID_COLS), ("wands", _WANDS_COLS),
                        ("csv", _CSV_COLS)):
        if set(needed) <= cols:
            return fmt
    parts = first.split()
    if len(parts) == 4 and re.fullmatch(r"-?\d+(\.0*)?", parts[3]):  # 2 or 2.0, as read_qrels reads them
        return "trec"
    raise ValueError(
        f"{path}:1: cannot tell the judgment format from {first[:80]!r}; expected TREC 'qid 0 doc grade', or a "
        f"header with {','.join(_CSV_COLS)} (csv), {','.join(_ESCI_COLS)} (esci), id,{','.join(_WANDS_COLS)} "
        f"(wands) or 'Query Text','Doc ID','Rating' (quepid); choose one with --format")


def read_judgments(path: str | Path, fmt: str | None = None, *, queries_path: str | Path | None = None) -> Judgments:
    """Read a judgment list.

    Args:
        path: the judgments file (TREC qrels, CSV/TSV with a header, or ESCI parquet).
        fmt: one of :data:`FORMATS`; default: :func:`detect_format`.
        queries_path: WANDS only: the query file (``query_id, query``); default ``query.csv`` beside ``path``
            when it exists (otherwise the queries map stays empty).

    Returns:
        Judgments with qrels in file order and the query texts the file (or WANDS query file) carries.

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``path:line: ...`` for a missing column, bad grade or label, empty id, a repeated
            (query, doc) pair, or one query id with two texts; or an unknown ``fmt``.

    >>> j = read_judgments("judgments.csv")  # doctest: +SKIP
    >>> j.format, j.qrels[0]  # doctest: +SKIP
    ('csv', Qrel(query_id='q3c1e...', doc_id='p1', relevance=2, iteration='0'))
    """
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}; got {fmt!r}")
    fmt = fmt or detect_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"judgments file not found: {path}")
    if fmt == "trec":
        return Judgments(tuple(read_qrels(path)), {}, "trec", str(path))
    queries: dict[str, str] = {}
    if fmt == "wands":
        qpath = Path(queries_path) if queries_path else path.with_name("query.csv")
        if queries_path or qpath.is_file():
            queries = _read_wands_queries(qpath)
    rows = _parquet_rows(path) if path.suffix.lower() == ".parquet" else table_rows(path)
    return _from_rows(path, fmt, rows, queries)


def table_rows(path: Path, text: str | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row keyed by normalised column name) for a delimited file with a header: the CSV, ESCI,
    WANDS and Quepid readers' rows, and the console's grade list's.

    Args:
        path: the file, read unless ``text`` is given (then only named in errors).
        text: the file's text, already read.
    Raises:
        ValueError: ``path:line: ...`` for a row with another number of columns than the header, a field the
            csv module refuses (a stray quote that swallows the rest of the file), or no header at all.
    """
    if text is None:
        text = path.read_bytes().decode("utf-8-sig")  # not read_text: a quoted carriage return is kept as written
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first))
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1  # where the record begins: a stray quote's line, not where the file ran out
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ValueError(f"{path}:{start}: {exc} (an unclosed quote?)") from None
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = [_norm(c) for c in cells]
            continue
        if len(cells) != len(header):
            if reader.line_num > start and len(cells) < len(header):
                raise ValueError(f"{path}:{start}: an unclosed quote: lines {start}-{reader.line_num} were read as "
                                 f"one row of {len(cells)} columns (the header has {len(header)})")
            raise ValueError(f"{path}:{reader.line_num}: expected {len(header)} columns ({', '.join(header)}), "
                             f"got {len(cells)}")
        yield reader.line_num, dict(zip(header, cells))
    if header is None:
        raise ValueError(f"{path}:1: empty file (expected a header row)")


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """ESCI's parquet examples file, row by row (the 'line' is the 1-based row number plus 1 for a header)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = [_norm(c) for c in table.column_names]
    for i, row in enumerate(table.to_pylist(), start=2):
        yield i, {n: "" if v is None else str(v) for n, v in zip(names, row.values())}


def _need(path: Path, fmt: str, row: dict[str, str], cols: tuple[str, ...]) -> None:
    missing = [c for c in cols if c not in row]
    if missing:
        raise ValueError(f"{path}:1: {fmt} judgments need columns {', '.join(cols)}; missing {', '.join(missing)}")


def _from_rows(path: Path, fmt: str, rows: Iterator[tuple[int, dict[str, str]]],
               queries: dict[str, str]) -> Judgments:
    cols, parse = _PARSERS[fmt]
    out: list[Qrel] = []
    seen: set[tuple[str, str]] = set()
    checked = False
    for n, row in rows:
        if not checked:  # every row has the header's columns, so checking the first is enough
            _need(path, fmt, row, cols)
            checked = True
        parsed = parse(path, n, row)
        if parsed is None:  # an unrated row (Quepid exports every shown doc)
            continue
        qid, doc, grade, text = parsed
        if text is not None:
            old = queries.setdefault(qid, text)
            if old != text:
                raise ValueError(f"{path}:{n}: query id {qid!r} has text {text!r} here but {old!r} earlier")
        _add(out, seen, path, n, qid, doc, grade)
    return Judgments(tuple(out), queries, fmt, str(path))


def _add(out: list[Qrel], seen: set[tuple[str, str]], path: Path, n: int, qid: str, doc: str, grade: int,
         iteration: str = "0") -> None:
    if not qid or not doc:
        raise ValueError(f"{path}:{n}: empty {'query id' if not qid else 'doc id'}")
    if "\n" in doc or "\r" in doc:  # no product id spans lines: a stray quote above joined rows into this one
        raise ValueError(f"{path}:{n}: doc id {doc!r} spans lines: an unclosed quote joined rows into one")
    if (qid, doc) in seen:
        raise ValueError(f"{path}:{n}: judgment for ({qid}, {doc}) appears twice")
    seen.add((qid, doc))
    out.append(Qrel(qid, doc, grade, iteration))


def int_grade(path: Path, n: int, value: str, column: str) -> int:
    """``value`` as an integer grade (``3`` or ``3.0``); ``ValueError("path:line: ...")`` otherwise."""
    try:
        number = float(value.strip())
    except ValueError:
        raise ValueError(f"{path}:{n}: {column} must be an integer, got {value!r}") from None
    if not number.is_integer():
        raise ValueError(f"{path}:{n}: {column} must be an integer, got {value!r}")
    return int(number)


def _label(path: Path, n: int, value: str, table: dict[str, int], fmt: str) -> int:
    grade = table.get(value.strip().lower())
    if grade is None:
        allowed = sorted({k for k in table if len(k) > 1})
        raise ValueError(f"{path}:{n}: {fmt} label must be one of {', '.join(allowed)}, got {value!r}")
    return grade


def _csv_row(path: Path, n: int, row: dict[str, str]) -> tuple[str, str, int, str]:
    text = from_text_cell(row["query"].strip())
    if not text:
        raise ValueError(f"{path}:{n}: empty query")
    return query_id_for(text), row["product_id"].strip(), int_grade(path, n, row["grade"], "grade"), text


def _esci_row(path: Path, n: int, row: dict[str, str]) -> tuple[str, str, int, str]:
    text = row["query"].strip()
    if not text:  # run as a browse, it would score 0 in every mean
        raise ValueError(f"{path}:{n}: empty query")
    return (row["query_id"].strip(), row["product_id"].strip(), _label(path, n, row["esci_label"], ESCI_GRADES,
                                                                         "esci"), text)


def _wands_row(path: Path, n: int, row: dict[str, str]) -> tuple[str, str, int, None]:
    return row["query_id"].strip(), row["product_id"].strip(), _label(path, n, row["label"], WANDS_GRADES,
                                                                        "wands"), None


def _quepid_row(path: Path, n: int, row: dict[str, str]) -> tuple[str, str, int, str] | None:
    if not row["rating"].strip():
        return None
    text = from_text_cell(row["query_text"].strip())
    if not text:
        raise ValueError(f"{path}:{n}: empty Query Text")
    return query_id_for(text), row["doc_id"].strip(), int_grade(path, n, row["rating"], "Rating"), text


# A cell a spreadsheet would run as a formula starts with one of these (OWASP's CSV injection list).
_FORMULA = re.compile(r"^'*[=+\-@\t\r]")


def as_text_cell(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet shows as text: one that starts like a formula gets a leading
    apostrophe, as does one whose apostrophes stand before such a start, so :func:`from_text_cell` undoes it exactly.

    >>> as_text_cell("=SUM(A1:A9)"), as_text_cell("Red lamp"), as_text_cell("'=x")
    ("'=SUM(A1:A9)", 'Red lamp', "''=x")
    """
    return "'" + text if _FORMULA.match(text) else text


def from_text_cell(text: str) -> str:
    """The text :func:`as_text_cell` was given (a cell without its mark is left as it is).

    >>> from_text_cell("'=SUM(A1:A9)"), from_text_cell("''=x"), from_text_cell("'quoted'")
    ('=SUM(A1:A9)', "'=x", "'quoted'")
    """
    return text[1:] if text.startswith("'") and _FORMULA.match(text[1:]) else text


_PARSERS: dict[str, tuple[tuple[str, ...], Callable]] = {
    "csv": (_CSV_COLS, _csv_row), "esci": (_ESCI_COLS, _esci_row), "wands": (_WANDS_COLS, _wands_row),
    "quepid": (_QUEPID_COLS, _quepid_row),
}


def _read_wands_queries(path: Path) -> dict[str, str]:
    """WANDS ``query.csv``: query_id, query (and query_class, ignored)."""
    if not path.is_file():
        raise FileNotFoundError(f"WANDS query file not found: {path}")
    out: dict[str, str] = {}
    for n, row in table_rows(path):
        if "query_id" not in row or "query" not in row:
            raise ValueError(f"{path}:1: WANDS query file needs columns query_id, query; got {', '.join(row)}")
        qid, text = row["query_id"].strip(), row["query"].strip()
        if not qid or not text:
            raise ValueError(f"{path}:{n}: empty {'query_id' if not qid else 'query'}")
        out[qid] = text
    return out
