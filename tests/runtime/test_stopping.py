"""Stopping is ordered and bounded, even when something inside an actor swallows its cancellation."""

from __future__ import annotations

import asyncio
import logging

import pytest

from runtime import Actor, ActorState, Context, Supervisor, VirtualClock
from runtime.supervisor import STOP_DEADLINE

STOPPED: list[str] = []


class Worker(Actor):
    """Runs a loop until cancelled; notes when its run ends."""

    heartbeat_interval = None

    def __init__(self, name: str) -> None:
        super().__init__(name=name)

    async def run(self) -> None:
        try:
            while True:
                await self.clock.sleep(1)
        finally:
            STOPPED.append(self.name)


class Stubborn(Actor):
    """A child that swallows `swallow` cancellations (like nats-py's publish did), forever if None."""

    name = "stubborn"
    heartbeat_interval = None

    def __init__(self, swallow: int | None) -> None:
        super().__init__()
        self.swallow = swallow
        self.swallowed = 0
        self.release = False

    async def run(self) -> None:
        self.spawn(self._stubborn(), name="stubborn.child")

    async def _stubborn(self) -> None:
        while True:
            try:
                await self.clock.sleep(1)
            except asyncio.CancelledError:
                if self.release or (self.swallow is not None and self.swallowed >= self.swallow):
                    raise
                self.swallowed += 1


class TestOrder:
    async def test_actors_stop_in_reverse_start_order(self, vctx: Context) -> None:
        """The last started (the scheduler in sniper) stops first: sources of work before workers."""
        STOPPED.clear()
        async with Supervisor(vctx, [Worker("flags"), Worker("fetch"), Worker("scheduler")]):
            await vctx.clock.sleep(2)
        assert STOPPED == ["scheduler", "fetch", "flags"]


class TestStubbornTasks:
    async def test_a_swallowed_cancellation_is_repeated(self, vctx: Context, caplog: pytest.LogCaptureFixture) -> None:
        """A child that swallows two cancellations is cancelled again until it ends; the actor stops cleanly."""
        actor = Stubborn(swallow=2)
        async with Supervisor(vctx, [actor]):
            await vctx.clock.sleep(2)
        assert actor.swallowed == 2 and actor.state is ActorState.STOPPED
        assert any(r.getMessage() == "tasks_ignored_cancellation" for r in caplog.records)

    async def test_a_task_that_never_ends_cannot_hold_the_stop(
        self, vctx: Context, vclock: VirtualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A child swallowing every cancellation: the stop still returns at the deadline, and says which actor."""
        actor = Stubborn(swallow=None)
        supervisor = Supervisor(vctx, [actor, Worker("other")])
        await supervisor.start()
        started = vclock.monotonic()
        real = asyncio.get_running_loop().time()
        try:
            with caplog.at_level(logging.WARNING, logger="sniper"):
                await supervisor.stop()
            assert vclock.monotonic() - started == pytest.approx(STOP_DEADLINE, abs=0.5)
            assert asyncio.get_running_loop().time() - real < 5
            messages = [r.getMessage() for r in caplog.records]
            assert "actor_stop_deadline" in messages and "tasks_ignored_cancellation" in messages
            assert all(task.done() for task in supervisor._tasks.values())
        finally:
            actor.release = True  # let the test's loop end cleanly
            for task in list(actor._children):
                task.cancel()
            await asyncio.gather(*actor._children, return_exceptions=True)
