"""The status page: ``GET /`` (assets x modules, live) and ``GET /events`` (Server-Sent Events from `LiveState`).

    GET /                    status.html: no build step, nothing from the internet
    GET /static/status.js    its script (EventSource on ``events``, ages ticking every second)
    GET /static/status.css   its style
    GET /events              text/event-stream: a full snapshot first, then every change,
                             a comment line as heartbeat every 15 s

Each event is one ``data:`` line holding a JSON object with a ``type``
(``snapshot``, ``signal``, ``health``, ``status``, ``alert``, ``connection``;
see `sniper.gateway.live`). A client that falls behind gets a ``snapshot``
again; one that goes away is noticed within a second and unsubscribed; at the
application's shutdown (or `LiveState.stop`) every stream ends at once. The
page's URLs are relative, so it also works under a path prefix ending in ``/``.
The files come from the package (``sniper/gateway/static``, package data).
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import Any, Final

from aiohttp import web

from .live import CLOSED, Change, LiveState

#: Seconds between heartbeats on an idle event stream (proxies close silent connections).
HEARTBEAT: Final = 15.0
#: How often (seconds) a waiting event stream checks that its client is still there.
CLIENT_CHECK: Final = 1.0
#: The files served next to the page, with their types.
ASSETS: Final = {"status.js": "text/javascript", "status.css": "text/css"}
#: Only this origin: no CDN, no inline script, no framing.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def static_file(name: str) -> bytes:
    """A file of ``sniper/gateway/static`` (package data)."""
    return (resources.files("sniper.gateway") / "static" / name).read_bytes()


def sse(change: dict[str, Any]) -> bytes:
    """One Server-Sent Event carrying `change` as a single JSON line."""
    return b"data: " + json.dumps(change, separators=(",", ":"), allow_nan=False).encode() + b"\n\n"


def add_status_routes(app: web.Application, live: LiveState, *, heartbeat: float = HEARTBEAT) -> None:
    """``GET /``, ``GET /events`` and the page's two files, reading from `live`."""
    page = static_file("status.html")
    files = {name: static_file(name) for name in ASSETS}
    streams: set[asyncio.Queue[Change]] = set()

    async def index(_: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers=_HEADERS)

    def serve(name: str) -> Any:
        async def handler(_: web.Request) -> web.Response:
            return web.Response(body=files[name], content_type=ASSETS[name], charset="utf-8", headers=_HEADERS)

        return handler

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        queue = live.subscribe()
        streams.add(queue)
        try:
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n" + sse(live.snapshot()))
            idle = 0.0
            while True:
                try:
                    change = await live.clock.timeout(min(CLIENT_CHECK, heartbeat), queue.get())
                except TimeoutError:
                    if request.transport is None or request.transport.is_closing():
                        break  # the client went away
                    idle += min(CLIENT_CHECK, heartbeat)
                    if idle >= heartbeat:
                        idle = 0.0
                        await response.write(b": heartbeat\n\n")
                    continue
                if change.get("type") == CLOSED["type"]:
                    break
                idle = 0.0
                await response.write(sse(change))
        except ConnectionError:  # the client went away mid-write (aiohttp's ClientConnectionResetError)
            pass
        finally:
            streams.discard(queue)
            live.unsubscribe(queue)
        return response

    async def end_streams(_: web.Application) -> None:
        """At shutdown every open event stream ends at once (the server does not wait for them)."""
        for queue in list(streams):
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(dict(CLOSED))

    app.on_shutdown.append(end_streams)

    app.router.add_get("/", index)
    for name in ASSETS:
        app.router.add_get(f"/static/{name}", serve(name))
    app.router.add_get("/events", events)
