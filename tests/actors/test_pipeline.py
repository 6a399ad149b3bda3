"""Fetchers, assembler and scheduler in virtual time on the in-memory bus.

Fetchers and assembler are unit-tested on their own, fed ticks by hand on the
harness's context; the scheduler's tests run the whole pipeline (`harness.run`).
"""

from __future__ import annotations

import itertools
import logging
import random
from typing import Any

import pytest

from actors.assembler import SignalAssembler
from actors.fetchers import FETCHERS, MODULES
from actors.scheduler import HealthPolicy, Scheduler, TradingHours
from messages import (
    DEFAULT_ROUTES,
    Degraded,
    Health,
    ModuleData,
    OrderBook,
    ParamBinding,
    Route,
    RouteMap,
    Signal,
    Tick,
    WhaleAlerts,
    encode,
)
from runtime import Actor, ActorState, Supervisor
from runtime.testing import Recorder

from .. import samples
from ..harness import Harness


class World:
    """Unit level: actors a test builds, on the harness's context and backend, ticked by hand (no scheduler)."""

    def __init__(self, harness: Harness, data: Recorder[ModuleData], degraded: Recorder[Degraded]) -> None:
        self.clock, self.bus, self.ctx, self.backend = harness.clock, harness.bus, harness.ctx, harness.backend
        self.signals: Recorder[Signal] = harness.signals
        self.health: Recorder[Health] = harness.health
        self.upstream = harness.upstream()
        self.data = data
        self.degraded = degraded

    async def tick(self, asset: str = "SOL", cycle: int = 0, window: float = 3.0, modules=MODULES) -> None:
        now = self.clock.now()
        tick = Tick(asset=asset, cycle=cycle, ts=now, deadline=now + window, modules=tuple(modules))
        await self.bus.publish(self.ctx.subjects.tick(asset), encode(tick))

    async def publish(self, subject: str, msg) -> None:
        await self.bus.publish(subject, encode(msg))

    def fetchers(self, *modules: str) -> list[Actor]:
        return [FETCHERS[m](self.upstream) for m in (modules or MODULES)]


@pytest.fixture
async def world(harness: Harness) -> World:
    return World(
        harness,
        data=await Recorder[ModuleData](harness.bus, harness.subjects.data_all(), ModuleData).start(),
        degraded=await Recorder[Degraded](harness.bus, harness.subjects.degraded_all(), Degraded).start(),
    )


