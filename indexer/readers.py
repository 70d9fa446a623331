"""Stream catalog rows from JSONL, CSV or Parquet, one ``RawRow`` at a time, never loading the whole file.

A row that cannot be read (bytes that are not UTF-8, a JSON line that does not parse, a CSV row with the wrong
number of cells) comes out as a ``RawRow`` with ``error`` set and the raw text kept for the quarantine file;
the stream carries on with the next row. Such a row still carries what could be read of it in ``data``, so an
incremental job can tell which product it meant and keep that product's stored version.

A UTF-8 byte-order mark at the start of a file is skipped. A CSV or TSV record that the csv module reads across
several lines because a field merely starts with a quote (``"Frozen doll``, closed rows later by an inch mark:
``32" TV``) is read as those lines' rows when each is a whole row by itself: a stray quote must not swallow the
products below it. In a CSV, a quoted cell of prose whose lines happen to hold a row's commas keeps its line
breaks: a record the strict quoting rules accept, with a space beside its commas (:func:`_prose`). A TSV whose header
holds no quote keeps the quotes in a cell that no quoting writer added (``"Frozen" doll`` from an unquoted export,
:func:`_kept_quotes`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from shopsearch.text import has_lone_surrogate

FORMATS = ("jsonl", "csv", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "csv",
             ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class RawRow:
    """One catalog row as read: ``data`` (column -> value) or ``error``, with its 1-based line/row number.

    ``line`` is the physical line for JSONL and CSV (where a CSV record starts) and the row number for Parquet.
    ``raw`` is the row's original text (undecodable bytes replaced by U+FFFD) for the quarantine file.
    With ``error`` set, ``data`` holds what could still be read (or None): only to tell which product it was.
    """

    source: str
    line: int
    data: dict[str, Any] | None
    raw: str
    error: str | None = None


def detect_format(path: str | Path) -> str:
    """The catalog format from the file suffix.

    Raises:
        ValueError: the suffix is not one of .jsonl/.ndjson/.json/.csv/.tsv/.parquet/.pq.

    >>> detect_format("products.jsonl")
    'jsonl'
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValueError(f"catalog {str(path)!r}: unknown format {suffix!r}; use one of {', '.join(_SUFFIXES)}")
    return _SUFFIXES[suffix]


def read_rows(path: str | Path, fmt: str | None = None, *, parquet_batch_rows: int = 4096) -> Iterator[RawRow]:
    """Yield every row of a catalog file in order.

    Args:
        path: the catalog file.
        fmt: "jsonl", "csv" or "parquet"; default from the suffix (:func:`detect_format`).
        parquet_batch_rows: rows per Parquet record batch (bounds memory).

    Returns:
        An iterator of RawRow; blank JSONL lines are skipped (they are not rows).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown ``fmt``.

    >>> next(read_rows("catalog.jsonl")).line  # doctest: +SKIP
    1
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if not path.is_file():
        raise FileNotFoundError(f"catalog not found: {path}")
    if fmt == "jsonl":
        return _read_jsonl(path)
    if fmt == "csv":
        return _read_csv(path)
    return _read_parquet(path, parquet_batch_rows)


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    src = str(path)
    with path.open("rb") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip(b"\r\n")
            if line_no == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                replaced = line.decode("utf-8", errors="replace")
                yield RawRow(src, line_no, _salvage(replaced), replaced, f"undecodable: not UTF-8 at byte {exc.start}")
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                reason = f"unparsable_json: {exc.msg.removesuffix(' at')} at column {exc.colno}"
                yield RawRow(src, line_no, _salvage(text), text, reason)
                continue
            if not isinstance(data, dict):
                yield RawRow(src, line_no, None, text, f"unparsable_json: expected an object, got {type(data).__name__}")
                continue
            yield RawRow(src, line_no, data, text)


# "key": "string" or "key": number, wherever it stands in a line that does not parse as a whole
_PAIR = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)')


def _salvage(text: str) -> dict[str, Any] | None:
    """The scalar members a broken JSON line still shows (the first of each key), or None: enough to name its id.

    >>> _salvage('{"id": "p1", "title": "lamp", "price": 9.5,}')
    {'id': 'p1', 'title': 'lamp', 'price': 9.5}
    """
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            return data
    except ValueError:
        pass
    out: dict[str, Any] = {}
    for m in _PAIR.finditer(text):
        try:
            out.setdefault(json.loads(f'"{m.group(1)}"'), json.loads(m.group(2)))
        except ValueError:
            continue
    return out or None


def _csv_raw(cells: list[str], dialect: Any) -> str:
    buf = io.StringIO()
    csv.writer(buf, dialect=dialect, lineterminator="").writerow(cells)
    # surrogateescape kept the undecodable bytes; show them as U+FFFD in the raw copy
    return buf.getvalue().encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _read_csv(path: Path) -> Iterator[RawRow]:
    src = str(path)
    # surrogateescape: a bad byte does not abort the file; the row carrying it is reported below
    # oversize cells must reach validation (which names the limit), not crash the csv module
    csv.field_size_limit(2**31 - 1)
    # utf-8-sig: a byte-order mark goes before the csv module reads a quoted first header
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        # .tsv is tab-separated, .csv comma-separated (sniffing guesses wrong on prose with commas)
        dialect: Any = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
        lines = _Lines(f)
        reader = csv.reader(lines, dialect)
        header = next(reader, None)
        if header is None:
            return
        # a TSV whose writer quoted only what needed it (its header holds no quote): keep the quotes it never added
        literal_quotes = dialect.delimiter == "\t" and not any('"' in line for line in lines.taken)
        header = [h.strip() for h in header]
        start = reader.line_num + 1
        while True:
            lines.taken.clear()
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line_no, start = start, reader.line_num + 1
                rows = _one_row_a_line(lines.taken, dialect, len(header))
                if rows is None:
                    yield RawRow(src, line_no, None, "", f"bad_csv_row: {exc}")
                for i, row in rows or ():
                    yield from _csv_row(src, line_no + i, header, row, dialect)
                continue
            line_no, start = start, reader.line_num + 1
            rows = _one_row_a_line(lines.taken, dialect, len(header)) if len(lines.taken) > 1 else None
            if rows is not None and dialect.delimiter != "\t" and _well_formed(lines.taken, dialect) and _prose(rows):
                rows = None  # a quoted cell of prose ("Lamp, red\nwarm, dim"), not rows a stray quote joined
            if rows is None and literal_quotes and len(lines.taken) == 1 and '"' in lines.taken[0]:
                cells = _kept_quotes(lines.taken[0], cells, dialect)
            for i, row in rows or [(0, cells)]:
                yield from _csv_row(src, line_no + i, header, row, dialect)


def _kept_quotes(line: str, cells: list[str], dialect: Any) -> list[str]:
    r"""A TSV line's cells, each keeping the quotes that no writer added: an unquoted export (``jq @tsv``, a
    database's) writes the title ``"Frozen" doll`` as it is, and the csv module reads it as ``Frozen doll``. A cell
    quoted whole, as a writer quotes (``"32"" TV"``, ``"Lamp, red"``), reads unquoted; so does the text ``"Best"``
    of an unquoted export, which no reader can tell from a quoted ``Best``.

    >>> _kept_quotes('p1\t"Frozen" doll\t"32"" TV"\n', ["p1", "Frozen doll", '32" TV'], csv.excel_tab)
    ['p1', '"Frozen" doll', '32" TV']
    """
    plain = next(csv.reader([line.rstrip("\r\n")], dialect, quoting=csv.QUOTE_NONE), [])
    if len(plain) != len(cells):  # a quoted cell held a tab: the writer quoted it, as it should
        return cells
    return [c if p == c or p == _quoted(c) else p for p, c in zip(plain, cells)]


def _quoted(cell: str) -> str:
    """``cell`` as a writer that quotes it writes it (a writer may quote a cell that needs no quotes)."""
    return '"' + cell.replace('"', '""') + '"'


class _Lines:
    """The file's lines as the csv module reads them, with those of the current record kept in ``taken``."""

    def __init__(self, f: Any) -> None:
        self.f, self.taken = f, []

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line = next(self.f)
        self.taken.append(line)
        return line


