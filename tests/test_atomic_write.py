"""Files written whole and durably: old or new bytes, never half, the right mode, and flushed before a write returns."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from shopsearch import atomic_write
from shopsearch.atomic_write import folder_replaced, write_atomically


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_text_and_bytes_are_written_whole_with_the_mode_a_plain_write_gives(tmp_path):
    old = os.umask(0o027)
    try:
        assert write_atomically(tmp_path / "a.json", '{"ü": 1}')  # a new file: the umask's mode
        (tmp_path / "b.csv").write_text("old")
        (tmp_path / "b.csv").chmod(0o664)
        assert write_atomically(tmp_path / "b.csv", "new")  # a replaced file keeps its mode
        assert write_atomically(tmp_path / "secret", b"k" * 40, mode=0o600)  # a mode asked for wins
        assert write_atomically(tmp_path / "model.onnx", b"x", mode=0o644)
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == '{"ü": 1}'
    assert (tmp_path / "b.csv").read_text() == "new"
    assert (tmp_path / "secret").read_bytes() == b"k" * 40
    assert {p.name: _mode(p) for p in tmp_path.iterdir()} == {
        "a.json": 0o640, "b.csv": 0o664, "secret": 0o600, "model.onnx": 0o644}


def test_a_writer_that_only_takes_a_path_gets_the_mode_even_when_it_makes_a_new_file(tmp_path):
    def writer(tmp):
        tmp.unlink()  # as exporters do: they create their own file under the name
        tmp.write_bytes(b"onnx")
        tmp.chmod(0o600)

    write_atomically(tmp_path / "m.onnx", writer, mode=0o644)
    assert (tmp_path / "m.onnx").read_bytes() == b"onnx"
    assert _mode(tmp_path / "m.onnx") == 0o644


def test_a_symlink_is_written_through_and_a_pipe_written_to(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    (tmp_path / "link.txt").symlink_to(real)
    write_atomically(tmp_path / "link.txt", "new")
    assert (tmp_path / "link.txt").is_symlink() and real.read_text() == "new"

    fifo = tmp_path / "report.fifo"  # as `--html /dev/stdout` is: no rename may replace it
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_atomically(fifo, "<html>")
    reader.join(timeout=10)
    assert got == [b"<html>"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    (tmp_path / "x.onnx").write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(tmp_path / "x.onnx", broken)
    assert [p.name for p in tmp_path.iterdir()] == ["x.onnx"]
    assert (tmp_path / "x.onnx").read_text() == "old"


def test_the_file_and_then_its_folder_are_flushed_around_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        calls.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(atomic_write.os, "fsync", fsync)
    monkeypatch.setattr(atomic_write.os, "replace", replace)
    write_atomically(tmp_path / "grades.csv", "query,product_id,grade\n")
    assert calls == ["fsync file", "rename", "fsync dir"]


def test_an_orphan_that_cannot_be_removed_does_not_stop_the_write(tmp_path, monkeypatch):
    orphan = tmp_path / ".grades.csv.0123456789abcdef.tmp"
    orphan.write_bytes(b"another user's")
    old = time.time() - atomic_write.ORPHAN_AGE_S - 60
    os.utime(orphan, (old, old))
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if str(path) == str(orphan):
            raise PermissionError(1, "Operation not permitted")
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(atomic_write.os, "unlink", unlink)
    write_atomically(tmp_path / "grades.csv", "query,product_id,grade\n")
    assert (tmp_path / "grades.csv").read_text() == "query,product_id,grade\n" and orphan.exists()


def test_without_replace_the_first_writer_wins_and_later_ones_change_nothing(tmp_path):
    target = tmp_path / "key"
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def race(i):
        barrier.wait()
        results.append(write_atomically(target, f"writer {i}\n", mode=0o600, replace=False))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    winner = target.read_text()
    assert winner.startswith("writer ")
    assert write_atomically(target, "late\n", replace=False) is False
    assert target.read_text() == winner
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_a_killed_writers_temporary_file_is_removed_once_old_and_a_live_ones_kept(tmp_path):
    target = tmp_path / "snapshot.npz"
    orphan, live = tmp_path / ".snapshot.npz.k1ll3d00.tmp", tmp_path / ".snapshot.npz.w0rk1ng0.tmp"
    orphan.write_bytes(b"half")
    live.write_bytes(b"half")
    old = time.time() - atomic_write.ORPHAN_AGE_S - 60
    os.utime(orphan, (old, old))
    write_atomically(target, b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, target.name]


_WRITER = """
import sys
from pathlib import Path
from shopsearch.atomic_write import write_atomically
target = Path(sys.argv[1])
i = 1
while True:
    write_atomically(target, bytes([i % 255 + 1]) * 1_000_000)
    if i == 1:
        print("written", flush=True)
    i += 1
"""


def test_a_writer_killed_mid_write_leaves_one_whole_version(tmp_path):
    target = tmp_path / "snapshot.npz"
    target.write_bytes(b"\0" * 1_000_000)
    for _ in range(5):
        with subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE) as proc:
            assert proc.stdout.readline() == b"written\n"
            time.sleep(0.15)
            proc.send_signal(signal.SIGKILL)
        data = target.read_bytes()
        assert len(data) == 1_000_000 and data[:1] != b"\0" and data == data[:1] * len(data)


def test_a_folder_built_whole_replaces_the_old_one_or_leaves_it_as_it_was(tmp_path):
    target = tmp_path / "model"
    with folder_replaced(target) as building:
        (building / "weights").write_text("v1")
        (building / "card.json").write_text("{1}")
    (target / "onnx-cache").write_text("of v1")
    with pytest.raises(KeyboardInterrupt):
        with folder_replaced(target) as building:
            (building / "weights").write_text("v2")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder left
    assert (target / "weights").read_text() == "v1" and (target / "onnx-cache").exists()
    with folder_replaced(target) as building:
        (building / "weights").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["weights"]  # nothing of the old run stays beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_folder_swap_writes_through_a_symlink_and_refuses_a_folder_without_a_name(tmp_path):
    real = tmp_path / "models" / "ce"
    with folder_replaced(real) as building:
        (building / "weights").write_text("v1")
    link = tmp_path / "ce-link"
    link.symlink_to(real)
    with folder_replaced(link) as building:
        (building / "weights").write_text("v2")
    assert link.is_symlink() and (real / "weights").read_text() == "v2"  # the link kept, its target replaced
    assert sorted(p.name for p in real.parent.iterdir()) == ["ce"]
    with pytest.raises(ValueError, match="needs a name"):
        with folder_replaced("/"):
            pass
