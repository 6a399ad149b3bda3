"""Resilience: breaker per error class, feature flags, the seed's test plan; hours in virtual time."""

from __future__ import annotations

import asyncio
import random

import pytest

from actors.circuit import CircuitPolicy, CircuitSupervisor, CircuitView
from actors.fetchers import FETCHERS, MODULES
from actors.flags import FlagKeeper
from actors.testing import FakeBackend
from actors.upstream import MockTransport, UpstreamClient
from messages import (
    CircuitCommand,
    CircuitReply,
    CircuitState,
    FlagChanged,
    FlagCommand,
    FlagReply,
    Signal,
    decode,
    encode,
)
from runtime import Context, NatsBus, Supervisor, SystemClock
from runtime.testing import Recorder, wait_until

from .. import samples
from ..harness import Harness

ETF = samples.PATHS["etf"]
ALL_ON = {m: True for m in MODULES}


def etf_calls_at(harness: Harness) -> int:
    return harness.backend.count(ETF)


class TestEntitlementQuarantine:
    async def test_402_costs_one_call_per_hour_and_no_signal(self, harness: Harness) -> None:
        """ETF 402: exactly one upstream ETF call across an hour of ticks; all 720 signals still published."""
        harness.backend.fail(ETF, 402)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with harness.run():
            await harness.clock.sleep(3599)
        assert etf_calls_at(harness) == 1
        assert len(harness.signals.messages) == 720
        reasons = [s.modules["etf"].reason for s in harness.signals.messages]
        assert reasons[0] == "payment_required" and set(reasons[1:]) == {"circuit_open"}
        assert all(
            s.modules[m].status == "ok"
            for s in harness.signals.messages
            for m in ("whale", "heatmap", "spot_ob", "bias")
        )
        assert loop.time() - started < 10, "an hour must run in seconds of real time"

    async def test_quarantine_ends_with_one_probe(self, harness: Harness) -> None:
        """After the hour one probe goes out; if the plan is still missing, another hour of quarantine."""
        harness.backend.fail(ETF, 402)
        async with harness.run():
            await harness.clock.sleep(3600 * 2 + 60)
        assert etf_calls_at(harness) == 3
        states = [(c.state, c.cause) for c in harness.circuits.messages if c.module == "etf"]
        assert states[:3] == [
            ("quarantined", "entitlement"),
            ("half_open", "entitlement"),
            ("quarantined", "entitlement"),
        ]

    async def test_paid_plan_restored_closes_after_the_probe(self, harness: Harness) -> None:
        """If the probe after the quarantine succeeds, the breaker closes and ETF data flows again."""
        harness.backend.fail(ETF, 402)
        async with harness.run():
            await harness.clock.sleep(1800)
            harness.backend.heal(ETF)
            await harness.clock.sleep(1830)
        assert harness.circuits.messages[-1].state == "closed" and harness.signals.messages[-1].etf_available

    async def test_circuit_reset_command_lifts_quarantine(self, harness: Harness) -> None:
        """`cmd.circuit` reset closes the module's breakers at once; the next cycle calls ETF again."""
        harness.backend.fail(ETF, 402)
        async with harness.run():
            await harness.clock.sleep(60)
            harness.backend.heal(ETF)
            env = await harness.bus.request(
                harness.subjects.command("circuit"), encode(CircuitCommand(action="reset", module="etf")), timeout=1
            )
            reply = decode(env.data, CircuitReply)
            await harness.clock.sleep(10)
        assert reply.ok and [c.state for c in reply.circuits] == ["closed"]
        assert etf_calls_at(harness) == 2 and harness.signals.messages[-1].etf_available

    async def test_flag_change_lifts_quarantine(self, harness: Harness) -> None:
        """Switching the ETF flag resets its breakers (off then on: the next cycle calls again)."""
        harness.backend.fail(ETF, 402)
        subject = harness.subjects.command("flags")
        async with harness.run():
            await harness.clock.sleep(60)
            harness.backend.heal(ETF)
            for enabled in (False, True):
                await harness.bus.request(subject, encode(FlagCommand(flag="ETF", enabled=enabled)), timeout=1)
            await harness.clock.sleep(10)
        assert next(c.cause for c in harness.circuits.messages if c.state == "closed") == "flag_changed"
        assert harness.signals.messages[-1].etf_available


