"""Leases: one process of several runs a singleton; failover in time; a deposed holder's messages are fenced."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from actors.metrics import Metrics
from messages import Heartbeat, LeaderChanged, Lease, decode, encode
from runtime import Actor, Context, MemoryBus, NatsBus, SystemClock, VirtualClock
from runtime.actor import Sub
from runtime.bus import Subscription
from runtime.kv import KeyValue, KVEntry, KVUnavailable, WatchHandler
from runtime.lease import RENEW_FRACTION, STEP_DOWN_FRACTION, Fencer, Leadership
from runtime.supervisor import Supervisor
from runtime.testing import Recorder, wait_until
from sniper.embedded import EmbeddedNats

TTL = 4.0


class Singleton(Actor):
    """An actor of which one process may act at a time: it records the terms it worked in."""

    name = "solo"
    heartbeat_interval = None

    def __init__(self) -> None:
        super().__init__()
        self.leadership: Leadership = Leadership(self.name)
        self.worked: list[int] = []
        self.began: list[float] = []  # when (wall) each term's work began
        self.stopped: list[float] = []  # ... and ended
        self.news = 0  # messages read while following the leader
        self.working = False

    async def run(self) -> None:
        await self.leadership.hold(self, self.work, follow=[Sub("leader.news", Heartbeat, self.on_news)])

    async def on_news(self, news: Heartbeat) -> None:
        self.news += 1

    async def work(self, term: int) -> None:
        self.worked.append(term)
        self.began.append(self.clock.now())
        self.working = True
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self.working = False
            self.stopped.append(self.clock.now())


class Process:
    """One process: its own context (instance id) on the shared bus, running one `Singleton`."""

    def __init__(self, bus: MemoryBus | NatsBus, clock: VirtualClock | SystemClock, name: str, ttl: float = TTL):
        self.ctx = Context(bus=bus, clock=clock, host=name, hooks=Metrics(), lease_ttl=ttl, instance=f"{name}-1-aaaaaa")
        self.actor = Singleton()
        self.supervisor = Supervisor(self.ctx, [self.actor])

    def kill(self) -> None:
        """Like kill -9: the actor's task is gone, its lease stays as it was (no release)."""
        self.supervisor._tasks[self.actor.name].cancel()


@contextlib.asynccontextmanager
async def processes(
    bus: MemoryBus | NatsBus, clock: VirtualClock | SystemClock, *names: str
) -> AsyncIterator[list[Process]]:
    procs = [Process(bus, clock, name) for name in names]
    try:
        for proc in procs:
            await proc.supervisor.start()
        yield procs
    finally:
        for proc in procs:
            await proc.supervisor.stop()


async def stored(bus: MemoryBus | NatsBus, role: str = "solo") -> Lease:
    entry = await (await bus.key_value("sniper_leases")).get(role)
    assert entry is not None and entry.value is not None
    return decode(entry.value, Lease)


class FlakyBucket(KeyValue):
    """A bucket this process can lose its link to (a partition), while others still reach it."""

    def __init__(self, inner: KeyValue) -> None:
        self.inner = inner
        self.down = False
        self.silent = False  # no answer at all (a partition without a reset; an election)

    async def _check(self) -> None:
        if self.silent:
            await asyncio.get_running_loop().create_future()
        if self.down:
            raise KVUnavailable("partitioned (test)")

    async def get(self, key: str) -> KVEntry | None:
        await self._check()
        return await self.inner.get(key)

    async def put(self, key: str, value: bytes) -> int:
        await self._check()
        return await self.inner.put(key, value)

    async def update(self, key: str, value: bytes, *, last: int) -> int:
        await self._check()
        return await self.inner.update(key, value, last=last)

    async def delete(self, key: str) -> None:
        await self._check()
        await self.inner.delete(key)

    async def entries(self) -> dict[str, KVEntry]:
        await self._check()
        return await self.inner.entries()

    async def watch(self, handler: WatchHandler) -> Subscription:
        await self._check()
        return await self.inner.watch(handler)


