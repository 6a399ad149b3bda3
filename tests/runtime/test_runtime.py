"""The actor runtime: typed delivery, bad input, crashes, restarts, heartbeats."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from messages import ActorGaveUp, ActorRestarted, AnyMessage, Heartbeat, Tick, encode
from runtime import Actor, ActorState, Context, InvalidTransition, NatsBus, RestartPolicy, Sub, Supervisor, VirtualClock
from runtime.errors import SetupError
from runtime.testing import Recorder, wait_until

UNTIL_TIMEOUT = 5.0  # real seconds `Counter.until` waits before failing the test


def state_of(actor: Actor) -> ActorState:
    """The actor's state now (a call, so mypy does not carry an earlier `is` narrowing past an await)."""
    return actor.state


def tick(cycle: int, asset: str = "SOL") -> bytes:
    return encode(Tick(asset=asset, cycle=cycle, ts=1.0, deadline=2.0))


class Counter(Actor):
    """Records ticks; cycle 13 is a bug that raises."""

    name = "counter"
    heartbeat_interval: float | None = None

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.seen: list[int] = []
        self.starts = 0
        self.changed = asyncio.Event()

    async def until(self, predicate: Callable[[Counter], bool]) -> None:
        """Wait (bounded: 5 s real time) until predicate(self) holds; no polling sleeps."""
        await wait_until(lambda: predicate(self), timeout=UNTIL_TIMEOUT, changed=self.changed)

    def subscriptions(self):
        return [Sub(self.subjects.tick_all(), Tick, self.on_tick)]

    async def on_start(self) -> None:
        self.starts += 1
        self.changed.set()

    async def on_tick(self, msg: Tick) -> None:
        self.changed.set()
        if msg.cycle == 13:
            raise RuntimeError("unlucky")
        self.seen.append(msg.cycle)


class Bystander(Counter):
    """Same subscriptions, no bug."""

    name = "bystander"

    async def on_tick(self, msg: Tick) -> None:
        self.seen.append(msg.cycle)


async def publish_and_settle(ctx: Context, *payloads: bytes) -> None:
    for data in payloads:
        await ctx.bus.publish(ctx.subjects.tick("SOL"), data)
    await ctx.clock.sleep(0.001)  # virtual: lets deliveries run


class TestActorDelivery:
    async def test_handler_gets_typed_messages(self, vctx: Context) -> None:
        """Subscribed handlers receive decoded, typed messages in order."""
        actor = Counter()
        async with Supervisor(vctx, [actor]):
            await publish_and_settle(vctx, tick(1), tick(2))
            assert actor.seen == [1, 2] and actor.handled == 2

    @pytest.mark.parametrize(
        "garbage",
        [
            b"",
            b"{not json",
            b'{"type":"tick"}',
            b'{"type":"tick","asset":"SOL","cycle":"x","ts":1,"deadline":2}',
            b"\xff\xfe",
        ],
    )
    async def test_bad_message_is_counted_and_does_not_kill(self, vctx: Context, garbage: bytes) -> None:
        """An undecodable message is counted and logged; the actor keeps running."""
        actor = Counter()
        async with Supervisor(vctx, [actor]):
            await publish_and_settle(vctx, garbage, tick(5))
            assert actor.bad_messages == 1 and actor.seen == [5]
            assert actor.state is ActorState.RUNNING and actor.restarts == 0

    async def test_bad_message_is_logged_with_subject(self, vctx: Context, caplog: pytest.LogCaptureFixture) -> None:
        """The log line for a bad message names its subject."""
        async with Supervisor(vctx, [Counter()]):
            await publish_and_settle(vctx, b"junk")
        (record,) = [r for r in caplog.records if r.getMessage() == "bad_message"]
        assert record.__dict__["fields"]["subject"] == "sniper.tick.SOL"

    async def test_envelope_is_passed_to_two_argument_handlers(self, vctx: Context) -> None:
        """A handler with (msg, envelope) also gets the subject."""
        subjects: list[str] = []

        class WithEnv(Actor):
            name = "withenv"
            heartbeat_interval = None

            def subscriptions(self):
                return [Sub(self.subjects.tick_all(), Tick, self.on_tick)]

            async def on_tick(self, msg, env) -> None:
                subjects.append(env.subject)

        async with Supervisor(vctx, [WithEnv()]):
            await publish_and_settle(vctx, tick(1))
        assert subjects == ["sniper.tick.SOL"]

    @pytest.mark.parametrize(
        ("reply", "handled"),
        [("$JS.ACK.sniper_signals.evil.1.7.7.1767225600000000000.0", False), ("_INBOX.abc", True), (None, True)],
    )
    async def test_a_stream_consumer_replaying_onto_a_live_subject_is_refused(
        self, vctx: Context, reply: str | None, handled: bool
    ) -> None:
        """A message a JetStream consumer delivers (reply $JS.ACK...) is not live input: refused and counted."""
        actor = Counter()
        async with Supervisor(vctx, [actor]):
            await vctx.bus.publish(vctx.subjects.tick("SOL"), tick(3), reply=reply)
            await vctx.clock.sleep(0.001)
        assert (actor.seen == [3]) is handled and actor.bad_messages == (0 if handled else 1)


