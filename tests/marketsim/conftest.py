"""Fixtures for the marketsim tests: loopback servers, a client, a fake clock."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runtime.testing import wait_until as runtime_wait_until

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the package lives at the repository root
    sys.path.insert(0, str(ROOT))

from marketsim import RunningServer, start_server  # noqa: E402  # after the sys.path fix-up above


class FakeClock:
    """Injectable ``now`` that only moves when a test says so."""

    def __init__(self, start: float = 1_764_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Reply:
    """Status, headers and decoded body of one HTTP exchange."""

    def __init__(self, status: int, headers: Any, raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw

    def json(self) -> Any:
        import json

        return json.loads(self.raw)


Start = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Factory: ``srv = await start(seed=1, flavor="v2")`` on 127.0.0.1 port 0."""
    servers: list[RunningServer] = []

    async def _start(**kwargs: Any) -> RunningServer:
        server = await start_server("127.0.0.1", 0, **kwargs)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


@pytest.fixture
def call(session: aiohttp.ClientSession) -> Callable[..., Awaitable[Reply]]:
    """``await call(srv, "GET", "/path", json=...)`` -> ``Reply``."""

    async def _call(server: RunningServer, method: str, path: str, **kwargs: Any) -> Reply:
        async with session.request(method, server.url + path, **kwargs) as response:
            return Reply(response.status, response.headers, await response.read())

    return _call


@pytest.fixture
def wait_until() -> Callable[[Callable[[], bool]], Awaitable[None]]:
    """The project's one `wait_until` (runtime.testing), bounded at 2 s for these loopback tests."""

    async def _wait(predicate: Callable[[], bool]) -> None:
        await runtime_wait_until(predicate, timeout=2.0)

    return _wait
