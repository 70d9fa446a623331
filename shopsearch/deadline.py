"""One end-to-end deadline per request, handed down to every stage that may take time.

The API creates a :class:`Deadline` when a /search starts (the ``search_deadline_ms`` setting) and passes it down:
OpenSearch requests get the time left as their timeout, the embedded engine checks it between legs, the reranker
fits its budget into it. A stage that cannot finish in time raises :class:`DeadlineExceeded`; its caller serves
what it has (marked degraded) or, when nothing is available, the API answers 503 with Retry-After.

    >>> d = Deadline.after(0.5, clock=lambda: 10.0)
    >>> d.remaining_s(), d.expired()
    (0.5, False)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

Clock = Callable[[], float]


class DeadlineExceeded(TimeoutError):
    """A request's deadline passed before ``stage`` could run or finish (``stage`` names it: ``search``,
    ``match``, ``sources``, ``rerank``...)."""

    def __init__(self, stage: str, message: str | None = None) -> None:
        super().__init__(message or f"the request's deadline passed before {stage} finished")
        self.stage = stage


@dataclass(frozen=True)
class Deadline:
    """A point in time (on ``clock``, monotonic seconds) by which a request must be answered.

    Build with :meth:`after`; ``budget_s`` is the whole allowance, kept for messages and logs.

    Raises:
        ValueError: ``budget_s`` not a number > 0 (from :meth:`after`).
    """

    at: float
    budget_s: float
    clock: Clock = field(default=time.monotonic, compare=False, repr=False)

    @classmethod
    def after(cls, seconds: float, *, clock: Clock = time.monotonic) -> "Deadline":
        """The deadline ``seconds`` from now.

        >>> Deadline.after(0)
        Traceback (most recent call last):
        ...
        ValueError: seconds=0 must be a number > 0
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ValueError(f"seconds={seconds!r} must be a number > 0")
        return cls(at=clock() + float(seconds), budget_s=float(seconds), clock=clock)

    def remaining_s(self) -> float:
        """Seconds left (0 once passed)."""
        return max(0.0, self.at - self.clock())

    def remaining_ms(self) -> float:
        """Milliseconds left (0 once passed)."""
        return self.remaining_s() * 1000.0

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.clock() >= self.at

    def check(self, stage: str) -> None:
        """Raise :class:`DeadlineExceeded` for ``stage`` when the deadline has passed."""
        if self.expired():
            raise DeadlineExceeded(stage)

    def leaving(self, seconds: float) -> "Deadline":
        """A deadline ``seconds`` earlier, for a stage that must leave time for the ones after it.

        >>> Deadline.after(1.0, clock=lambda: 0.0).leaving(0.2).remaining_s()
        0.8
        """
        return Deadline(at=self.at - max(0.0, float(seconds)), budget_s=self.budget_s, clock=self.clock)

    def timeout_s(self, stage: str, cap: float) -> float:
        """The timeout for one call of ``stage``: the time left, at most ``cap`` seconds.

        Raises:
            DeadlineExceeded: no time is left (the call should not be made).

        >>> Deadline.after(2.0, clock=lambda: 0.0).timeout_s("search", cap=5.0)
        2.0
        """
        left = self.remaining_s()
        if left <= 0:
            raise DeadlineExceeded(stage)
        return min(float(cap), left)