class TestLeadership:
    async def test_the_first_process_leads_and_the_others_stand_by(
        self, memory_bus: MemoryBus, vclock: VirtualClock
    ) -> None:
        """Of three processes exactly one works, with term 1, and keeps the lease by renewing it."""
        async with processes(memory_bus, vclock, "a", "b", "c") as procs:
            await vclock.sleep(10 * TTL)
            leaders = [p for p in procs if p.actor.leadership.leading]
            assert len(leaders) == 1 and leaders[0].actor.worked == [1]
            assert [p.actor.worked for p in procs if p not in leaders] == [[], []]
            lease = await stored(memory_bus)
            assert lease.holder == leaders[0].ctx.instance and lease.term == 1 and not lease.released
            assert vclock.now() - lease.renewed <= TTL * RENEW_FRACTION

    async def test_only_a_standby_follows_the_leader(self, memory_bus: MemoryBus, vclock: VirtualClock) -> None:
        """The follow subscriptions exist while standing by and end on a win: a leader reads nothing back."""
        news = encode(Heartbeat(actor="solo", ts=vclock.now(), state="running"))
        async with processes(memory_bus, vclock, "a", "b") as (a, b):
            await vclock.sleep(TTL)
            await memory_bus.publish("leader.news", news)
            await wait_until(lambda: b.actor.news == 1)
            assert a.actor.news == 0
            await a.supervisor.stop()
            await wait_until(lambda: b.actor.working)
            await memory_bus.publish("leader.news", news)
            await vclock.sleep(TTL)
            assert b.actor.news == 1

    async def test_a_clean_stop_hands_over_at_the_next_poll(self, memory_bus: MemoryBus, vclock: VirtualClock) -> None:
        """A stopping holder releases its lease: the standby works within a quarter ttl, with term 2."""
        async with processes(memory_bus, vclock, "a", "b") as (a, b):
            await vclock.sleep(TTL)
            assert a.actor.working
            stopped = vclock.now()
            await a.supervisor.stop()
            await wait_until(lambda: b.actor.working)
            assert b.actor.began[0] - stopped <= TTL * RENEW_FRACTION + 0.01
            assert b.actor.worked == [2] and (await stored(memory_bus)).holder == b.ctx.instance

    async def test_a_dead_holder_is_replaced_within_its_ttl_and_a_poll(
        self, memory_bus: MemoryBus, vclock: VirtualClock
    ) -> None:
        """kill -9 of the holder: the standby takes over after the ttl (at most one poll later), term 2."""
        async with processes(memory_bus, vclock, "a", "b") as (a, b):
            await vclock.sleep(TTL)
            a.kill()
            await wait_until(lambda: b.actor.working)
            renewed = a.actor.leadership._renewed_at + (vclock.now() - vclock.monotonic())  # its last renewal (wall)
            took = b.actor.began[0]
            assert renewed + TTL < took <= renewed + TTL * (1 + RENEW_FRACTION) + 0.01
            assert (await stored(memory_bus)).term == 2

    @pytest.mark.parametrize("silent", [False, True], ids=["refused", "no-answer"])
    async def test_a_partitioned_holder_stops_working_before_anyone_takes_over(
        self, memory_bus: MemoryBus, vclock: VirtualClock, silent: bool
    ) -> None:
        """Cut from the bucket (refused, or no answer at all), the holder steps down by ttl/2; the standby after ttl."""
        async with processes(memory_bus, vclock, "a", "b") as (a, b):
            await vclock.sleep(TTL)
            flaky = FlakyBucket(await memory_bus.key_value("sniper_leases"))
            a.actor.leadership._kv = flaky
            renewed = (await stored(memory_bus)).renewed
            flaky.down, flaky.silent = True, silent
            await wait_until(lambda: not a.actor.working)
            stepped_down = a.actor.stopped[0]
            assert stepped_down <= renewed + TTL * (STEP_DOWN_FRACTION + (0 if silent else RENEW_FRACTION)) + 0.01
            await wait_until(lambda: b.actor.working)
            assert b.actor.began[0] > renewed + TTL > stepped_down
            flaky.down = flaky.silent = False  # healed: the old holder sees the new term and stays a standby
            await vclock.sleep(2 * TTL)
            assert not a.actor.leadership.leading and a.actor.worked == [1] and b.actor.worked == [2]

    async def test_a_restarted_actor_takes_its_own_lease_back_at_once(
        self, memory_bus: MemoryBus, vclock: VirtualClock
    ) -> None:
        """The same process (instance) restarting its actor does not wait out its own lease: a new term."""
        async with processes(memory_bus, vclock, "a") as (a,):
            await vclock.sleep(TTL)
            restarted = Singleton()
            a.supervisor.actors.clear()
            a.kill()
            async with Supervisor(a.ctx, [restarted]):
                await wait_until(lambda: restarted.working)
                assert vclock.now() - (await stored(memory_bus)).renewed < TTL and restarted.worked == [2]

    async def test_a_deleted_lease_does_not_restart_the_count(
        self, memory_bus: MemoryBus, vclock: VirtualClock
    ) -> None:
        """The next term is above every term seen in messages, so receivers do not fence the new holder off."""
        async with processes(memory_bus, vclock, "a", "b") as (a, b):
            await vclock.sleep(TTL)
            b.actor.leadership.observe(5)  # b followed messages of term 5 (an earlier holder's)
            a.kill()
            await (await memory_bus.key_value("sniper_leases")).delete("solo")
            await wait_until(lambda: b.actor.working)
            assert b.actor.worked == [6]

    @pytest.mark.parametrize(
        "junk",
        [b"not json", b'{"type": "lease"}', encode(Lease(role="other", holder="x", term=9, renewed=0.0, ttl=1.0))],
        ids=["not-json", "incomplete", "another-role"],
    )
    async def test_an_unusable_stored_lease_counts_as_free(
        self, memory_bus: MemoryBus, vclock: VirtualClock, junk: bytes
    ) -> None:
        """Junk under the role's key does not block the pipeline: it is taken over and overwritten."""
        await (await memory_bus.key_value("sniper_leases")).put("solo", junk)
        async with processes(memory_bus, vclock, "a") as (a,):
            await wait_until(lambda: a.actor.working)
            assert (await stored(memory_bus)).holder == a.ctx.instance

    async def test_each_takeover_is_an_event_and_a_metric(self, memory_bus: MemoryBus, vclock: VirtualClock) -> None:
        """LeaderChanged on leader.<role> names the new holder and the one it replaced; sniper_leader follows."""
        events = await Recorder[LeaderChanged](memory_bus, "sniper.leader.*", LeaderChanged).start()
        async with processes(memory_bus, vclock, "a", "b") as (a, b):
            await vclock.sleep(TTL)
            a.kill()
            await wait_until(lambda: b.actor.working)
            await events.wait_count(2)
        first, second = events.messages[:2]
        assert (first.holder, first.term, first.previous) == (a.ctx.instance, 1, "")
        assert (second.holder, second.term, second.previous) == (b.ctx.instance, 2, a.ctx.instance)
        metrics = b.ctx.hooks
        assert isinstance(metrics, Metrics)
        assert metrics.registry.get_sample_value("sniper_leader_changes_total", {"role": "solo", "took": "yes"}) == 1

    async def test_without_a_ttl_every_holder_leads_with_term_0(
        self, memory_bus: MemoryBus, vclock: VirtualClock
    ) -> None:
        """No lease ttl in the context (one actor under test): it works at once, unfenced, and no bucket is made."""
        actor = Singleton()
        async with Supervisor(Context(bus=memory_bus, clock=vclock), [actor]):
            await wait_until(lambda: actor.working)
        assert actor.worked == [0] and actor.leadership.fence == 0
        assert "sniper_leases" not in memory_bus._buckets

    async def test_without_jetstream_one_process_acts_alone(self, vclock: VirtualClock) -> None:
        """A bus that keeps no state (NATS without JetStream) cannot hold leases: the process acts, term 0."""

        class Stateless(MemoryBus):
            keeps_state = False

            async def key_value(self, bucket: str) -> KeyValue:
                raise KVUnavailable("no JetStream (test)")

        bus = Stateless(clock=vclock)
        async with processes(bus, vclock, "a") as (a,):
            await wait_until(lambda: a.actor.working)
        assert a.actor.worked == [0]
        await bus.close()


