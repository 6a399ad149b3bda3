"""sniper's Prometheus metrics: the `/metrics` exposition, the latency histograms, bounded labels."""

from __future__ import annotations

import gzip
import platform
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import msgspec
import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from actors.flags import flag_name
from actors.metrics import HANDLER_BUCKETS, Metrics
from messages import CircuitState, Degraded, FlagChanged, ModuleData, Signal, Tick, encode
from messages.modules import REGISTRY
from messages.subjects import FLAGS_BUCKET
from runtime import Actor, Context, MemoryBus, Sub, Supervisor, VirtualClock
from runtime.hooks import RuntimeHooks
from sniper import __version__
from sniper.config import MODULES
from sniper.metrics_server import serve_metrics

from .. import samples
from ..harness import Harness

TEXT = "text/plain; version=0.0.4; charset=utf-8"


def declared(version: str = __version__) -> Metrics:
    metrics = Metrics()
    metrics.declare(modules=MODULES, assets=["SOL", "BTC"], version=version, actors=["assembler", "scheduler"])
    return metrics


def series(metrics: Metrics) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every sniper_* sample's name and labels (values left out): the set of series a scrape shows."""
    return {
        (s.name, tuple(sorted(s.labels.items())))
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name.startswith("sniper_")
    }


def names(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with serve_metrics(declared(), 0) as served:
        yield served


class TestExposition:
    """prometheus_client's own aiohttp handler: the scraper's Accept and Accept-Encoding choose the answer."""

    async def test_prometheus_text_by_default(self, url: str) -> None:
        # aiohttp's client asks for gzip unless told otherwise; a plain scraper says identity.
        async with aiohttp.ClientSession() as http, http.get(url, headers={"Accept-Encoding": "identity"}) as resp:
            text = await resp.text()
        assert resp.status == 200 and resp.headers["Content-Type"] == TEXT
        assert "Content-Encoding" not in resp.headers
        assert not text.rstrip().endswith("# EOF")
        assert {"sniper_hard_fail_total", "sniper_build_info", "sniper_cycle_latency_seconds_bucket"} <= names(text)

    async def test_openmetrics_when_asked(self, url: str) -> None:
        headers = {"Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "identity"}
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
            text = await resp.text()
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
        assert text.endswith("# EOF\n") and "# TYPE sniper_hard_fail counter" in text

    async def test_gzip_when_asked(self, url: str) -> None:
        async with (
            aiohttp.ClientSession(auto_decompress=False) as http,
            http.get(url, headers={"Accept-Encoding": "gzip"}) as resp,
        ):
            body = await resp.read()
        assert resp.headers["Content-Encoding"] == "gzip" and resp.headers["Content-Type"] == TEXT
        assert "sniper_build_info" in names(gzip.decompress(body).decode())

    async def test_a_name_filter_narrows_the_answer(self, url: str) -> None:
        async with aiohttp.ClientSession() as http, http.get(url, params={"name[]": "sniper_build_info"}) as resp:
            text = await resp.text()
        assert names(text) == {"sniper_build_info"}


class TestDeclaredSeries:
    def test_latency_series_and_build_info_exist_from_the_start(self) -> None:
        registry = declared(version="9.9.9").registry
        for asset in ("SOL", "BTC"):
            assert registry.get_sample_value("sniper_cycle_latency_seconds_count", {"asset": asset}) == 0
        for module in MODULES:
            assert registry.get_sample_value("sniper_upstream_latency_seconds_count", {"module": module}) == 0
        for actor in ("assembler", "scheduler"):
            assert registry.get_sample_value("sniper_actor_handler_seconds_count", {"actor": actor}) == 0
        labels = {"version": "9.9.9", "python": platform.python_version()}
        assert registry.get_sample_value("sniper_build_info", labels) == 1
        assert registry.get_sample_value("process_start_time_seconds") is not None

    def test_handler_times_are_the_histogram_prometheus_client_would_keep(self) -> None:
        """The lock-free handler histogram exports the same buckets, count and sum as prometheus_client's."""
        metrics = Metrics()
        registry = CollectorRegistry()
        reference = Histogram("ref", "", ["actor"], buckets=HANDLER_BUCKETS, registry=registry)
        values = [0.0, 5e-05, 5.1e-05, 0.0001, 0.001, 0.3, 2.5, 2.6, 99.0]
        for value in values:
            metrics.handler_finished("assembler", value)
            reference.labels("assembler").observe(value)

        def samples_of(registry: CollectorRegistry, name: str) -> dict[tuple[str, str], float]:
            return {
                (s.name.removeprefix(name), s.labels.get("le", "")): s.value
                for family in registry.collect()
                for s in family.samples
                if s.name.startswith(name) and not s.name.endswith("_created")
            }

        ours = samples_of(metrics.registry, "sniper_actor_handler_seconds")
        theirs = samples_of(registry, "ref")
        assert ours.keys() == theirs.keys() and len(ours) == len(HANDLER_BUCKETS) + 3
        assert all(ours[k] == pytest.approx(theirs[k]) for k in ours)
        assert ours[("_count", "")] == len(values) and ours[("_bucket", "5e-05")] == 2


def a_tick(asset: str = "SOL", cycle: int = 1, ts: float = 1_767_225_600.0) -> Tick:
    return Tick(asset=asset, cycle=cycle, ts=ts, deadline=ts + 3, modules=("whale",))


class _Sleepy(Actor):
    name = "sleepy"
    heartbeat_interval = None

    def subscriptions(self) -> Iterable[Sub]:
        return [Sub(self.subjects.tick("SOL"), Tick, self.on_tick)]

    async def on_tick(self, tick: Tick) -> None:
        await self.clock.sleep(0.25)


class _Timing(RuntimeHooks):
    def __init__(self, times: bool) -> None:
        self.times_handlers = times
        self.calls: list[tuple[str, float]] = []

    def handler_finished(self, actor: str, seconds: float) -> None:
        self.calls.append((actor, seconds))


class TestHandlerHook:
    @pytest.mark.parametrize("times", [True, False])
    async def test_handlers_are_timed_on_the_actors_clock_when_asked(
        self, memory_bus: MemoryBus, vclock: VirtualClock, times: bool
    ) -> None:
        """`handler_finished` gets the handler's duration in the actor's (virtual) time; never unless asked."""
        hooks = _Timing(times)
        ctx = Context(bus=memory_bus, clock=vclock, hooks=hooks)
        async with Supervisor(ctx, [_Sleepy()]):
            await memory_bus.publish(ctx.subjects.tick("SOL"), encode(a_tick()))
            await vclock.sleep(1)
        assert hooks.calls == ([("sleepy", 0.25)] if times else [])


class TestPipeline:
    async def test_cycles_requests_and_handlers_are_timed(self, harness: Harness) -> None:
        """A 0.2 s backend: upstream requests land in the 0.25 s bucket, and cycles take about that long."""
        harness.backend.latency[samples.PATHS["whale"]] = 0.2
        async with harness.run():
            await harness.clock.sleep(12)
            registry = harness.metrics.registry
            signals = len([s for s in harness.signals.messages if s.asset == "SOL"])
        whale = {"module": "whale"}
        calls = registry.get_sample_value("sniper_upstream_latency_seconds_count", whale)
        assert calls is not None and calls >= 2
        assert registry.get_sample_value("sniper_upstream_latency_seconds_bucket", {**whale, "le": "0.1"}) == 0
        assert registry.get_sample_value("sniper_upstream_latency_seconds_bucket", {**whale, "le": "0.25"}) == calls
        cycles = registry.get_sample_value("sniper_cycle_latency_seconds_count", {"asset": "SOL"})
        total = registry.get_sample_value("sniper_cycle_latency_seconds_sum", {"asset": "SOL"})
        assert cycles == signals >= 2 and total is not None
        assert total / cycles == pytest.approx(0.2, abs=0.05)
        timed = registry.get_sample_value("sniper_actor_handler_seconds_count", {"actor": "assembler"})
        handled = harness.actor("assembler").handled
        assert timed is not None and timed == (handled + 7) // 8 >= 2  # one call in 8, the first one included

    async def test_every_flag_gauge_is_set_at_start(self, harness: Harness) -> None:
        """sniper_flag_enabled has a value for every flag as soon as the pipeline has started."""
        flags = {m: m != "etf" for m in MODULES}
        async with harness.run(flags=flags):
            registry = harness.metrics.registry
            got = {m: registry.get_sample_value("sniper_flag_enabled", {"flag": flag_name(m)}) for m in MODULES}
        assert got == {m: 1.0 if on else 0.0 for m, on in flags.items()}

    async def test_nothing_on_the_bus_adds_a_series(self, harness: Harness) -> None:
        """Every series exists from the start; cycles and forged traffic for other assets and modules add none."""
        async with harness.run():
            at_start = series(harness.metrics)
            now = harness.clock.now()
            s = harness.subjects
            tick = Tick(asset="DOGE", cycle=1, ts=now, deadline=now + 3, modules=("whale", "nope"))
            report = ModuleData(
                module="whale", asset="DOGE", cycle=1, ts=now, latency_ms=1.0, payload=a_whale_payload()
            )
            degraded = Degraded(module="nope", asset="SOL", cycle=1, ts=now, reason="timeout")
            circuit = CircuitState(module="nope", scope="DOGE", state="open", ts=now, until=now + 60)
            await harness.forge(s.tick("DOGE"), tick)
            await harness.forge(s.tick("SOL"), tick)
            await harness.forge(s.data("whale", "DOGE"), report)
            await harness.forge(s.data("whale", "SOL"), report)
            await harness.forge(s.degraded("nope", "SOL"), degraded)
            await harness.forge(s.circuit("whale"), circuit)
            await harness.forge(s.signal("DOGE"), forged_signal(now))
            flags = await harness.bus.key_value(s.kv_bucket(FLAGS_BUCKET))
            await flags.put("NOPE", encode(FlagChanged(flag="NOPE", enabled=False, ts=now, who="forger")))
            await harness.clock.sleep(12)
            after = series(harness.metrics)
            bad = harness.metrics.registry.get_sample_value("sniper_bad_messages_total", {"actor": "assembler"})
        assert after == at_start
        assert bad is not None and bad >= 1


def a_whale_payload() -> Any:
    return msgspec.convert(samples.BODIES[samples.PATHS["whale"]], REGISTRY["whale"].payload)


def forged_signal(now: float) -> Signal:
    return Signal(
        asset="DOGE",
        cycle=1,
        ts=now,
        started=now,
        direction="long",
        score=0.5,
        confidence=1.0,
        modules={},
        etf_available=False,
    )
