"""Starting and stopping a simulator server on a real socket.

``serve()`` is what fixtures want (bind port 0, read the URL, always clean
up); ``start_server()`` is the same without the context manager; ``run()``
blocks until SIGINT/SIGTERM for the CLI. Handlers are cancelled when their
client disconnects, and hung (timeout-fault) requests are released at
shutdown, so stopping never waits on a fault.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._app import create_app
from ._simulator import Simulator

__all__ = ["RunningServer", "run", "serve", "start_server"]

log = logging.getLogger("marketsim")


@dataclass(slots=True)
class RunningServer:
    """A listening simulator: ``url`` has no trailing slash."""

    url: str
    host: str
    port: int
    sim: Simulator
    runner: web.AppRunner

    async def close(self) -> None:
        """Stop listening and release every in-flight request."""
        await self.runner.cleanup()


async def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    sim: Simulator | None = None,
    access_log: bool = False,
    shutdown_timeout: float = 5.0,
    **config: Any,
) -> RunningServer:
    """Serve ``sim`` (or ``Simulator(**config)``) on ``host:port``; port 0 picks one."""
    if sim is None:
        sim = Simulator(**config)
    elif config:
        raise TypeError("pass either sim= or Simulator keyword arguments, not both")
    runner = web.AppRunner(
        create_app(sim),
        handler_cancellation=True,
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
    shown = f"[{host}]" if ":" in host else host
    return RunningServer(f"http://{shown}:{bound_port}", host, bound_port, sim, runner)


@asynccontextmanager
async def serve(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> AsyncIterator[RunningServer]:
    """``async with serve(seed=1) as srv: ... srv.url ... srv.sim``."""
    server = await start_server(host, port, **kwargs)
    try:
        yield server
    finally:
        await server.close()


async def _serve_until_signalled(
    host: str, port: int, ready: Callable[[RunningServer], None] | None, **kwargs: Any
) -> None:
    server = await start_server(host, port, **kwargs)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        sim = server.sim
        log.info(
            "marketsim listening on %s (flavor=%s, spec=%s, seed=%s)",
            server.url,
            sim.flavor,
            "on" if sim.spec_enabled else "off",
            sim.seed,
        )
        if ready is not None:
            ready(server)
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await server.close()
        log.info("marketsim stopped")


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    ready: Callable[[RunningServer], None] | None = None,
    **kwargs: Any,
) -> None:
    """Serve until SIGINT/SIGTERM (blocking); ``ready`` is called once listening."""
    asyncio.run(_serve_until_signalled(host, port, ready, **kwargs))
