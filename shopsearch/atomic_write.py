"""Files written whole: a reader sees the old bytes or the new ones, and once a write returns, a crash or a power
cut keeps it.

The bytes go to a temporary file beside the target (same folder, so the rename is atomic), flushed to disk,
renamed into place, and then the folder itself is flushed, so that the new name survives too. A failed write
removes the temporary file and leaves the target as it was. A writer killed mid-write leaves its temporary file
(``.<name>.<random>.tmp``); the next write of the same file removes those left over an hour before, so they
cannot pile up.

A symlink is written through (its target is replaced, the link kept), and a path that is not a regular file (a
terminal, a pipe, ``/dev/stdout``) is written to directly: no rename could replace it.

A folder of files that belong together (a trained model: weights, card, calibration) is built whole beside its
place and swapped in (:func:`folder_replaced`), so a failed or interrupted run leaves the last one as it was.

>>> import tempfile; d = Path(tempfile.mkdtemp())
>>> write_atomically(d / "state.json", '{"step": 3}'); (d / "state.json").read_text()
True
'{"step": 3}'
>>> write_atomically(d / "state.json", "other", replace=False)  # an existing file is kept
False
"""

from __future__ import annotations

import errno
import glob
import os
import secrets
import shutil
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["fsync_dir", "write_atomically"]

Content = bytes | str | Callable[[Path], None]

# A temporary file untouched this long is a killed writer's: a live one writes or renames it within seconds.
ORPHAN_AGE_S = 3600.0


def write_atomically(path: str | Path, content: Content, *, mode: int | None = None, replace: bool = True,
                     durable: bool = True) -> bool:
    """Write ``content`` to ``path`` atomically and (unless ``durable`` is False) durably.

    Args:
        path: the file to write; its folder must exist.
        content: bytes, text (written as UTF-8), or a function that writes the file at the path it is given
            (for writers that only take a path, such as ONNX's).
        mode: the file's permissions, set before a byte is written (``0o600`` for a secret: never readable by
            others, even half-written; ``0o644`` for a file a server reads as another user). None: the mode of
            the file it replaces, or the umask's for a new one, as a plain write would give.
        replace: False to write only when ``path`` does not exist yet (the first of several concurrent writers
            wins, as with ``O_EXCL``).
        durable: False skips both flushes, for files nothing needs after a power cut (lock heartbeats).

    Returns:
        True when written; False when ``replace`` is False and ``path`` already existed (left as it was).

    Raises:
        OSError: the file could not be written, and the target is as it was; or, rarely, its folder could not be
            flushed after the rename, and the target holds the new bytes.
    """
    path = Path(path)
    try:
        st = os.stat(path)  # through a symlink
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if not replace:
            return False
        _write_through(path, content)
        return True
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if mode is None and st is not None:
        mode = stat.S_IMODE(st.st_mode)
    _remove_orphans(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # 0o666 less the umask, as open() gives a new file, unless a mode is asked for or kept
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            else:
                mode = stat.S_IMODE(os.fstat(fd).st_mode)
            if callable(content):
                os.close(fd)
                fd = -1
                content(tmp)
                os.chmod(tmp, mode)  # the writer may have put a new file in its place
                if durable:
                    fd = os.open(tmp, os.O_RDONLY)
            else:
                with os.fdopen(fd, "wb", closefd=False) as f:
                    f.write(content.encode("utf-8") if isinstance(content, str) else content)
            if durable:
                os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails when the name exists: exclusive, and never a half-written file
            except FileExistsError:
                return False
            finally:
                tmp.unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return True


@contextmanager
def folder_replaced(path: str | Path) -> Iterator[Path]:
    """A new, empty folder beside ``path`` to build a whole folder in; when the block ends it takes ``path``'s place
    (an old folder there is removed), and when it raises (Ctrl-C too) it is removed and ``path`` is left as it was.

    The caller decides that what ``path`` holds may go (a model's folder, not a folder of models). A symlink is
    written through: its target is replaced, the link kept. The swap is two renames; if the second fails the old
    folder is put back, and a crash between them leaves ``path`` missing and the old folder beside it as
    ``.<name>.<random>.old``, never a mix of two runs' files. Folders killed builds left are removed by the next
    build of that folder once they are ORPHAN_AGE_S old.

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> with folder_replaced(d / "model") as tmp:
    ...     _ = (tmp / "card.json").write_text("{}")
    >>> sorted(p.name for p in d.iterdir()), (d / "model" / "card.json").read_text()
    (['model'], '{}')
    """
    path = Path(os.path.realpath(path))
    if not path.name or path == Path(path.anchor):
        raise ValueError(f"{path}: a folder to replace needs a name")
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path, folders=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    tmp.mkdir()
    old = None
    try:
        yield tmp
        if path.exists():
            old = path.parent / f".{path.name}.{secrets.token_hex(8)}.old"
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if old is not None and not path.exists():
            os.replace(old, path)  # the second rename failed: the old folder goes back
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fsync_dir(directory: str | Path) -> None:
    """Flush ``directory``'s entries to disk: a file created, renamed or removed in it survives a power cut.

    A file system that cannot flush a folder (some network and FUSE ones answer EINVAL) is left at that."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _write_through(path: Path, content: Content) -> None:
    """Write to a path no rename can replace (a terminal, a pipe, a device)."""
    if callable(content):
        content(path)
        return
    with open(path, "wb") as f:
        f.write(content.encode("utf-8") if isinstance(content, str) else content)


def _remove_orphans(path: Path, folders: bool = False) -> None:
    """Remove the temporary files of ``path`` that writers killed mid-write left over ORPHAN_AGE_S ago (with
    ``folders``, the build and old folders of :func:`folder_replaced`). Best effort: one this process may not
    remove is left, and the write goes on."""
    cutoff = time.time() - ORPHAN_AGE_S
    prefix = os.path.join(glob.escape(str(path.parent)), f".{glob.escape(path.name)}.*.")
    for tmp in glob.glob(prefix + "tmp") + (glob.glob(prefix + "old") if folders else []):
        try:
            if os.lstat(tmp).st_mtime >= cutoff:
                continue
            if folders and os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp)
            else:
                os.unlink(tmp)
        except OSError:
            pass
