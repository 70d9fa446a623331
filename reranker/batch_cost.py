"""What a cross-encoder batch costs: a running estimate that forgets a slow spell as time passes.

The rerank stage checks its budget before each batch against this estimate. A plain running average that is only
updated when the stage runs switches the stage off for good after one slow spell: the estimate says "too slow",
the stage is skipped, and nothing ever updates the estimate again. Here the estimate decays toward a prior, the
fastest cost observed, with a half-life in wall-clock time, so a skipped stage is tried again once the estimate
has come back under the budget; the per-batch check bounds what a wrong guess costs to one batch.

    >>> now = [0.0]
    >>> cost = BatchCost(half_life_s=10.0, clock=lambda: now[0])
    >>> cost.observe(pairs=10, ms=10.0); cost.observe(pairs=10, ms=1000.0)   # 1 ms a pair, then 100 ms a pair
    >>> round(cost.ms_per_pair(), 1)
    20.8
    >>> now[0] = 100.0   # ten half-lives later: back near the 1 ms prior
    >>> round(cost.ms_per_pair(), 2)
    1.02
"""

from __future__ import annotations

import threading
import time
from typing import Callable

# How fast a slow spell is forgotten: after this many seconds without news the estimate is halfway to the prior.
HALF_LIFE_S = 30.0
# Weight of a new observation in the moving average.
ALPHA = 0.2


class BatchCost:
    """A thread-safe, time-decayed moving average of the milliseconds one (query, product) pair costs.

    Args:
        half_life_s: seconds for the estimate's distance from the prior to halve (> 0).
        alpha: weight of each new observation, in (0, 1].
        clock: monotonic seconds (a test passes a fake one).

    Raises:
        ValueError: ``half_life_s`` or ``alpha`` out of range.
    """

    def __init__(self, *, half_life_s: float = HALF_LIFE_S, alpha: float = ALPHA,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not half_life_s > 0:
            raise ValueError(f"half_life_s={half_life_s!r} must be > 0")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha={alpha!r} must be in (0, 1]")
        self.half_life_s, self.alpha, self.clock = float(half_life_s), float(alpha), clock
        self._value: float | None = None  # ms per pair at the last observation
        self._prior: float | None = None  # the fastest ms per pair seen: where the estimate decays to
        self._at = 0.0
        self._lock = threading.Lock()

    def _decayed(self, now: float) -> float | None:
        if self._value is None or self._prior is None:
            return None
        weight = 0.5 ** (max(0.0, now - self._at) / self.half_life_s)
        return self._prior + (self._value - self._prior) * weight

    def ms_per_pair(self) -> float | None:
        """The estimate now (None before the first observation)."""
        with self._lock:
            return self._decayed(self.clock())

    def batch_ms(self, pairs: int) -> float | None:
        """The estimated milliseconds of a batch of ``pairs`` pairs (None before the first observation)."""
        per = self.ms_per_pair()
        return None if per is None else per * pairs

    def snapshot(self) -> tuple[float | None, float | None, float]:
        """The estimate's state, for :meth:`restore` after a measurement that must not change it."""
        with self._lock:
            return self._value, self._prior, self._at

    def restore(self, state: tuple[float | None, float | None, float]) -> None:
        """Put back a :meth:`snapshot` (what was observed since is forgotten)."""
        with self._lock:
            self._value, self._prior, self._at = state

    def observe(self, *, pairs: int, ms: float) -> None:
        """Record that ``pairs`` pairs took ``ms`` milliseconds (ignored when ``pairs`` < 1)."""
        if pairs < 1:
            return
        per = max(0.0, float(ms)) / pairs
        with self._lock:
            now = self.clock()
            current = self._decayed(now)
            self._value = per if current is None else (1 - self.alpha) * current + self.alpha * per
            self._prior = per if self._prior is None else min(self._prior, per)
            self._at = now
