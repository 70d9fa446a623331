"""``shopsearch schema``: write the JSON Schemas of the files a search engineer edits, into docs/schemas/."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_OUT = "docs/schemas"
HELP = """\
Write the JSON Schemas of ranking profiles (profile.schema.json, plugin/profiles/*.toml), field mappings
(fields.schema.json, indexer/fields.example.toml), index settings (index.schema.json, plugin/config/index.toml),
online experiments (experiments.schema.json, reranker/experiments.example.toml) and merchandising rules
(rules.schema.json, plugin/config/rules.example.toml).
They are generated from the pydantic models that validate those files, so schema and validation cannot drift;
--check exits 1 when a written copy is stale (a test runs it on the committed ones). Editors that read JSON Schema
(Taplo, VS Code's Even Better TOML; see .taplo.toml) then complete and check the files as they are typed.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``schema`` subcommand."""
    p = subparsers.add_parser("schema", help="write the JSON Schemas of profile, field-mapping, index, experiments "
                                             "and rules files",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help=f"folder to write them to (default {DEFAULT_OUT})")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file there is stale")
    p.set_defaults(run=run)


def schema_files() -> dict[str, str]:
    """Each schema file's name and text (the JSON, indented two spaces, ending in a newline).

    >>> sorted(schema_files())
    ['experiments.schema.json', 'fields.schema.json', 'index.schema.json', 'profile.schema.json', 'rules.schema.json']
    """
    from shopsearch.indexer.fields import field_mapping_schema
    from shopsearch.plugin.index_config import index_file_schema
    from shopsearch.plugin.merchandising_rules import rules_schema
    from shopsearch.plugin.profiles import profile_schema
    from shopsearch.reranker.experiments import experiments_schema

    schemas = {"profile.schema.json": profile_schema(), "fields.schema.json": field_mapping_schema(),
               "index.schema.json": index_file_schema(), "experiments.schema.json": experiments_schema(),
               "rules.schema.json": rules_schema()}
    return {name: json.dumps(schema, indent=2, ensure_ascii=False) + "\n" for name, schema in schemas.items()}


def run(args: argparse.Namespace) -> int:
    """Write (or with ``--check`` compare) the schema files; returns 0, or 1 when ``--check`` finds one stale."""
    out = Path(args.out)
    files = schema_files()
    stale = [name for name, text in files.items()
             if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text]
    if args.check:
        if not out.is_dir():  # run from another folder than the repository's, most often
            print(f"shopsearch schema: no folder {out.resolve()} to check; give --out", file=sys.stderr)
            return 1
        missing = [name for name in stale if not (out / name).is_file()]
        if stale:
            said = ", ".join(f"{name} (missing)" if name in missing else name for name in stale)
            print(f"shopsearch schema: stale in {out}: {said}; run `shopsearch schema --out {out}`", file=sys.stderr)
            return 1
        print(f"{out}: {len(files)} schemas up to date")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        print(out / name)
    return 0
