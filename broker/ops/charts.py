"""``GET /api/series``: what the dashboard's charts draw, and the sampler behind it.

The sampler (``broker.observe.series``) runs while the HTTP server does: it is
only ever read here. Broker-wide rates are shown to every user, as ``/api/stats``
shows the broker's totals; group lag only for topics the user may read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import orjson
from aiohttp import web

from linemq.broker.observe.series import Series
from linemq.broker.ops.access import visible_topics
from linemq.broker.ops.port import Operations

SERIES: Final[web.AppKey[Series]] = web.AppKey("linemq_series")


def add_chart_routes(app: web.Application, broker: Operations) -> None:
    app[SERIES] = Series(broker, broker.config.sample_interval)
    app.cleanup_ctx.append(_sampling)
    app.router.add_get("/api/series", series)


async def series(request: web.Request) -> web.Response:
    body = request.app[SERIES].to_json(visible_topics(request))
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _sampling(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(app[SERIES].run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
