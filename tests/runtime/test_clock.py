"""Injected time: VirtualClock moves only when told, SystemClock is real."""

from __future__ import annotations

import asyncio

import pytest

from runtime import SystemClock, VirtualClock


class TestVirtualClock:
    async def test_sleepers_wake_in_deadline_order(self) -> None:
        """Timers fire in deadline order, and chained sleeps interleave as in real time."""
        clock = VirtualClock()
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, step: float) -> None:
            for _ in range(2):
                await clock.sleep(step)
                woke.append((name, clock.monotonic()))

        tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("a", 3600), ("b", 30), ("c", 1800)]]
        await clock.advance(7200)
        await asyncio.gather(*tasks)
        assert woke == [("b", 30), ("b", 60), ("c", 1800), ("a", 3600), ("c", 3600), ("a", 7200)]

    async def test_advance_stops_short_of_later_timers(self) -> None:
        """A timer beyond the advanced-to time stays asleep."""
        clock = VirtualClock()
        task = asyncio.create_task(clock.sleep(10))
        await clock.advance(9.99)
        assert not task.done()
        await clock.advance(0.01)
        assert task.done()

    async def test_wall_and_monotonic_move_together(self) -> None:
        """now() is the start epoch plus monotonic()."""
        clock = VirtualClock(start=1000.0)
        await clock.advance(5)
        assert (clock.now(), clock.monotonic()) == (1005.0, 5.0)

    async def test_time_never_goes_backwards(self) -> None:
        """advance() refuses negative steps."""
        with pytest.raises(ValueError):
            await VirtualClock().advance(-1)

    async def test_timeout_fires_in_virtual_time(self) -> None:
        """clock.timeout raises TimeoutError exactly when virtual time passes the limit."""
        clock = VirtualClock()
        never = asyncio.Event()
        task = asyncio.create_task(clock.timeout(5, never.wait()))
        await clock.advance(4.9)
        assert not task.done()
        await clock.advance(0.2)
        with pytest.raises(TimeoutError):
            await task

    async def test_timeout_returns_the_result_when_in_time(self) -> None:
        """clock.timeout passes through a result that arrives before the limit."""
        clock = VirtualClock()

        async def soon() -> int:
            await clock.sleep(1)
            return 7

        task = asyncio.create_task(clock.timeout(5, soon()))
        await clock.advance(1)
        assert await task == 7

    async def test_autojump_runs_an_hour_instantly(self, vclock: VirtualClock) -> None:
        """With autojump, an hour of one-minute sleeps completes without real waiting."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(60):
            await vclock.sleep(60)
        assert vclock.monotonic() == 3600
        assert loop.time() - started < 1.0

    async def test_cancelled_sleepers_are_forgotten(self) -> None:
        """A cancelled sleep no longer counts as a pending timer."""
        clock = VirtualClock()
        task = asyncio.create_task(clock.sleep(5))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        assert clock.pending_timers == 0 and clock.next_deadline() is None


class TestSystemClock:
    async def test_timeout_raises_builtin_timeout_error(self) -> None:
        """SystemClock.timeout speaks the same TimeoutError as the virtual one."""
        with pytest.raises(TimeoutError):
            await SystemClock().timeout(0.01, asyncio.Event().wait())

    def test_reads_real_time(self) -> None:
        """now() is epoch seconds and monotonic() does not go backwards."""
        clock = SystemClock()
        a = clock.monotonic()
        assert clock.now() > 1.7e9 and clock.monotonic() >= a


class TestSystemClockTimeout:
    async def test_a_cancel_in_the_same_step_as_the_result_is_not_lost(self) -> None:
        """Cancelled as its future completes, `timeout` still raises CancelledError (wait_for on 3.11 did not)."""
        clock = SystemClock()
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(clock.timeout(10, done))
        await asyncio.sleep(0)  # the task now waits on `done`
        done.set_result(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def test_the_deadline_still_raises_timeout_error(self) -> None:
        """An awaitable that does not finish in time gives TimeoutError naming the seconds."""
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with pytest.raises(TimeoutError, match=r"0\.01s"):
            await SystemClock().timeout(0.01, never)
        assert never.cancelled()
