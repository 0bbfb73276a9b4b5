"""The HTTP server behind ``--http-port``: routes, probes and metrics; start and stop.

aiohttp runs on the broker's own event loop. Every handler only reads in-memory
counters or calls broker operations that already move file I/O to a thread, so
serving HTTP never blocks message traffic.

With ``--auth-file``, ``/api/...`` and ``/metrics`` need ``Authorization: Bearer
<token>`` (see ``access``). ``/healthz``, ``/readyz`` and the dashboard's static
files (which hold no data: the page asks for a token and calls the API) stay
open, so probes work without secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import structlog
from aiohttp import web

from linemq.broker.observe.failure_rate import FailureRates
from linemq.broker.ops import api, metrics
from linemq.broker.ops.access import (
    BROKER,
    auth_middleware,
    broker_of,
    host_middleware,
    visible_topics,
)
from linemq.broker.ops.api import FAILURES
from linemq.broker.ops.charts import add_chart_routes
from linemq.broker.ops.dashboard import add_dashboard_routes
from linemq.broker.ops.port import Operations

log = structlog.get_logger(__name__)

METRICS: Final[web.AppKey[metrics.Metrics]] = web.AppKey("linemq_metrics")
MAX_BODY: Final = 64 * 1024
SHUTDOWN: Final = 5.0
"""Seconds a stopping broker gives HTTP requests in progress (they are all short)."""


class OpsServer:
    """A running HTTP server; satisfies ``server.face.HttpServer``."""

    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self._runner = runner
        self._port = port

    @property
    def port(self) -> int:
        return self._port

    async def close(self) -> None:
        await self._runner.cleanup()


async def start_http(broker: Operations) -> OpsServer:
    """Listen on ``--http-host:--http-port`` (0 picks a free port); the running server."""
    host, port = broker.config.http_host, broker.config.http_port
    if port is None:
        raise ValueError("start_http needs config.http_port")
    runner = web.AppRunner(
        build_app(broker), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound: int = runner.addresses[0][1]
    log.info("http_listening", host=host, port=bound, auth=broker.users is not None)
    return OpsServer(runner, bound)


def build_app(broker: Operations) -> web.Application:
    app = web.Application(
        middlewares=[host_middleware(broker), auth_middleware(broker), api.storage_failures],
        client_max_size=MAX_BODY,
    )
    app[BROKER] = broker
    app[METRICS] = metrics.Metrics(broker)
    app[FAILURES] = FailureRates(broker, broker.config.failure_rate_window)
    app.cleanup_ctx.append(_sampling_failures)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    api.add_routes(app)
    add_chart_routes(app, broker)
    add_dashboard_routes(app)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    """200 once serving; what could not be opened is listed, not a reason to stop traffic.

    With a failure-rate threshold (``--max-failure-rate``, or ``?max_failure_rate=`` for
    one probe), 503 while a group fails more than that share of its deliveries."""
    broker = broker_of(request)
    if not broker.ready:
        return web.Response(text="not ready\n", status=503)
    threshold = broker.config.max_failure_rate
    asked = request.query.get("max_failure_rate")
    if asked is not None:
        try:
            threshold = float(asked)
        except ValueError:
            threshold = -1.0
        if not 0 <= threshold <= 1:
            return web.Response(text="max_failure_rate must be from 0 to 1\n", status=400)
    failing = request.app[FAILURES].over(threshold) if threshold is not None else []
    if failing:
        window = request.app[FAILURES].window
        lines = [f"failing: failure rate over {threshold} in the last {window:g}s\n"]
        lines += [
            f"failure_rate {r.topic} {r.group} {r.rate:.3f} failures={r.failures} acked={r.acked}\n"
            for r in failing
        ]
        return web.Response(text="".join(lines), status=503)
    lines = ["ready\n"]
    for damage in broker.unopenable():
        what = f"group {damage.topic} {damage.group}" if damage.group else f"topic {damage.topic}"
        lines.append(f"unopenable {what}: {damage.reason}\n")
    return web.Response(text="".join(lines))


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render(visible_topics(request))
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


async def _sampling_failures(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(app[FAILURES].run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
