"""Fakes and helpers for testing actors on this runtime, shipped with the package.

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
from runtime.bus import Bus, Envelope, Subscription

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
