"""Config-file validation: one line per bad key (file, dotted key, value, what is allowed), read from the schema."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field, field_validator, model_validator

from shopsearch.config_files import FILE_MODEL, file_schema, must, read_toml, validate_file


class Inner(BaseModel):
    model_config = FILE_MODEL
    size: int = Field(10, ge=1, le=100)
    mode: Literal["a", "b"] = "a"
    boosts: dict[Literal["x", "y"], float] = {}
    name: str = "n"

    @field_validator("name")
    @classmethod
    def _no_slash(cls, value: str) -> str:
        if "/" in value:
            raise must("be a name, not a path {like/this}")
        return value


class Doc(BaseModel):
    model_config = FILE_MODEL
    flag: bool = True
    inner: Inner = Field(default_factory=Inner)

    @model_validator(mode="after")
    def _rule(self) -> "Doc":
        if not self.flag and self.inner.size > 50:
            raise ValueError("flag = false and inner.size > 50: must not both hold")
        return self


@pytest.mark.parametrize("data, line", [
    ({"inner": {"size": 0}}, "f.toml: inner.size = 0: must be an integer >= 1 and <= 100"),
    ({"inner": {"mode": "c"}}, "f.toml: inner.mode = 'c': must be one of a, b"),
    ({"inner": {"boosts": {"z": 1.0}}}, "f.toml: inner.boosts.z = 1.0: must be one of the keys allowed in "
                                        "[inner.boosts]: x, y"),
    ({"inner": {"boosts": {"x": "1"}}}, "f.toml: inner.boosts.x = '1': must be a number"),
    ({"inner": {"name": "a/b"}}, "f.toml: inner.name = 'a/b': must be a name, not a path {like/this}"),
    ({"inner": 3}, "f.toml: inner = 3: must be a table"),
    ({"flag": "yes"}, "f.toml: flag = 'yes': must be true or false"),
    ({"extra": 1}, "f.toml: extra = 1: must be one of the keys allowed at the top level: flag, inner"),
    ({"flag": False, "inner": {"size": 60}}, "f.toml: flag = false and inner.size > 50: must not both hold"),
])
def test_each_error_names_file_key_value_and_allowed(data, line):
    with pytest.raises(ValueError) as info:
        validate_file(Doc, data, "f.toml")
    assert str(info.value) == line


def test_several_bad_keys_give_several_lines_and_the_error_type_is_kept():
    class Bad(ValueError):
        pass

    with pytest.raises(Bad) as info:
        validate_file(Doc, {"flag": 1, "inner": {"size": 500}}, "f.toml", Bad)
    assert len(str(info.value).splitlines()) == 2


def test_read_toml_and_the_schema_header(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[x\n")
    with pytest.raises(ValueError, match=r"bad\.toml: not valid TOML"):
        read_toml(bad)
    schema = file_schema(Doc, title="doc", source="tests")
    assert schema["title"] == "doc" and "shopsearch schema" in schema["$comment"]
    assert schema["additionalProperties"] is False