class TestActorLifecycle:
    async def test_states_follow_the_lifecycle(self, vctx: Context) -> None:
        """NEW -> RUNNING under a supervisor -> STOPPED after stop."""
        actor = Counter()
        assert state_of(actor) is ActorState.NEW
        sup = Supervisor(vctx, [actor])
        await sup.start()
        assert state_of(actor) is ActorState.RUNNING
        await sup.stop()
        assert state_of(actor) is ActorState.STOPPED

    def test_illegal_transition_is_refused(self) -> None:
        """Jumping from NEW straight to RUNNING is a bug and raises."""
        with pytest.raises(InvalidTransition):
            Counter()._set_lifecycle(ActorState.RUNNING)

    async def test_heartbeats_are_published_on_the_clock(self, vctx: Context, vclock: VirtualClock) -> None:
        """An actor publishes a heartbeat every interval of clock time."""

        class Beating(Counter):
            name = "beating"
            heartbeat_interval = 5.0

        async with (
            Recorder[Heartbeat](vctx.bus, vctx.subjects.heartbeat("beating"), Heartbeat) as rec,
            Supervisor(vctx, [Beating()]),
        ):
            await vclock.sleep(20)
        assert [round(h.uptime) for h in rec.messages][:5] == [0, 5, 10, 15, 20]
        assert {h.host for h in rec.messages} == {"test-host"}


