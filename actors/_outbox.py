"""What `actors.telegram` and `actors.alertmanager` share: one queued sender task over a JSON POST.

Both notifiers must return from `notify` at once, so each keeps a bounded
queue (a new item pushes the oldest out) drained by one sender task, with the
same lifecycle: ``start`` (or ``async with``), ``flush``, ``close(drain=...)``.
`Outbox` holds exactly that, plus the transport seam and the common counters
and settings. What is sent, and how failures are retried, stay in each
notifier because the two differ there (Telegram's rate limits and 429 holds,
Alertmanager's plain backoff sleep); so does the deadline check, whose log
line differs. Log event names stay each notifier's own (``<kind>_...``); where
the fields differ (queue full), the helper here counts and the notifier logs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, Generic, Self, TypeVar

import aiohttp

from runtime.clock import Clock
from runtime.logs import StructLogger

#: Errors a transport may raise that mean "no answer": retried like a 5xx.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError, TimeoutError)

#: ``post(url, json) -> (status, body)``: how a notifier talks HTTP (raises one of NETWORK_ERRORS on no answer).
JsonPost = Callable[[str, Any], Awaitable[tuple[int, bytes]]]

_MAX_ANSWER = 1024 * 1024
_CHUNK = 64 * 1024


def backoff_delay(attempt: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): base, 2 base, 4 base ... at most `cap`."""
    return min(cap, base * 2.0 ** min(max(attempt - 1, 0), 62))


class AiohttpPost:
    """A `JsonPost` on one pooled aiohttp session: the one given (not closed here), else its own.

    The caller bounds each call with its clock; the session's own timeout only
    guards against a call nobody waits for. Answers are read up to 1 MiB.
    """

    def __init__(self, session: aiohttp.ClientSession | None = None, *, safety_timeout: float = 120.0) -> None:
        self._session = session
        self._owned = session is None
        self._safety_timeout = safety_timeout

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owned and self._session.closed):
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._safety_timeout),
                connector=aiohttp.TCPConnector(limit=8),
                raise_for_status=False,
            )
        return self._session

    async def __call__(self, url: str, payload: Any) -> tuple[int, bytes]:
        async with self._get_session().post(url, json=payload, allow_redirects=False) as resp:
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > _MAX_ANSWER:
                    resp.close()
                    break
                chunks.append(chunk)
            return resp.status, b"".join(chunks)

    async def close(self) -> None:
        """Close the session if this object created it (a borrowed one stays open)."""
        if self._owned and self._session is not None:
            await self._session.close()


T = TypeVar("T")


class Outbox(Generic[T]):
    """A bounded queue of `T` drained by one sender task; subclasses give `_deliver` (and may pick via `_next`).

    `kind` prefixes the log events logged here (``<kind>_closed_with_pending``,
    ``<kind>_sender_failed``); `mask` replaces every secret in `redact`.
    """

    kind: ClassVar[str]
    mask: ClassVar[str]

    def __init__(
        self,
        *,
        name: str,
        clock: Clock,
        log: StructLogger,
        secrets: Iterable[str],
        session: aiohttp.ClientSession | None,
        transport: JsonPost | None,
        queue_size: int,
        deadline: float,
        max_attempts: int,
        backoff_base: float,
        backoff_cap: float,
        request_timeout: float,
    ) -> None:
        self.name = name
        self.clock = clock
        self.log = log
        self._secrets = tuple(dict.fromkeys(s for s in secrets if s))
        self.queue_size = queue_size
        self.deadline = deadline
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.request_timeout = request_timeout
        self._aiohttp: AiohttpPost | None = None  # the default transport, closed by close()
        if transport is None:
            self._aiohttp = AiohttpPost(session)
            transport = self._aiohttp
        self._post: JsonPost = transport
        # counters
        self.sent = 0
        self.dropped_full = 0
        self.dropped_stale = 0
        self.dropped_failed = 0
        self.dropped_rejected = 0
        self.retries = 0
        # state
        self._queue: deque[T] = deque()
        self._current: T | None = None
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the sender task (idempotent). The wiring must call this, or use ``async with``."""
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed")
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"notifier-{self.name}")

    async def close(self, *, drain: float = 0.0) -> None:
        """Stop the sender (after up to `drain` clock seconds for the queue to empty) and close an owned session."""
        if drain > 0 and self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await self.clock.timeout(drain, self.flush())
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.pending:
            self.log.warning(f"{self.kind}_closed_with_pending", pending=self.pending)
        self._queue.clear()
        self._current = None
        self._idle.set()
        if self._aiohttp is not None:
            await self._aiohttp.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def flush(self) -> None:
        """Wait until every queued item was sent or dropped (no timeout of its own)."""
        await self._idle.wait()

    @property
    def pending(self) -> int:
        """Items queued or being sent."""
        return len(self._queue) + (self._current is not None)

    def redact(self, text: str) -> str:
        """`text` with every secret (token, password) replaced by `mask`: error texts may quote the URL."""
        for secret in self._secrets:
            text = text.replace(secret, self.mask)
        return text

    # -- the queue and the sender task ------------------------------------------------------------------
    def _enqueue(self, item: T) -> list[T]:
        """Queue `item` for the sender; returns the oldest items it pushed out (counted; the caller logs them)."""
        pushed_out: list[T] = []
        while len(self._queue) >= self.queue_size:
            pushed_out.append(self._queue.popleft())
            self.dropped_full += 1
        self._queue.append(item)
        self._idle.clear()
        self._wakeup.set()
        return pushed_out

    async def _run(self) -> None:
        while True:
            item = self._current = await self._next()
            try:
                await self._deliver(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not end the sender
                self.dropped_failed += 1
                self.log.error(f"{self.kind}_sender_failed", **self._about(item), error=self.redact(repr(exc)))
            finally:
                self._current = None
                if not self._queue:
                    self._idle.set()

    async def _next(self) -> T:
        """The next item to send, taken off the queue: the oldest; waits for one."""
        while not self._queue:
            self._idle.set()
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    async def _deliver(self, item: T) -> None:
        """Send `item` until it is sent or dropped (counting and logging which)."""
        raise NotImplementedError

    def _about(self, item: T) -> dict[str, Any]:
        """Log fields naming `item` in ``<kind>_sender_failed``."""
        return {}