class TestThrottling:
    async def test_retry_after_30_means_no_call_for_30s_then_one_probe(self, harness: Harness) -> None:
        """429 with Retry-After: 30 opens the module exactly 30 s; then a single probe."""
        path = samples.PATHS["bias"]
        harness.backend.fail(path, 429, headers={"Retry-After": "30"})
        async with harness.run(interval=1.0):
            await harness.clock.sleep(0.5)
            assert harness.backend.count(path) == 1
            await harness.clock.sleep(29)  # t = 29.5: still open
            assert harness.backend.count(path) == 1
            await harness.clock.sleep(1.0)  # t = 30.5: half-open, the 31st tick probes
            assert harness.backend.count(path) == 2
        opened = next(c for c in harness.circuits.messages if c.module == "bias" and c.state == "open")
        assert opened.until is not None
        assert opened.cause == "throttled" and opened.until - opened.ts == pytest.approx(30.0)

    async def test_retry_after_is_capped(self, harness: Harness) -> None:
        """A huge Retry-After is capped by policy (throttle_max)."""
        harness.backend.fail(samples.PATHS["bias"], 429, headers={"Retry-After": "86400"})
        async with harness.run(policy=CircuitPolicy(throttle_max=120)):
            await harness.clock.sleep(1)
        opened = next(c for c in harness.circuits.messages if c.state == "open")
        assert opened.until is not None
        assert opened.until - opened.ts == pytest.approx(120.0)

    async def test_okx_style_envelope_throttles_too(self, harness: Harness) -> None:
        """An HTTP 200 carrying code 50011 is throttling, not data."""
        harness.backend.bodies[samples.PATHS["bias"]] = {"code": "50011", "msg": "Too frequent", "data": None}
        async with harness.run():
            await harness.clock.sleep(1)
        assert harness.circuits.messages[0].cause == "throttled"


class TestTransient:
    async def test_open_probe_close_then_reopen_longer(self, harness: Harness) -> None:
        """Five 503s open the asset's breaker; a good probe closes it; a failed probe reopens it for longer."""
        path = samples.PATHS["heatmap"]
        harness.backend.fail(path, 503)
        policy = CircuitPolicy(open_base=30, open_factor=2, jitter=0.0)
        async with harness.run(policy=policy, interval=1.0):
            await harness.clock.sleep(5)
            assert harness.backend.count(path) == 5
            await harness.clock.sleep(20)
            assert harness.backend.count(path) == 5, "open: no calls"
            await harness.clock.sleep(11)  # t=36: half-open at t~34.x, probe fails, reopen for 60 s
            assert harness.backend.count(path) == 6
            await harness.clock.sleep(50)
            assert harness.backend.count(path) == 6, "reopened for longer"
            harness.backend.heal(path)
            await harness.clock.sleep(15)  # probe at ~t=95 succeeds: closed, normal calls again
        heat = [
            (c.state, c.cause, round(c.until - c.ts) if c.until else None)
            for c in harness.circuits.messages
            if c.module == "heatmap"
        ]
        assert heat[:5] == [
            ("open", "transient", 30),
            ("half_open", "transient", None),
            ("open", "transient", 60),
            ("half_open", "transient", None),
            ("closed", "recovered", None),
        ]
        assert harness.backend.count(path) > 10
        assert all(c.scope == "SOL" for c in harness.circuits.messages if c.module == "heatmap")

    async def test_transient_breakers_are_per_asset(self, harness: Harness) -> None:
        """A backend failing only BTC's heatmap opens BTC's breaker, not SOL's."""
        path = samples.PATHS["heatmap"]

        async def only_btc_fails(url: str):
            if "BTC-USDT-SWAP" in url and path in url:
                from actors.upstream import Response

                harness.backend.calls.append((path, {"symbol": "BTC-USDT-SWAP"}))
                return Response(500, {}, b"")
            return await harness.backend(url)

        transport = MockTransport(only_btc_fails)
        async with harness.run(transport=transport, assets=("SOL", "BTC"), interval=1.0, window=0.5):
            await harness.clock.sleep(10)
        scopes = {(c.module, c.scope) for c in harness.circuits.messages if c.module == "heatmap"}
        assert scopes == {("heatmap", "BTC")}
        assert harness.signals.messages[-1].modules["heatmap"].status in ("ok", "degraded")
        sol = [s for s in harness.signals.messages if s.asset == "SOL"]
        assert all(s.modules["heatmap"].status == "ok" for s in sol)

    async def test_mixed_failures_below_the_rate_stay_closed(self, harness: Harness) -> None:
        """Failures under the failure-rate threshold never open the breaker."""
        path = samples.PATHS["whale"]
        calls = 0

        async def every_third_fails(url: str):
            nonlocal calls
            if path in url:
                calls += 1
                if calls % 3 == 0:
                    from actors.upstream import Response

                    return Response(502, {}, b"")
            return await harness.backend(url)

        async with harness.run(transport=MockTransport(every_third_fails), interval=1.0, window=0.5):
            await harness.clock.sleep(120)
        assert [c for c in harness.circuits.messages if c.module == "whale"] == []


