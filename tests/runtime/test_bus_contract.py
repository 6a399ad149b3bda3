"""One contract, two buses: MemoryBus must behave like NatsBus on a real server.

The contract's checks ship in `runtime.testing` (``check_bus_*``), so any
`Bus` implementation can run them; here they run against both of ours.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from runtime import Bus, Envelope, MemoryBus, Subscription, VirtualClock, subject_matches
from runtime.bus import Handler
from runtime.testing import BUS_CHECKS, WaitTimeout, check_bus, check_bus_unsubscribe, wait_until


class TestBusContract:
    @pytest.mark.parametrize("check", BUS_CHECKS, ids=lambda check: check.__name__)
    async def test_bus_honours_the_contract(self, any_bus: Bus, check: Callable[[Bus], Awaitable[None]]) -> None:
        """Each `runtime.testing` Bus check passes on a fresh bus (see the check's docstring)."""
        await check(any_bus)

    async def test_check_bus_runs_every_check_on_fresh_buses(self) -> None:
        """`check_bus`, the whole suite for a third party's bus, passes on MemoryBus."""
        made: list[Bus] = []

        async def make() -> Bus:
            made.append(MemoryBus())
            return made[-1]

        await check_bus(make)
        assert len(made) == len(BUS_CHECKS) and all(bus.is_closed for bus in made)


class _Stuck(Subscription):
    """A subscription whose unsubscribe does nothing: a broken bus for the checks to catch."""

    def __init__(self, inner: Subscription) -> None:
        self.subject = inner.subject

    async def unsubscribe(self) -> None:
        pass


class DeafToUnsubscribe(MemoryBus):
    async def subscribe(
        self, subject: str, handler: Handler, *, queue: str | None = None, pending: int | None = None
    ) -> Subscription:
        return _Stuck(await super().subscribe(subject, handler, queue=queue, pending=pending))


class TestChecksCatchABrokenBus:
    async def test_a_check_fails_with_an_assertion(self) -> None:
        """A bus that keeps delivering after unsubscribe fails `check_bus_unsubscribe` with AssertionError."""
        bus = DeafToUnsubscribe()
        with pytest.raises(AssertionError, match="unsubscribed handler still got"):
            await check_bus_unsubscribe(bus)
        await bus.close()

    async def test_check_bus_names_the_failing_check(self) -> None:
        """`check_bus` stops at the first failure, noting which check it was."""

        async def make() -> Bus:
            return DeafToUnsubscribe()

        with pytest.raises(AssertionError) as info:
            await check_bus(make)
        assert info.value.__notes__ == ["in runtime.testing.check_bus_unsubscribe"]


class TestWaitUntil:
    async def test_returns_the_truthy_value(self) -> None:
        """wait_until polls a plain condition and returns what it found."""
        box: list[int] = []
        asyncio.get_running_loop().call_later(0.05, box.append, 7)
        assert await wait_until(lambda: box and box[0], timeout=2) == 7

    async def test_times_out_naming_the_condition(self) -> None:
        """A condition that never holds fails, as both TimeoutError and AssertionError, quoting its source."""
        never: list[int] = []
        with pytest.raises(WaitTimeout, match=r"0\.05s .* waiting for .*lambda: len\(never\) > 0") as info:
            await wait_until(lambda: len(never) > 0, timeout=0.05)
        assert isinstance(info.value, TimeoutError) and isinstance(info.value, AssertionError)

    @pytest.mark.parametrize("changed", [False, True], ids=["polling", "on-event"])
    async def test_runs_under_autojump(self, changed: bool) -> None:
        """Under a VirtualClock with autojump, virtual time runs on while wait_until waits (real-time deadline)."""
        clock = VirtualClock(autojump=True)
        done = asyncio.Event()

        async def an_hour_of_ticks() -> None:
            for _ in range(3600):
                await clock.sleep(1)
            done.set()

        task = asyncio.create_task(an_hour_of_ticks())
        try:
            await wait_until(done.is_set, timeout=5, changed=done if changed else None)
            assert clock.monotonic() == 3600
        finally:
            task.cancel()
            clock.stop_autojump()


class TestMemoryBusSpecifics:
    async def test_slow_consumer_drops_past_pending_limit(self) -> None:
        """Past the pending limit, new messages are dropped and counted, never blocking the publisher."""
        bus = MemoryBus(pending_limit=5)
        gate = asyncio.Event()

        async def stuck(env: Envelope) -> None:
            await gate.wait()

        await bus.subscribe("s", stuck)
        for _ in range(20):
            await bus.publish("s", b"x")
        assert bus.stats.slow_consumer_drops >= 14
        gate.set()
        await bus.close()


class TestSubjectMatching:
    @pytest.mark.parametrize(
        "pattern, subject, expected",
        [
            ("a.b", "a.b", True),
            ("a.*", "a.b", True),
            ("a.*", "a.b.c", False),
            ("a.>", "a.b.c", True),
            ("a.>", "a", False),
            ("*.b", "a.b", True),
            ("a.b", "a.c", False),
            (">", "x.y", True),
            ("a.*.c", "a.b.c", True),
            ("a.*.c", "a.b.d", False),
        ],
    )
    def test_wildcards_follow_nats(self, pattern: str, subject: str, expected: bool) -> None:
        """`*` matches one token and `>` one or more, as in NATS."""
        assert subject_matches(pattern, subject) is expected
