"""Cross-source fallback: when the backend fails a module, the venues answer in order, and the signal says so."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from actors.fallback import FAILURES_TO_OPEN, OPEN_FOR, SourceBreaker
from actors.upstream import MockTransport, Outcome, Response, Transport
from messages import Degraded, Signal
from runtime import NatsBus, VirtualClock
from runtime.testing import Recorder
from sniper.app import run_pipeline
from sniper.config import Settings
from sniper.embedded import EmbeddedNats
from sniper.fallback import FallbackSettings, fallback_problem, parse_fallback

from .. import samples
from ..fakes.venues import FakeBinance, FakeOkx, FakeTransport, VenueFake
from ..harness import BACKEND, Harness

BINANCE, BINANCE_FUTURES, OKX = "http://binance.test", "http://fapi.binance.test", "http://okx.test"


class Routed(Transport):
    """One transport for the process, as deployed: the backend's URLs to the FakeBackend, each venue's to its fake."""

    def __init__(self, backend: Transport, venues: Mapping[str, VenueFake]) -> None:
        self.backend = backend
        self.venues = {base: FakeTransport(fake) for base, fake in venues.items()}

    async def get(self, url: str, headers: Mapping[str, str], *, max_body: int | None = None) -> Response:
        for base, transport in self.venues.items():
            if url.startswith(base):
                return await transport.get(url, headers, max_body=max_body)
        return await self.backend.get(url, headers, max_body=max_body)


@pytest.fixture
def binance(vclock: VirtualClock) -> FakeBinance:
    return FakeBinance(clock=vclock)


@pytest.fixture
def okx(vclock: VirtualClock) -> FakeOkx:
    return FakeOkx(clock=vclock)


def run(harness: Harness, binance: FakeBinance, okx: FakeOkx, plan: str, **settings: Any) -> Any:
    """The pipeline with `plan` as --fallback, the venues on their fakes."""
    fallback = FallbackSettings(
        plan=parse_fallback(plan), binance_api=BINANCE, binance_futures_api=BINANCE_FUTURES, okx_api=OKX
    )
    transport = Routed(MockTransport(harness.backend), {BINANCE: binance, BINANCE_FUTURES: binance, OKX: okx})
    return harness.run(transport=transport, fallback=fallback, **settings)


def statuses(signals: list[Signal], module: str) -> list[tuple[str, str | None, str]]:
    return [(s.modules[module].status, s.modules[module].reason, s.modules[module].source) for s in signals]


class TestFallbackInThePipeline:
    async def test_a_backend_404_is_answered_from_binance(
        self, harness: Harness, binance: FakeBinance, okx: FakeOkx
    ) -> None:
        """The backend has no order book: spot_ob ok from Binance; the backend's 404 still reaches the breakers."""
        harness.backend.fail(samples.PATHS["spot_ob"], 404)
        degraded = await Recorder[Degraded](harness.bus, "sniper.degraded.spot_ob.*", Degraded).start()
        async with run(harness, binance, okx, "spot_ob=binance,okx"):
            await harness.signals.wait_count(3)
        assert set(statuses(harness.signals.messages[:3], "spot_ob")) == {("ok", None, "binance")}
        assert okx.on("/api/v5/market/books") == []
        assert all(d.superseded and d.reason == "not_found" and d.source == "backend" for d in degraded.messages)
        assert harness.signals.messages[0].complete

    async def test_a_binance_ban_moves_to_okx_and_holds_binance(
        self, harness: Harness, binance: FakeBinance, okx: FakeOkx
    ) -> None:
        """Binance answers 418 with Retry-After 120: OKX answers, and Binance is not asked again until then."""
        harness.backend.fail(samples.PATHS["spot_ob"], 500)
        binance.scripts["/api/v3/depth"].push(FakeBinance.banned("120"))
        async with run(harness, binance, okx, "spot_ob=binance,okx"):
            await harness.signals.wait_count(10)  # 45 s of cycles at a 5 s interval
        assert set(statuses(harness.signals.messages[:10], "spot_ob")) == {("ok", None, "okx")}
        assert len(binance.on("/api/v3/depth")) == 1

    async def test_every_source_down_gives_the_last_reason(
        self, harness: Harness, binance: FakeBinance, okx: FakeOkx
    ) -> None:
        """Backend, Binance and OKX all failing: degraded with OKX's reason, named as OKX's."""
        harness.backend.fail(samples.PATHS["spot_ob"], 500)
        for _ in range(3):
            binance.script.push(FakeBinance.error(503))
            okx.script.push(FakeOkx.too_many())
        async with run(harness, binance, okx, "spot_ob=binance,okx"):
            await harness.signals.wait_count(1)
        assert statuses(harness.signals.messages[:1], "spot_ob") == [("degraded", "rate_limited", "okx")]

    async def test_a_venue_answer_counts_with_the_modules_venue_trust(
        self, harness: Harness, binance: FakeBinance, okx: FakeOkx
    ) -> None:
        """Bias from a venue counts at half its weight: confidence 1 - 0.2 x 0.5 / total weight (ETF off)."""
        harness.backend.fail(samples.PATHS["bias"], 404)
        async with run(harness, binance, okx, "bias=okx", flags={m: m != "etf" for m in samples.PATHS}):
            await harness.signals.wait_count(1)
        signal = harness.signals.messages[0]
        assert signal.modules["bias"].source == "okx" and signal.modules["bias"].status == "ok"
        weights = {"spot_ob": 0.25, "whale": 0.2, "heatmap": 0.2, "bias": 0.2, "funding": 0.15}  # README, Scoring
        assert signal.confidence == pytest.approx(1 - 0.2 * 0.5 / sum(weights.values()), abs=1e-6)

    async def test_a_source_flag_switches_it_off_at_runtime(
        self, harness: Harness, binance: FakeBinance, okx: FakeOkx
    ) -> None:
        """`sniper flags set BINANCE off`: the next cycles go to OKX without asking Binance."""
        harness.backend.fail(samples.PATHS["spot_ob"], 404)
        async with run(harness, binance, okx, "spot_ob=binance,okx"):
            await harness.signals.wait_count(1)
            reply = await harness.bus.request("sniper.cmd.flags", b'{"flag": "BINANCE", "enabled": false}', timeout=5)
            assert b'"ok":true' in reply.data
            asked = len(binance.on("/api/v3/depth"))
            await harness.clock.sleep(0.5)
            seen = len(harness.signals.messages)
            await harness.signals.wait_count(seen + 3)
        assert len(binance.on("/api/v3/depth")) == asked
        assert statuses(harness.signals.messages[seen:], "spot_ob")[-1] == ("ok", None, "okx")

    async def test_no_fallback_by_default(self, harness: Harness) -> None:
        """Without --fallback a backend 404 is the module's status, as before, from the backend."""
        harness.backend.fail(samples.PATHS["spot_ob"], 404)
        async with harness.run():
            await harness.signals.wait_count(1)
        assert statuses(harness.signals.messages[:1], "spot_ob") == [("degraded", "not_found", "backend")]

    async def test_an_hour_of_fallback_stays_within_the_share_of_binances_limit(
        self, harness: Harness, binance: FakeBinance, okx: FakeOkx
    ) -> None:
        """A 1 % share (Binance 60 weight a minute, OKX 1 book in 2 s) under more demand, for an hour: never over."""
        harness.backend.fail(samples.PATHS["spot_ob"], 404)
        fallback = FallbackSettings(
            plan=parse_fallback("spot_ob=binance,okx"),
            binance_api=BINANCE,
            binance_futures_api=BINANCE_FUTURES,
            okx_api=OKX,
            venue_share=0.01,
        )
        transport = Routed(MockTransport(harness.backend), {BINANCE: binance, BINANCE_FUTURES: binance, OKX: okx})
        async with harness.run(transport=transport, fallback=fallback, assets=("SOL", "BTC", "ETH")):
            await harness.clock.sleep(3600)
        assert binance.max_in_window(60, ["/api/v3/depth"], weighted=True) <= 60
        assert len(binance.on("/api/v3/depth")) >= 60 * 60 // 5 * 0.9  # it carried what the share allows
        sources = {s.modules["spot_ob"].source for s in harness.signals.messages}
        assert sources == {"binance", "okx"}
        # OKX is held to the same 1 % share: what neither may ask is rate_limited, never sent
        got = [(s.modules["spot_ob"].status, s.modules["spot_ob"].reason) for s in harness.signals.messages]
        assert set(got) <= {("ok", None), ("degraded", "rate_limited")}
        assert got.count(("ok", None)) >= 0.8 * len(got)
        assert okx.max_in_window(2, ["/api/v5/market/books"]) <= 1