class TestFetcher:
    async def test_success_publishes_typed_data(self, world: World) -> None:
        """A 200 with a valid body becomes ModuleData with the typed payload and latency."""
        world.backend.latency[samples.PATHS["whale"]] = 0.25
        async with Supervisor(world.ctx, world.fetchers("whale")):
            await world.tick()
            await world.clock.sleep(1)
        (msg,) = world.data.messages
        assert isinstance(msg.payload, WhaleAlerts) and len(msg.payload.alerts) == 2
        assert (msg.module, msg.asset, msg.cycle, msg.latency_ms) == ("whale", "SOL", 0, 250.0)

    @pytest.mark.parametrize(
        "status, headers, body, reason, retry_after",
        [
            (402, {}, b'{"detail":"Payment Required"}', "payment_required", None),
            (403, {}, b'{"detail":"upgrade your plan"}', "payment_required", None),
            (404, {}, b'{"detail":"Not Found"}', "not_found", None),
            (422, {}, b'{"detail":"bad symbol"}', "not_found", None),
            (429, {"Retry-After": "30"}, b"{}", "rate_limited", 30.0),
            (418, {"Retry-After": "120"}, b"{}", "rate_limited", 120.0),
            (500, {}, b"boom", "upstream_error", None),
            (503, {}, b"", "upstream_error", None),
            (200, {}, b'{"code":"50011","msg":"Too frequent","data":null}', "rate_limited", None),
            (200, {}, b'{"code":"40001","msg":"internal"}', "upstream_error", None),
            (200, {}, b'{"symbol": "SOL", "alerts": [{"id": 1}]', "bad_payload", None),
            (200, {}, b'{"symbol": 5, "alerts": "many"}', "bad_payload", None),
            (200, {}, b"<html>oops</html>", "bad_payload", None),
        ],
    )
    async def test_failures_become_degraded_with_a_reason(
        self, world: World, status: int, headers: dict[str, str], body: bytes, reason: str, retry_after: float | None
    ) -> None:
        """Every upstream failure is a Degraded event with the right reason; the actor lives on."""
        world.backend.fail(samples.PATHS["whale"], status, body=body, headers=headers)
        actor = world.fetchers("whale")[0]
        async with Supervisor(world.ctx, [actor]):
            await world.tick()
            await world.clock.sleep(1)
            assert actor.state is ActorState.RUNNING and actor.restarts == 0
        (msg,) = world.degraded.messages
        assert (msg.module, msg.reason, msg.retry_after) == ("whale", reason, retry_after)
        assert world.data.messages == []

    async def test_slow_backend_times_out_before_the_deadline(self, world: World) -> None:
        """A backend slower than the window yields `timeout` just before the tick's deadline."""
        world.backend.latency[samples.PATHS["heatmap"]] = 60
        async with Supervisor(world.ctx, world.fetchers("heatmap")):
            await world.tick(window=2.0)
            await world.clock.sleep(5)
        (msg,) = world.degraded.messages
        assert msg.reason == "timeout" and msg.ts - world.clock.EPOCH == pytest.approx(2.0 - 0.05)

    async def test_tick_past_its_deadline_makes_no_call(self, world: World) -> None:
        """A tick that arrives after its deadline is answered `timeout` without an upstream call."""
        async with Supervisor(world.ctx, world.fetchers("bias")):
            now = world.clock.now()
            await world.publish(
                world.ctx.subjects.tick("SOL"), Tick(asset="SOL", cycle=0, ts=now - 5, deadline=now - 2)
            )
            await world.clock.sleep(1)
        assert world.degraded.messages[0].reason == "timeout" and world.backend.calls == []

    @pytest.mark.parametrize("asset, key", [("SOL", "BTC"), ("BTC", "BTC"), ("ETH", "ETH"), ("DOGE", "BTC")])
    async def test_etf_is_keyed_by_btc_or_eth(self, world: World, asset: str, key: str) -> None:
        """ETF flows are requested for BTC/ETH, never for the traded asset."""
        async with Supervisor(world.ctx, world.fetchers("etf")):
            await world.tick(asset)
            await world.clock.sleep(1)
        assert world.backend.calls == [(samples.PATHS["etf"], {"asset": key})]
        assert world.data.messages[0].asset == asset

    async def test_etf_proxy_asset_is_configurable(self, world: World) -> None:
        """Another asset's ETF proxy can be ETH instead of BTC; a non-ETF proxy is refused."""
        async with Supervisor(world.ctx, [FETCHERS["etf"](world.upstream, proxy_asset="ETH")]):
            await world.tick("SOL")
            await world.clock.sleep(1)
        assert world.backend.calls[0][1] == {"asset": "ETH"}
        with pytest.raises(ValueError):
            FETCHERS["etf"](world.upstream, proxy_asset="SOL")

    async def test_concurrent_requests_for_one_key_are_single_flight(self, world: World) -> None:
        """Ten assets ticking at once cost one ETF request; each asset still gets its answer."""
        world.backend.latency[samples.PATHS["etf"]] = 0.5
        assets = ["SOL", "ADA", "XRP", "DOGE", "BNB", "AVAX", "DOT", "LINK", "TRX", "LTC"]
        async with Supervisor(world.ctx, world.fetchers("etf")):
            for asset in assets:
                await world.tick(asset)
            await world.clock.sleep(1)
        assert world.backend.count(samples.PATHS["etf"]) == 1
        assert sorted(m.asset for m in world.data.messages) == sorted(assets)

    async def test_etf_answers_are_cached_but_failures_are_not(self, world: World) -> None:
        """A good ETF answer is reused within its TTL; an error is asked again next cycle."""
        async with Supervisor(world.ctx, world.fetchers("etf")):
            for cycle in range(3):
                await world.tick(cycle=cycle)
                await world.clock.sleep(5)
            assert world.backend.count(samples.PATHS["etf"]) == 1
            world.backend.fail(samples.PATHS["etf"], 500)
            await world.clock.sleep(60)
            for cycle in range(3, 5):
                await world.tick(cycle=cycle)
                await world.clock.sleep(5)
        assert world.backend.count(samples.PATHS["etf"]) == 3

    @pytest.mark.parametrize(
        "book, problem",
        [
            ({"bids": [], "asks": [[1.0, 1.0]]}, "empty side"),
            ({"bids": [[2.0, 1.0]], "asks": [[1.0, 1.0]]}, "crossed"),
            ({"bids": [[1.0, 1.0], [1.5, 1.0]], "asks": [[2.0, 1.0]]}, "descending"),
            ({"bids": [[1.0, 1.0]], "asks": [[2.0, 1.0], [1.5, 1.0]]}, "ascending"),
            ({"bids": [[1.0, -1.0]], "asks": [[2.0, 1.0]]}, "Expected `float` >= 0"),
        ],
    )
    async def test_insane_order_books_are_bad_payload(self, world: World, book: dict[str, Any], problem: str) -> None:
        """A book that decodes but cannot be right (crossed, unsorted, empty side) is bad_payload."""
        world.backend.bodies[samples.PATHS["spot_ob"]] = {**samples.ORDER_BOOK, **book}
        async with Supervisor(world.ctx, [FETCHERS["spot_ob"](world.upstream)]):
            await world.tick()
            await world.clock.sleep(1)
        (msg,) = world.degraded.messages
        assert msg.reason == "bad_payload" and problem in msg.detail

    async def test_request_uses_the_route_and_symbol_forms(self, world: World) -> None:
        """Each module's default route binds the symbol in the form the backend expects."""
        async with Supervisor(world.ctx, world.fetchers()):
            await world.tick("SOL")
            await world.clock.sleep(1)
        calls = dict(world.backend.calls)
        assert calls[samples.PATHS["spot_ob"]] == {"symbol": "SOLUSDT", "exchange": "binance", "depth": "50"}
        assert calls[samples.PATHS["heatmap"]] == {"symbol": "SOL-USDT-SWAP", "timeframe": "1h"}
        assert calls[samples.PATHS["bias"]] == {"symbol": "SOL-USDT-SWAP"}
        assert calls[samples.PATHS["whale"]] == {"symbol": "SOL"}

    async def test_published_route_map_changes_the_request(self, world: World) -> None:
        """A RouteMap on the routes subject re-points a fetcher (path and query placement)."""
        world.backend.bodies["/api/v2/market/depth/binance/SOL-USDT"] = samples.ORDER_BOOK
        route = Route(
            module="spot_ob",
            path="/api/v2/market/depth/{venue}/{pair}",
            params=(
                ParamBinding(name="venue", location="path", role="exchange"),
                ParamBinding(name="pair", location="path", role="symbol", form="dash"),
                ParamBinding(name="limit", role="depth"),
            ),
        )
        async with Supervisor(world.ctx, world.fetchers("spot_ob")):
            await world.publish(
                world.ctx.subjects.routes(),
                RouteMap(ts=world.clock.now(), source="openapi", routes={**DEFAULT_ROUTES, "spot_ob": route}),
            )
            await world.clock.sleep(0.1)
            await world.tick()
            await world.clock.sleep(1)
        assert world.backend.calls == [("/api/v2/market/depth/binance/SOL-USDT", {"limit": "50"})]
        assert isinstance(world.data.messages[0].payload, OrderBook)

    async def test_module_without_route_reports_not_found(self, world: World) -> None:
        """When discovery finds no route for a module, it degrades with not_found and makes no call."""
        async with Supervisor(world.ctx, world.fetchers("heatmap")):
            await world.publish(
                world.ctx.subjects.routes(),
                RouteMap(ts=world.clock.now(), source="openapi", routes={}, unusable={"heatmap": "no route"}),
            )
            await world.clock.sleep(0.1)
            await world.tick()
            await world.clock.sleep(1)
        assert world.degraded.messages[0].reason == "not_found" and world.backend.calls == []

    async def test_ticks_without_the_module_are_ignored(self, world: World) -> None:
        """A tick listing other modules does not make this fetcher answer."""
        async with Supervisor(world.ctx, world.fetchers("bias")):
            await world.tick(modules=("whale",))
            await world.clock.sleep(1)
        assert world.data.messages == [] and world.degraded.messages == []


