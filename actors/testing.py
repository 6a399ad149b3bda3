"""Fakes and helpers for testing actors, shipped with the package.

`Recorder` subscribes to a subject and keeps every decoded message, with
`wait_for` to await a condition without sleeping: on a `MemoryBus` with a
`VirtualClock` in autojump mode, a whole hour of ticks runs in milliseconds;
on a real `NatsBus`, `wait_for` waits on delivery events, bounded by a
real-time deadline so a broken test fails instead of hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from messages.codec import decoder_for
from messages.errors import DecodeError

from .bus import Bus, Envelope, Subscription

T = TypeVar("T")


class Recorder(Generic[T]):
    """Collects messages of one type from one subject (wildcards allowed)."""

    def __init__(self, bus: Bus, subject: str, type: Any) -> None:
        self.bus = bus
        self.subject = subject
        self.messages: list[T] = []
        self.envelopes: list[Envelope] = []
        self.undecodable: list[DecodeError] = []
        self._decoder = decoder_for(type)
        self._changed = asyncio.Event()
        self._sub: Subscription | None = None

    async def start(self) -> Recorder[T]:
        self._sub = await self.bus.subscribe(self.subject, self._on)
        return self

    async def _on(self, env: Envelope) -> None:
        try:
            self.messages.append(self._decoder.decode(env.data, subject=env.subject))
            self.envelopes.append(env)
        except DecodeError as err:
            self.undecodable.append(err)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[list[T]], bool], *, timeout: float = 10.0) -> list[T]:  # noqa: ASYNC109  # a test helper's bounded wait in real seconds, as its docstring says
        """Wait until `predicate(messages)` holds; TimeoutError (real seconds) otherwise."""

        async def until() -> None:
            while not predicate(self.messages):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.messages

    async def wait_count(self, n: int, *, timeout: float = 10.0) -> list[T]:  # noqa: ASYNC109  # a test helper's bounded wait in real seconds, as its docstring says
        return await self.wait_for(lambda msgs: len(msgs) >= n, timeout=timeout)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def __aenter__(self) -> Recorder[T]:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class FakeBackend:
    """A scriptable backend for `MockTransport`: per-path responses, faults and virtual latency.

    ``FakeBackend(clock, {"/whales/alerts": body_dict, ...})`` answers 200 with
    the JSON body for a known path and 404 otherwise. `fail(path, status,
    ...)` makes a path answer an error; `latency[path]` adds clock time before
    answering. `calls` lists (path, query) of every request, for counting
    upstream economy.
    """

    def __init__(self, clock: Any, bodies: dict[str, Any] | None = None) -> None:
        from .upstream import Response

        self._response = Response
        self.clock = clock
        self.bodies: dict[str, Any] = dict(bodies or {})
        self.faults: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.latency: dict[str, float] = {}
        self.calls: list[tuple[str, dict[str, str]]] = []

    def fail(
        self, path: str, status: int, *, body: bytes = b'{"detail": "fault"}', headers: dict[str, str] | None = None
    ) -> None:
        self.faults[path] = (status, {k.lower(): v for k, v in (headers or {}).items()}, body)

    def heal(self, path: str | None = None) -> None:
        if path is None:
            self.faults.clear()
        else:
            self.faults.pop(path, None)

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.calls if p == path)

    async def __call__(self, url: str) -> Any:
        import json
        from urllib.parse import parse_qsl, urlsplit

        parts = urlsplit(url)
        self.calls.append((parts.path, dict(parse_qsl(parts.query))))
        delay = self.latency.get(parts.path, 0.0)
        if delay:
            await self.clock.sleep(delay)
        if parts.path in self.faults:
            status, headers, body = self.faults[parts.path]
            return self._response(status, headers, body)
        if parts.path not in self.bodies:
            return self._response(404, {}, b'{"detail": "Not Found"}')
        body = self.bodies[parts.path]
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self._response(200, {"content-type": "application/json"}, data)
