"""How long to wait before reconnect attempt N: a pure policy, tested without sleeping.

In the manner of redis-py's ``redis/backoff.py``: ``ExponentialBackoff`` doubles
from ``base`` up to ``cap``, and "full jitter" picks a random delay up to that, so
a thousand clients cut off by one broker restart do not all come back in the same
millisecond. ``Retry`` adds how many attempts to make. The random source is a
parameter so tests get exact numbers.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

DEFAULT_BASE: Final = 0.1
DEFAULT_CAP: Final = 5.0


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """``min(cap, base * 2**(failures - 1))``, optionally with full jitter."""

    base: float = DEFAULT_BASE
    cap: float = DEFAULT_CAP
    jitter: bool = True
    rand: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"need 0 < base <= cap, got base={self.base} cap={self.cap}")

    def compute(self, failures: int) -> float:
        """The delay before the next attempt after ``failures`` failed ones (1, 2, …)."""
        if failures < 1:
            return 0.0
        ceiling = float(min(self.cap, self.base * 2.0 ** min(failures - 1, 62)))
        return ceiling * float(self.rand()) if self.jitter else ceiling


@dataclass(frozen=True, slots=True)
class Retry:
    """Reconnect policy: a backoff and how many attempts in a row (None: forever).

    With several servers an attempt is a round (each node tried once), and the backoff
    is waited between rounds, never between the nodes of one round."""

    backoff: ExponentialBackoff = field(default_factory=ExponentialBackoff)
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be 1 or more, got {self.max_attempts}")

    def delay(self, failures: int) -> float | None:
        """Seconds to wait after ``failures`` failed attempts, or None to give up."""
        if self.max_attempts is not None and failures >= self.max_attempts:
            return None
        return self.backoff.compute(failures)
