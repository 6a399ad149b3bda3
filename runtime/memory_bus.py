"""An in-process bus for fast unit tests, with nats-py's delivery semantics.

Request timeouts go through the injected clock, so a test in virtual time can
exercise "nobody answered within 2 s" without waiting 2 s. `disconnect()` and
`reconnect()` simulate a broker outage the way nats-py lives through one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import defaultdict

from .bus import Bus, BusStats, ConnectionState, Envelope, Handler, Subscription, subject_matches
from .clock import Clock, SystemClock
from .errors import BusClosedError, PublishError, RequestTimeoutError
from .kv import KeyValue, KVUnavailable, MemoryKeyValue
from .stream import MemoryStream, StreamSpec, StreamUnavailable

log = logging.getLogger("sniper.bus.memory")

DEFAULT_PENDING_LIMIT = 65_536
#: Bytes held while "disconnected" before a publish fails (NatsBus's reconnect buffer default).
DEFAULT_PENDING_SIZE = 8 * 1024 * 1024


class _MemorySubscription(Subscription):
    def __init__(self, bus: MemoryBus, subject: str, handler: Handler, queue: str | None, limit: int) -> None:
        self.subject = subject
        self.queue = queue
        self._bus = bus
        self._handler = handler
        self._inbox: asyncio.Queue[Envelope] = asyncio.Queue()
        self._limit = limit
        self._task = asyncio.get_running_loop().create_task(self._drain(), name=f"memsub:{subject}")
        self.active = True

    def offer(self, env: Envelope) -> None:
        if self._inbox.qsize() >= self._limit:
            self._bus.stats.slow_consumer_drops += 1
            return
        self._inbox.put_nowait(env)

    async def _drain(self) -> None:
        while True:
            env = await self._inbox.get()
            self._bus.stats.delivered += 1
            try:
                await self._handler(env)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the contract: a handler error never ends the subscription
                self._bus.stats.handler_errors += 1
                self._bus.stats.note_error(f"handler on {self.subject}: {exc!r}")
                log.exception("handler failed on %s", env.subject)

    async def unsubscribe(self) -> None:
        if not self.active:
            return
        self.active = False
        self._bus._remove(self)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class MemoryBus(Bus):
    """A bus that lives in one event loop. Not for production; see `NatsBus`."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        pending_limit: int = DEFAULT_PENDING_LIMIT,
        pending_size: int = DEFAULT_PENDING_SIZE,
    ) -> None:
        self.clock = clock or SystemClock()
        self.stats = BusStats()
        self.connection = ConnectionState()
        self._pending_size = pending_size
        self._held: list[Envelope] = []  # published while "disconnected", sent at reconnect()
        self._held_bytes = 0
        self._subs: list[_MemorySubscription] = []
        self._pending_limit = pending_limit
        self._inbox_ids = itertools.count()
        self._rr: dict[tuple[str, str], int] = defaultdict(int)
        self._closed = False
        self._buckets: dict[str, MemoryKeyValue] = {}
        self._streams: dict[str, MemoryStream] = {}
        self._followers: dict[str, list[tuple[str, _MemorySubscription]]] = defaultdict(list)

    async def key_value(self, bucket: str) -> KeyValue:
        self._check_open()
        if not self.connection.connected:
            raise KVUnavailable(f"bucket {bucket}: the memory bus is disconnected (test hook)")
        if bucket not in self._buckets:
            self._buckets[bucket] = MemoryKeyValue(bucket)
        return self._buckets[bucket]

    @property
    def is_closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise BusClosedError("the memory bus is closed")

    async def publish(
        self, subject: str, data: bytes, *, reply: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self._check_open()
        self.check_size(subject, data)
        env = Envelope(subject, bytes(data), reply, dict(headers) if headers else None)
        if not self.connection.connected:  # nats-py's reconnect buffer: held, sent after the outage
            if self._held_bytes + len(data) > self._pending_size:
                raise PublishError("buffer_full", subject=subject, size=len(data), detail="disconnected (test hook)")
            self._held.append(env)
            self._held_bytes += len(data)
            self.stats.published += 1
            return
        self.stats.published += 1
        self._route(env)

    def _route(self, env: Envelope) -> None:
        subject = env.subject
        for stream in self._streams.values():
            if stream.captures(env):
                stored = stream.store(env, self.clock.now())
                if stored:
                    for pattern, follower in self._followers[stream.spec.name]:
                        if subject_matches(pattern, subject):
                            follower.offer(env)
        groups: dict[tuple[str, str], list[_MemorySubscription]] = {}
        for sub in self._subs:
            if not subject_matches(sub.subject, subject):
                continue
            if sub.queue is None:
                sub.offer(env)
            else:
                groups.setdefault((sub.subject, sub.queue), []).append(sub)
        for key, members in groups.items():
            idx = self._rr[key] % len(members)
            self._rr[key] += 1
            members[idx].offer(env)

    async def subscribe(
        self, subject: str, handler: Handler, *, queue: str | None = None, pending: int | None = None
    ) -> Subscription:
        self._check_open()
        sub = _MemorySubscription(self, subject, handler, queue, pending or self._pending_limit)
        self._subs.append(sub)
        return sub

    def _remove(self, sub: _MemorySubscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        for followers in self._followers.values():
            followers[:] = [(p, f) for p, f in followers if f is not sub]

    # -- streams: a model of JetStream's rules (runtime.stream) --------------------
    async def ensure_stream(self, spec: StreamSpec) -> None:
        self._check_open()
        if not self.connection.connected:
            raise StreamUnavailable(f"stream {spec.name}: the memory bus is disconnected (test hook)")
        if spec.name not in self._streams or self._streams[spec.name].spec != spec:
            self._streams[spec.name] = MemoryStream(spec)

    def _stream(self, name: str) -> MemoryStream:
        self._check_open()
        if name not in self._streams:
            raise StreamUnavailable(f"no stream {name!r}")
        return self._streams[name]

    async def last_per_subject(self, stream: str, subject: str) -> list[Envelope]:
        return self._stream(stream).last_per_subject(subject, self.clock.now())

    async def follow_stream(self, stream: str, subject: str, handler: Handler) -> Subscription:
        found = self._stream(stream)
        sub = _MemorySubscription(self, subject, handler, None, self._pending_limit)
        for env in found.last_per_subject(subject, self.clock.now()):
            sub.offer(env)
        self._followers[stream].append((subject, sub))
        return sub

    async def request(self, subject: str, data: bytes, *, timeout: float) -> Envelope:  # noqa: ASYNC109  # implements the Bus API, which mirrors nats-py
        self._check_open()
        inbox = f"_INBOX.mem.{next(self._inbox_ids)}"
        answer: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()

        async def on_reply(env: Envelope) -> None:
            if not answer.done():
                answer.set_result(env)

        sub = await self.subscribe(inbox, on_reply)
        try:
            if self.connection.connected and not any(subject_matches(s.subject, subject) for s in self._subs):
                raise RequestTimeoutError(f"no responders on {subject!r}")
            await self.publish(subject, data, reply=inbox)
            try:
                return await self.clock.timeout(timeout, answer)
            except TimeoutError:
                raise RequestTimeoutError(f"no reply on {subject!r} within {timeout:g}s") from None
        finally:
            await sub.unsubscribe()

    async def flush(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109  # implements the Bus API, which mirrors nats-py
        self._check_open()
        if not self.connection.connected:  # like a PING that waits for the reconnect
            await self.clock.timeout(timeout, self.wait_connected())
        # Let subscriber tasks take what is queued: the in-memory analogue of a flush.
        for _ in range(4):
            await asyncio.sleep(0)  # clock-ok: yield to subscriber tasks

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.connection.close()
        self._held.clear()
        for sub in list(self._subs):
            await sub.unsubscribe()

    # -- test hooks: a broker outage -------------------------------------------
    def disconnect(self) -> None:
        """Behave like a client whose broker went away (as NatsBus does while it reconnects).

        `connected` turns False and `connection` tells its waiters; publishes
        are held (up to `pending_size` bytes, then PublishError(buffer_full))
        and nothing is delivered; requests time out; buckets are unavailable.
        """
        self._check_open()
        if self.connection.set(False):
            self.stats.disconnects += 1

    def reconnect(self) -> None:
        """The broker is back: held publishes go out first, in order, then `connected` turns True."""
        self._check_open()
        if self.connection.connected:
            return
        held, self._held, self._held_bytes = self._held, [], 0
        for env in held:
            self._route(env)
        self.connection.set(True)
        self.stats.reconnects += 1
