"""The UBI 1.0.0 JSON Schemas of tests/schemas/ubi-1.0.0 as validators (format checks on: date-time, uuid).

``corrected=True`` reads the two overlapping string ``oneOf``s (``action_name``, ``query_id``) as ``anyOf``; see
tests/schemas/ubi-1.0.0/README.md and the test that shows why.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from shopsearch.plugin.ubi_store import record_json

SCHEMAS = Path(__file__).parent / "schemas" / "ubi-1.0.0"
OVERLAPPING = ("action_name", "query_id")


@lru_cache(maxsize=None)
def ubi_validator(name: str, corrected: bool = True) -> Draft202012Validator:
    """The validator of ``<name>.schema.json`` (event, query.request, query.response)."""
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    if corrected:
        for prop in OVERLAPPING:
            spec = schema["properties"].get(prop)
            if spec is not None and "oneOf" in spec:
                spec["anyOf"] = spec.pop("oneOf")
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def ubi_errors(kind: str, record: Any) -> list[str]:
    """Every schema violation of a record dumped as JSON (``kind``: "query" checks both query schemas)."""
    names = ("query.request", "query.response") if kind == "query" else ("event",)
    doc = json.loads(record_json(record)) if hasattr(record, "model_dump_json") else record
    return [f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
            for name in names for e in ubi_validator(name).iter_errors(doc)]