class TestCircuitView:
    def test_half_open_admits_only_the_probes(self) -> None:
        """In half-open the view lets `probes` calls through and holds the rest."""
        view = CircuitView("etf")
        view.update(CircuitState(module="etf", scope="all", state="half_open", ts=10, probes=2))
        assert [view.deny("SOL", 11) is None for _ in range(3)] == [True, True, False]

    def test_expired_open_acts_as_half_open(self) -> None:
        """An open state past its `until` (supervisor unreachable) still allows a probe, not a flood."""
        view = CircuitView("etf")
        view.update(CircuitState(module="etf", scope="all", state="open", ts=10, until=20, probes=1))
        assert view.deny("SOL", 15) is not None
        assert [view.deny("SOL", 21) is None for _ in range(2)] == [True, False]

    def test_a_call_refused_by_the_asset_breaker_spends_no_module_probe(self) -> None:
        """Module half-open + asset still open: the refusal keeps the module's probe for a call that can go."""
        view = CircuitView("heatmap")
        view.update(CircuitState(module="heatmap", scope="all", state="half_open", ts=10, probes=1))
        view.update(CircuitState(module="heatmap", scope="SOL", state="open", ts=5, until=100))
        assert view.deny("SOL", 20) is not None
        assert view.deny("BTC", 21) is None, "BTC may still probe the module"
        assert view.deny("ETH", 22) is not None, "and the single probe is now in flight"

    def test_older_states_do_not_override_newer(self) -> None:
        """Out-of-order delivery keeps the newest state."""
        view = CircuitView("etf")
        view.update(CircuitState(module="etf", scope="all", state="closed", ts=20))
        view.update(CircuitState(module="etf", scope="all", state="quarantined", ts=10, until=9999))
        assert view.deny("SOL", 21) is None


