"""The real bus: nats-py with the settings a production service needs.

What this adds over a bare ``nats.connect()`` (each point is a pitfall seen with nats-py):

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
* Credentials from the URL (``nats://user:pass@host:4222``), from
  ``user``/``password``, a ``token`` or a ``.creds`` file, and never in a log
  line or an error: every URL this module prints goes through `redact_url`.
* Quiet outages: one line when the link drops, one when it is back (or
  closed), and in between at most one summary every `OUTAGE_SUMMARY_EVERY`
  seconds instead of an error per reconnect attempt.
* Replicated buckets on a cluster: the key-value buckets this bus creates
  keep `replicas` copies (``connect(..., replicas=3)``: a three-node cluster
  survives losing one). A bucket that already exists is used as it is; if its
  replication differs, one warning says both numbers.

Time here is network I/O time (the connect deadline, request timeouts), not
actor time, so it uses the event loop directly rather than the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from asyncio import current_task
from typing import TYPE_CHECKING, Any

import nats
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import (
    ConnectionClosedError,
    MaxPayloadError,
    NoRespondersError,
    OutboundBufferLimitError,
    SlowConsumerError,
)
from nats.errors import TimeoutError as NatsTimeoutError

from . import nats_stream
from .bus import Bus, BusStats, ConnectionState, Envelope, Handler, Subscription
from .errors import BusClosedError, BusConnectError, PublishError, RequestTimeoutError
from .nats_fanout import Fanout, FanoutMember
from .stream import StreamSpec

if TYPE_CHECKING:
    from nats.js.kv import KeyValue as JsKeyValue

    from .nats_kv import NatsKeyValue

log = logging.getLogger("sniper.bus.nats")

#: Per-subscription queue bound before nats-py drops messages (its default is 512k).
DEFAULT_PENDING_MSGS = 65_536

#: While disconnected, failed reconnect attempts are summed up in one line at most this often (seconds).
OUTAGE_SUMMARY_EVERY = 30.0

#: What replaces a secret in anything printed.
REDACTED = "***"
#: Shortest password or token `NatsBus.scrub` looks for in free text (URLs are always redacted).
MIN_SCRUBBED = 4


def _redact_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, where = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    # nats://user:pass@host keeps the user; nats://token@host is all secret.
    shown = f"{user}:{REDACTED}" if colon else REDACTED
    return f"{scheme}{sep}{shown}@{where}"


def redact_url(url: str) -> str:
    """`url` (comma-separated for a cluster) with passwords and tokens replaced by ``***``.

    ``nats://sniper:pw@h:4222`` becomes ``nats://sniper:***@h:4222`` and
    ``nats://s3cret@h:4222`` (a token) ``nats://***@h:4222``. Use it wherever a
    NATS URL reaches a log line, an error message or the terminal.
    """
    return ",".join(_redact_one(part) for part in url.split(","))


def _url_secrets(url: str) -> list[str]:
    """The passwords and tokens inside `url`, to scrub from text that might echo them."""
    found = []
    for part in url.split(","):
        scheme, sep, rest = part.partition("://")
        userinfo, at, _ = (rest if sep else scheme).rpartition("@")
        if at:
            user, colon, password = userinfo.partition(":")
            found.append(password if colon else user)
    return [s for s in found if s]


def _is_link_error(exc: BaseException) -> bool:
    """An error that says the broker is unreachable (expected while reconnecting), not a bug."""
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | nats.errors.UnexpectedEOF
        | nats.errors.StaleConnectionError
        | nats.errors.ConnectionClosedError
        | nats.errors.NoServersError
        | nats.errors.TimeoutError,
    )


def _checked_creds(path: str, url: str) -> str:
    """`path` if it is a readable .creds file that nats-py can use; BusConnectError saying why not."""
    import importlib.util
    import os

    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise BusConnectError(f"could not connect to NATS at {url}: credentials file {path!r} is not a readable file")
    if importlib.util.find_spec("nkeys") is None:
        raise BusConnectError(
            f"could not connect to NATS at {url}: a credentials file needs the 'nkeys' package (pip install nkeys)"
        )
    return path


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

    def __init__(self, nc: Client, url: str, *, replicas: int = 1) -> None:
        if replicas < 1:
            raise ValueError(f"a bucket has at least 1 replica, not {replicas}")
        self._nc = nc
        #: How many copies of each key-value bucket it creates JetStream keeps (one per cluster node at most).
        self.replicas = replicas
        #: The server URL(s) as they may be printed: passwords and tokens redacted.
        self.url = redact_url(url)
        self._secrets = _url_secrets(url)
        # Outage bookkeeping (loop time): since when the link is down, failed attempts, last summary.
        self._down_since: float | None = None
        self._failed_attempts = 0
        self._last_summary = 0.0
        # Per-message async errors (slow-consumer drops, permission violations): logged once, then summed up.
        self._slow = _Summarised("slow consumer: %d message(s) dropped since the last report, latest on %s")
        self._denied = _Summarised("NATS permission violation: %d refused since the last report, latest: %s")
        #: Seconds between "still disconnected" (and slow-consumer) summaries (tests shorten it).
        self.outage_summary_every = OUTAGE_SUMMARY_EVERY
        self.stats = BusStats()
        self._fanouts: dict[str, Fanout] = {}
        self._closed = False
        self._connecting = True
        self._refused: asyncio.Future[None] | None = None  # set when the first connect's credentials are refused
        self._buckets: dict[str, NatsKeyValue] = {}
        self.connection = ConnectionState()  # set by the callbacks below

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
        creds: str | None = None,
        replicas: int = 1,
    ) -> NatsBus:
        """Connect to `url` (comma-separated for a cluster) within `connect_deadline` seconds.

        Credentials: in the URL (``nats://user:pass@host:4222``), or `user` and
        `password`, or `token`, or `creds`, the path of a NATS ``.creds`` file
        (JWT and nkey seed; needs the ``nkeys`` package). Errors and log lines
        name the URL with its secrets redacted. `replicas`: copies of each
        key-value bucket this bus creates (see `key_value`).

        The servers of a list are tried in the order given, first to last, on
        the first connect and on every reconnect (nats-py would shuffle them):
        a process lists its own host's node first, so it talks to the node that
        shares its fate (a partition cuts both, not one half of a pair).
        """
        bus = cls(Client(), url, replicas=replicas)
        options: dict[str, Any] = dict(
            servers=[u.strip() for u in url.split(",") if u.strip()],
            dont_randomize=True,
            name=name,
            connect_timeout=max(1, int(connect_deadline)),
            allow_reconnect=True,
            reconnect_time_wait=reconnect_wait,
            # The first connect must not retry forever: a wrong URL should fail fast.
            max_reconnect_attempts=0 if max_reconnect_attempts < 0 else max_reconnect_attempts,
            ping_interval=ping_interval,
            max_outstanding_pings=max_outstanding_pings,
            pending_size=pending_size,
            **bus._callbacks(),
            **bus._auth_options(user=user, password=password, token=token, creds=creds),
        )
        await bus._connect_within(options, connect_deadline)
        # Connected: from now on reconnect as configured (forever by default).
        bus._connecting = False
        bus.max_payload = bus._nc.max_payload
        bus._nc.options["max_reconnect_attempts"] = max_reconnect_attempts
        log.info("connected to NATS %s as %r", bus._where(), name)
        return bus

    def _callbacks(self) -> dict[str, Any]:
        """How nats-py reports to this bus: every async error and link change is counted and logged here."""
        return dict(
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            closed_cb=self._on_closed,
        )

    def _auth_options(
        self, *, user: str | None, password: str | None, token: str | None, creds: str | None
    ) -> dict[str, Any]:
        """nats-py's credential options; the password and token join the secrets `scrub` hides.

        A ``.creds`` path is checked here, so a missing file or package fails
        with its own message rather than as a vague connect error.
        """
        self._secrets += [s for s in (password, token) if s]
        options: dict[str, Any] = {}
        if user is not None:
            options["user"] = user
            options["password"] = password
        if token is not None:
            options["token"] = token
        if creds is not None:
            options["user_credentials"] = _checked_creds(creds, self.url)
        return options

    async def _connect_within(self, options: dict[str, Any], deadline: float) -> None:
        """The first connect under our own deadline (nats-py alone can hang ~120 s); BusConnectError if it fails.

        The error names the URL and the cause, with every secret scrubbed.
        """
        try:
            await asyncio.wait_for(self._first_connect(options), deadline)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            with contextlib.suppress(Exception):
                await self._nc.close()
            timed_out = isinstance(exc, asyncio.TimeoutError)
            reason = "timed out" if timed_out else str(exc) or type(exc).__name__
            if isinstance(exc, nats.errors.AuthorizationError):
                reason = "the server refused the credentials (Authorization Violation): check user and password"
            elif isinstance(exc, asyncio.TimeoutError | nats.errors.NoServersError) and self.stats.errors:
                reason += f" (last error: {self.stats.errors[-1]})"  # the cause: refused, unknown host, ...
            within = f" within {deadline:g}s" if timed_out else ""
            raise BusConnectError(self.scrub(f"could not connect to NATS at {self.url}{within}: {reason}")) from None

    async def _first_connect(self, options: dict[str, Any]) -> None:
        """nats-py's connect, cut short when the server refuses the credentials (retrying cannot help)."""
        self._refused = asyncio.get_running_loop().create_future()
        attempt = asyncio.ensure_future(self._nc.connect(**options))
        try:
            await asyncio.wait((attempt, self._refused), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not attempt.done():
                attempt.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await attempt
        if self._refused.done():
            raise nats.errors.AuthorizationError()  # "nats: 'Authorization Violation'", in the message below
        attempt.result()

    def scrub(self, text: str) -> str:
        """`text` with every password or token this bus knows replaced by ``***``.

        Secrets shorter than `MIN_SCRUBBED` characters are left alone: replacing
        them would garble ordinary words, and they protect nothing anyway.
        """
        for secret in self._secrets:
            if len(secret) >= MIN_SCRUBBED:
                text = text.replace(secret, REDACTED)
        return text

    def _where(self) -> str:
        """The server this bus is connected to now (its URL before the first connect), redacted."""
        connected = self._nc.connected_url
        return redact_url(connected.geturl()) if connected else self.url

    # -- callbacks (nats-py requires coroutines) ----------------------------
    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            self._slow_consumer(getattr(exc, "subject", "?"))
            return
        text = self.scrub(repr(exc))
        self.stats.note_error(text)
        if self._connecting:  # reported once, by connect(), with the URL
            log.debug("NATS connect attempt failed: %s", text)
            refused = isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in str(exc).lower()
            if refused and self._refused is not None and not self._refused.done():
                self._refused.set_result(None)
        elif "permissions violation" in str(exc).lower():  # nats-py lower-cases the server's -ERR
            self.stats.permission_violations += 1
            self._denied.note(asyncio.get_running_loop().time(), self.outage_summary_every, self.scrub(str(exc)))
        elif _is_link_error(exc):
            self._failed_attempt(text)
        else:
            self.stats.handler_errors += 1
            log.error("NATS async error: %s", text)

    def _slow_consumer(self, subject: str) -> None:
        """A dropped message: counted always, logged once, then summed up at most every 30 s.

        Under a flood nats-py drops once per message; a log line each would
        cost more than the flood itself.
        """
        self.stats.slow_consumer_drops += 1
        self._slow.note(asyncio.get_running_loop().time(), self.outage_summary_every, subject)

    def _failed_attempt(self, error: str) -> None:
        """A link error: expected while the broker is away, so summed up rather than logged one by one."""
        if self._down_since is None:  # the link is just breaking: `disconnected` follows with one line
            log.debug("NATS link error on %s: %s", self.url, error)
            return
        self._failed_attempts += 1
        now = asyncio.get_running_loop().time()
        if now - self._last_summary < self.outage_summary_every:
            log.debug("NATS reconnect attempt %d to %s failed: %s", self._failed_attempts, self.url, error)
            return
        self._last_summary = now
        log.warning(
            "still disconnected from NATS %s for %.0f s, %d failed attempts (last error: %s)",
            self.url,
            now - self._down_since,
            self._failed_attempts,
            error,
        )

    async def _on_disconnected(self) -> None:
        self.connection.set(False)
        if not self._closed and not self._connecting and self._down_since is None:
            self.stats.disconnects += 1
            self._down_since = self._last_summary = asyncio.get_running_loop().time()
            self._failed_attempts = 0
            log.warning("disconnected from NATS %s; reconnecting", self.url)

    async def _on_reconnected(self) -> None:
        self.connection.set(True)
        self.stats.reconnects += 1
        down = asyncio.get_running_loop().time() - self._down_since if self._down_since is not None else 0.0
        log.info("reconnected to NATS %s after %.1f s (%d failed attempts)", self._where(), down, self._failed_attempts)
        self._down_since = None
        self._failed_attempts = 0

    async def _on_closed(self) -> None:
        self.connection.close()
        if self._closed or self._connecting:  # closed by us (or by a failed first connect): nothing to report
            log.debug("NATS connection to %s closed", self.url)
        elif self._down_since is not None:
            down = asyncio.get_running_loop().time() - self._down_since
            log.error(
                "NATS connection to %s closed after %.0f s disconnected, %d failed attempts",
                self.url,
                down,
                self._failed_attempts,
            )
        else:
            log.error("NATS connection to %s closed", self.url)

    # -- the Bus interface --------------------------------------------------
    @property
    def is_closed(self) -> bool:
        return self._closed or self._nc.is_closed

    @property
    def connected(self) -> bool:
        """nats-py's own status: it turns to reconnecting before `disconnected_cb` runs."""
        return not self._closed and self._nc.is_connected

    @property
    def keeps_state(self) -> bool:
        """Whether the server we are connected to runs JetStream (its INFO says so)."""
        return bool(getattr(self._nc, "_server_info", {}).get("jetstream", False))

    @property
    def client(self) -> Client:
        """The underlying nats-py client (JetStream, KV and micro services use it)."""
        return self._nc

    async def key_value(self, bucket: str) -> NatsKeyValue:
        """A JetStream KV bucket (created if missing: history of 5 per key, `replicas` copies)."""
        from .kv import KVUnavailable
        from .nats_kv import NatsKeyValue

        self._check_open()
        if bucket not in self._buckets:
            try:
                kv = await self._open_bucket(bucket)
            except (TimeoutError, nats.errors.Error) as exc:
                raise KVUnavailable(f"bucket {bucket}: {type(exc).__name__}: {exc} (is JetStream enabled?)") from None
            self._buckets[bucket] = NatsKeyValue(bucket, kv)
        return self._buckets[bucket]

    async def _open_bucket(self, bucket: str) -> JsKeyValue:
        """Open `bucket`, or create it with `replicas` copies; an existing one is kept as it is.

        Its replication is not changed here (that is the operator's call: it moves
        data between nodes), but a difference is logged once, with both numbers.
        """
        from nats.js.api import KeyValueConfig

        js = self._nc.jetstream(timeout=5)
        try:
            kv = await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            try:
                return await js.create_key_value(KeyValueConfig(bucket=bucket, history=5, replicas=self.replicas))
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != nats_stream.STREAM_NAME_IN_USE:
                    raise
            kv = await js.key_value(bucket)  # created meanwhile by another process, with another configuration
        info = await js.stream_info(f"KV_{bucket}")
        if info.config.num_replicas != self.replicas:
            log.warning(
                "KV bucket %s has %s replica(s), not the %d this process asks for; using it as it is",
                bucket,
                info.config.num_replicas,
                self.replicas,
            )
        return kv

    def _check_open(self) -> None:
        if self.is_closed:
            raise BusClosedError(f"the NATS bus to {self.url} is closed")

    async def publish(
        self, subject: str, data: bytes, *, reply: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        if self._closed:
            raise BusClosedError(f"the NATS bus to {self.url} is closed")
        self.check_size(subject, data)
        try:
            await self._nc.publish(subject, data, reply=reply or "", headers=headers)
        except ConnectionClosedError:
            raise BusClosedError(f"the NATS connection to {self.url} is closed") from None
        except MaxPayloadError as exc:  # the server's limit changed under us
            raise PublishError("too_large", subject=subject, size=len(data), detail=str(exc)) from None
        except OutboundBufferLimitError as exc:  # disconnected and the reconnect buffer is full
            raise PublishError("buffer_full", subject=subject, size=len(data), detail=str(exc)) from None
        self.stats.published += 1
        task = current_task()
        if task is not None and task.cancelling():
            # nats-py swallows a CancelledError raised while a publish waits for its flusher (the pending
            # buffer over `pending_size`: Client._flush_pending catches it). The task was asked to stop
            # and would otherwise go on: at 1,000 assets the scheduler ticked on after SIGTERM. Re-raise it.
            raise asyncio.CancelledError()

    async def subscribe(
        self, subject: str, handler: Handler, *, queue: str | None = None, pending: int | None = None
    ) -> Subscription:
        self._check_open()
        limit = pending or DEFAULT_PENDING_MSGS
        if queue:  # a queue group is a per-subscriber contract with the broker: never shared
            stats = self.stats

            async def on_msg(msg: Msg) -> None:
                stats.delivered += 1
                await handler(Envelope(msg.subject, msg.data, msg.reply or None, msg.headers or None))

            sub = await self._nc.subscribe(subject, queue=queue, cb=on_msg, pending_msgs_limit=limit)
            return _NatsSubscription(sub, subject)
        fanout = self._fanouts.get(subject)
        if fanout is None:  # registered before awaiting, so a concurrent subscribe joins it
            fanout = self._fanouts[subject] = Fanout(subject, self.stats)
            fanout.handlers.append(handler)
            try:
                fanout.nats_sub = await self._nc.subscribe(subject, cb=fanout.dispatch, pending_msgs_limit=limit)
            except BaseException:
                del self._fanouts[subject]
                raise
        else:
            fanout.handlers.append(handler)
        return FanoutMember(self._fanouts, fanout, handler)

    async def request(self, subject: str, data: bytes, *, timeout: float) -> Envelope:  # noqa: ASYNC109  # implements the Bus API, which mirrors nats-py
        self._check_open()
        try:
            msg = await self._nc.request(subject, data, timeout=timeout)
        except NoRespondersError:
            raise RequestTimeoutError(f"no responders on {subject!r}") from None
        except (TimeoutError, NatsTimeoutError):
            raise RequestTimeoutError(f"no reply on {subject!r} within {timeout:g}s") from None
        return Envelope(msg.subject, msg.data, msg.reply or None, msg.headers)

    async def ensure_stream(self, spec: StreamSpec) -> None:
        self._check_open()
        await nats_stream.ensure_stream(self._nc, spec)

    async def last_per_subject(self, stream: str, subject: str) -> list[Envelope]:
        self._check_open()
        return await nats_stream.last_per_subject(self._nc, stream, subject)

    async def follow_stream(self, stream: str, subject: str, handler: Handler) -> Subscription:
        self._check_open()
        return await nats_stream.follow_stream(self._nc, stream, subject, handler)

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
            await asyncio.wait_for(self._nc.drain(), DRAIN_TIMEOUT)
        except Exception as exc:  # drain failed (broker gone): close hard
            log.warning("NATS drain failed (%r); closing", exc)
            with contextlib.suppress(Exception):
                await self._nc.close()


#: How long closing waits for subscriptions to drain and publishes to flush (seconds); then it closes hard.
DRAIN_TIMEOUT = 1.5


class _Summarised:
    """One log line for the first event, then at most one summary per period.

    Under a flood nats-py reports once per message (a slow-consumer drop, a
    refused publish); a log line each would cost more than the flood itself.
    Not `runtime.flow.RateLimitedWarning`, which logs a burst of structured
    events and then a bare count: this bus logs plain text, and each line here
    carries the count and the latest detail (the refused subject, say).
    """

    __slots__ = ("_logged_at", "_since_logged", "template")

    def __init__(self, template: str) -> None:
        self.template = template  # "%d ... %s": the count since the last line, the latest detail
        self._logged_at = float("-inf")
        self._since_logged = 0

    def note(self, now: float, period: float, detail: str) -> None:
        self._since_logged += 1
        if now - self._logged_at >= period:
            log.warning(self.template, self._since_logged, detail)
            self._logged_at, self._since_logged = now, 0
