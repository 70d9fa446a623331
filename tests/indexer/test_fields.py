"""Field mapping: identity default, TOML files, attributes as listed columns or "the rest"."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from shopsearch.config_files import read_toml
from shopsearch.indexer.fields import (FieldMapping, apply_mapping, field_mapping_schema, load_field_mapping,
                                       mapping_from_dict)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "indexer" / "fields.example.toml"
SCHEMA_FILE = ROOT / "docs" / "schemas" / "fields.schema.json"


def test_identity_mapping_puts_unmapped_columns_in_attributes():
    m = apply_mapping({"id": "1", "title": "Lamp", "color": "red", "attributes": {"size": "L"}}, FieldMapping())
    assert m["id"] == "1" and m["title"] == "Lamp" and m["price"] is None
    assert m["attributes"] == {"color": "red", "size": "L"}


def test_listed_attribute_columns_only():
    mapping = FieldMapping(id="sku", title="name", attributes=("color",))
    m = apply_mapping({"sku": "9", "name": "Mug", "color": "blue", "junk": "x"}, mapping)
    assert (m["id"], m["title"], m["attributes"]) == ("9", "Mug", {"color": "blue"})


def test_example_file_loads_and_maps():
    mapping = load_field_mapping(EXAMPLE)
    assert mapping.id == "sku" and mapping.title == "product_name" and mapping.category == "breadcrumb"
    assert mapping.attributes == ("color", "size", "material")
    assert mapping.limits.title_chars == 1000 and mapping.limits.rating_max == 5.0


def test_empty_string_switches_a_field_off_and_limits_override(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text('brand = ""\nattributes = "rest"\n[limits]\ntitle_chars = 20\n')
    mapping = load_field_mapping(path)
    assert mapping.brand is None and mapping.limits.title_chars == 20
    assert apply_mapping({"id": "1", "title": "t", "brand": "Acme"}, mapping)["attributes"] == {"brand": "Acme"}


@pytest.mark.parametrize("data, message", [
    ({"titel": "name"}, r"^field mapping: titel = 'name': must be one of the keys allowed at the top level: id, "
                        r"title, description, .*, attributes, facet_attributes, limits$"),
    ({"id": ""}, r"id = '': must be a non-empty string"),
    ({"attributes": 3}, r'attributes = 3: must be "rest" or a list of column names'),
    ({"price": 1}, r'price = 1: must be a column name, or "" when the catalog has none'),
    ({"limits": {"title_chars": 0}}, r"limits\.title_chars = 0: must be an integer > 0"),
    ({"limits": {"id_chars": 512}}, r"limits\.id_chars = 512: must be an integer > 0 and <= 100"),
    ({"limits": {"rating_max": "5"}}, r"limits\.rating_max = '5': must be a number > 0"),
    ({"limits": {"tittle_chars": 5}}, r"limits\.tittle_chars = 5: must be one of the keys allowed in \[limits\]: "
                                      r"id_chars, title_chars, "),
    ({"limits": 3}, r"limits = 3: must be a table"),
])
def test_bad_mapping_is_rejected_with_a_clear_message(data, message):
    with pytest.raises(ValueError, match=message):
        mapping_from_dict(data)
    assert not jsonschema.Draft202012Validator(field_mapping_schema()).is_valid(data)


def test_committed_json_schema_is_current():
    assert json.loads(SCHEMA_FILE.read_text()) == field_mapping_schema(), "stale: run `shopsearch schema`"


def test_example_file_validates_against_the_json_schema():
    jsonschema.Draft202012Validator(field_mapping_schema()).validate(read_toml(EXAMPLE))


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_field_mapping(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("id = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_field_mapping(bad)
