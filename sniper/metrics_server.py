"""Serve a process's Prometheus registry on ``/metrics`` (aiohttp, no extra thread)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from actors.logs import get_logger
from actors.metrics import Metrics

log = get_logger("metrics")


@contextlib.asynccontextmanager
async def serve_metrics(metrics: Metrics, port: int, host: str = "0.0.0.0") -> AsyncIterator[str]:
    """Serve until the context exits; yields the URL (port 0 picks a free port)."""

    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{bound}/metrics"
    log.info("metrics_serving", url=url)
    try:
        yield url
    finally:
        await runner.cleanup()
