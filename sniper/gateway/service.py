"""The gateway process: the strict proxy, plus sniper's own pages and read endpoints when NATS is given.

`run_gateway` is ``sniper gateway``. With ``--nats`` it connects (as any
read-only client may: the bot user is enough), follows the pipeline in a
`LiveState` (the signal stream, then live), and adds the status page (``/``,
``/events``) and the GPT read endpoints (``<prefix>/sniper/...``). Without it,
only the proxy and its OpenAPI document. ``<prefix>/openapi.json`` is always
served: the backend's document rewritten for the gateway (`gpts.gateway_document`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

from messages import Subjects
from runtime import NatsBus, SystemClock
from runtime.clock import Clock

from .app import GATEWAY_STATE, Extra, GatewayConfig, serve
from .gpts import add_gpts_routes, gateway_document, sniper_paths
from .live import LiveState
from .status import add_status_routes


def add_openapi_route(*, with_sniper: bool) -> Extra:
    """``<prefix>/openapi.json``: for GPT Actions, on the host and scheme the caller used."""

    def install(app: web.Application, config: GatewayConfig) -> None:
        async def document(request: web.Request) -> web.Response:
            state = app[GATEWAY_STATE]
            server = f"{request.scheme}://{request.host}{config.prefix}"
            backend: dict[str, Any] = dict(state.backend_spec or {"openapi": "3.1.0", "info": {}, "paths": {}})
            doc = gateway_document(backend, server=server, allowed=set(state.allowed))
            if not with_sniper:
                for path in sniper_paths()[0]:
                    doc["paths"].pop(path, None)
            return web.json_response(doc)

        app.router.add_get(f"{config.prefix}/openapi.json", document)

    return install


def sniper_routes(live: LiveState, now: Callable[[], float]) -> list[Extra]:
    """The status page and the GPT read endpoints, fed by `live`."""
    return [
        lambda app, config: add_status_routes(app, live),
        lambda app, config: add_gpts_routes(app, config.prefix, live, now=now),
    ]


async def run_gateway(
    config: GatewayConfig,
    *,
    subjects: Subjects | None = None,
    duration: float | None = None,
    clock: Clock | None = None,
    ready: Callable[[str], None] | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM (or `duration`); with ``config.nats``, the live pages and endpoints too.

    `ready(url)` is called once the gateway listens (tests, embedding programs).
    """
    clock = clock or SystemClock()
    async with contextlib.AsyncExitStack() as stack:
        extra: list[Extra] = []
        if config.nats:
            bus = await NatsBus.connect(config.nats, name="sniper-gateway", **config.nats_auth.options())
            stack.push_async_callback(bus.close)
            live = LiveState(clock=clock)
            await live.start(bus, subjects or Subjects())
            stack.push_async_callback(live.stop)
            extra += sniper_routes(live, clock.now)
        extra.append(add_openapi_route(with_sniper=bool(config.nats)))
        return await serve(config, extra=extra, duration=duration, ready=ready)
    raise AssertionError("unreachable")  # pragma: no cover
