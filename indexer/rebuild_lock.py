"""One indexing run per alias at a time: a lock held through the sink (a document in OpenSearch, a file embedded).

The lock records who holds it (host, pid, start, heartbeat). It is *stale* when its holder is a process on this
host that no longer runs (or whose pid another process took since: a reboot, a new container's pid 1), or, on
another host, when its heartbeat is older than ``stale_after_s`` (a holder that crashed or hangs); a stale lock is
broken by the next run, with a warning. A live lock refuses the run unless ``break_lock`` (``shopsearch index
--break-lock``: the operator knows that run on another host is gone); a holder still running on this host is never
broken (the run would delete the version it is building).

    >>> with rebuild_lock(sink, "products", stale_after_s=600) as lock:  # doctest: +SKIP
    ...     lock.heartbeat()
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace
from typing import Callable, Iterator

from .sink import IndexSink, LockHolder

log = logging.getLogger(__name__)


class IndexLocked(RuntimeError):
    """Another run holds the alias's rebuild lock; the message says who, since when and how to break it."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _process_started(pid: int) -> float | None:
    """When process ``pid`` started (UNIX seconds), None when that cannot be read."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def stale_reason(holder: LockHolder, now: float, stale_after_s: float, host: str | None = None) -> str | None:
    """Why ``holder``'s lock is stale, or None while it looks alive.

    >>> h = LockHolder("elsewhere", 1, 0.0, 100.0, "t")
    >>> stale_reason(h, now=200.0, stale_after_s=600), stale_reason(h, now=800.0, stale_after_s=600)
    (None, 'its last heartbeat was 700 s ago (stale after 600 s)')
    """
    host = host or socket.gethostname()
    if holder.host == host:  # a process here can be asked; a run between heartbeats (a long scan) is not stale
        if not _pid_alive(holder.pid):
            return f"pid {holder.pid} is not running on this host"
        started = _process_started(holder.pid)
        if started is not None and started > holder.started + 1.0:  # a reboot, or a new container's pid 1
            return f"pid {holder.pid} is another process now (started after the lock was taken)"
        return None
    age = now - holder.heartbeat
    if age > stale_after_s:
        return f"its last heartbeat was {age:.0f} s ago (stale after {stale_after_s:.0f} s)"
    return None


def describe_holder(holder: LockHolder, now: float) -> str:
    """``pid 12 on host a, started 30 s ago, last heartbeat 2 s ago``."""
    return (f"pid {holder.pid} on host {holder.host}, started {now - holder.started:.0f} s ago, "
            f"last heartbeat {now - holder.heartbeat:.0f} s ago")


class RebuildLock:
    """A held lock: :meth:`heartbeat` refreshes it (cheaply, at most every ``stale_after_s / 4`` seconds)."""

    def __init__(self, sink: IndexSink, alias: str, holder: LockHolder, stale_after_s: float,
                 clock: Callable[[], float]):
        self.sink, self.alias, self.holder = sink, alias, holder
        self.stale_after_s, self.clock = stale_after_s, clock
        self.broke: str | None = None  # the stale holder this run replaced, said in the log

    def heartbeat(self) -> None:
        """Record that this run is alive.

        Raises:
            IndexLocked: another run broke this lock (this run must stop writing).
        """
        now = self.clock()
        if now - self.holder.heartbeat < self.stale_after_s / 4:
            return
        touched = replace(self.holder, heartbeat=now)
        if not self.sink.touch_lock(self.alias, touched):
            raise IndexLocked(f"the indexing lock on {self.alias!r} was broken by another run; stopping")
        self.holder = touched


@contextmanager
def rebuild_lock(sink: IndexSink, alias: str, *, stale_after_s: float = 600.0, break_lock: bool = False,
                 clock: Callable[[], float] = time.time) -> Iterator[RebuildLock]:
    """Hold ``alias``'s indexing lock for the ``with`` block; released on exit, also on errors.

    Args:
        sink: the engine (it stores the lock).
        alias: the alias being indexed.
        stale_after_s: a heartbeat older than this makes a lock stale.
        break_lock: break a lock that still looks alive.
        clock: UNIX time (a test hook).

    Raises:
        IndexLocked: another run holds a live lock (and ``break_lock`` is False), or won a race to break it.
        ValueError: ``stale_after_s`` <= 0.
    """
    if stale_after_s <= 0:
        raise ValueError(f"stale_after_s={stale_after_s!r} must be > 0 seconds")
    now = clock()
    me = LockHolder(host=socket.gethostname(), pid=os.getpid(), started=now, heartbeat=now, token=uuid.uuid4().hex)
    held = sink.create_lock(alias, me)
    broke = None
    if held is not None:
        reason = stale_reason(held, now, stale_after_s)
        if reason is None and held.host == me.host:  # running here: --break-lock would delete its build
            raise IndexLocked(f"another indexing run holds the lock on {alias!r}: {describe_holder(held, now)}, "
                              f"still running on this host. Wait for it to finish, or stop it (kill {held.pid})")
        if reason is None and not break_lock:
            raise IndexLocked(f"another indexing run holds the lock on {alias!r}: {describe_holder(held, now)}. "
                              "Wait for it to finish; if that run is gone, rerun with --break-lock")
        broke = f"{describe_holder(held, now)}: {reason or 'broken on request (--break-lock)'}"
        log.warning("breaking the indexing lock on %r held by %s", alias, broke)
        sink.delete_lock(alias, held)  # conditional: a run that broke it first keeps its own lock
        held = sink.create_lock(alias, me)
        if held is not None:
            raise IndexLocked(f"another run took the lock on {alias!r} while this one broke a stale lock: "
                              f"{describe_holder(held, now)}")
    lock = RebuildLock(sink, alias, me, stale_after_s, clock)
    lock.broke = broke
    try:
        yield lock
    finally:
        if not sink.delete_lock(alias, lock.holder):
            log.warning("the indexing lock on %r was no longer this run's when it ended", alias)
