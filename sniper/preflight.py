"""Start-up checks for `sniper run`: is the market-data backend there at all?

Once the pipeline runs, a backend outage is data (modules report
``degraded(unreachable)`` and breakers open). At start it is a mistake to
report at once: a wrong host or port in ``--backend`` would otherwise look like
a pipeline that runs and never has data. So `sniper run` asks the backend once,
after NATS is connected and before any actor starts, and exits 2 with one line
if nothing answers within the deadline. Any HTTP answer counts, even a 404:
only "nobody there" fails.
"""

from __future__ import annotations

import asyncio

import aiohttp

from messages import ConfigError

#: Seconds the backend has to answer the start-up request (the NATS connect deadline is the same).
BACKEND_DEADLINE = 5.0


async def check_backend(url: str, deadline: float = BACKEND_DEADLINE) -> None:
    """ConfigError (exit 2) unless something at `url` answers HTTP within `deadline` seconds."""
    timeout = aiohttp.ClientTimeout(total=deadline)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(url, allow_redirects=False) as resp,
        ):
            resp.release()
    except (TimeoutError, aiohttp.ClientConnectionError, OSError) as exc:
        reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc) or type(exc).__name__
        raise ConfigError(
            f"--backend / SNIPER_BACKEND: nothing answers at {url} within {deadline:g}s: {reason}"
        ) from None
