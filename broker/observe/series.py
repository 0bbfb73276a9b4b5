"""The recent past of the broker's message rates and group lag, for the dashboard's charts.

Sampled, never counted: every ``interval`` seconds one pass reads the counters the
broker already keeps (the ones ``STATS`` shows) and appends one point to rings of
``samples`` points (180: 15 minutes at the default 5 s). Its cost is one walk over
the groups per interval, whatever the message rate, and nothing per message.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from linemq.broker.observe.stats import Figures, totals

SAMPLES: Final = 180
RATES: Final = ("published", "delivered", "acked", "dead_lettered")


class Series:
    """Rings of per-second rates and per-group lag, one point per sample, all aligned."""

    def __init__(self, figures: Figures, interval: float, samples: int = SAMPLES) -> None:
        self.figures = figures
        self.interval = interval
        self.samples = samples
        self.times: deque[float] = deque(maxlen=samples)
        self.rates: dict[str, deque[float | None]] = {k: deque(maxlen=samples) for k in RATES}
        self.lags: dict[tuple[str, str], deque[int | None]] = {}
        self._last: dict[str, int] | None = None
        self._last_at = 0.0

    def sample(self) -> None:
        """Append one point; the first call only takes the counters a rate starts from."""
        groups = {(t, n): g for t, n, g in self.figures.all_groups()}
        counts = totals(self.figures)
        now = time.monotonic()
        last, elapsed = self._last, now - self._last_at
        self._last, self._last_at = counts, now
        if last is None or elapsed <= 0:
            return
        self.times.append(round(time.time(), 3))
        for name in RATES:
            delta = counts[name] - last[name]
            # A total only falls when something it summed is gone: the rate is unknown.
            self.rates[name].append(round(delta / elapsed, 3) if delta >= 0 else None)
        for gone in self.lags.keys() - groups.keys():
            del self.lags[gone]
        for key, group in groups.items():
            ring = self.lags.get(key)
            if ring is None:  # a new group: no value for the points before it existed
                ring = self.lags[key] = deque([None] * (len(self.times) - 1), self.samples)
            ring.append(group.lag())

    async def run(self) -> None:
        """Sample until cancelled (the HTTP server's lifetime)."""
        self.sample()
        while True:
            await asyncio.sleep(self.interval)
            self.sample()

    def to_json(self, visible: Callable[[str], bool] | None = None) -> dict[str, Any]:
        """The series; ``visible`` limits group lag to topics a user may read."""
        return {
            "interval": self.interval,
            "samples": self.samples,
            "times": list(self.times),
            "rates": {key: list(ring) for key, ring in self.rates.items()},
            "lag": [
                {"topic": topic, "group": group, "values": list(ring)}
                for (topic, group), ring in sorted(self.lags.items())
                if visible is None or visible(topic)
            ],
        }
