"""Message ids ``msg_<ms>_<8 hex>`` as in the seed, unique without a random call per message."""

from __future__ import annotations

import random
import time


class IdGenerator:
    """The hex part is a counter from a random start, so ids made in one millisecond never clash."""

    __slots__ = ("_counter",)

    def __init__(self) -> None:
        self._counter = random.getrandbits(32)

    def many(self, n: int, now: float) -> list[str]:
        """``n`` ids for messages published together at ``now``."""
        if n == 1:
            return [self.next(now)]
        start = self._counter
        self._counter = (start + n) & 0xFFFFFFFF
        template = f"msg_{int(now * 1000)}_%08x"  # %-formatting an int is the cheapest here
        if start + n <= 0xFFFFFFFF:
            return [template % c for c in range(start + 1, start + n + 1)]
        return [template % ((start + i) & 0xFFFFFFFF) for i in range(1, n + 1)]

    def next(self, now: float | None = None) -> str:
        self._counter = (self._counter + 1) & 0xFFFFFFFF
        ms = int((time.time() if now is None else now) * 1000)
        return f"msg_{ms}_{self._counter:08x}"