class TestHalfOpenAlwaysResolves:
    async def test_probe_answered_not_found_closes(self, harness: Harness) -> None:
        """A half-open breaker whose probe gets a 404 (route moved) closes instead of hanging."""
        from messages import Degraded, Reason
        from messages import encode as enc

        steps: tuple[tuple[Reason | None, int | None], ...] = (("rate_limited", 429), (None, None), ("not_found", 404))
        sup = CircuitSupervisor(policy=CircuitPolicy(throttle_default=5))
        async with Supervisor(harness.ctx, [sup]):
            for reason, status in steps:
                if reason is None:
                    await harness.clock.sleep(6)  # open -> half-open
                    continue
                d = Degraded(module="bias", asset="SOL", cycle=0, ts=harness.clock.now(), reason=reason, status=status)
                await harness.bus.publish(harness.subjects.degraded("bias", "SOL"), enc(d))
                await harness.clock.sleep(0.01)
        assert [c.state for c in harness.circuits.messages] == ["open", "half_open", "closed"]

    async def test_lost_probe_is_offered_again(self, harness: Harness) -> None:
        """No answer to a half-open probe within probe_timeout: a fresh half-open state, so a new probe may go."""
        from messages import Degraded
        from messages import encode as enc

        sup = CircuitSupervisor(policy=CircuitPolicy(throttle_default=5, probe_timeout=60))
        async with Supervisor(harness.ctx, [sup]):
            d = Degraded(module="bias", asset="SOL", cycle=0, ts=harness.clock.now(), reason="rate_limited", status=429)
            await harness.bus.publish(harness.subjects.degraded("bias", "SOL"), enc(d))
            await harness.clock.sleep(200)
        states = [(c.state, round(c.ts - harness.clock.EPOCH)) for c in harness.circuits.messages]
        assert states[:4] == [("open", 0), ("half_open", 5), ("half_open", 65), ("half_open", 125)]

    async def test_degradations_without_a_call_teach_the_breaker_nothing(self, harness: Harness) -> None:
        """A late tick's made-up timeout (called=False) neither closes a half-open breaker nor counts as a failure."""
        from messages import Degraded
        from messages import encode as enc

        sup = CircuitSupervisor(policy=CircuitPolicy(throttle_default=5))
        async with Supervisor(harness.ctx, [sup]):
            d = Degraded(module="bias", asset="SOL", cycle=0, ts=harness.clock.now(), reason="rate_limited", status=429)
            await harness.bus.publish(harness.subjects.degraded("bias", "SOL"), enc(d))
            await harness.clock.sleep(6)
            for i in range(10):
                fake = Degraded(
                    module="bias", asset="SOL", cycle=i, ts=harness.clock.now(), reason="timeout", called=False
                )
                await harness.bus.publish(harness.subjects.degraded("bias", "SOL"), enc(fake))
            await harness.clock.sleep(1)
        assert [c.state for c in harness.circuits.messages] == ["open", "half_open"]

    @pytest.mark.parametrize("opens", [10, 1_000, 100_000])
    def test_open_time_never_overflows(self, opens: int) -> None:
        """However often a breaker reopens, its open time stays a finite, capped number."""
        assert CircuitPolicy(jitter=0).open_time(opens, random.Random(0)) == 600.0


class TestFlags:
    @pytest.mark.parametrize(
        "command, error",
        [
            (b'{"flag": "NOPE", "enabled": false}', "unknown flag 'NOPE'"),
            (b'{"flag": "ETF"}', 'needs "enabled"'),
            (b'{"flag": "ETF", "enabled": "maybe"}', "bad command: Expected `bool | null`"),
            (b'{"flag": "ETF", "enabld": false}', "bad command: Object contains unknown field `enabld`"),
            (b"not json", "bad command: JSON is malformed"),
            (b'{"flag": 5, "enabled": false}', "bad command: Expected `str | null`"),
        ],
    )
    async def test_bad_commands_get_a_clear_error_and_change_nothing(
        self, harness: Harness, command: bytes, error: str
    ) -> None:
        """Unknown flags, bad values and malformed JSON are answered ok=false; the flags stay as they were."""
        async with harness.run():
            env = await harness.bus.request(harness.subjects.command("flags"), command, timeout=1)
            reply = decode(env.data, FlagReply)
            after = decode(
                (await harness.bus.request(harness.subjects.command("flags"), b"{}", timeout=1)).data, FlagReply
            )
        assert not reply.ok and error in (reply.error or "")
        assert after.flags == {m.upper(): True for m in MODULES}

    async def test_set_replies_with_all_flags_and_publishes_the_change(self, harness: Harness) -> None:
        """A good command is answered ok with every flag; a FlagChanged event says who, when and why."""
        changes = await Recorder[FlagChanged](harness.bus, harness.subjects.flags_changed(), FlagChanged).start()
        async with harness.run():
            cmd = FlagCommand(flag="etf", enabled=False, why="plan expired", who="ops@desk")
            reply = decode(
                (await harness.bus.request(harness.subjects.command("flags"), encode(cmd), timeout=1)).data, FlagReply
            )
            await harness.clock.sleep(0.01)
        assert reply.ok and reply.flags["ETF"] is False and reply.flags["WHALE"] is True
        (change,) = changes.messages
        assert (change.flag, change.enabled, change.who, change.why) == ("ETF", False, "ops@desk", "plan expired")
        assert change.ts == harness.clock.now() - 0.01 and change.revision > 0

    async def test_disabled_module_makes_no_call_and_reports_disabled(self, harness: Harness) -> None:
        """Switching HEATMAP off at runtime stops its calls; signals show it disabled at full confidence."""
        path = samples.PATHS["heatmap"]
        async with harness.run():
            await harness.clock.sleep(1)
            cmd = FlagCommand(flag="HEATMAP", enabled=False)
            await harness.bus.request(harness.subjects.command("flags"), encode(cmd), timeout=1)
            before = harness.backend.count(path)
            await harness.clock.sleep(30)
        assert harness.backend.count(path) == before == 1
        last = harness.signals.messages[-1]
        assert last.modules["heatmap"].status == "disabled" and last.confidence == 1.0


