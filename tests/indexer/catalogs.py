"""Hand-made catalog files for the job tests."""

from __future__ import annotations

import json
from pathlib import Path


def good_rows(n: int, start: int = 0) -> list[dict]:
    return [{"id": f"p{i:05d}", "title": f"Product {i} lamp", "description": f"Description of item {i}",
             "brand": ["Acme", "Globex", "Initech"][i % 3], "category": "Home > Lighting", "price": 5 + i % 50}
            for i in range(start, start + n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# line number (1-based) -> (raw bytes of the line, expected reason code)
BAD_LINES: dict[int, tuple[bytes, str]] = {
    3: (b'{"id": "bad1", "description": "no title"}', "missing_title"),
    5: (b'{"id": "bad2", "title": "Cheap", "price": "free"}', "bad_price"),
    6: (b'{"id": "bad3", "title": "Neg", "price": -1}', "bad_price"),
    8: (b'{"id": "bad4", "title": "Caf\xe9 latin-1"}', "undecodable"),
    9: (b'{"title": "no id"}', "missing_id"),
    11: (b'{"id": "p00001", "title": "Duplicate of line 2"}', "duplicate_id"),
    12: (('{"id": "bad5", "title": "' + "x" * 1200 + '"}').encode(), "oversize_title"),
    13: (b'{"id": "bad6", "title": "   "}', "missing_title"),
    14: (b'{"id": "bad7", "title": "Stars", "rating": "lots"}', "bad_rating"),
}


def write_corrupted(path: Path, n_good: int = 40) -> tuple[Path, list[dict]]:
    """``n_good`` valid products with the BAD_LINES spliced in and a truncated last line."""
    good = good_rows(n_good)
    lines: list[bytes] = []
    it = iter(good)
    total = n_good + len(BAD_LINES)
    for line_no in range(1, total + 1):
        if line_no in BAD_LINES:
            lines.append(BAD_LINES[line_no][0])
        else:
            lines.append(json.dumps(next(it)).encode())
    lines.append(b'{"id": "trunc", "title": "cut off mid')  # no newline: a crashed export
    path.write_bytes(b"\n".join(lines))
    return path, good


TRUNCATED_LINE = 40 + len(BAD_LINES) + 1
