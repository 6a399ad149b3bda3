"""Key-value buckets: shared, watched, compare-and-set state for the control plane.

Circuit breakers and feature flags must look the same to every process on
every host and survive restarts, so they live in a bucket: JetStream KV on
NATS (`NatsKeyValue`), a dict on the in-memory bus (`MemoryKeyValue`). Both
honour one contract (`runtime.testing.check_key_value`, run by tests/runtime/test_kv_contract.py):

* `put` writes and returns the new revision; `update(..., last=rev)` writes
  only if the key is still at `rev` (``last=0``: only if absent), else raises
  `KVConflict`, so concurrent writers never lose an update silently.
* `watch` first replays the current value of every key, then every change;
  a deleted key arrives with ``value=None``.
* Any other failure to reach the bucket raises `KVUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .bus import Subscription
from .errors import BusError

log = logging.getLogger("sniper.kv")

_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")


class KVConflict(BusError):
    """A compare-and-set write lost: the key changed since the revision read."""


class KVUnavailable(BusError):
    """The bucket could not be reached (JetStream down, timed out, not enabled).

    Control-plane state is persisted best-effort: actors catch this, log it
    and go on with their in-memory state and live events.
    """


@dataclass(frozen=True, slots=True)
class KVEntry:
    key: str
    value: bytes | None  # None: deleted
    revision: int


WatchHandler = Callable[[KVEntry], Awaitable[None]]


def check_key(key: str) -> str:
    if not _KEY.match(key) or key.startswith(".") or key.endswith("."):
        raise ValueError(f"{key!r} is not a valid key (letters, digits, - / _ = and inner dots)")
    return key


class KeyValue(ABC):
    """One bucket."""

    name: str

    @abstractmethod
    async def get(self, key: str) -> KVEntry | None: ...

    @abstractmethod
    async def put(self, key: str, value: bytes) -> int: ...

    @abstractmethod
    async def update(self, key: str, value: bytes, *, last: int) -> int: ...

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    @abstractmethod
    async def entries(self) -> dict[str, KVEntry]:
        """Current value of every live key."""

    @abstractmethod
    async def watch(self, handler: WatchHandler) -> Subscription:
        """Replay current values, then deliver every change, one at a time."""


class _Watch(Subscription):
    def __init__(self, bucket: MemoryKeyValue, handler: WatchHandler) -> None:
        self.subject = f"kv.{bucket.name}"
        self._bucket = bucket
        self._handler = handler
        self._queue: asyncio.Queue[KVEntry] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            entry = await self._queue.get()
            try:
                await self._handler(entry)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("kv watch handler failed on %s", entry.key)

    async def unsubscribe(self) -> None:
        if self in self._bucket._watches:
            self._bucket._watches.remove(self)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class MemoryKeyValue(KeyValue):
    """A bucket in this process (for MemoryBus); same semantics as JetStream KV."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._data: dict[str, KVEntry] = {}
        self._revision = 0
        self._watches: list[_Watch] = []

    async def get(self, key: str) -> KVEntry | None:
        entry = self._data.get(check_key(key))
        return entry if entry is not None and entry.value is not None else None

    def _write(self, key: str, value: bytes | None) -> int:
        self._revision += 1
        entry = KVEntry(key, value, self._revision)
        self._data[key] = entry
        for watch in self._watches:
            watch._queue.put_nowait(entry)
        return self._revision

    async def put(self, key: str, value: bytes) -> int:
        return self._write(check_key(key), bytes(value))

    async def update(self, key: str, value: bytes, *, last: int) -> int:
        current = self._data.get(check_key(key))
        revision = 0 if current is None or current.value is None else current.revision
        if revision != last:
            raise KVConflict(f"{self.name}/{key}: expected revision {last}, found {revision}")
        return self._write(key, bytes(value))

    async def delete(self, key: str) -> None:
        if check_key(key) in self._data:
            self._write(key, None)

    async def entries(self) -> dict[str, KVEntry]:
        return {k: e for k, e in self._data.items() if e.value is not None}

    async def watch(self, handler: WatchHandler) -> Subscription:
        watch = _Watch(self, handler)
        for entry in self._data.values():
            if entry.value is not None:
                watch._queue.put_nowait(entry)
        self._watches.append(watch)
        return watch
