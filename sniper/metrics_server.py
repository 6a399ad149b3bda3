"""Serve a process's Prometheus registry on ``/metrics`` (aiohttp, no extra thread).

It listens on loopback unless told otherwise (``--metrics-host 0.0.0.0`` in a
container), and logs the address it actually bound, port 0 resolved. The
handler is prometheus_client's own, so the format follows the scraper's
``Accept`` (Prometheus text 0.0.4 by default, OpenMetrics when asked) and
``Accept-Encoding: gzip`` compresses; ``?name[]=...`` narrows the answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from actors.metrics import Metrics
from runtime.logs import get_logger

log = get_logger("metrics")

#: Addresses that mean "every interface", and where to reach them from this host.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.asynccontextmanager
async def serve_metrics(metrics: Metrics, port: int, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve until the context exits; yields a URL to scrape it from this host (port 0 picks a free port)."""
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = [_host_port(addr[0], addr[1]) for addr in runner.addresses]
    port = runner.addresses[0][1]
    url = f"http://{_host_port(_WILDCARDS.get(host, host), port)}/metrics"
    log.info("metrics_serving", url=url, bound=",".join(bound))
    try:
        yield url
    finally:
        await runner.cleanup()