class TestAssembler:
    async def test_signal_when_every_module_reported(self, world: World) -> None:
        """All modules answer: the signal comes before the deadline with every status ok."""
        async with Supervisor(world.ctx, [*world.fetchers(), SignalAssembler(modules=MODULES)]):
            await world.tick(window=3.0)
            await world.clock.sleep(0.5)
            (sig,) = world.signals.messages
        assert sig.complete and set(sig.modules) == set(MODULES)
        assert all(st.status == "ok" for st in sig.modules.values()) and sig.etf_available
        assert sig.ts - sig.started < 3.0 and -1 <= sig.score <= 1 and sig.confidence == 1.0

    async def test_etf_402_degrades_only_etf(self, world: World) -> None:
        """ETF 402: the signal is published with etf degraded(payment_required) and the rest ok."""
        world.backend.fail(samples.PATHS["etf"], 402)
        async with Supervisor(world.ctx, [*world.fetchers(), SignalAssembler(modules=MODULES)]):
            await world.tick()
            await world.clock.sleep(4)
        (sig,) = world.signals.messages
        assert sig.modules["etf"].status == "degraded" and sig.modules["etf"].reason == "payment_required"
        assert not sig.etf_available and sig.confidence == pytest.approx(1.0 / 1.15)  # weights: all 1.15, etf 0.15
        assert all(sig.modules[m].status == "ok" for m in MODULES if m != "etf")

    async def test_missing_module_closes_at_the_deadline(self, world: World) -> None:
        """A module that never answers is `missing`, and the signal still comes at the deadline."""
        async with Supervisor(world.ctx, [*world.fetchers("whale", "bias"), SignalAssembler(modules=MODULES)]):
            await world.tick(window=2.0)
            await world.clock.sleep(5)
        (sig,) = world.signals.messages
        assert sig.ts - sig.started == pytest.approx(2.0) and not sig.complete
        assert {m for m, st in sig.modules.items() if st.status == "missing"} == {
            "etf",
            "heatmap",
            "spot_ob",
            "funding",
        }

    async def test_late_reports_are_counted_and_never_leak(self, world: World) -> None:
        """A report for a closed cycle is counted as late and does not enter the next cycle's signal."""
        world.backend.latency[samples.PATHS["whale"]] = 0.5
        assembler = SignalAssembler(modules=("whale",))
        async with Supervisor(world.ctx, [assembler]):
            await world.tick(cycle=0, window=1.0, modules=("whale",))
            await world.clock.sleep(2)
            late = Degraded(module="whale", asset="SOL", cycle=0, ts=world.clock.now(), reason="timeout")
            await world.publish(world.ctx.subjects.degraded("whale", "SOL"), late)
            await world.tick(cycle=1, window=1.0, modules=("whale",))
            await world.clock.sleep(2)
        assert assembler.late == 1
        assert [s.modules["whale"].status for s in world.signals.messages] == ["missing", "missing"]

    async def test_duplicate_reports_keep_the_first(self, world: World) -> None:
        """Two reports for one module in one cycle: the first wins."""
        async with Supervisor(world.ctx, [SignalAssembler(modules=("bias",))]):
            await world.tick(modules=("bias",), window=1)
            for reason in ("timeout", "upstream_error"):
                await world.publish(
                    world.ctx.subjects.degraded("bias", "SOL"),
                    Degraded(module="bias", asset="SOL", cycle=0, ts=world.clock.now(), reason=reason),
                )
            await world.clock.sleep(2)
        assert world.signals.messages[0].modules["bias"].reason == "timeout"

    async def test_disabled_module_does_not_lower_confidence(self, world: World) -> None:
        """`disabled` is shown as such and is left out of the expected weight."""
        async with Supervisor(
            world.ctx,
            [*world.fetchers("whale", "heatmap", "spot_ob", "bias", "funding"), SignalAssembler(modules=MODULES)],
        ):
            await world.tick()
            await world.publish(
                world.ctx.subjects.degraded("etf", "SOL"),
                Degraded(module="etf", asset="SOL", cycle=0, ts=world.clock.now(), reason="disabled"),
            )
            await world.clock.sleep(4)
        sig = world.signals.messages[0]
        assert sig.modules["etf"].status == "disabled" and sig.confidence == 1.0

    async def test_reports_before_the_tick_are_kept(self, world: World) -> None:
        """A report that overtakes its tick opens the window; the tick then completes it."""
        async with Supervisor(world.ctx, [SignalAssembler(modules=("bias",))]):
            await world.publish(
                world.ctx.subjects.degraded("bias", "SOL"),
                Degraded(module="bias", asset="SOL", cycle=0, ts=world.clock.now(), reason="timeout"),
            )
            await world.tick(modules=("bias",))
            await world.clock.sleep(0.01)
        assert world.signals.messages[0].complete

    async def test_restarted_scheduler_starts_a_new_epoch(self, world: World) -> None:
        """Cycle numbers starting again from 0 with newer ticks are a new epoch, not late."""
        assembler = SignalAssembler(modules=("bias",))
        async with Supervisor(world.ctx, [assembler, *world.fetchers("bias")]):
            for cycle in (0, 1, 2, 0, 1):
                await world.tick(cycle=cycle, modules=("bias",))
                await world.clock.sleep(5)
        assert [s.cycle for s in world.signals.messages] == [0, 1, 2, 0, 1] and assembler.late == 0

    async def test_a_tick_after_its_first_report_still_closes_on_time(self, world: World) -> None:
        """A report that overtakes its tick opens a default window; the tick's earlier deadline still wins."""
        async with Supervisor(world.ctx, [SignalAssembler(modules=("bias", "whale"), window=3.0)]):
            await world.publish(
                world.ctx.subjects.degraded("bias", "SOL"),
                Degraded(module="bias", asset="SOL", cycle=0, ts=world.clock.now(), reason="timeout"),
            )
            await world.tick(modules=("bias", "whale"), window=1.0)
            await world.clock.sleep(5)
        (sig,) = world.signals.messages
        assert sig.ts - world.clock.EPOCH == pytest.approx(1.0)

    async def test_each_asset_has_its_own_cycles(self, world: World) -> None:
        """Three assets give three independent signal streams."""
        async with Supervisor(world.ctx, [*world.fetchers(), SignalAssembler(modules=MODULES)]):
            for asset in ("SOL", "BTC", "ETH"):
                await world.tick(asset)
            await world.clock.sleep(4)
        assert sorted(s.asset for s in world.signals.messages) == ["BTC", "ETH", "SOL"]


