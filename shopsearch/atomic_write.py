"""Files written whole: a reader sees the old bytes or the new ones, and once a write returns, a crash or a power
cut keeps it.

The bytes go to a temporary file beside the target (same folder, so the rename is atomic), created with the
target's final mode before anything is written to it, flushed to disk, renamed into place, and then the folder
itself is flushed, so that the new name survives too. A failed write removes the temporary file and leaves the
target as it was. A writer killed mid-write leaves its temporary file (``.<name>.<random>.tmp``); the next write
of the same file removes those left over an hour before, so they cannot pile up.

>>> import tempfile; d = Path(tempfile.mkdtemp())
>>> write_atomically(d / "state.json", '{"step": 3}'); (d / "state.json").read_text()
True
'{"step": 3}'
>>> write_atomically(d / "state.json", "other", replace=False)  # an existing file is kept
False
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

__all__ = ["fsync_dir", "write_atomically"]

Content = bytes | str | Callable[[Path], None]

# A temporary file untouched this long is a killed writer's: a live one writes or renames it within seconds.
ORPHAN_AGE_S = 3600.0


def write_atomically(path: str | Path, content: Content, *, mode: int = 0o644, replace: bool = True) -> bool:
    """Write ``content`` to ``path`` atomically and durably.

    Args:
        path: the file to write; its folder must exist.
        content: bytes, text (written as UTF-8), or a function that writes the file at the path it is given
            (for writers that only take a path, such as ONNX's).
        mode: the file's permissions (``0o600`` for a secret: it is never readable by others, even half-written).
        replace: False to write only when ``path`` does not exist yet (the first of several concurrent writers
            wins, as with ``O_EXCL``).

    Returns:
        True when written; False when ``replace`` is False and ``path`` already existed (left as it was).

    Raises:
        OSError: the file cannot be written (the target is unchanged).
    """
    path = Path(path)
    _remove_orphans(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        try:
            # Before any byte is written: mkstemp's 0600 is too tight for a file a server reads as another user.
            os.fchmod(fd, mode)
            if callable(content):
                os.close(fd)
                fd = -1
                content(tmp)
                os.chmod(tmp, mode)  # the writer may have put a new file in its place
                fd = os.open(tmp, os.O_RDONLY)
            else:
                data = content.encode("utf-8") if isinstance(content, str) else content
                with os.fdopen(fd, "wb", closefd=False) as f:
                    f.write(data)
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
    fsync_dir(path.parent)
    return True


def _remove_orphans(path: Path) -> None:
    """Remove the temporary files of ``path`` that writers killed mid-write left over ORPHAN_AGE_S ago."""
    cutoff = time.time() - ORPHAN_AGE_S
    for tmp in glob.glob(os.path.join(glob.escape(str(path.parent)), f".{glob.escape(path.name)}.*.tmp")):
        try:
            if os.stat(tmp).st_mtime < cutoff:
                os.unlink(tmp)
        except FileNotFoundError:
            pass  # another writer removed it first


def fsync_dir(directory: str | Path) -> None:
    """Flush ``directory``'s entries to disk: a file created, renamed or removed in it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