def _prose(rows: list[tuple[int, list[str]]]) -> bool:
    """Whether lines read as rows hold prose: a cell that starts or ends with a space (text puts one after its
    commas; a catalog's cells, as exported, do not). A TSV's prose holds no tabs, so its rows are never prose."""
    return any(cell != cell.strip() for _, cells in rows for cell in cells)


def _well_formed(lines: list[str], dialect: Any) -> bool:
    """Whether ``lines`` are one record by the strict rules: every quoted field closed by a quote that stands
    before a delimiter or the line's end (what a CSV writer makes of a text holding line breaks)."""
    try:
        return len(list(csv.reader(lines, dialect, strict=True))) == 1
    except csv.Error:
        return False


def _one_row_a_line(lines: list[str], dialect: Any, width: int) -> list[tuple[int, list[str]]] | None:
    """(index, cells) of each line, when every non-blank one of ``lines`` is a whole row of ``width`` cells by
    itself (read as CSV, or split at the delimiter with quotes as plain text); else None (a real multi-line record).

    >>> _one_row_a_line(['p1,"Frozen doll,9\\n', 'p2,TV 32",5\\n'], csv.excel, 3)  # read as one: p1's title ends at 32"
    [(0, ['p1', '"Frozen doll', '9']), (1, ['p2', 'TV 32"', '5'])]
    """
    rows = []
    for i, line in enumerate(lines):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        try:
            quoted = next(csv.reader([text], dialect), [])
            plain = quoted if len(quoted) == width else next(csv.reader([text], dialect, quoting=csv.QUOTE_NONE), [])
        except csv.Error:
            return None
        if len(plain) != width:
            return None
        rows.append((i, plain))
    return rows


def _csv_row(src: str, line_no: int, header: list[str], cells: list[str], dialect: Any) -> Iterator[RawRow]:
    """The RawRow of one record's ``cells`` (none for a blank record)."""
    if not cells or all(not c.strip() for c in cells):
        return
    raw = _csv_raw(cells, dialect)
    if any(has_lone_surrogate(c) for c in cells):
        yield RawRow(src, line_no, dict(zip(header, cells)), raw, "undecodable: not UTF-8")
    elif len(cells) != len(header):  # only the first cell is surely under its column (an id, most often)
        yield RawRow(src, line_no, {header[0]: cells[0]}, raw,
                     f"bad_csv_row: {len(cells)} cells, header has {len(header)}")
    else:
        yield RawRow(src, line_no, dict(zip(header, cells)), raw)


def _read_parquet(path: Path, batch_rows: int) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    src = str(path)
    row_no = 0
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_rows):
        for data in batch.to_pylist():
            row_no += 1
            yield RawRow(src, row_no, data, json.dumps(data, ensure_ascii=False, default=_raw_default))


def _raw_default(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return str(v)
