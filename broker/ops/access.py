"""Who is asking, and may they: bearer tokens and topic permissions for the HTTP side.

The same tokens and patterns as the line protocol (``--auth-file``), checked the
same way: reads need subscribe, replay, purge, pause and resume need manage, on
the topic the command touches (a topic's dead letters count as the topic).
Without ``--auth-file`` everyone may do everything, as on the TCP port.

A wrong token is answered after the same doubling delay as ``AUTH`` on the port,
counted per client address (the HTTP side has no connection to count on).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from linemq.broker.auth import Permission, User, auth_delay, is_loopback
from linemq.broker.ops.port import Operations

log = structlog.get_logger(__name__)

BROKER: Final[web.AppKey[Operations]] = web.AppKey("linemq_broker")
USER: Final[web.RequestKey[User | None]] = web.RequestKey("linemq_user")
FAILURES_KEPT: Final = 10_000
"""Client addresses whose failed attempts are remembered (the oldest are forgotten first)."""
FAILURES_FORGOTTEN_AFTER: Final = 300.0
"""Seconds without a failure after which an address starts again from the shortest delay."""


def guarded(path: str) -> bool:
    """Paths that need a token when auth is on: the API and the metrics."""
    return path == "/metrics" or path.startswith("/api/")


def broker_of(request: web.Request) -> Operations:
    return request.app[BROKER]


def user_of(request: web.Request) -> User | None:
    """The authenticated user, or None when the broker runs without ``--auth-file``."""
    return request.get(USER)


def visible_topics(request: web.Request) -> Callable[[str], bool] | None:
    """A filter for topics the user may read, or None when every topic is visible."""
    user = user_of(request)
    return None if user is None else user.may_subscribe


def require(request: web.Request, topic: str, permission: Permission) -> None:
    """Raise 403 unless the user has ``permission`` on ``topic``."""
    user = user_of(request)
    if user is not None and not user.may(permission, topic):
        log.warning("http_permission_denied", user=user.name, topic=topic, needs=permission)
        raise json_error(403, "permission denied")


def json_error(status: int, reason: str) -> web.HTTPException:
    """An HTTP error with the JSON body ``{"error": reason}``, for the caller to raise."""
    text = orjson.dumps({"error": reason}).decode()
    return _ERRORS[status](text=text, content_type="application/json")


_ERRORS: Final[dict[int, type[web.HTTPException]]] = {
    400: web.HTTPBadRequest,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    415: web.HTTPUnsupportedMediaType,
    503: web.HTTPServiceUnavailable,
}


class AuthFailures:
    """Failed token attempts per client address, for the delay before each 401."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_peer: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def failed(self, peer: str) -> float:
        """One more failure from ``peer``: the seconds to wait before answering."""
        now = self._clock()
        count, last = self._by_peer.pop(peer, (0, now))
        if now - last > FAILURES_FORGOTTEN_AFTER:
            count = 0
        self._by_peer[peer] = (count + 1, now)
        if len(self._by_peer) > FAILURES_KEPT:
            self._by_peer.popitem(last=False)
        return auth_delay(count + 1)

    def succeeded(self, peer: str) -> None:
        self._by_peer.pop(peer, None)


def auth_middleware(broker: Operations) -> Middleware:
    failures = AuthFailures()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if broker.users is None or not guarded(request.path):
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        user = None
        if scheme.lower() == "bearer" and token:
            user = broker.users.authenticate(token)
        peer = request.remote or ""
        if user is None:
            log.warning("http_auth_failed", peer=peer, path=request.path)
            if token:  # a guess, not a page that has no token yet: slow it down
                await asyncio.sleep(failures.failed(peer))
            return web.json_response(
                {"error": "auth failed" if token else "auth required"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="linemq"'},
            )
        failures.succeeded(peer)
        request[USER] = user
        return await handler(request)

    return middleware


def host_middleware(broker: Operations) -> Middleware:
    """On a loopback address, answer only requests that name a loopback host.

    A web page can make its own name resolve to 127.0.0.1 ("DNS rebinding") and
    then reach this port as if it were its own origin, past what the JSON-only
    POSTs guard against. Its requests still carry that name in ``Host``.
    """
    guard = is_loopback(broker.config.http_host)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if guard and not _loopback_request(request):
            log.warning("http_host_refused", peer=request.remote, host=request.host)
            raise json_error(403, "host not allowed: use localhost or a loopback address")
        return await handler(request)

    return middleware


def _loopback_request(request: web.Request) -> bool:
    """Every name the request gives for this server is loopback: each ``Host`` header,
    and the request target's host (an absolute-form target, ``GET http://localhost/``,
    is what aiohttp's ``request.url`` takes, whatever ``Host`` says)."""
    names = [request.url.host or ""]
    for value in request.headers.getall("Host", ()):
        try:
            names.append(URL(f"http://{value}/").host or "")
        except ValueError:
            return False
    return all(is_loopback(name) for name in names)