class TestSeedTestPlan:
    async def test_feature_etf_off_means_no_402_at_all(self, harness: Harness) -> None:
        """FEATURE_ETF=off: every cycle succeeds and the ETF route is never called."""
        harness.backend.fail(ETF, 402)
        async with harness.run(flags={**ALL_ON, "etf": False}):
            await harness.clock.sleep(599)  # cycles 0..119; the 121st is due at exactly t=600
        assert etf_calls_at(harness) == 0 and len(harness.signals.messages) == 120
        assert {s.modules["etf"].status for s in harness.signals.messages} == {"disabled"}
        assert {h.state for h in harness.health.messages} == {"healthy"}

    async def test_feature_etf_on_opens_breaker_at_first_402_and_no_run_fails(self, harness: Harness) -> None:
        """FEATURE_ETF=on: the first 402 quarantines ETF; every cycle still yields a signal and no hard failure."""
        harness.backend.fail(ETF, 402)
        async with harness.run():
            await harness.clock.sleep(599)  # cycles 0..119; the 121st is due at exactly t=600
        first = harness.circuits.messages[0]
        assert (first.module, first.state, first.cause) == ("etf", "quarantined", "entitlement")
        assert first.ts == pytest.approx(harness.clock.EPOCH, abs=1)
        assert len(harness.signals.messages) == 120 and "hard_fail" not in {h.state for h in harness.health.messages}

    @pytest.mark.parametrize(
        "failing, hard",
        [
            (("etf",), False),
            (("etf", "bias"), False),
            (("whale", "heatmap"), False),
            (("whale", "heatmap", "spot_ob"), True),
            (("whale", "heatmap", "spot_ob", "etf", "bias"), True),
        ],
    )
    async def test_unhealthy_only_when_every_core_module_fails(
        self, harness: Harness, failing: tuple[str, ...], hard: bool
    ) -> None:
        """The scheduler is marked unhealthy (hard_fail) exactly when every core module fails."""
        for module in failing:
            harness.backend.fail(samples.PATHS[module], 503)
        async with harness.run():
            await harness.clock.sleep(1)
        assert (harness.health.messages[0].state == "hard_fail") is hard

    async def test_soft_failures_are_counted_per_module(self, harness: Harness) -> None:
        """sniper_soft_fail_total{module="etf"} counts the cycles ETF failed without a hard failure."""
        harness.backend.fail(ETF, 402)
        async with harness.run():
            await harness.clock.sleep(50)
        value = harness.metrics.registry.get_sample_value("sniper_soft_fail_total", {"module": "etf"})
        assert value == len(harness.health.messages) == 10