class TestSupervisor:
    async def test_crash_restarts_with_jittered_exponential_backoff(self, vctx: Context, vclock: VirtualClock) -> None:
        """Each crash is published as ActorRestarted with a growing, jittered delay."""
        policy = RestartPolicy(max_restarts=10, period=3600, backoff_initial=1, backoff_factor=2, jitter=0.1)
        actor = Counter()
        async with (
            Recorder[AnyMessage](vctx.bus, vctx.subjects.actor_event("counter"), AnyMessage) as rec,
            Supervisor(vctx, [actor], policy=policy, rng=random.Random(7)),
        ):
            for _ in range(4):
                await publish_and_settle(vctx, tick(13))
                await vclock.sleep(60)
        restarts = [m for m in rec.messages if isinstance(m, ActorRestarted)]
        assert restarts == rec.messages  # every event is a restart (as `m.attempt` on each required)
        delays = [m.delay for m in restarts]
        assert [m.attempt for m in restarts] == [1, 2, 3, 4]
        for attempt, delay in enumerate(delays):
            assert 0.9 * 2**attempt <= delay <= 1.1 * 2**attempt
        assert len(set(delays)) == 4 and actor.starts == 5

    async def test_restart_resubscribes(self, vctx: Context, vclock: VirtualClock) -> None:
        """After a restart the actor receives messages again."""
        actor = Counter()
        async with Supervisor(vctx, [actor], policy=RestartPolicy(backoff_initial=1)):
            await publish_and_settle(vctx, tick(13))
            await vclock.sleep(5)
            await publish_and_settle(vctx, tick(14))
            assert actor.seen == [14] and actor.state is ActorState.RUNNING

    async def test_gives_up_past_restart_intensity(self, vctx: Context, vclock: VirtualClock) -> None:
        """More than N restarts within T seconds: the actor is FAILED and ActorGaveUp published."""
        actor = Counter()
        other = Bystander()
        policy = RestartPolicy(max_restarts=3, period=60, backoff_initial=0.5, backoff_max=2)
        async with Recorder[AnyMessage](vctx.bus, vctx.subjects.actor_event_all(), AnyMessage) as rec:
            sup = Supervisor(vctx, [actor, other], policy=policy, rng=random.Random(1))
            async with sup:
                for _ in range(5):
                    await publish_and_settle(vctx, tick(13))
                    await vclock.sleep(3)
                assert actor.state is ActorState.FAILED
                assert other.state is ActorState.RUNNING, "one actor's crashes must not stop another"
                assert "counter" in sup.failed
        kinds = [type(m).__name__ for m in rec.messages if getattr(m, "actor", "") == "counter"]
        assert kinds == ["ActorRestarted"] * 3 + ["ActorGaveUp"]
        gave_up = rec.messages[-1]
        assert isinstance(gave_up, ActorGaveUp) and gave_up.restarts == 3 and "unlucky" in gave_up.error

    async def test_crashes_spread_over_time_do_not_exhaust_intensity(self, vctx: Context, vclock: VirtualClock) -> None:
        """Crashes further apart than the period never trip the limit."""
        actor = Counter()
        async with Supervisor(vctx, [actor], policy=RestartPolicy(max_restarts=2, period=10, backoff_initial=0.1)):
            for _ in range(6):
                await publish_and_settle(vctx, tick(13))
                await vclock.sleep(11)
            assert actor.state is ActorState.RUNNING and actor.restarts == 6

    async def test_failing_on_start_is_a_crash(self, vctx: Context, vclock: VirtualClock) -> None:
        """An exception in on_start is supervised like any crash."""

        class BadStart(Counter):
            name = "badstart"

            async def on_start(self) -> None:
                raise OSError("no config")

        actor = BadStart()
        sup = Supervisor(vctx, [actor], policy=RestartPolicy(max_restarts=2, period=60, backoff_initial=0.1))
        await sup.start()
        assert actor.state is ActorState.FAILED and actor.restarts == 2
        await sup.stop()

    async def test_children_start_in_order(self, vctx: Context) -> None:
        """Each child has finished on_start (and subscribed) before the next one starts."""
        seen: list[tuple[str, list[str]]] = []
        actors: list[Actor] = []

        class Ordered(Counter):
            async def on_start(self) -> None:
                await self.clock.sleep(1)  # slow start: the next must still wait
                seen.append((self.name, [a.name for a in actors if a.state is ActorState.RUNNING]))

        actors.extend(Ordered(name=n) for n in ("first", "second", "third"))
        async with Supervisor(vctx, actors):
            pass
        assert seen == [("first", []), ("second", ["first"]), ("third", ["first", "second"])]

    async def test_a_child_that_will_not_start_is_a_startup_error(self, vctx: Context, vclock: VirtualClock) -> None:
        """A child stuck in on_start raises StartupError naming it; stop() then leaves nothing running."""
        from runtime.errors import StartupError

        class Stuck(Counter):
            name = "stuck"

            async def on_start(self) -> None:
                await asyncio.Event().wait()

        first, stuck, never = Counter(name="first"), Stuck(), Counter(name="never")
        sup = Supervisor(vctx, [first, stuck, never])
        with pytest.raises(StartupError, match="'stuck' did not start within 30s"):
            await sup.start()
        await sup.stop()
        assert first.state is ActorState.STOPPED and stuck.state is ActorState.STOPPED
        assert never.state is ActorState.NEW
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith(("supervise:", "first.", "stuck."))]

    async def test_nothing_spawned_during_teardown_survives(self, vctx: Context, vclock: VirtualClock) -> None:
        """Work a handler spawns while the actor stops is cancelled with it."""

        class Spawner(Counter):
            name = "spawner"

            async def on_tick(self, msg: Tick) -> None:
                self.spawn(vclock.sleep(3600), name="spawner.work")

        sup = Supervisor(vctx, [Spawner()])
        await sup.start()
        await publish_and_settle(vctx, tick(1), tick(2))
        await sup.stop()
        await vclock.sleep(0)
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "spawner.work" and not t.done()]

    def test_duplicate_names_are_refused(self, vctx: Context) -> None:
        """Two actors with one name would share subjects; refused up front."""
        with pytest.raises(SetupError):
            Supervisor(vctx, [Counter(), Counter()])

    def test_restart_delay_never_overflows(self) -> None:
        """A huge attempt number still yields the capped delay."""
        assert RestartPolicy(jitter=0, backoff_max=30).delay(100_000, random.Random(0)) == 30

    @pytest.mark.parametrize(
        "kwargs",
        [
            dict(max_restarts=-1),
            dict(period=0),
            dict(jitter=1.0),
            dict(backoff_factor=0.5),
            dict(backoff_initial=5, backoff_max=1),
        ],
    )
    def test_bad_policy_is_a_setup_error(self, kwargs) -> None:
        """Nonsensical restart policies fail at construction."""
        with pytest.raises(SetupError):
            RestartPolicy(**kwargs)


