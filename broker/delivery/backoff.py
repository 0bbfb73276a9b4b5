"""Retry policy as pure functions of (failures, config), tested without sleeping."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """``min(base * 2**(failures-1), cap)``: 1 s, 2 s, 4 s... as the seed's retries."""

    base: float
    cap: float

    def compute(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        # Bound the exponent so a huge count cannot overflow the float.
        return min(self.base * (2.0 ** min(failures - 1, 62)), self.cap)


@dataclass(frozen=True, slots=True)
class FixedBackoff:
    """The same wait before every retry (``--topic-policy ...backoff:fixed:5s``)."""

    delay: float

    def compute(self, failures: int) -> float:
        return self.delay if failures > 0 else 0.0


Backoff = ExponentialBackoff | FixedBackoff


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A message may fail ``max_retries + 1`` deliveries; the next failure dead-letters it."""

    max_retries: int
    backoff: Backoff

    def should_dead_letter(self, failures: int) -> bool:
        return failures > self.max_retries

    def delay(self, failures: int) -> float:
        return self.backoff.compute(failures)
