"""The bus is a trust boundary: forged or oversized messages cannot silence or steer the pipeline.

One test per finding of the hostile probe (issue 9), in virtual time on the
in-memory bus; `tests/sniper/test_flood.py` repeats the flood over a real nats-server.
"""

from __future__ import annotations

import asyncio
import random

import msgspec
import pytest

from actors.assembler import MAX_EARLY_WINDOWS, SignalAssembler
from actors.circuit import ALL, MAX_LISTED, CircuitSupervisor, CircuitView
from actors.fetcher import ModuleFetcher
from actors.fetchers import FETCHERS, MODULES
from actors.metrics import metrics_of
from messages import (
    ActorGaveUp,
    CircuitCommand,
    CircuitReply,
    CircuitState,
    Degraded,
    FlagChanged,
    FlagCommand,
    Heartbeat,
    ModuleData,
    RouteMap,
    Tick,
    decode,
    encode,
)
from runtime import ActorState, Context, Supervisor, VirtualClock
from runtime.actor import Actor
from runtime.errors import ActorFailedError
from runtime.supervisor import RestartPolicy
from runtime.testing import Recorder, wait_until
from sniper.app import wait_for_stop

from .. import samples
from ..harness import Harness

ETF = samples.PATHS["etf"]
ASSETS = ("SOL", "BTC")


def running_without_restarts(actors: list[Actor]) -> bool:
    return all(a.state is ActorState.RUNNING and a.restarts == 0 for a in actors)


class TestOversizeWindow:
    async def test_forged_reports_for_unknown_modules_cannot_bloat_a_signal(self, harness: Harness) -> None:
        """12,000 degraded reports with distinct module names for one window never arrive; the signal stays small."""
        async with harness.run(assets=ASSETS):
            await harness.clock.sleep(4.5)  # inside the second SOL cycle (cycle 1 ticks at t=5)
            for i in range(12_000):
                forged = Degraded(
                    module=f"m{i}", asset="SOL", cycle=1, ts=harness.clock.now(), reason="upstream_error", called=True
                )
                await harness.forge(harness.subjects.degraded(f"m{i}", "SOL"), forged)
            await harness.clock.sleep(20)
            assert running_without_restarts(harness.actors)
        # With few modules and assets the actors subscribe per (module, asset): the bus
        # delivers none of the 12,000 (a broker drops them before they reach the process).
        assert harness.bus.stats.delivered < 1_000 and harness.actor("assembler").bad_messages == 0
        signals = [s for s in harness.signals.messages if s.asset == "SOL"]
        assert all(set(s.modules) == set(MODULES) for s in signals)
        assert all(len(encode(s)) < 4096 for s in signals)
        assert [s.cycle for s in signals] == list(range(len(signals)))

    async def test_on_wildcard_subscriptions_unknown_modules_are_refused(self, harness: Harness) -> None:
        """With many assets (wildcard subscriptions) the forged modules do arrive, and are refused, not kept."""
        assembler = SignalAssembler(modules=MODULES)  # no asset list: subscribes to every asset's reports
        async with Supervisor(harness.ctx, [assembler]):
            now = harness.clock.now()
            await harness.forge(harness.subjects.tick("SOL"), Tick(asset="SOL", cycle=0, ts=now, deadline=now + 3))
            for i in range(2_000):
                forged = Degraded(module=f"m{i}", asset="SOL", cycle=0, ts=now, reason="upstream_error")
                await harness.forge(harness.subjects.degraded(f"m{i}", "SOL"), forged)
            await harness.clock.sleep(5)
        assert assembler.bad_messages + harness.bus.stats.slow_consumer_drops == 2_000
        assert [set(s.modules) for s in harness.signals.messages] == [set(MODULES)]

    async def test_reports_ahead_of_their_tick_open_a_bounded_number_of_windows(self, harness: Harness) -> None:
        """Reports for cycles nobody ticked open at most MAX_EARLY_WINDOWS windows per asset."""
        async with harness.run(assets=ASSETS, actors=("assembler",)):
            assembler = harness.actor("assembler", SignalAssembler)
            for cycle in range(1000, 1100):
                report = Degraded(module="whale", asset="SOL", cycle=cycle, ts=harness.clock.now(), reason="timeout")
                await harness.forge(harness.subjects.degraded("whale", "SOL"), report)
            await harness.clock.sleep(0.01)  # far less than a window: none has closed yet
            assert len(assembler._open) == MAX_EARLY_WINDOWS
            assert assembler.bad_messages == 100 - MAX_EARLY_WINDOWS


