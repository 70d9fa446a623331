"""Ranking profiles: the packaged files parse, defaults apply, errors name file/key/value/allowed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jsonschema
import pytest

from shopsearch.config_files import read_toml
from shopsearch.settings import load_settings
from shopsearch.plugin.profiles import (PACKAGED_DIR, Profile, ProfileError, ProfileStore, UnknownProfile,
                                        load_profile, parse_profile, profile_schema)

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "profile.schema.json"


def write(dir_, name, text):
    path = dir_ / f"{name}.toml"
    path.write_text(text)
    return path


def test_packaged_profiles_load_and_differ_in_legs():
    store = ProfileStore([PACKAGED_DIR])
    assert {"default", "bm25", "dense"} <= set(store.names())
    assert store.get("default").legs == ("bm25", "knn")
    assert store.get("bm25").legs == ("bm25",)
    assert store.get("dense").legs == ("knn",)
    for name in store.names():
        p = store.get(name)
        assert isinstance(p, Profile) and p.name == name and p.description



@pytest.mark.parametrize("name", ["rerank", "rerank-ce", "ltr", "ltr-ce"])
def test_reranking_profiles_retrieve_as_default_does(name):
    # they document "default's hybrid retrieval": what they add is measured against default, and a query default
    # finds nothing for must not match products through them (the vector thresholds)
    store = ProfileStore([PACKAGED_DIR])
    default, p = store.get("default"), store.get(name)
    assert (p.bm25, p.knn, p.fusion) == (default.bm25, default.knn, default.fusion)


@pytest.mark.parametrize("name", ["hybrid-minmax", "hybrid-zscore"])
def test_score_fusion_profiles_match_what_default_matches(name):
    # they fuse differently, but a shopper switching profile must not see products default holds back as
    # unrelated: the same two legs with the same vector thresholds
    store = ProfileStore([PACKAGED_DIR])
    default, p = store.get("default"), store.get(name)
    assert (p.bm25, p.knn) == (default.bm25, default.knn)
    assert p.fusion.method != default.fusion.method

def test_default_profile_is_fully_commented_and_typo_tolerant():
    text = (PACKAGED_DIR / "default.toml").read_text()
    keys = ["enabled", "size", "fuzziness", "tie_breaker", "k", "method", "rrf_k", "depth", "budget_ms", "model",
            "combine"]
    lines = text.splitlines()
    for key in keys:
        found = [i for i, ln in enumerate(lines) if ln.startswith(f"{key} =")]
        assert found, f"default.toml: {key} missing"
        for i in found:
            assert lines[i - 1].startswith("#"), f"default.toml: {key} (line {i + 1}) has no comment above it"
    assert "[conversion]" in text
    assert load_profile(PACKAGED_DIR / "default.toml").bm25.fuzziness is not None


def test_missing_keys_take_defaults():
    p = parse_profile({}, "empty")
    assert p.legs == ("bm25", "knn")
    assert (p.bm25.size, p.bm25.fuzziness, p.bm25.tie_breaker, p.knn.k) == (100, "AUTO", 0.3, 100)
    assert p.bm25.fields == {"title": 2.0, "description": 1.0}
    assert (p.fusion.method, p.fusion.rrf_k, p.fusion.weights) == ("rrf", 60.0, {"bm25": 1.0, "knn": 1.0})
    assert (p.rerank.depth, p.rerank.model, p.rerank.enabled) == (0, None, False)
    assert (p.conversion.depth, p.conversion.model, p.conversion.enabled) == (0, None, False)


def test_conversion_section_and_the_rerank_profile():
    p = parse_profile({"conversion": {"depth": 20, "model": "lgbm-sim"}}, "x")
    assert p.conversion.enabled and (p.conversion.depth, p.conversion.model) == (20, "lgbm-sim")
    assert not parse_profile({"conversion": {"depth": 20}}, "x").conversion.enabled
    rerank = ProfileStore([PACKAGED_DIR]).get("rerank")
    assert (rerank.rerank.model, rerank.rerank.depth, rerank.rerank.combine) == ("ce-minilm", 30, "rrf")
    assert (rerank.conversion.model, rerank.conversion.depth, rerank.conversion.combine) == ("lgbm-sim", 20, "rrf")


def test_values_are_parsed():
    p = parse_profile({"bm25": {"fields": {"title": 4}, "fuzziness": 1, "size": 50},
                       "fusion": {"method": "zscore", "weights": {"knn": 2.5}},
                       "rerank": {"depth": 50, "budget_ms": 80, "model": "ms-marco-MiniLM-L-6-v2"}}, "x")
    assert p.bm25.fields == {"title": 4.0}  # a fields table replaces the default set
    assert (p.bm25.fuzziness, p.bm25.size) == ("1", 50)
    assert p.fusion.weights == {"bm25": 1.0, "knn": 2.5}
    assert p.rerank.enabled and p.rerank.budget_ms == 80.0
    assert parse_profile({"bm25": {"fuzziness": False}}, "x").bm25.fuzziness is None
    assert parse_profile({"bm25": {"fuzziness": "off"}}, "x").bm25.fuzziness is None
    with pytest.raises(ProfileError, match="fuzziness = 'AUTO:4,7'"):  # not supported by the embedded engine
        parse_profile({"bm25": {"fuzziness": "AUTO:4,7"}}, "x")


@pytest.mark.parametrize("text, message", [
    ('[bm25]\nsize = 0\n', r"bad\.toml: bm25\.size = 0: must be an integer >= 1 and <= 1000"),
    ('[bm25]\nsize = "100"\n', r"bm25\.size = '100': must be an integer"),
    ('[bm25.fields]\nsku = 2.0\n', r"bm25\.fields\.sku = 2\.0: must be one of the keys allowed in \[bm25\.fields\]: "
                                   r"title, description, brand_text, category_text"),
    ('[bm25.fields]\ntitle = 0\n', r"bm25\.fields\.title = 0: must be a number > 0"),
    ('[bm25]\nfuzziness = "lots"\n', r"bm25\.fuzziness = 'lots': must be \"AUTO\""),
    ('[bm25]\ntie_breaker = 1.5\n', r"bm25\.tie_breaker = 1\.5: must be a number >= 0 and <= 1"),
    ('[fusion]\nmethod = "borda"\n', r"fusion\.method = 'borda': must be one of rrf, minmax, zscore"),
    ('[fusion]\nrrf_k = 0\n', r"fusion\.rrf_k = 0: must be a number > 0"),
    ('[fusion.weights]\ndense = 1\n', r"fusion\.weights\.dense = 1: must be one of the keys allowed"),
    ('[fusion.weights]\nbm25 = 0\nknn = 0\n', r"fusion\.weights = .*: must give an enabled leg a weight > 0"),
    ('[rerank]\ndepth = -1\n', r"rerank\.depth = -1: must be an integer >= 0"),
    ('[rerank]\nmodel = "models/ce"\n', r"rerank\.model = 'models/ce': must be a model name"),
    ('[rerank]\ncombine = "sum"\n', r"rerank\.combine = 'sum': must be one of none, rrf"),
    ('[conversion]\ncombine = "max"\n', r"conversion\.combine = 'max': must be one of none, rrf"),
    ('[conversion]\nrrf_k = 0\n', r"conversion\.rrf_k"),
    ('[rerank]\nrrf_k = -1\n', r"rerank\.rrf_k = -1: must be a number > 0"),
    ('[conversion]\ndepth = 1001\n', r"conversion\.depth = 1001: must be an integer >= 0 and <= 1000"),
    ('[conversion]\nmodel = 3\n', r"conversion\.model = 3: must be a string"),
    ('[conversion]\nbudget_ms = 3\n', r"conversion\.budget_ms = 3: must be one of the keys allowed in \[conversion\]"),
    ('[knn]\nenabled = "no"\n', r"knn\.enabled = 'no': must be true or false"),
    ('[bm25]\nenabled = false\n[knn]\nenabled = false\n', r"must enable at least one leg"),
    ('boost = 2\n', r"bad\.toml: boost = 2: must be one of the keys allowed at the top level: description, bm25, "),
    ('bm25 = 3\n', r"bm25 = 3: must be a table"),
    ('[bm25\n', r"bad\.toml: not valid TOML"),
])
def test_invalid_profiles_name_file_key_value_and_allowed(tmp_path, text, message):
    path = write(tmp_path, "bad", text)
    with pytest.raises(ProfileError, match=message):
        load_profile(path)
    assert issubclass(ProfileError, ValueError)


def test_committed_json_schema_is_current():
    assert json.loads(SCHEMA_FILE.read_text()) == profile_schema(), "stale: run `shopsearch schema`"


def test_packaged_profiles_validate_against_the_json_schema_and_the_model():
    validator = jsonschema.Draft202012Validator(profile_schema())
    paths = sorted(PACKAGED_DIR.glob("*.toml"))
    assert {"default.toml", "rerank.toml"} <= {p.name for p in paths}
    for path in paths:
        validator.validate(read_toml(path))
        load_profile(path)


@pytest.mark.parametrize("text", ['[bm25]\nsize = 0\n', '[bm25.fields]\nsku = 2.0\n', '[bm25]\nfuzziness = "lots"\n',
                                  '[fusion]\nmethod = "borda"\n', '[rerank]\nmodel = "models/ce"\n', 'boost = 2\n',
                                  '[conversion]\nbudget_ms = 3\n', '[knn]\nenabled = "no"\n',
                                  '[explore]\nshare = 1.5\n', '[explore]\ndepth = 1\n'])
def test_the_json_schema_rejects_what_the_model_rejects(tmp_path, text):
    path = write(tmp_path, "bad", text)
    with pytest.raises(ProfileError):
        load_profile(path)
    assert not jsonschema.Draft202012Validator(profile_schema()).is_valid(read_toml(path))


def test_every_bad_key_is_reported_on_its_own_line():
    with pytest.raises(ProfileError) as info:
        parse_profile({"bm25": {"size": 0, "tie_breaker": 2}, "boost": 1}, "x", "p.toml")
    assert str(info.value).splitlines() == [
        "p.toml: bm25.size = 0: must be an integer >= 1 and <= 1000",
        "p.toml: bm25.tie_breaker = 2: must be a number >= 0 and <= 1",
        "p.toml: boost = 1: must be one of the keys allowed at the top level: description, bm25, knn, fusion, "
        "rerank, conversion, explore"]


def test_store_user_dir_overrides_and_adds(tmp_path, monkeypatch):
    write(tmp_path, "default", 'description = "mine"\n[knn]\nenabled = false\n')
    write(tmp_path, "lexical-strict", '[bm25]\nfuzziness = false\n[knn]\nenabled = false\n')
    store = ProfileStore([PACKAGED_DIR, tmp_path])
    assert store.get("default").description == "mine"
    assert store.get("lexical-strict").bm25.fuzziness is None
    assert store.get("dense").legs == ("knn",)  # packaged ones still found
    assert "lexical-strict" in store.names()


def test_store_unknown_profile_lists_available():
    store = ProfileStore([PACKAGED_DIR])
    with pytest.raises(UnknownProfile, match=r"profile 'nope' does not exist; available: .*bm25.*default"):
        store.get("nope")
    with pytest.raises(UnknownProfile):
        store.get("../default")  # names are not paths
    assert issubclass(UnknownProfile, ValueError)


def test_store_rereads_an_edited_file(tmp_path):
    path = write(tmp_path, "p", 'description = "one"\n')
    store = ProfileStore([tmp_path])
    assert store.get("p").description == "one"
    path.write_text('description = "two"\n')
    later = time.time() + 5
    os.utime(path, (later, later))
    assert store.get("p").description == "two"


def test_store_rejects_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="profile folder .*nowhere.* does not exist"):
        ProfileStore([tmp_path / "nowhere"])


def test_default_store_adds_the_profiles_dir_setting(tmp_path, monkeypatch):
    write(tmp_path, "mine", '[knn]\nenabled = false\n')
    monkeypatch.setenv("SHOPSEARCH_PROFILES", str(tmp_path))
    store = ProfileStore()
    assert store.dirs == [PACKAGED_DIR, tmp_path]
    assert store.get("mine").legs == ("bm25",) and "default" in store.names()
    given = ProfileStore(settings=load_settings({"profiles_dir": tmp_path}, environ={}))
    assert given.dirs == [PACKAGED_DIR, tmp_path]
    monkeypatch.setenv("SHOPSEARCH_PROFILES", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"nowhere' does not exist \(check the profiles_dir setting, "
                                         r"\$SHOPSEARCH_PROFILES\)"):
        ProfileStore()
