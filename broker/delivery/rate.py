"""A group's delivery rate limit (``rate:N/DURATION``): a token bucket with one timer.

The bucket holds at most ``count`` tokens and gains ``count`` per ``period``;
each delivery (first or redelivery, to any member) takes one. With none left the
group's pump stops and ``wait`` arms a single timer for when the next token is
due, which pumps again: nothing is dropped, nothing polls, and the cost does not
grow with the backlog. A group without a rate has no bucket at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from linemq.broker.config import RateSetting


class TokenBucket:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, setting: RateSetting, wake: Callable[[], None]
    ) -> None:
        self.loop = loop
        self.setting = setting
        self._per_second = setting.count / setting.period
        self._tokens = float(setting.count)  # a new bucket starts full: a burst of ``count``
        self._at = loop.time()
        self._wake = wake
        self._timer: asyncio.TimerHandle | None = None
        self.waits = 0
        """Times deliveries had to wait for a token (``rate_limited`` in STATS)."""

    def available(self) -> int:
        """Whole tokens now (deliveries that may go without waiting)."""
        now = self.loop.time()
        tokens = self._tokens + (now - self._at) * self._per_second
        self._tokens = min(float(self.setting.count), tokens)
        self._at = now
        return int(self._tokens + 1e-9)  # a timer due at the token's time sees it whole

    def take(self, n: int = 1) -> None:
        self._tokens -= n

    def wait(self) -> None:
        """Something is ready and no token is: pump again once one is due (one timer)."""
        if self._timer is not None:
            return
        self.waits += 1
        delay = max(0.0, (1.0 - self._tokens) / self._per_second)
        self._timer = self.loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._wake()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