class TestPublishErrorsAreData:
    async def test_a_message_over_the_broker_limit_is_counted_not_fatal(self, vctx: Context) -> None:
        """An actor publishing more than max_payload gets False back, a log line and a metric; it keeps running."""

        class Loud(Actor):
            name = "loud"
            heartbeat_interval = None

            async def run(self) -> None:
                huge = FlagChanged(flag="ETF", enabled=True, ts=0.0, why="x" * 50)
                vctx.bus.max_payload = 100  # smaller than the message: the broker would refuse it
                self.sent = await self.publish("sniper.test", huge)

        actor = Loud()
        async with Supervisor(vctx, [actor]):
            await vctx.clock.sleep(1)
            assert actor.state is ActorState.RUNNING and actor.restarts == 0
        assert actor.sent is False
        assert metrics_of(vctx).publish_errors.labels("loud", "too_large")._value.get() == 1


class TestEscalation:
    async def test_giving_up_on_an_actor_ends_the_process_with_a_clear_error(self, vctx: Context) -> None:
        """Past its restart intensity: ActorGaveUp is published, then wait_for_stop raises ActorFailedError."""

        class Broken(Actor):
            name = "broken"
            heartbeat_interval = None

            async def run(self) -> None:
                raise RuntimeError("always")

        events = await Recorder[ActorGaveUp](vctx.bus, vctx.subjects.actor_event("broken"), ActorGaveUp).start()
        sup = Supervisor(vctx, [Broken()], policy=RestartPolicy(max_restarts=2, period=60))
        await sup.start()
        try:
            with pytest.raises(ActorFailedError, match="broken"):
                await asyncio.wait_for(wait_for_stop(None, supervisor=sup), 5)
        finally:
            await sup.stop()
        assert sup.gave_up.is_set() and events.messages and events.messages[0].actor == "broken"

    def test_the_cli_maps_it_to_exit_status_3(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """`sniper run` exits 3 when an actor failed, so systemd or compose restarts the process."""
        import sniper.demo
        from sniper.cli import EXIT_ACTOR_FAILED, main

        async def failing_run(settings: object, duration: object) -> int:
            raise ActorFailedError("actor fetch-whale exceeded its restart intensity")

        monkeypatch.setattr(sniper.demo, "run", failing_run)
        assert main(["run", "--backend", "http://127.0.0.1:9"]) == EXIT_ACTOR_FAILED == 3


class TestForgedControl:
    async def test_a_tick_from_the_far_future_does_not_stop_an_asset(self, harness: Harness) -> None:
        """A Tick dated 1e15 is refused by assembler and fetchers; BTC keeps getting signals."""
        async with harness.run(assets=ASSETS):
            await harness.clock.sleep(1)
            forged = Tick(asset="BTC", cycle=5, ts=1e15, deadline=1e15 + 3)
            await harness.forge(harness.subjects.tick("BTC"), forged)
            await harness.clock.sleep(30)
        assert harness.actor("assembler").bad_messages >= 1
        signals = [s for s in harness.signals.messages if s.asset == "BTC"]
        assert [s.cycle for s in signals] == list(range(6)) and all(s.complete for s in signals)

    async def test_reset_clears_a_breaker_the_supervisor_never_issued(self, harness: Harness) -> None:
        """A forged open breaker held by a fetcher is cleared by `circuit reset`, though the supervisor knew nothing."""
        async with harness.run(assets=ASSETS):
            whale = harness.actor("whale", ModuleFetcher)
            now = harness.clock.now()
            forged = CircuitState(module="whale", scope="SOL", state="open", ts=now, until=now + 500, cause="transient")
            await harness.forge(harness.subjects.circuit("whale"), forged)
            await harness.clock.sleep(0.1)
            assert whale.circuit.deny("SOL", harness.clock.now()) is not None
            env = await harness.bus.request(
                harness.subjects.command("circuit"), encode(CircuitCommand(action="reset", module="whale")), timeout=1
            )
            assert decode(env.data, CircuitReply).ok
            await harness.clock.sleep(0.1)
            assert whale.circuit.deny("SOL", harness.clock.now()) is None
            stored = await (await harness.bus.key_value("sniper_circuits")).get("whale.all")
            assert stored is not None and stored.value and decode(stored.value, CircuitState).state == "closed"

    @pytest.mark.parametrize(
        "forged",
        [
            pytest.param(lambda now: dict(ts=1e12, until=1e12 + 60), id="dated-in-the-future"),
            pytest.param(lambda now: dict(ts=now, until=now + 10 * 86400), id="held-for-ten-days"),
        ],
    )
    async def test_breaker_states_beyond_the_policy_are_refused(self, harness: Harness, forged) -> None:
        """A fetcher refuses breaker states dated ahead of its clock or held longer than the policy allows."""
        async with harness.run(assets=ASSETS):
            whale = harness.actor("whale", ModuleFetcher)
            state = CircuitState(module="whale", scope=ALL, state="quarantined", **forged(harness.clock.now()))
            await harness.forge(harness.subjects.circuit("whale"), state)
            await harness.clock.sleep(0.1)
            assert whale.circuit.deny("SOL", harness.clock.now()) is None
            assert whale.bad_messages == 1

    async def test_discovery_republishes_and_wins_over_a_forged_route_map(self, harness: Harness) -> None:
        """A forged map with a huge revision steers fetchers only until discovery's next refresh."""
        async with harness.run(assets=ASSETS, actors=("discovery", "whale"), discovery_interval=60):
            whale = harness.actor("whale", ModuleFetcher)
            real = whale.route
            forged = RouteMap(ts=harness.clock.now(), source="openapi", revision=10**9)
            await harness.forge(harness.subjects.routes(), forged)
            await harness.clock.sleep(0.1)
            assert whale.route is None
            await harness.clock.sleep(61)
            assert whale.route == real

    async def test_a_route_map_from_the_future_is_refused(self, harness: Harness) -> None:
        """A map dated beyond the clock skew cannot outrank every real one."""
        async with harness.run(assets=ASSETS, actors=("whale",)):
            whale = harness.actor("whale", ModuleFetcher)
            real = whale.route
            await harness.forge(harness.subjects.routes(), RouteMap(ts=1e12, source="openapi", revision=10**9))
            await harness.clock.sleep(0.1)
        assert whale.route == real and whale.bad_messages == 1


class TestQuarantineOnlyLiftsForReal:
    async def _quarantined(self, harness: Harness) -> None:
        harness.backend.fail(ETF, 402)
        await harness.clock.sleep(6)
        assert harness.backend.count(ETF) == 1

    async def test_forged_flag_event_no_op_flag_set_and_forged_data_cost_no_paid_call(self, harness: Harness) -> None:
        """A forged flags.changed, an on->on flag set and a forged ETF success each leave the quarantine in place."""
        async with harness.run(assets=ASSETS):
            await self._quarantined(harness)
            now = harness.clock.now()
            await harness.forge(harness.subjects.flags_changed(), FlagChanged(flag="ETF", enabled=True, ts=now))
            await harness.bus.request(
                harness.subjects.command("flags"), encode(FlagCommand(flag="ETF", enabled=True)), timeout=1
            )
            payload = msgspec.convert(samples.BODIES[ETF], FETCHERS["etf"].payload_type)
            await harness.forge(
                harness.subjects.data("etf", "SOL"),
                ModuleData(module="etf", asset="SOL", cycle=2, ts=now, payload=payload),
            )
            await harness.clock.sleep(60)
        assert harness.backend.count(ETF) == 1

    async def test_a_real_off_on_switch_still_lifts_it(self, harness: Harness) -> None:
        """Switching the flag off and on again (in the bucket) is a real transition: the next cycle calls again."""
        async with harness.run(assets=ASSETS):
            await self._quarantined(harness)
            harness.backend.heal(ETF)
            for enabled in (False, True):
                await harness.bus.request(
                    harness.subjects.command("flags"), encode(FlagCommand(flag="ETF", enabled=enabled)), timeout=1
                )
            await harness.clock.sleep(10)
        assert harness.backend.count(ETF) == 2


class TestBoundedState:
    async def test_forged_traffic_for_unknown_assets_and_modules_keeps_no_state(self, harness: Harness) -> None:
        """10,000 forged messages for random assets and modules leave no window, breaker or metric series behind."""
        rng = random.Random(9)
        async with harness.run(assets=ASSETS):
            await harness.clock.sleep(6)
            series_before = len(list(harness.metrics.registry.collect()))
            samples_before = sum(len(m.samples) for m in harness.metrics.registry.collect())
            for i in range(10_000):
                asset = f"X{rng.randrange(10**6)}"
                now = harness.clock.now()
                match i % 4:
                    case 0:
                        msg: msgspec.Struct = Tick(asset=asset, cycle=i, ts=now, deadline=now + 3)
                        subject = harness.subjects.tick(asset)
                    case 1:
                        msg = Degraded(module="whale", asset=asset, cycle=i, ts=now, reason="timeout", called=True)
                        subject = harness.subjects.degraded("whale", asset)
                    case 2:
                        msg = Degraded(module=f"m{i}", asset="SOL", cycle=1, ts=now, reason="timeout", called=True)
                        subject = harness.subjects.degraded(f"m{i}", "SOL")
                    case _:
                        msg = Heartbeat(actor=f"a{i}", ts=now, state="running")
                        subject = harness.subjects.heartbeat(f"a{i}")
                await harness.forge(subject, msg)
            await harness.clock.sleep(20)
            samples_after = sum(len(m.samples) for m in harness.metrics.registry.collect())
            assert running_without_restarts(harness.actors)
        assert {k[0] for k in harness.actor("assembler", SignalAssembler)._open} <= set(ASSETS)
        assert {k[1] for k in harness.actor("circuits", CircuitSupervisor).breakers} <= {*ASSETS, ALL}
        assert len(list(harness.metrics.registry.collect())) == series_before
        # The real assets' cycles add samples for SOL/BTC only; nothing per forged asset or module.
        assert samples_after - samples_before < 50
        assert {h.asset for h in harness.health.messages} == set(ASSETS)

    async def test_the_circuit_list_reply_is_bounded(self, vctx: Context) -> None:
        """However many breakers exist, a list reply carries at most MAX_LISTED states."""
        sup = CircuitSupervisor()
        async with Supervisor(vctx, [sup]):
            now = vctx.clock.now()
            for i in range(MAX_LISTED + 50):
                sup._breaker("whale", f"A{i}")
            env = await vctx.bus.request(
                vctx.subjects.command("circuit"), encode(CircuitCommand(action="list")), timeout=1
            )
            assert len(decode(env.data, CircuitReply).circuits) == MAX_LISTED
            assert now == vctx.clock.now()


class TestCircuitViewReset:
    def test_a_module_wide_reset_drops_every_scope(self) -> None:
        """A closed 'all' state caused by a reset clears older states of every scope."""
        view = CircuitView("whale")
        view.update(CircuitState(module="whale", scope="SOL", state="open", ts=10, until=500, cause="transient"))
        view.update(CircuitState(module="whale", scope="BTC", state="open", ts=30, until=500, cause="transient"))
        view.update(CircuitState(module="whale", scope=ALL, state="closed", ts=20, cause="reset"))
        assert view.deny("SOL", 100) is None
        assert view.deny("BTC", 100) is not None  # newer than the reset: kept


class TestPublishedIsBoundedByConstruction:
    def test_a_hostile_spec_cannot_make_the_route_map_undecodable(self) -> None:
        """Over-long paths become unusable routes, long texts are cut: the published map always decodes."""
        from actors.capabilities import Binding
        from actors.discovery import Discovery, route_map
        from messages.routes import Route

        long_path = "/" + "a" * 5000
        found = Discovery(
            spec_path="/openapi.json",
            spec_version="3." + "1" * 1000,
            spec_problem=None,
            bindings={
                "whale": Binding("whale", route=Route(module="whale", path=long_path), notes=["n" * 10**6] * 100),
                "bias": Binding("bias", route=Route(module="bias", path="/bias")),
                "etf": Binding("etf", reason="r" * 10**6),
            },
        )
        published = route_map(found, VirtualClock(), revision=1)
        back = decode(encode(published), RouteMap)
        assert set(back.routes) == {"bias"}
        assert "exceeds the wire limits" in back.unusable["whale"]
        assert len(back.unusable["etf"]) <= 500 and len(back.notes["whale"]) <= 32

    async def test_a_huge_crash_message_still_makes_a_decodable_event(self, vctx: Context) -> None:
        """An actor dying of a 10 kB exception message still yields an ActorRestarted bots can decode."""
        from messages import ActorRestarted

        class Wordy(Actor):
            name = "wordy"
            heartbeat_interval = None

            async def run(self) -> None:
                raise RuntimeError("x" * 10_000)

        events = await Recorder[ActorRestarted](vctx.bus, vctx.subjects.actor_event("wordy"), ActorRestarted).start()
        async with Supervisor(vctx, [Wordy()], policy=RestartPolicy(max_restarts=1, period=60)):
            await vctx.clock.sleep(5)
        assert events.messages and len(events.messages[0].error) <= 1000


@pytest.mark.nats
class TestOverRealNats:
    async def test_the_configured_skew_reaches_the_actors_and_refuses_a_forged_tick(self, nats_server) -> None:
        """`--max-clock-skew 5`: a tick dated 10 s ahead is refused (counted) by the real pipeline's actors."""
        from marketsim import serve
        from runtime import NatsBus
        from sniper.app import run_pipeline
        from sniper.config import Settings

        async with serve(port=0, seed=5) as backend:
            settings = Settings(
                nats=nats_server.url, backend=backend.url, assets=("SOL",), interval=1.0, window=0.6, max_clock_skew=5
            )
            async with run_pipeline(settings) as running:
                assert running.ctx.max_clock_skew == 5
                forger = await NatsBus.connect(nats_server.url, name="forger")
                try:
                    now = running.ctx.clock.now() + 10
                    await forger.publish(
                        running.ctx.subjects.tick("SOL"),
                        encode(Tick(asset="SOL", cycle=10**6, ts=now, deadline=now + 1)),
                    )
                    await forger.flush()
                finally:
                    await forger.close()
                assembler = running.supervisor.actors["assembler"]
                await running.bus.flush()
                await wait_until(lambda: assembler.bad_messages, timeout=1)  # counted as the message is handled
                assert assembler.bad_messages == 1 and not [k for k in assembler._open if k[1] == 10**6]  # type: ignore[attr-defined]


class TestReviewFindings:
    async def test_a_poisoned_circuit_command_gets_an_error_not_a_crash(self, harness: Harness) -> None:
        """`reset` of "etf\\n" or of a made-up module is answered ok=False; the supervisor keeps running."""
        async with harness.run(assets=ASSETS):
            for module in ("etf\n", "zzz", "x" * 100):
                env = await harness.bus.request(
                    harness.subjects.command("circuit"),
                    msgspec.json.encode({"type": "circuit_command", "action": "reset", "module": module}),
                    timeout=1,
                )
                reply = decode(env.data, CircuitReply)
                assert not reply.ok and reply.error
            assert running_without_restarts(harness.actors)
        assert not [k for k in harness.actor("circuits", CircuitSupervisor).breakers if k[0] not in MODULES]

    async def test_stale_or_misfiled_stored_breakers_are_not_restored(self, harness: Harness) -> None:
        """The supervisor skips stored states for other modules, filed under another key, or held too long."""
        store = await harness.bus.key_value("sniper_circuits")
        now = harness.clock.now()
        bad = {
            "nope.all": CircuitState(module="nope", scope=ALL, state="open", ts=now, until=now + 60),
            "whale.BTC": CircuitState(module="whale", scope="SOL", state="open", ts=now, until=now + 60),
            "etf.all": CircuitState(module="etf", scope=ALL, state="quarantined", ts=now, until=now + 9e6),
        }
        for key, state in bad.items():
            await store.put(key, encode(state))
        async with harness.run(assets=ASSETS, actors=("circuits", "etf")):
            circuits = harness.actor("circuits", CircuitSupervisor)
            assert circuits.breakers == {}
            assert harness.actor("etf", ModuleFetcher).circuit.deny("SOL", now) is None
            assert running_without_restarts([circuits])

    async def test_a_replayed_old_breaker_event_is_refused(self, harness: Harness) -> None:
        """A live breaker event dated minutes ago (a replay) or already over does not hold calls back."""
        async with harness.run(assets=ASSETS, actors=("whale",)):
            whale = harness.actor("whale", ModuleFetcher)
            now = harness.clock.now()
            old = CircuitState(module="whale", scope="SOL", state="open", ts=now - 600, until=now - 500)
            over = CircuitState(module="whale", scope="SOL", state="open", ts=now - 10, until=now - 1)
            for state in (old, over):
                await harness.forge(harness.subjects.circuit("whale"), state)
            await harness.clock.sleep(0.1)
            assert whale.circuit.deny("SOL", harness.clock.now()) is None
            assert whale.bad_messages == 2

    def test_an_unanswered_probe_frees_its_slot_after_the_probe_timeout(self) -> None:
        """A half-open state whose probe never got an answer lets one more call through after 60 s, not never."""
        view = CircuitView("whale", probe_timeout=60)
        view.update(CircuitState(module="whale", scope=ALL, state="half_open", ts=0, probes=1))
        assert view.deny("SOL", 1) is None  # the probe
        assert view.deny("SOL", 30) is not None  # in flight
        assert view.deny("SOL", 62) is None  # given up on: probe again

    async def test_a_flag_key_nobody_configured_does_not_break_flags_list(self, harness: Harness) -> None:
        """A stray key in sniper_flags is left out of `flags list`, whose reply still decodes."""
        from messages import FlagReply

        async with harness.run(assets=ASSETS, actors=("flags",)):
            store = await harness.bus.key_value("sniper_flags")
            await store.put("k", encode(FlagChanged(flag="ETF", enabled=False, ts=harness.clock.now())))
            env = await harness.bus.request(harness.subjects.command("flags"), encode(FlagCommand()), timeout=1)
            reply = decode(env.data, FlagReply)
        assert reply.ok and set(reply.flags) == {m.upper() for m in MODULES}