class TestOverRealNats:
    async def test_flag_set_in_one_process_is_seen_by_another(self, nats_server) -> None:
        """A flag changed through process A's FlagKeeper stops process B's fetcher from calling upstream."""
        bus_a = await NatsBus.connect(nats_server.url, name="host-a")
        bus_b = await NatsBus.connect(nats_server.url, name="host-b")
        clock = SystemClock()
        backend = FakeBackend(clock, samples.BODIES)
        fetcher = FETCHERS["bias"](UpstreamClient("http://b", MockTransport(backend), clock=clock))
        try:
            async with (
                Supervisor(Context(bus=bus_a, clock=clock), [FlagKeeper(ALL_ON)]),
                Supervisor(Context(bus=bus_b, clock=clock), [fetcher]),
            ):
                env = await bus_a.request("sniper.cmd.flags", b'{"flag": "BIAS", "enabled": false}', timeout=2)
                assert decode(env.data, FlagReply).ok

                await wait_until(lambda: not fetcher.enabled, timeout=5)
                denial = fetcher.admit("SOL")
                assert denial is not None and denial.reason == "disabled"
        finally:
            await bus_a.close()
            await bus_b.close()

    async def test_breaker_state_survives_a_restart(self, nats_server) -> None:
        """A quarantine stored by one CircuitSupervisor is restored by a new one and honoured by a new fetcher."""
        clock = SystemClock()
        bus = await NatsBus.connect(nats_server.url, name="first")
        ctx = Context(bus=bus, clock=clock)
        backend = FakeBackend(clock, samples.BODIES)
        backend.fail(ETF, 402)
        upstream = UpstreamClient("http://b", MockTransport(backend), clock=clock)
        circuits = await Recorder[CircuitState](bus, ctx.subjects.circuit_all(), CircuitState).start()
        async with Supervisor(ctx, [CircuitSupervisor(), FETCHERS["etf"](upstream)]):
            now = clock.now()
            await bus.publish(
                ctx.subjects.tick("SOL"),
                encode(__import__("messages").Tick(asset="SOL", cycle=0, ts=now, deadline=now + 2)),
            )
            await circuits.wait_count(1)
        await bus.close()

        bus2 = await NatsBus.connect(nats_server.url, name="second")
        ctx2 = Context(bus=bus2, clock=clock)
        sup2, fetcher2 = CircuitSupervisor(), FETCHERS["etf"](upstream)
        try:
            async with Supervisor(ctx2, [sup2, fetcher2]):
                restored = sup2.breakers[("etf", "all")].state
                assert restored.state == "quarantined" and restored.cause == "entitlement"
                denial = fetcher2.admit("SOL")
                assert denial is not None and denial.reason == "circuit_open"
                env = await bus2.request("sniper.cmd.circuit", b'{"action": "list"}', timeout=2)
                circuits_all = [c.state for c in decode(env.data, CircuitReply).circuits if c.scope == "all"]
                assert circuits_all == ["quarantined"]
        finally:
            await bus2.close()
        assert backend.count(ETF) == 1

    async def test_without_jetstream_the_pipeline_degrades_not_dies(self) -> None:
        """On a nats-server without JetStream the pipeline degrades instead of dying.

        Signals flow, the breaker works on events, flag commands say why they fail.
        """
        from marketsim import serve
        from sniper.app import run_pipeline
        from sniper.config import Settings
        from sniper.embedded import EmbeddedNats

        async with EmbeddedNats(jetstream=False) as nats, serve(port=0) as backend:
            bus = await NatsBus.connect(nats.url, name="observer")
            signals = await Recorder[Signal](bus, "sniper.signal.*", Signal).start()
            settings = Settings(nats=nats.url, backend=backend.url, interval=0.4, window=0.3)
            async with run_pipeline(settings) as running:
                await signals.wait_count(3)
                env = await bus.request("sniper.cmd.flags", b'{"flag": "ETF", "enabled": false}', timeout=5)
                reply = decode(env.data, FlagReply)
                assert all(a.state.value == "running" for a in running.supervisor.actors.values())
            await bus.close()
        assert not reply.ok and "flag store unavailable, nothing changed" in (reply.error or "")
        reasons = [s.modules["etf"].reason for s in signals.messages[:3]]
        assert reasons[0] == "payment_required" and set(reasons[1:]) == {"circuit_open"}
        assert backend.sim.counters()["etf"]["requests"] == 1
