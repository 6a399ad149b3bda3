"""Small test helpers shared by the contract suites."""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")

WAIT_TIMEOUT = 5.0  # real seconds `Collector.wait` allows before failing the test


class Collector(Generic[T]):
    """An async callback that keeps what it is called with; `wait(n)` waits without sleeping."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self._changed = asyncio.Event()

    async def __call__(self, item: T) -> None:
        self.items.append(item)
        self._changed.set()

    async def wait(self, n: int) -> list[T]:
        """Wait until `n` items have arrived; TimeoutError after `WAIT_TIMEOUT` real seconds."""

        async def until() -> None:
            while len(self.items) < n:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), WAIT_TIMEOUT)
        return self.items
