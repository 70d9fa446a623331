"""index.toml: the packaged file loads, its JSON Schema is current, bad keys name file/key/value/allowed."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from shopsearch.config_files import read_toml
from shopsearch.plugin.index_config import CONFIG_DIR, IndexConfig, index_file_schema, load_index_config

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "index.schema.json"


def test_packaged_file_loads_with_its_synonyms_and_validates_against_the_schema():
    config = load_index_config()
    assert (config.hnsw_m, config.ef_construction, config.chunk_size) == (16, 100, 500) and config.synonyms
    jsonschema.Draft202012Validator(index_file_schema()).validate(read_toml(CONFIG_DIR / "index.toml"))
    assert json.loads(SCHEMA_FILE.read_text()) == index_file_schema(), "stale: run `shopsearch schema`"


def test_keys_left_out_take_the_defaults(tmp_path):
    path = tmp_path / "index.toml"
    path.write_text("[bulk]\nchunk_size = 50\n")
    assert load_index_config(path) == IndexConfig(chunk_size=50)


@pytest.mark.parametrize("text, message", [
    ("[vectors]\nm = 0\n", r"index\.toml: vectors\.m = 0: must be an integer > 0"),
    ("[vectors]\nm = \"16\"\n", r"vectors\.m = '16': must be an integer > 0"),
    ("[bulk]\nchunk = 5\n", r"bulk\.chunk = 5: must be one of the keys allowed in \[bulk\]: chunk_size, "),
    ("[bulk]\ninitial_backoff = -1\n", r"bulk\.initial_backoff = -1: must be a number >= 0"),
    ("[analyzer]\n", r"analyzer = \{\}: must be one of the keys allowed at the top level: vectors, analysis, "
                    r"cluster, bulk"),
    ("[cluster]\nshards = 0\n", r"cluster\.shards = 0: must be an integer >= 1"),
    ("[cluster]\nauto_expand_replicas = \"some\"\n", r"cluster\.auto_expand_replicas = 'some'"),
    ("[bulk]\nrefresh_interval = \"soon\"\n", r"bulk\.refresh_interval = 'soon'"),
])
def test_bad_keys_are_named(tmp_path, text, message):
    path = tmp_path / "index.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_index_config(path)
    assert not jsonschema.Draft202012Validator(index_file_schema()).is_valid(read_toml(path))


def test_missing_synonyms_file(tmp_path):
    path = tmp_path / "index.toml"
    path.write_text('[analysis]\nsynonyms_file = "nope.txt"\n')
    with pytest.raises(FileNotFoundError):
        load_index_config(path)


def test_cluster_layout_reaches_the_index_body_and_the_serving_settings(tmp_path):
    from shopsearch.plugin.index_config import opensearch_index_body

    path = tmp_path / "index.toml"
    path.write_text('[cluster]\nshards = 3\nreplicas = 2\nauto_expand_replicas = ""\nrefresh_interval = "5s"\n')
    config = load_index_config(path)
    settings = opensearch_index_body(config, 8)["settings"]["index"]
    assert (settings["number_of_shards"], settings["number_of_replicas"], settings["refresh_interval"]) == (3, 2, "5s")
    assert config.bulk_settings()["number_of_replicas"] == 0
    default = load_index_config()
    assert default.serving_settings()["auto_expand_replicas"] == "0-1"
    assert "number_of_replicas" not in default.serving_settings()  # auto-expand decides
    override = default.with_layout(shards=2, replicas=1)
    assert (override.shards, override.serving_settings()["number_of_replicas"],
            override.serving_settings()["auto_expand_replicas"]) == (2, 1, "false")
    with pytest.raises(ValueError, match="replicas=-1 must be an integer >= 0"):
        default.with_layout(replicas=-1)


def test_a_synonyms_file_reads_as_solr_does(tmp_path):
    from shopsearch.plugin.synonyms import load_synonyms
    from shopsearch.plugin.text_analysis import parse_synonyms

    saved = tmp_path / "shop.synonyms.txt"  # as Notepad or Excel save it: a BOM before a first comment
    saved.write_bytes("\ufeff# Synonyms for Acme, from Excel\ncouch, sofa\n".encode("utf-8"))
    assert len(load_synonyms(saved)) == 2  # couch and sofa; the comment is no rule
    (escaped,) = parse_synonyms(["tv\\, hdtv, television"])
    assert escaped.inputs == (("tv", "hdtv"), ("television",))
    with pytest.raises(ValueError, match="synonyms line 1: .* more than one '=>'"):
        parse_synonyms(["a => b => c"])
    saved.write_bytes("canap\xe9, sofa\n".encode("latin-1"))  # an editor's Latin-1: named, not a codec's message
    with pytest.raises(ValueError, match=r"shop.synonyms.txt: not UTF-8 text \(byte b'\\xe9' at offset 5\)"):
        load_synonyms(saved)
    with pytest.raises(ValueError, match=r"e.toml: not UTF-8 text"):
        (tmp_path / "e.toml").write_bytes(b"name = '\xff'\n")
        read_toml(tmp_path / "e.toml")
