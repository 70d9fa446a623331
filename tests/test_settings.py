"""The one settings module: layering, validation messages, the generated reference, no other environment reader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shopsearch.api.cli import main
from shopsearch.settings import child_environment, describe_settings, env_var, load_settings, reference_markdown

REPO = Path(__file__).resolve().parents[1]


def test_layers_defaults_file_environment_flags(tmp_path):
    config = tmp_path / "shop.toml"
    config.write_text('index = "from-file"\nengine = "opensearch"\n\n[api]\nmax_size = 30\nmax_events = 9\n')
    env = {"SHOPSEARCH_CONFIG": str(config), "SHOPSEARCH_MAX_SIZE": "40", "SHOPSEARCH_INDEX": ""}
    s = load_settings({"max_events": 3, "model": None}, environ=env)
    assert s.engine == "opensearch" and s.index == "from-file"  # file over defaults; an empty variable is unset
    assert s.max_size == 40 and s.max_events == 3  # environment over file, flags over environment
    assert s.model == "all-MiniLM-L6-v2" and s.max_depth == 1000  # None flags fall through to the defaults
    assert (s.origin("index"), s.origin("max_size"), s.origin("max_events"), s.origin("max_depth")) == (
        str(config), "$SHOPSEARCH_MAX_SIZE", "flags", "default")


def test_derived_paths_follow_home():
    s = load_settings({"home": "/srv/shop"}, environ={})
    assert (s.models_dir, s.events_dir, s.embedded_dir, s.onnx_dir) == (
        Path("/srv/shop/models"), Path("/srv/shop/events"), Path("/srv/shop/embedded"), Path("/srv/shop/onnx"))
    assert load_settings(environ={"SHOPSEARCH_MODELS": "/m", "SHOPSEARCH_HOME": "/h"}).models_dir == Path("/m")
    moved = s.replace(home="/other")
    assert moved.models_dir == Path("/other/models") and moved.index == s.index


def test_legacy_variable_names_are_kept():
    env = {"OPENSEARCH_URL": "https://search.example:9200", "OPENSEARCH_USER": "admin",
           "OPENSEARCH_PASSWORD": "s3cret", "OPENSEARCH_VERIFY_CERTS": "false", "SHOPSEARCH_ENGINE_TIMEOUT": "2.5"}
    s = load_settings(environ=env)
    assert s.opensearch_url == "https://search.example:9200" and s.opensearch_verify_certs is False
    assert s.opensearch_password.get_secret_value() == "s3cret" and s.engine_timeout_s == 2.5
    assert "s3cret" not in repr(s) and "s3cret" not in describe_settings(s)
    assert env_var("models_dir") == "SHOPSEARCH_MODELS" and env_var("max_size") == "SHOPSEARCH_MAX_SIZE"


def test_a_path_with_a_tilde_names_the_home_folder(tmp_path, monkeypatch):
    s = load_settings(environ={"SHOPSEARCH_MERCHANDISING_DIR": "~/merch", "SHOPSEARCH_PROFILES": "~old/profiles"})
    assert s.merchandising_dir == Path.home() / "merch"
    assert s.profiles_dir == Path("~old/profiles")  # ~name is a folder's name, not another account's home
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "shop.toml").write_text("max_size = 30\n")
    assert load_settings(environ={"SHOPSEARCH_CONFIG": "~/shop.toml"}).max_size == 30


def test_what_config_prints_is_a_settings_file_that_reads_back(tmp_path):
    env = {"OPENSEARCH_URL": "https://admin:pw123@search.example:9200", "OPENSEARCH_USER": "admin",
           "OPENSEARCH_PASSWORD": "s3cret", "SHOPSEARCH_MAX_SIZE": "40", "SHOPSEARCH_FACET_PRICE_EDGES": "10,20.5"}
    printed = describe_settings(load_settings(environ=env))
    assert "pw123" not in printed and "s3cret" not in printed  # a password in the URL is not shown either
    assert "its credentials left out: set opensearch_user / opensearch_password" in printed
    (tmp_path / "s.toml").write_text(printed)
    back = load_settings({"config": tmp_path / "s.toml"}, environ={"OPENSEARCH_PASSWORD": "s3cret"})  # secrets: env
    assert (back.max_size, back.facet_price_edges, back.opensearch_url) == (40, (10.0, 20.5),
                                                                            "https://search.example:9200")
    assert back.experiments_file is None and back.opensearch_user == "admin"  # unset stays unset


@pytest.mark.parametrize(("overrides", "environ", "match"), [
    ({"max_sise": 1}, {}, "flags: unknown option 'max_sise'"),
    ({"max_size": "many"}, {}, r"max_size='many' \(from flags\): Input should be a valid integer"),
    ({}, {"SHOPSEARCH_ENGINE": "solr"}, r"engine='solr' \(from \$SHOPSEARCH_ENGINE\): Input should be"),
    ({"max_size": 0}, {}, "max_size=0 .*greater than 0"),
    ({"max_size": 500, "max_depth": 100}, {}, r"max_depth \(100\) must be >= max_size \(500\)"),
    ({}, {"OPENSEARCH_URL": "ftp://x"}, "opensearch_url='ftp://x' .*http"),
    ({}, {"OPENSEARCH_URL": "https://u:pw@host:99999"}, r"opensearch_url='https://host:99999' .*invalid port"),
    ({}, {"OPENSEARCH_URL": "http://a:9200,https://u:pw@b:1x"}, r"^opensearch_url='http://a:9200,https://b:1x' "
                                                                r"\(from \$OPENSEARCH_URL\): .*'https://b:1x': invalid "
                                                                r"port[^@]*$"),
    ({}, {"OPENSEARCH_URL": "http://a:9200,b:9200"}, r"'b:9200' must look like http\(s\)://host\[:port\]"),
    ({}, {"OPENSEARCH_URL": "http://a:9200,https://b:9200"}, "every node URL must use the same scheme"),
    ({}, {"OPENSEARCH_USER": "admin"}, "must be set together"),
    ({}, {"OPENSEARCH_VERIFY_CERTS": "maybe"}, "opensearch_verify_certs='maybe'"),
    ({"opensearch_heap": "lots"}, {}, "opensearch_heap='lots'"),
])
def test_bad_values_name_the_option_the_value_and_the_layer(overrides, environ, match):
    with pytest.raises(ValueError, match=match):
        load_settings(overrides, environ=environ)


def test_bad_config_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_settings({"config": str(tmp_path / "missing.toml")}, environ={})
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[api]\nengine = 'opensearch'\n")
    with pytest.raises(ValueError, match=r"option 'engine' belongs in \[engine\], not \[api\]"):
        load_settings({"config": str(wrong)}, environ={})
    wrong.write_text("[apis]\nmax_size = 3\n")
    with pytest.raises(ValueError, match=r"unknown section \[apis\]"):
        load_settings({"config": str(wrong)}, environ={})
    wrong.write_text("max_size = 'ten'\n")
    with pytest.raises(ValueError, match=f"max_size='ten' \\(from {re.escape(str(wrong))}\\)"):
        load_settings({"config": str(wrong)}, environ={})


def test_child_environment_carries_options():
    env = child_environment({"home": Path("/h"), "profiles_dir": "/p", "max_size": None})
    assert env["SHOPSEARCH_HOME"] == "/h" and env["SHOPSEARCH_PROFILES"] == "/p" and "SHOPSEARCH_MAX_SIZE" not in env
    with pytest.raises(ValueError, match="unknown option"):
        child_environment({"homes": "/h"})


def test_configuration_reference_is_current():
    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == reference_markdown(), "regenerate: shopsearch config --reference > docs/configuration.md"


def test_config_command(capsys, monkeypatch):
    monkeypatch.setenv("SHOPSEARCH_MAX_EVENTS", "7")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "max_events = 7  # $SHOPSEARCH_MAX_EVENTS" in out and "max_size = 100  # default" in out
    assert main(["config", "--reference"]) == 0
    assert capsys.readouterr().out == reference_markdown()


def test_no_module_but_settings_reads_the_environment():
    """Every other module receives settings; tests may set variables, the code may not read them."""
    readers = []
    for folder in ("shopsearch", "indexer", "plugin", "reranker", "api", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "shopsearch" / "settings.py":
                continue
            text = path.read_text(encoding="utf-8")
            if re.search(r"os\.environ|os\.getenv|environ\.get\(", text):
                readers.append(str(path.relative_to(REPO)))
    assert readers == [], f"read the environment outside shopsearch/settings.py: {readers}"


def test_several_opensearch_nodes():
    s = load_settings(environ={"OPENSEARCH_URL": " http://a:9200 , http://b:9201", "OPENSEARCH_SNIFF": "true",
                               "OPENSEARCH_POOL_MAXSIZE": "16"})
    assert s.opensearch_url == "http://a:9200,http://b:9201" and s.opensearch_urls == ["http://a:9200", "http://b:9201"]
    assert (s.opensearch_sniff, s.opensearch_pool_maxsize) == (True, 16)
    from shopsearch.plugin.connection import client_kwargs

    kwargs = client_kwargs(s)
    assert kwargs["hosts"] == ["http://a:9200", "http://b:9201"] and kwargs["pool_maxsize"] == 16
    assert kwargs["sniff_on_connection_fail"] and kwargs["sniffer_timeout"] == 60.0
    assert kwargs["http_compress"]  # not loopback
