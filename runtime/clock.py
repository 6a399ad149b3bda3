"""Time, injected: the only place actors may read the time or sleep.

Why: a one-hour circuit breaker or a backoff schedule must be testable in
virtual time in well under a second, and live runs and replays must share one
code path (Nautilus Trader's habit). So actors never call ``time.time()`` or
``asyncio.sleep()``; they ask their `Clock`.

Two clocks:

* `SystemClock` for live runs: wall time from ``time.time``, timers from the
  event loop.
* `VirtualClock` for tests and replay: time moves only when told to
  (`advance`, `advance_to`), or, with ``autojump=True``, jumps straight to the
  next timer whenever every task is waiting (trio's ``MockClock`` idea). Timers
  fire in deadline order and the tasks they wake run before time moves again,
  so "sleep 30, then 30 more" behaves exactly as it would for real.

Both expose wall time (`now`, seconds since the epoch: what goes into
messages) and a monotonic reading (`monotonic`: what timeouts and backoff
compare). On `VirtualClock` the two move together.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Clock(ABC):
    """What an actor may know about time."""

    @abstractmethod
    def now(self) -> float:
        """Wall-clock seconds since the Unix epoch (for message timestamps)."""

    @abstractmethod
    def monotonic(self) -> float:
        """Monotonic seconds (for durations, deadlines, backoff)."""

    @abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for `seconds` of this clock's time."""

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the monotonic reading is at least `deadline`."""
        await self.sleep(max(0.0, deadline - self.monotonic()))

    async def timeout(self, seconds: float, aw: Awaitable[T]) -> T:
        """Await `aw`, cancelling it and raising TimeoutError after `seconds` of clock time."""
        task = asyncio.ensure_future(aw)
        timer = asyncio.ensure_future(self.sleep(seconds))
        try:
            done, _ = await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            timer.cancel()
            raise
        if task in done:
            timer.cancel()
            return task.result()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            pass
        raise TimeoutError(f"timed out after {seconds:g}s")


class SystemClock(Clock):
    """Real time: ``time.time`` for wall time, the running loop for timers."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def timeout(self, seconds: float, aw: Awaitable[T]) -> T:
        # Not asyncio.wait_for: on Python 3.11, when the awaited thing finishes
        # (or the deadline passes) in the same loop step as the caller is
        # cancelled, wait_for returns or raises TimeoutError and the cancellation
        # is lost. A stopping actor then never stops (the scheduler went on ticking
        # after SIGTERM). asyncio.timeout tells its own cancellation from others.
        try:
            async with asyncio.timeout(max(0.0, seconds)):
                return await aw
        except TimeoutError:
            raise TimeoutError(f"timed out after {seconds:g}s") from None


class VirtualClock(Clock):
    """A clock that moves only when told to, or by itself when all tasks wait.

    ``start`` is the initial wall time (default: 2026-01-01T00:00:00Z, a fixed
    point so recorded test output is reproducible). With ``autojump=True`` a
    background task watches the event loop and, once nothing but timers is
    left to run, jumps to the earliest timer. Autojump is for tests where all
    I/O is in memory; with real sockets in play, drive time with `advance`.
    """

    EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    def __init__(self, start: float = EPOCH, *, autojump: bool = False) -> None:
        self._offset = start
        self._elapsed = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._autojump = autojump
        self._jumper: asyncio.Task[None] | None = None
        self._timer_added: asyncio.Event | None = None

    # -- reading ------------------------------------------------------------
    def now(self) -> float:
        return self._offset + self._elapsed

    def monotonic(self) -> float:
        return self._elapsed

    @property
    def pending_timers(self) -> int:
        """How many sleepers are waiting (cancelled ones excluded)."""
        return sum(1 for _, _, fut in self._timers if not fut.done())

    def next_deadline(self) -> float | None:
        """Monotonic time of the earliest pending timer, or None."""
        self._drop_cancelled()
        return self._timers[0][0] if self._timers else None

    # -- sleeping -----------------------------------------------------------
    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        if self._autojump and (self._jumper is None or self._jumper.done()):
            self._jumper = loop.create_task(self._autojump_loop(), name="virtual-clock-autojump")
        if seconds <= 0:
            await asyncio.sleep(0)  # clock-ok: a yield, not a wait
            return
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._timers, (self._elapsed + seconds, next(self._seq), fut))
        if self._timer_added is not None:
            self._timer_added.set()
        await fut

    # -- moving time --------------------------------------------------------
    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing timers in order on the way."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        await self.advance_to(self._elapsed + seconds)

    async def advance_to(self, target: float) -> None:
        """Move the monotonic reading to `target`, waking each sleeper at its deadline.

        After each wake-up the woken tasks get to run (and maybe sleep again)
        before time moves on, so chains of sleeps fire in the same order they
        would in real time.
        """
        await _settle()
        while True:
            self._drop_cancelled()
            if not self._timers or self._timers[0][0] > target:
                break
            deadline = self._timers[0][0]
            self._elapsed = max(self._elapsed, deadline)
            while self._timers and self._timers[0][0] <= self._elapsed:
                _, _, fut = heapq.heappop(self._timers)
                if not fut.done():
                    fut.set_result(None)
            await _settle()
        self._elapsed = max(self._elapsed, target)
        await _settle()

    async def run_until_idle(self, limit: float = 86_400.0) -> None:
        """Fire timers until none is left within `limit` seconds from now."""
        deadline = self._elapsed + limit
        while (nxt := self.next_deadline()) is not None and nxt <= deadline:
            await self.advance_to(nxt)

    def _drop_cancelled(self) -> None:
        while self._timers and self._timers[0][2].done():
            heapq.heappop(self._timers)

    def stop_autojump(self) -> None:
        """Cancel the autojump task (tests call it on teardown)."""
        if self._jumper is not None:
            self._jumper.cancel()
            self._jumper = None

    async def _autojump_loop(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer_added = asyncio.Event()
        while True:
            await _settle()
            if not _loop_is_idle(loop):
                continue
            nxt = self.next_deadline()
            if nxt is None:
                # Nothing to jump to: wait (without spinning) until a timer exists.
                self._timer_added.clear()
                await self._timer_added.wait()
                continue
            await self.advance_to(nxt)


def _loop_is_idle(loop: asyncio.AbstractEventLoop) -> bool:
    """True when no callback other than the caller's own is ready to run.

    asyncio has no public idle hook; ``_ready`` is the scheduler's queue of
    runnable callbacks in CPython's BaseEventLoop. Used only by autojump.
    """
    ready = getattr(loop, "_ready", None)
    return ready is not None and len(ready) == 0


async def _settle(rounds: int = 8) -> None:
    """Let already-runnable tasks run; a few yields cover chains of wake-ups."""
    for _ in range(rounds):
        await asyncio.sleep(0)  # clock-ok: yield
