"""JetStream key-value buckets behind the `KeyValue` contract."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
import nats.js.errors as jse
from nats.js.kv import KV_DEL, KV_PURGE
from nats.js.kv import KeyValue as JsKeyValue

from .bus import Subscription
from .kv import KeyValue, KVConflict, KVEntry, KVUnavailable, WatchHandler, check_key

log = logging.getLogger("sniper.kv.nats")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def unavailable_as_bus_error(fn: F) -> F:
    """Turn nats-py's errors (JetStream down, timeouts) into KVUnavailable; CAS conflicts pass."""

    @functools.wraps(fn)
    async def wrapper(self: NatsKeyValue, *args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(self, *args, **kwargs)
        except (KVConflict, ValueError):
            raise
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise KVUnavailable(f"bucket {self.name}: {type(exc).__name__}: {exc}") from None

    return wrapper  # type: ignore[return-value]


class _NatsWatch(Subscription):
    def __init__(self, name: str, watcher: JsKeyValue.KeyWatcher, handler: WatchHandler) -> None:
        self.subject = f"kv.{name}"
        self._watcher = watcher
        self._handler = handler
        self._task = asyncio.get_running_loop().create_task(self._pump(), name=f"kv-watch:{name}")

    async def _pump(self) -> None:
        async for entry in self._watcher:
            if entry is None:  # "initial values done" marker
                continue
            deleted = entry.operation in (KV_DEL, KV_PURGE)
            try:
                await self._handler(KVEntry(entry.key, None if deleted else entry.value, entry.revision))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("kv watch handler failed on %s", entry.key)

    async def unsubscribe(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        try:
            await self._watcher.stop()  # type: ignore[no-untyped-call]  # nats-py leaves KeyWatcher.stop unannotated
        except Exception as exc:  # connection gone: nothing to stop
            log.debug("kv watcher stop: %r", exc)


class NatsKeyValue(KeyValue):
    def __init__(self, name: str, kv: JsKeyValue) -> None:
        self.name = name
        self._kv = kv

    @unavailable_as_bus_error
    async def get(self, key: str) -> KVEntry | None:
        try:
            entry = await self._kv.get(check_key(key))
        except jse.KeyNotFoundError:
            return None
        return KVEntry(key, entry.value, entry.revision or 0)

    @unavailable_as_bus_error
    async def put(self, key: str, value: bytes) -> int:
        return await self._kv.put(check_key(key), value)

    @unavailable_as_bus_error
    async def update(self, key: str, value: bytes, *, last: int) -> int:
        try:
            if last == 0:
                return await self._kv.create(check_key(key), value)
            return await self._kv.update(check_key(key), value, last=last)
        except jse.KeyWrongLastSequenceError as exc:
            raise KVConflict(f"{self.name}/{key}: revision {last} is not current ({exc})") from None

    @unavailable_as_bus_error
    async def delete(self, key: str) -> None:
        await self._kv.delete(check_key(key))

    @unavailable_as_bus_error
    async def entries(self) -> dict[str, KVEntry]:
        try:
            keys = await self._kv.keys()
        except jse.NoKeysError:
            return {}
        out = {}
        for key in keys:
            entry = await self.get(key)
            if entry is not None:
                out[key] = entry
        return out

    @unavailable_as_bus_error
    async def watch(self, handler: WatchHandler) -> Subscription:
        watcher = await self._kv.watchall()
        return _NatsWatch(self.name, watcher, handler)
