"""Flow control at the inbound edge: budgets, rate-limited warnings, shared subscriptions, publish errors."""

from __future__ import annotations

import asyncio
import logging

import pytest

from actors.metrics import Metrics, metrics_of
from messages import FlagChanged, Tick, encode
from runtime import ActorState, Context, NatsBus, Supervisor, SystemClock, VirtualClock
from runtime.actor import Actor, Sub
from runtime.errors import PublishError
from runtime.flow import RateLimitedWarning, TokenBucket
from runtime.logs import get_logger
from runtime.testing import wait_until


class TestTokenBucket:
    def test_a_full_bucket_allows_one_seconds_worth_then_refuses(self) -> None:
        """A fresh bucket allows `rate` takes at once, then none until time passes."""
        bucket = TokenBucket(5, now=0.0)
        assert [bucket.take(0.0) for _ in range(7)] == [True] * 5 + [False] * 2

    @pytest.mark.parametrize("elapsed, allowed", [(0.1, 1), (0.5, 5), (10.0, 10)])
    def test_refills_at_the_rate_up_to_the_burst(self, elapsed: float, allowed: int) -> None:
        """After `elapsed` seconds an empty bucket of rate 10 allows min(10 * elapsed, 10) takes."""
        bucket = TokenBucket(10, now=0.0)
        while bucket.take(0.0):
            pass
        assert sum(bucket.take(elapsed) for _ in range(20)) == allowed


class TestRateLimitedWarning:
    def test_bursts_then_sums_up(self, caplog: pytest.LogCaptureFixture) -> None:
        """1,000 events in one period give `burst` lines, and one summary line in the next period."""
        warn = RateLimitedWarning(get_logger("test.flow"), "bad_message", burst=3, period=10.0)
        with caplog.at_level(logging.WARNING):
            for i in range(1000):
                warn(i / 1000, n=i)
            warn(11.0, n=-1)
        messages = [r.getMessage() for r in caplog.records]
        assert messages.count("bad_message") == 4  # 3 in the first period, 1 in the next
        assert messages.count("bad_message_suppressed") == 1
        summary = next(r for r in caplog.records if r.getMessage() == "bad_message_suppressed")
        assert summary.__dict__["fields"]["count"] == 997


class _Listener(Actor):
    heartbeat_interval = None

    def __init__(self, name: str, subject: str, *, max_rate: float | None = None) -> None:
        super().__init__(name=name)
        self.subject = subject
        self.max_rate = max_rate
        self.got: list[Tick] = []
        self.changed = asyncio.Event()

    def subscriptions(self) -> list[Sub]:
        return [Sub(self.subject, Tick, self.on_tick, max_rate=self.max_rate)]

    async def on_tick(self, tick: Tick) -> None:
        self.got.append(tick)
        self.changed.set()


def tick(cycle: int, now: float) -> bytes:
    return encode(Tick(asset="SOL", cycle=cycle, ts=now, deadline=now + 1))


class TestShedding:
    async def test_over_budget_messages_are_shed_unread_and_counted(self, vctx: Context) -> None:
        """A subscription with max_rate=10 handles 10 of a burst of 100 and counts 90 as shed."""
        listener = _Listener("listener", "sniper.tick.SOL", max_rate=10)
        async with Supervisor(vctx, [listener]):
            now = vctx.clock.now()
            for cycle in range(100):
                await vctx.bus.publish("sniper.tick.SOL", tick(cycle, now))
            await vctx.clock.sleep(0.001)
            assert len(listener.got) == 10
            assert metrics_of(vctx).shed_messages.labels("listener")._value.get() == 90
            await vctx.clock.sleep(1)
            await vctx.bus.publish("sniper.tick.SOL", tick(100, vctx.clock.now()))
            await vctx.clock.sleep(0.001)
            assert len(listener.got) == 11  # refilled


@pytest.mark.nats
class TestOverRealNats:
    async def test_actors_on_one_subject_share_one_nats_subscription(self, nats_bus: NatsBus) -> None:
        """Three actors on tick.SOL cost one NATS subscription; each still gets every message, in order."""
        ctx = Context(bus=nats_bus, clock=SystemClock(), hooks=Metrics())
        listeners = [_Listener(f"l{i}", "sniper.tick.SOL") for i in range(3)]
        async with Supervisor(ctx, listeners):
            subjects = [s.subject for s in nats_bus.client._subs.values()]
            assert subjects.count("sniper.tick.SOL") == 1
            for cycle in range(50):
                await nats_bus.publish("sniper.tick.SOL", tick(cycle, ctx.clock.now()))
            await nats_bus.flush()
            for listener in listeners:
                await listener_wait(listener, 50)
                assert [t.cycle for t in listener.got] == list(range(50))
        assert not [s for s in nats_bus.client._subs.values() if s.subject == "sniper.tick.SOL"]

    async def test_a_message_over_max_payload_is_data_not_a_crash(self, nats_bus: NatsBus) -> None:
        """Over real NATS, publishing more than the server's max_payload is a PublishError the actor counts."""
        assert nats_bus.max_payload == 1024 * 1024  # read from the server's INFO
        with pytest.raises(PublishError) as caught:
            await nats_bus.publish("sniper.test", b"x" * (nats_bus.max_payload + 1))
        assert caught.value.reason == "too_large" and caught.value.size == nats_bus.max_payload + 1

        class Loud(Actor):
            name = "loud"
            heartbeat_interval = None

            async def run(self) -> None:
                self.sent = await self.publish("sniper.test", FlagChanged(flag="X", enabled=True, ts=0, why="x" * 10))

        nats_bus.max_payload = 64  # as if the server had a smaller limit
        ctx = Context(bus=nats_bus, clock=SystemClock(), hooks=Metrics())
        actor = Loud()
        async with Supervisor(ctx, [actor]):
            await nats_bus.flush()
            assert actor.state is ActorState.RUNNING
        assert actor.sent is False and metrics_of(ctx).publish_errors.labels("loud", "too_large")._value.get() == 1


async def listener_wait(listener: _Listener, n: int) -> None:
    await wait_until(lambda: len(listener.got) >= n, timeout=5, changed=listener.changed)


def test_virtual_clock_is_the_flow_clock() -> None:
    """The bucket takes any clock's reading: virtual time refills it like real time."""
    clock = VirtualClock()
    bucket = TokenBucket(1, now=clock.monotonic())
    assert bucket.take(clock.monotonic()) and not bucket.take(clock.monotonic())