class TestRuntimeOverNats:
    async def test_actor_over_real_nats_survives_garbage_and_restarts(self, nats_bus: NatsBus) -> None:
        """Over a real nats-server: typed delivery, bad input counted, crash restarted and announced."""
        from runtime import SystemClock

        ctx = Context(bus=nats_bus, clock=SystemClock())
        actor = Counter()
        events = await Recorder[AnyMessage](nats_bus, ctx.subjects.actor_event_all(), AnyMessage).start()
        async with Supervisor(ctx, [actor], policy=RestartPolicy(backoff_initial=0.01, backoff_max=0.05)):
            for data in (b"garbage", tick(1), tick(13)):
                await nats_bus.publish(ctx.subjects.tick("SOL"), data)
            await events.wait_count(1)
            await actor.until(lambda a: a.starts == 2)
            await asyncio.wait_for(actor.wait_for_state(ActorState.RUNNING), 5)
            await nats_bus.publish(ctx.subjects.tick("SOL"), tick(2))
            await actor.until(lambda a: a.seen == [1, 2])
        assert actor.bad_messages == 1 and actor.restarts == 1
        assert isinstance(events.messages[0], ActorRestarted) and "unlucky" in events.messages[0].error


class TestRequestReply:
    async def test_actor_request_gets_a_typed_reply(self, any_bus) -> None:
        """Actor.request / Actor.reply work the same on the memory bus and real NATS."""
        from messages import FlagCommand, FlagReply
        from runtime import SystemClock

        class Echo(Actor):
            name = "echo"
            heartbeat_interval = None

            def subscriptions(self):
                return [Sub(self.subjects.command("echo"), FlagCommand, self.on_cmd)]

            async def on_cmd(self, cmd: FlagCommand, env) -> None:
                await self.reply(env, FlagReply(ok=True, flags={cmd.flag or "": bool(cmd.enabled)}))

        class Asker(Actor):
            name = "asker"
            heartbeat_interval = None

        ctx = Context(bus=any_bus, clock=SystemClock())
        asker = Asker()
        async with Supervisor(ctx, [Echo(), asker]):
            await any_bus.flush()
            reply = await asker.request(
                ctx.subjects.command("echo"), FlagCommand(flag="X", enabled=True), FlagReply, timeout=2
            )
        assert isinstance(reply, FlagReply) and reply.flags == {"X": True}
