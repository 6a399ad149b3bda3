"""The bus seam: what actors need from a message broker, and nothing more.

Like httpx's transports, the bus is where tests swap the real thing for a
fake: `NatsBus` for real runs (and for every capability's real-NATS test),
`MemoryBus` for fast unit tests in virtual time. One contract test suite
(`runtime.testing.check_bus`, run by tests/runtime/test_bus_contract.py) runs against both, so the fake cannot drift.

Semantics both implementations honour (they are nats-py's):

* A subscription's handler runs one message at a time, in order.
* Subject wildcards: ``*`` matches one token, ``>`` the rest.
* Subscriptions in the same queue group share the messages between them.
* Past `pending_limit` queued messages a subscription drops new ones and the
  bus counts a slow consumer; a publisher never blocks on a slow subscriber.
* A handler's exception is logged and counted; it never stops the subscription.
* While the link to the broker is down (`connected` is False), publishes are
  buffered and sent after the reconnect; `connection` tells who needs to know
  (`wait_connected`, `connection.next_change`, `connection.listen`).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from .errors import BusClosedError, PublishError

if TYPE_CHECKING:
    from .kv import KeyValue

log = logging.getLogger("sniper.bus")


if TYPE_CHECKING:
    from .stream import StreamSpec


class Envelope(NamedTuple):
    """A message as it came off the bus: subject, raw bytes, reply subject, headers.

    A NamedTuple: immutable like a frozen dataclass, but built ~3x faster,
    which matters because one is built per delivered message.
    """

    subject: str
    data: bytes
    reply: str | None = None
    headers: dict[str, str] | None = None


Handler = Callable[[Envelope], Awaitable[None]]


class Subscription(ABC):
    """A live subscription; `unsubscribe` is idempotent."""

    subject: str

    @abstractmethod
    async def unsubscribe(self) -> None: ...


@dataclass(slots=True)
class BusStats:
    """Counters a bus keeps about itself (`Metrics.watch_bus` exports them to /metrics)."""

    published: int = 0
    delivered: int = 0
    slow_consumer_drops: int = 0
    permission_violations: int = 0
    handler_errors: int = 0
    disconnects: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)

    def note_error(self, text: str) -> None:
        self.errors.append(text)
        del self.errors[:-20]  # keep the last few for diagnostics


Listener = Callable[[bool], None]


class ConnectionState:
    """Whether a bus reaches its broker now, and a way to wait for that to change.

    A bus sets it from its transport (nats-py's disconnected/reconnected
    callbacks; `MemoryBus.disconnect`/`reconnect` in tests). `changes` counts
    every transition and `outages` every loss, so "did an outage overlap this
    cycle?" is a comparison of two readings, with no callback to miss.
    """

    def __init__(self, connected: bool = True) -> None:
        self._connected = connected
        self.closed = False
        self.changes = 0
        self.outages = 0
        self._changed = asyncio.Event()
        self._listeners: list[Listener] = []

    @property
    def connected(self) -> bool:
        return self._connected

    def set(self, connected: bool) -> bool:
        """Record the link as up or down; True if that was a transition (waiters and listeners are told)."""
        if self.closed or connected == self._connected:
            return False
        self._connected = connected
        self.changes += 1
        if not connected:
            self.outages += 1
        self._wake()
        for listener in list(self._listeners):
            try:
                listener(connected)
            except Exception:  # a listener's bug must not break the bus callback that reports the change
                log.exception("connection listener failed")
        return True

    def close(self) -> None:
        """The bus is gone for good: down, and every waiter woken (to find it closed)."""
        self._connected = False
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def next_change(self) -> None:
        """Return at the next transition (either way) or at close."""
        await self._changed.wait()

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(connected)` at every transition; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None


class Bus(ABC):
    """Publish, subscribe, request/reply over subjects."""

    stats: BusStats
    #: Largest message the broker accepts (NATS' default; NatsBus reads the server's value).
    max_payload: int = 1024 * 1024

    def check_size(self, subject: str, data: bytes) -> None:
        """PublishError(too_large) before a message the broker would refuse is sent."""
        if len(data) > self.max_payload:
            raise PublishError(
                "too_large", subject=subject, size=len(data), detail=f"the broker's limit is {self.max_payload}"
            )

    @abstractmethod
    async def publish(
        self, subject: str, data: bytes, *, reply: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """Send `data` on `subject`; fire-and-forget."""

    @abstractmethod
    async def subscribe(
        self, subject: str, handler: Handler, *, queue: str | None = None, pending: int | None = None
    ) -> Subscription:
        """Deliver every message matching `subject` to `handler`, one at a time.

        `pending` bounds the messages queued for the handler (the bus's default
        when None); beyond it they are dropped and counted as slow-consumer drops.
        """

    @abstractmethod
    async def request(self, subject: str, data: bytes, *, timeout: float) -> Envelope:  # noqa: ASYNC109  # the bus API mirrors nats-py (request/flush take a timeout)
        """Send `data` and wait for one reply; RequestTimeoutError if none comes."""

    async def respond(self, envelope: Envelope, data: bytes) -> None:
        """Answer a request; a message without a reply subject is ignored."""
        if envelope.reply:
            await self.publish(envelope.reply, data)

    @abstractmethod
    async def flush(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109  # the bus API mirrors nats-py (request/flush take a timeout)
        """Wait until everything published so far has left this process."""

    @abstractmethod
    async def close(self) -> None:
        """Drain subscriptions, flush, and release the connection. Idempotent."""

    @property
    @abstractmethod
    def is_closed(self) -> bool: ...

    @abstractmethod
    async def key_value(self, bucket: str) -> KeyValue:
        """The named key-value bucket, created on first use (see actors.kv)."""

    @property
    def keeps_state(self) -> bool:
        """Whether this bus can keep key-value buckets at all (False: a NATS server without JetStream).

        A bucket can still be unreachable for a while where this is True (an election in a cluster).
        """
        return True

    # -- durable streams (runtime.stream) ------------------------------------------
    async def ensure_stream(self, spec: StreamSpec) -> None:
        """Create the stream, or bring it to `spec`; StreamUnavailable where this bus keeps none."""
        from .stream import StreamUnavailable

        raise StreamUnavailable(f"{type(self).__name__} keeps no streams")

    async def last_per_subject(self, stream: str, subject: str) -> list[Envelope]:
        """The newest stored message of every subject of `stream` matching `subject`, by subject."""
        from .stream import StreamUnavailable

        raise StreamUnavailable(f"{type(self).__name__} keeps no streams")

    async def follow_stream(self, stream: str, subject: str, handler: Handler) -> Subscription:
        """Deliver the newest stored message of each matching subject, then every new one (in order)."""
        from .stream import StreamUnavailable

        raise StreamUnavailable(f"{type(self).__name__} keeps no streams")

    # -- the link to the broker ------------------------------------------------
    #: Up or down, with waiters and listeners; each bus creates its own in __init__.
    connection: ConnectionState

    @property
    def connected(self) -> bool:
        """True while a publish reaches the broker now.

        False while reconnecting: nats-py would then hold a publish in its
        reconnect buffer and send it after the outage, late. A publisher for
        whom late is wrong (the scheduler's ticks) checks this first and drops.
        """
        return not self.is_closed and self.connection.connected

    async def wait_connected(self) -> None:
        """Return once `connected` (at once if it is); BusClosedError if the bus is closed meanwhile."""
        while not self.connected:
            if self.is_closed or self.connection.closed:
                raise BusClosedError("the bus was closed while waiting for the broker")
            await self.connection.next_change()

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is one token, a trailing ``>`` one or more."""
    p = pattern.split(".")
    s = subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s):
            return False
        if tok != "*" and tok != s[i]:
            return False
    return len(p) == len(s)
