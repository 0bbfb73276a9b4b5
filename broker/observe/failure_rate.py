"""Each group's failure rate over a recent window, for ``/readyz``'s failure-rate check.

A group's rate is its failed deliveries (nacks, ack timeouts, dead members,
terms) over its outcomes (those failures plus acks) in the window. Sampled,
never counted: every tenth of the window one pass copies each group's two
counters into a ring of eleven samples, so the oldest is one window old and the
cost is one walk over the groups per sample, nothing per message.

The counters are durable (they hold every failure since the group was made);
the rate is of their growth in the window only, and the first sample is taken
once the groups are loaded, so failures from before a restart never count.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Final

from linemq.broker.observe.stats import Figures

SLOTS: Final = 10
MIN_OUTCOMES: Final = 10
"""A group with fewer outcomes in the window has no rate: 1 failure in 1 is no alarm."""

Counts = dict[tuple[str, str], tuple[int, int]]


@dataclass(frozen=True, slots=True)
class GroupRate:
    topic: str
    group: str
    failures: int
    acked: int

    @property
    def counted(self) -> bool:
        """Enough outcomes in the window for the rate to mean something."""
        return self.failures + self.acked >= MIN_OUTCOMES

    @property
    def rate(self) -> float:
        return self.failures / (self.failures + self.acked)


class FailureRates:
    def __init__(self, figures: Figures, window: float) -> None:
        self.figures = figures
        self.window = window
        self._samples: deque[tuple[float, Counts]] = deque(maxlen=SLOTS + 1)

    def _counts(self) -> Counts:
        return {
            (topic, name): (sum(g.failures.values()), g.counters()["acked"])
            for topic, name, g in self.figures.all_groups()
        }

    def sample(self) -> None:
        self._samples.append((time.monotonic(), self._counts()))

    async def run(self) -> None:
        """Sample until cancelled (the HTTP server's lifetime)."""
        while True:
            self.sample()
            await asyncio.sleep(self.window / SLOTS)

    def recent(self) -> dict[tuple[str, str], GroupRate]:
        """Each group's failures and acks in the window (since the broker started, until a
        window has passed); a group deleted and made again in it has none."""
        base = self._samples[0][1] if self._samples else {}
        out = {}
        for key, (failures, acked) in sorted(self._counts().items()):
            before = base.get(key, (0, 0))
            rate = GroupRate(*key, failures - before[0], acked - before[1])
            if rate.failures >= 0 and rate.acked >= 0:
                out[key] = rate
        return out

    def over(self, threshold: float) -> list[GroupRate]:
        """Groups whose failure rate in the window is above ``threshold``, with at least
        ``MIN_OUTCOMES``."""
        return [r for r in self.recent().values() if r.counted and r.rate > threshold]