class TestScheduler:
    async def test_ticks_every_interval_with_the_window(self, harness: Harness) -> None:
        """Cycles start every interval; each tick carries the deadline and the modules."""
        async with harness.run(interval=5.0, window=3.0):
            await harness.clock.sleep(21)
        ticks = harness.ticks.messages
        starts = [t.ts - harness.clock.EPOCH for t in ticks]
        assert starts == [0, 5, 10, 15, 20] and [t.cycle for t in ticks] == [0, 1, 2, 3, 4]
        assert all(t.deadline - t.ts == 3.0 and t.modules == MODULES for t in ticks)

    async def test_etf_402_is_a_soft_failure(self, harness: Harness) -> None:
        """Only an optional module failing never counts: state soft_fail, zero failures, normal interval."""
        harness.backend.fail(samples.PATHS["etf"], 402)
        async with harness.run(interval=5.0):
            await harness.clock.sleep(3600)
        states = {h.state for h in harness.health.messages}
        assert states == {"soft_fail"} and len(harness.health.messages) == 720
        assert {h.consecutive_failures for h in harness.health.messages} == {0}
        assert {h.next_delay for h in harness.health.messages} == {5.0}

    async def test_core_down_backs_off_and_one_success_resets(self, harness: Harness, caplog) -> None:
        """All core modules failing grows the delay with jitter; the first success resets it."""
        for m in ("whale", "heatmap", "spot_ob"):
            harness.backend.fail(samples.PATHS[m], 503)
        async with harness.run(interval=5.0):
            await harness.clock.sleep(200)
            harness.backend.heal(samples.PATHS["whale"])
            await harness.clock.sleep(200)
        health = harness.health.messages
        hard = [h for h in health if h.state == "hard_fail"]
        assert [h.consecutive_failures for h in hard[:4]] == [1, 2, 3, 4]
        for h in hard[:4]:
            assert 0.8 * 5 * 2**h.consecutive_failures <= h.next_delay <= 1.2 * 5 * 2**h.consecutive_failures
        after = health[len(hard)]
        assert after.state == "soft_fail" and after.consecutive_failures == 0 and after.next_delay == 5.0
        assert "scheduler_unhealthy" in caplog.text

    async def test_backoff_is_capped(self, harness: Harness) -> None:
        """The hard-failure delay never exceeds backoff_max (plus jitter)."""
        # Built by hand: backoff_max is a HealthPolicy knob Settings does not carry.
        sched = Scheduler(("SOL",), modules=MODULES, policy=HealthPolicy(backoff_max=60), rng=random.Random(3))
        async with Supervisor(harness.ctx, [sched]):  # no assembler: every cycle has no signal
            await harness.clock.sleep(3600)
        assert max(h.next_delay for h in harness.health.messages) <= 60 * 1.2
        assert harness.health.messages[-1].state == "hard_fail"

    @pytest.mark.parametrize("failures", [1_023, 1_024, 100_000])
    def test_backoff_survives_very_long_outages(self, failures: int) -> None:
        """Days of hard failures keep the delay at the cap instead of overflowing a float."""
        delay = HealthPolicy(backoff_max=300, jitter=0).delay(5.0, failures, random.Random(0))
        assert delay == 300.0

    async def test_core_modules_are_configurable(self, harness: Harness) -> None:
        """With core = {bias}, bias alone failing is a hard failure."""
        harness.backend.fail(samples.PATHS["bias"], 500)
        async with harness.run(core=frozenset({"bias"})):
            await harness.clock.sleep(1)
        assert harness.health.messages[0].state == "hard_fail"

    async def test_off_hours_interval_and_jakarta_log(self, harness: Harness, caplog) -> None:
        """Outside the Jakarta window the off-hours interval applies, and entering it is logged."""
        # The virtual clock starts at 2026-01-01 00:00 UTC = 07:00 in Jakarta.
        caplog.set_level(logging.INFO, logger="sniper")
        hours = TradingHours.parse("08:00-22:00")
        async with harness.run(interval=60, window=3, off_hours_interval=600, trading_hours=hours):
            await harness.clock.sleep(2 * 3600)
        gaps = {round(b.ts - a.ts) for a, b in itertools.pairwise(harness.ticks.messages)}
        assert gaps == {600, 60}
        assert "Outside trading hours - Jakarta: 08:00-22:00" in caplog.text
        assert "Active trading hours - Jakarta: 08:00-22:00" in caplog.text

    async def test_many_assets_are_staggered_over_the_interval(self, harness: Harness) -> None:
        """Each asset runs its own cycles, started evenly spread over the interval."""
        async with harness.run(assets=("SOL", "BTC", "ETH"), interval=5.0):
            await harness.clock.sleep(14)  # three cycles each; not 15, where SOL's fourth races the shutdown
        first = {t.asset: round(t.ts - harness.clock.EPOCH, 3) for t in reversed(harness.ticks.messages)}
        assert first == {"SOL": 0.0, "BTC": round(5 / 3, 3), "ETH": round(10 / 3, 3)}
        assert {h.asset for h in harness.health.messages} == {"SOL", "BTC", "ETH"}
        assert sorted(s.asset for s in harness.signals.messages) == ["BTC"] * 3 + ["ETH"] * 3 + ["SOL"] * 3

    async def test_stagger_can_be_switched_off(self, harness: Harness) -> None:
        """With stagger=False every asset ticks at the same instant."""
        async with harness.run(assets=("SOL", "BTC", "ETH"), stagger=False):
            await harness.clock.sleep(1)
        assert {t.ts for t in harness.ticks.messages} == {harness.clock.EPOCH}
