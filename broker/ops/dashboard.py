"""The dashboard: three static files from ``broker/ops/static`` that call the JSON API.

No build step and no template: the page holds no data, so it is served without
auth, and its script fetches everything from ``/api/...`` with the token the
user typed. The script builds the DOM with ``textContent`` only, never HTML
strings, and a strict Content-Security-Policy forbids inline script, so message
texts (which are arbitrary) cannot run as code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Final

from aiohttp import web

STATIC: Final = {
    "/": ("index.html", "text/html"),
    "/static/app.js": ("app.js", "text/javascript"),
    "/static/style.css": ("style.css", "text/css"),
}
HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def add_dashboard_routes(app: web.Application) -> None:
    """Read the files once (they are small) and serve them from memory."""
    folder = resources.files("linemq.broker.ops") / "static"
    for path, (name, content_type) in STATIC.items():
        body = (folder / name).read_bytes()
        app.router.add_get(path, _serve(body, content_type))


def _serve(body: bytes, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=HEADERS)

    return handler