class TestSourceBreaker:
    @pytest.mark.parametrize(
        ("outcomes", "open_after"),
        [
            (["transient"] * FAILURES_TO_OPEN, True),
            (["transient"] * (FAILURES_TO_OPEN - 1) + ["ok"] + ["transient"], False),
            (["throttled-uncalled"] * 10, False),
            (["no-such-symbol"] * 10, False),
        ],
        ids=["failures-open", "a-success-resets", "holds-do-not-count", "a-missing-symbol-does-not-count"],
    )
    def test_failed_calls_in_a_row_open_it(self, outcomes: list[str], open_after: bool) -> None:
        """Only real failed calls count, in a row; a success resets; a source's own hold is not a failure."""
        breaker = SourceBreaker()
        for kind in outcomes:
            if kind == "ok":
                breaker.record(Outcome("ok", "ok"), 0.0)
            elif kind == "transient":
                breaker.record(Outcome("transient", "upstream_error", status=503), 0.0)
            elif kind == "no-such-symbol":
                breaker.record(Outcome("endpoint_missing", "not_found", status=400), 0.0)
            else:
                breaker.record(Outcome("throttled", "rate_limited", called=False), 0.0)
        assert breaker.allows(OPEN_FOR - 1) is not open_after
        assert breaker.allows(OPEN_FOR)

    def test_each_reopen_doubles_the_open_time(self) -> None:
        """A probe that fails again reopens it for twice as long."""
        breaker = SourceBreaker()
        for _ in range(FAILURES_TO_OPEN):
            breaker.record(Outcome("transient", "timeout"), 0.0)
        breaker.record(Outcome("transient", "timeout"), OPEN_FOR)
        assert not breaker.allows(OPEN_FOR + 2 * OPEN_FOR - 1) and breaker.allows(OPEN_FOR + 2 * OPEN_FOR)