class TestFencer:
    @pytest.mark.parametrize(
        ("fences", "admitted"),
        [
            ([0, 0, 0], [True, True, True]),
            ([1, 1, 2, 2], [True, True, True, True]),
            ([2, 1, 2], [True, False, True]),
            ([3, 0, 5, 4, 5], [True, False, True, False, True]),
        ],
    )
    def test_the_highest_term_seen_wins(self, fences: list[int], admitted: list[bool]) -> None:
        """A message fenced below the highest term seen is refused and counted; equal or higher passes."""
        fencer = Fencer()
        assert [fencer.admit(f) for f in fences] == admitted
        assert fencer.stale == admitted.count(False)

    def test_a_refusal_says_which_terms(self) -> None:
        """The refusal reason (what the runtime logs for a refused message) names both terms."""
        fencer = Fencer()
        fencer.admit(7)
        assert fencer.problem(6, "tick") == "stale_fence: tick of term 6, term 7 already spoke"
        assert fencer.problem(7, "tick") is None


class TestOverRealNats:
    async def test_two_processes_one_leader_and_failover_after_a_kill(self, nats_server: EmbeddedNats) -> None:
        """Two processes on one nats-server, each its own connection: one works; killed, the other takes over."""
        clock = SystemClock()
        buses = [await NatsBus.connect(nats_server.url, name=n) for n in ("a", "b")]
        procs = [Process(bus, clock, name, ttl=1.0) for bus, name in zip(buses, ("a", "b"), strict=True)]
        try:
            for proc in procs:
                await proc.supervisor.start()
            await wait_until(lambda: sum(p.actor.working for p in procs) == 1, timeout=5)
            leader, standby = sorted(procs, key=lambda p: not p.actor.working)
            leader.kill()
            await buses[procs.index(leader)].close()
            await wait_until(lambda: standby.actor.working, timeout=5)
            assert standby.actor.worked == [2]
            lease = await stored(buses[procs.index(standby)])
            assert lease.holder == standby.ctx.instance and lease.term == 2
        finally:
            for proc in procs:
                await proc.supervisor.stop()
            for bus in buses:
                await bus.close()
