"""``shopsearch schema``: the committed docs/schemas/ are what the models generate today."""

from __future__ import annotations

from pathlib import Path

from shopsearch.api.cli import main

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def test_committed_schemas_are_current(capsys):
    assert main(["schema", "--check", "--out", str(SCHEMAS)]) == 0, capsys.readouterr().err


def test_write_then_check_and_a_stale_file_is_named(tmp_path, capsys):
    assert main(["schema", "--out", str(tmp_path)]) == 0
    for name in ("profile.schema.json", "fields.schema.json", "index.schema.json", "experiments.schema.json"):
        assert (tmp_path / name).read_text() == (SCHEMAS / name).read_text()
    (tmp_path / "fields.schema.json").write_text("{}\n")
    capsys.readouterr()
    assert main(["schema", "--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "stale in" in err and "fields.schema.json" in err and "profile.schema.json" not in err