class TestConfiguration:
    @pytest.mark.parametrize(
        ("text", "plan"),
        [
            ("", {}),
            ("off", {}),
            ("spot_ob=binance,okx", {"spot_ob": ("binance", "okx")}),
            ("spot_ob=binance;bias=okx,binance", {"spot_ob": ("binance",), "bias": ("okx", "binance")}),
            ("spot_ob=OKX,okx", {"spot_ob": ("okx",)}),
        ],
    )
    def test_plans_parse(self, text: str, plan: dict[str, tuple[str, ...]]) -> None:
        """MODULE=VENUE[,VENUE] per module, ';' between modules; venues in order, named once."""
        assert parse_fallback(text) == plan

    @pytest.mark.parametrize("text", ["spot_ob", "spot_ob=", "=binance", "spot_ob=binance;spot_ob=okx"])
    def test_malformed_plans_say_what_is_expected(self, text: str) -> None:
        """A part without a module or venues, or a module twice, is refused."""
        with pytest.raises(ValueError, match=r"MODULE=VENUE|named twice"):
            parse_fallback(text)

    @pytest.mark.parametrize(
        ("plan", "problem"),
        [
            ({"etf": ("okx",)}, "okx does not serve etf: etf has no public source"),
            ({"whale": ("binance",)}, "binance does not serve whale: whale has no public source"),
            ({"heatmap": ("bybit",)}, "bybit does not serve heatmap: heatmap can fall back to okx"),
            ({"spot_ob": ("kraken",)}, "unknown venue 'kraken'; known: binance, okx, bybit"),
            ({"orderbook": ("okx",)}, "unknown module 'orderbook'; known: whale, etf, heatmap, spot_ob, bias, funding"),
            ({"spot_ob": ("binance", "okx", "bybit"), "funding": ("okx", "binance")}, None),
        ],
    )
    def test_plans_that_cannot_work_are_refused(self, plan: dict[str, tuple[str, ...]], problem: str | None) -> None:
        """A venue that does not serve the module is refused, naming the venues that do."""
        assert fallback_problem(plan) == problem

    def test_a_bad_plan_is_a_configuration_error(self) -> None:
        """Settings refuse it with the option's name."""
        with pytest.raises(ValueError, match="--fallback / SNIPER_FALLBACK: okx does not serve etf"):
            Settings(backend=BACKEND, fallback=FallbackSettings(plan={"etf": ("okx",)}))


@pytest.mark.slow
class TestOverRealNatsAndHttp:
    async def test_the_order_book_comes_from_a_binance_on_loopback(self, nats_server: EmbeddedNats) -> None:
        """Real NATS, the reference backend with spot_ob 404, a Binance fake on loopback: spot_ob ok from Binance."""
        from marketsim import serve
        from marketsim._faults import StatusFault

        async with serve(port=0, seed=3) as backend, FakeBinance() as binance:
            backend.sim.set_fault("spot_ob", StatusFault(status=404))
            observer = await NatsBus.connect(nats_server.url, name="observer")
            signals = await Recorder[Signal](observer, "sniper.signal.*", Signal).start()
            settings = Settings(
                nats=nats_server.url,
                backend=backend.url,
                interval=0.5,
                window=0.4,
                fallback=FallbackSettings(plan={"spot_ob": ("binance",)}, binance_api=binance.url),
            )
            async with run_pipeline(settings):
                await signals.wait_count(2, timeout=20)
            await observer.close()
        assert [(s.modules["spot_ob"].status, s.modules["spot_ob"].source) for s in signals.messages[:2]] == [
            ("ok", "binance"),
            ("ok", "binance"),
        ]
        assert binance.on("/api/v3/depth") and backend.sim.counters()["spot_ob"]["requests"] >= 2
