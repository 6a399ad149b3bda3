"""The real bus: nats-py with the settings a production service needs.

What this adds over a bare ``nats.connect()`` (see shared/NOTES.md):

* A bounded first connect. nats-py can hang ~120 s against a closed port
  even with reconnects off (nats.py issues 645, 663), so the first connect
  runs under our own deadline and fails with `BusConnectError` naming the URL.
* Explicit reconnect settings: after the first connect the client retries
  forever (a broker restart must not end a pipeline), buffering up to
  `pending_size` bytes of publishes meanwhile.
* Callback subscriptions (~3x faster than ``async for msg in sub.messages``).
* Counted, logged async errors: slow consumers, permission violations (they
  arrive at ``error_cb``; a denied subscribe returns normally), disconnects.
* Drain on close: in-flight handlers finish, buffered publishes are sent.

Time here is network I/O time (the connect deadline, request timeouts), not
actor time, so it uses the event loop directly rather than the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import nats
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError, SlowConsumerError
from nats.errors import TimeoutError as NatsTimeoutError

from messages.errors import BusClosedError, BusConnectError, RequestTimeoutError

from .bus import Bus, BusStats, Envelope, Handler, Subscription

if TYPE_CHECKING:
    from .nats_kv import NatsKeyValue

log = logging.getLogger("sniper.bus.nats")

#: Per-subscription queue bound before nats-py drops messages (its default is 512k).
DEFAULT_PENDING_MSGS = 65_536


class _NatsSubscription(Subscription):
    def __init__(self, sub: Any, subject: str) -> None:
        self._sub = sub
        self.subject = subject
        self._done = False

    async def unsubscribe(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            await self._sub.unsubscribe()
        except Exception as exc:  # connection already closed: nothing left to undo
            log.debug("unsubscribe %s: %r", self.subject, exc)


class NatsBus(Bus):
    """A `Bus` over one nats-py connection. Build it with `NatsBus.connect`."""

    def __init__(self, nc: Client, url: str) -> None:
        self._nc = nc
        self.url = url
        self.stats = BusStats()
        self._closed = False
        self._connecting = True
        self._buckets: dict[str, NatsKeyValue] = {}

    # -- connecting ---------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        name: str = "sniper",
        connect_deadline: float = 5.0,
        reconnect_wait: float = 0.5,
        max_reconnect_attempts: int = -1,
        ping_interval: float = 10.0,
        max_outstanding_pings: int = 3,
        pending_size: int = 8 * 1024 * 1024,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> NatsBus:
        """Connect to `url` (comma-separated for a cluster) within `connect_deadline` seconds."""
        nc = Client()
        bus = cls(nc, url)
        servers = [u.strip() for u in url.split(",") if u.strip()]
        options: dict[str, Any] = dict(
            servers=servers,
            name=name,
            connect_timeout=max(1, int(connect_deadline)),
            allow_reconnect=True,
            reconnect_time_wait=reconnect_wait,
            max_reconnect_attempts=max_reconnect_attempts,
            ping_interval=ping_interval,
            max_outstanding_pings=max_outstanding_pings,
            pending_size=pending_size,
            error_cb=bus._on_error,
            disconnected_cb=bus._on_disconnected,
            reconnected_cb=bus._on_reconnected,
            closed_cb=bus._on_closed,
        )
        if user is not None:
            options["user"] = user
            options["password"] = password
        if token is not None:
            options["token"] = token
        # The first connect must not retry forever: a wrong URL should fail fast.
        options["max_reconnect_attempts"] = 0 if max_reconnect_attempts < 0 else max_reconnect_attempts
        try:
            await asyncio.wait_for(nc.connect(**options), connect_deadline)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, asyncio.TimeoutError):
                reason = f"timed out (last error: {bus.stats.errors[-1]})" if bus.stats.errors else "timed out"
            raise BusConnectError(
                f"could not connect to NATS at {url} within {connect_deadline:g}s: {reason}"
            ) from None
        # Connected: from now on reconnect as configured (forever by default).
        bus._connecting = False
        nc.options["max_reconnect_attempts"] = max_reconnect_attempts
        log.info("connected to NATS %s as %r", nc.connected_url.netloc if nc.connected_url else url, name)
        return bus

    # -- callbacks (nats-py requires coroutines) ----------------------------
    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            self.stats.slow_consumer_drops += 1
            log.warning("slow consumer on %s: message dropped", getattr(exc, "subject", "?"))
            return
        self.stats.note_error(repr(exc))
        if self._connecting:  # reported once, by connect(), with the URL
            log.debug("NATS connect attempt failed: %r", exc)
        elif "Permissions Violation" in str(exc):
            log.error("NATS permission violation: %s", exc)
        else:
            self.stats.handler_errors += 1
            log.error("NATS async error: %r", exc)

    async def _on_disconnected(self) -> None:
        if not self._closed and not self._connecting:
            self.stats.disconnects += 1
            log.warning("disconnected from NATS %s", self.url)

    async def _on_reconnected(self) -> None:
        self.stats.reconnects += 1
        log.info("reconnected to NATS %s", self._nc.connected_url.netloc if self._nc.connected_url else self.url)

    async def _on_closed(self) -> None:
        log.debug("NATS connection closed")

    # -- the Bus interface --------------------------------------------------
    @property
    def is_closed(self) -> bool:
        return self._closed or self._nc.is_closed

    @property
    def client(self) -> Client:
        """The underlying nats-py client (JetStream, KV and micro services use it)."""
        return self._nc

    async def key_value(self, bucket: str) -> NatsKeyValue:
        """A JetStream KV bucket (created if missing, history of 5 per key)."""
        from nats.js.api import KeyValueConfig

        from .kv import KVUnavailable
        from .nats_kv import NatsKeyValue

        self._check_open()
        if bucket not in self._buckets:
            js = self._nc.jetstream(timeout=5)
            try:
                try:
                    kv = await js.key_value(bucket)
                except nats.js.errors.BucketNotFoundError:
                    kv = await js.create_key_value(KeyValueConfig(bucket=bucket, history=5))
            except (TimeoutError, nats.errors.Error) as exc:
                raise KVUnavailable(f"bucket {bucket}: {type(exc).__name__}: {exc} (is JetStream enabled?)") from None
            self._buckets[bucket] = NatsKeyValue(bucket, kv)
        return self._buckets[bucket]

    def _check_open(self) -> None:
        if self.is_closed:
            raise BusClosedError(f"the NATS bus to {self.url} is closed")

    async def publish(
        self, subject: str, data: bytes, *, reply: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        if self._closed:
            raise BusClosedError(f"the NATS bus to {self.url} is closed")
        self.stats.published += 1
        try:
            await self._nc.publish(subject, data, reply=reply or "", headers=headers)
        except ConnectionClosedError:
            raise BusClosedError(f"the NATS connection to {self.url} is closed") from None

    async def subscribe(self, subject: str, handler: Handler, *, queue: str | None = None) -> Subscription:
        self._check_open()
        stats = self.stats

        async def on_msg(msg: Msg) -> None:
            stats.delivered += 1
            await handler(Envelope(msg.subject, msg.data, msg.reply or None, msg.headers or None))

        sub = await self._nc.subscribe(subject, queue=queue or "", cb=on_msg, pending_msgs_limit=DEFAULT_PENDING_MSGS)
        return _NatsSubscription(sub, subject)

    async def request(self, subject: str, data: bytes, *, timeout: float) -> Envelope:  # noqa: ASYNC109  # implements the Bus API, which mirrors nats-py
        self._check_open()
        try:
            msg = await self._nc.request(subject, data, timeout=timeout)
        except NoRespondersError:
            raise RequestTimeoutError(f"no responders on {subject!r}") from None
        except (TimeoutError, NatsTimeoutError):
            raise RequestTimeoutError(f"no reply on {subject!r} within {timeout:g}s") from None
        return Envelope(msg.subject, msg.data, msg.reply or None, msg.headers)

    async def flush(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109  # implements the Bus API, which mirrors nats-py
        self._check_open()
        await self._nc.flush(timeout=timeout)  # type: ignore[arg-type]  # nats-py annotates int; it takes seconds as float

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._nc.is_closed:
            return
        try:
            await asyncio.wait_for(self._nc.drain(), 10)
        except Exception as exc:  # drain failed (broker gone): close hard
            log.warning("NATS drain failed (%r); closing", exc)
            with contextlib.suppress(Exception):
                await self._nc.close()
