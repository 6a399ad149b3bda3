"""Venue sources (actors.venues): symbols, payload mapping, error classes, throttle holds, rate limits.

Mapping and error classes are tested over real HTTP on loopback against the
fake venues (tests/fakes/venues.py) under the SystemClock. Throttle holds run
over loopback too, under a VirtualClock moved by hand (nothing is in flight
while time moves). An hour of rate limiting runs in virtual time with
autojump over the fakes' in-memory transport (the same request handling, no
sockets); ten minutes of it also run on the wire, time moved one timer at a
time once every request in flight has been answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import random
import statistics
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec
import pytest

from actors import fetcher
from actors.upstream import AiohttpTransport, MockTransport, Response, Transport
from actors.venues import SOURCES, BinanceSource, BybitSource, OkxSource, VenueSource
from actors.venues._client import MAX_PAYLOAD_BYTES, RateLimit, finish, market, share_of
from actors.venues.binance import depth_request
from messages.modules import MAX_HEATMAP_LEVELS, REGISTRY, OrderBook
from runtime.clock import Clock, SystemClock, VirtualClock
from tests.fakes import Reply
from tests.fakes.venues import ASSETS, FakeBinance, FakeBybit, FakeOkx, VenueFake, VenueReply

Source = BinanceSource | OkxSource | BybitSource
FAKES: dict[str, type[VenueFake]] = {"binance": FakeBinance, "okx": FakeOkx, "bybit": FakeBybit}
SERVED = [(venue, module) for venue, cls in SOURCES.items() for module in sorted(cls.modules)]
NOT_SERVED = [(venue, module) for venue, cls in SOURCES.items() for module in REGISTRY if module not in cls.modules]
BOOK_PATHS = {"binance": "/api/v3/depth", "okx": "/api/v5/market/books", "bybit": "/v5/market/orderbook"}
#: Levels a venue sends at most, whatever the configured depth.
BOOK_MAX = {"binance": 1000, "okx": 400, "bybit": 200}
RATIO_OKX = "/api/v5/rubik/stat/contracts/long-short-account-ratio-contract"
RATIO_BINANCE = "/futures/data/globalLongShortAccountRatio"
BYBIT_BOOK = "/v5/market/orderbook"
SOL_SWAP = "SOL-USDT-SWAP"
LIQUIDATIONS = "/api/v5/public/liquidation-orders"
#: Each rate limit's paths at the fake, and whether the fake counts weight (Binance) or requests.
LIMIT_PATHS: dict[str, dict[str, tuple[tuple[str, ...], bool]]] = {
    "binance": {
        "spot": (("/api/v3/depth",), True),
        "futures": (("/fapi/v1/premiumIndex",), True),
        "futures_data": (("/futures/data/globalLongShortAccountRatio",), False),
        "funding_info": (("/fapi/v1/fundingInfo",), False),
    },
    "okx": {
        "books": (("/api/v5/market/books",), False),
        "funding_rate": (("/api/v5/public/funding-rate",), False),
        "long_short_ratio": ((RATIO_OKX,), False),
        "liquidation_orders": ((LIQUIDATIONS,), False),
        "mark_price": (("/api/v5/public/mark-price",), False),
        "instruments": (("/api/v5/public/instruments",), False),
    },
    "bybit": {"requests": (("/v5/market/orderbook",), False)},
}


def make_source(venue: str, url: str, transport: Transport, clock: Clock, **options: Any) -> Source:
    if venue == "binance":
        return BinanceSource(transport, clock=clock, api=url, futures_api=url, **options)
    return SOURCES[venue](transport, clock=clock, api=url, **options)


@contextlib.asynccontextmanager
async def on_loopback(
    venue: str, transport: Transport, clock: Clock | None = None, **options: Any
) -> AsyncIterator[tuple[VenueFake, Source]]:
    """A fake venue on loopback and a source pointed at it."""
    clock = clock or SystemClock()
    async with FAKES[venue](clock=clock) as fake:
        yield fake, make_source(venue, fake.url, transport, clock, **options)


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    pooled = AiohttpTransport()
    yield pooled
    await pooled.close()


class TestSymbols:
    @pytest.mark.parametrize(
        ("venue", "module", "path", "expected"),
        [
            ("binance", "spot_ob", "/api/v3/depth", {"symbol": "SOLUSDT"}),
            ("binance", "funding", "/fapi/v1/premiumIndex", {"symbol": "SOLUSDT"}),
            ("binance", "bias", "/futures/data/globalLongShortAccountRatio", {"symbol": "SOLUSDT", "period": "5m"}),
            ("okx", "spot_ob", "/api/v5/market/books", {"instId": "SOL-USDT"}),
            ("okx", "funding", "/api/v5/public/funding-rate", {"instId": "SOL-USDT-SWAP"}),
            ("okx", "bias", RATIO_OKX, {"instId": "SOL-USDT-SWAP", "period": "5m"}),
            ("okx", "heatmap", LIQUIDATIONS, {"instType": "SWAP", "instFamily": "SOL-USDT", "state": "filled"}),
            ("okx", "heatmap", "/api/v5/public/mark-price", {"instType": "SWAP", "instId": "SOL-USDT-SWAP"}),
            ("okx", "heatmap", "/api/v5/public/instruments", {"instType": "SWAP", "instId": "SOL-USDT-SWAP"}),
            ("bybit", "spot_ob", "/v5/market/orderbook", {"category": "spot", "symbol": "SOLUSDT"}),
        ],
    )
    async def test_requests_spell_the_asset_as_the_venue_does(self, transport, venue, module, path, expected) -> None:
        """SOL goes out as SOLUSDT, SOL-USDT or SOL-USDT-SWAP, with the documented parameters."""
        async with on_loopback(venue, transport) as (fake, source):
            _, outcome = await source.fetch(module, "sol", budget=2.0)
        assert outcome.ok, outcome
        (request,) = fake.on(path)
        assert expected.items() <= request.params.items()

    @pytest.mark.parametrize(
        ("venue", "kind", "spelled"),
        [
            ("binance", "spot", "SOLUSDT"),
            ("binance", "swap", "SOLUSDT"),
            ("okx", "spot", "SOL-USDT"),
            ("okx", "swap", "SOL-USDT-SWAP"),
            ("bybit", "spot", "SOLUSDT"),
        ],
    )
    def test_market_uses_the_symbol_library(self, venue: str, kind: str, spelled: str) -> None:
        """`market` spells through actors.symbols, case-insensitively."""
        assert market("SOL", venue, "USDT", kind) == market("sol", venue, "USDT", kind) == spelled

    @pytest.mark.parametrize(("venue", "module"), SERVED)
    async def test_an_unspellable_asset_is_not_found_without_a_call(self, transport, venue, module) -> None:
        """An asset the symbol library refuses is endpoint_missing, called=False, and nothing is sent."""
        async with on_loopback(venue, transport) as (fake, source):
            payload, outcome = await source.fetch(module, "SOL USDT!", budget=2.0)
        assert payload is None
        assert (outcome.error_class, outcome.reason, outcome.called) == ("endpoint_missing", "not_found", False)
        assert fake.requests == []

    @pytest.mark.parametrize(("venue", "module"), NOT_SERVED)
    async def test_a_module_not_served_is_not_found_without_a_call(self, transport, venue, module) -> None:
        """whale and etf everywhere, heatmap at Binance, all but spot_ob at Bybit: endpoint_missing, no call."""
        async with on_loopback(venue, transport) as (fake, source):
            payload, outcome = await source.fetch(module, "SOL", budget=2.0)
        assert payload is None and not outcome.called and outcome.reason == "not_found"
        assert outcome.detail == f"{venue}: serves no {module}"
        assert fake.requests == []


class TestPayloads:
    @pytest.mark.parametrize("asset", list(ASSETS))
    @pytest.mark.parametrize(("venue", "module"), SERVED)
    async def test_each_served_module_maps_to_a_valid_payload(self, transport, venue, module, asset) -> None:
        """Every venue and module gives its module's Struct, valid on the wire and passing the module's check."""
        async with on_loopback(venue, transport) as (_, source):
            payload, outcome = await source.fetch(module, asset, budget=2.0)
        spec = REGISTRY[module]
        assert (outcome.error_class, outcome.reason, outcome.status, outcome.called) == ("ok", "ok", 200, True)
        assert isinstance(payload, spec.payload) and spec.check(payload) is None
        assert msgspec.json.decode(msgspec.json.encode(payload), type=spec.payload) == payload  # within every Meta
        assert outcome.latency_ms > 0 and outcome.body == b""

    @pytest.mark.parametrize("depth", [1, 7, 50, 1000])
    @pytest.mark.parametrize("scramble", [False, True])
    @pytest.mark.parametrize("venue", list(BOOK_PATHS))
    async def test_books_are_sorted_and_trimmed(self, transport, venue, scramble, depth) -> None:
        """Bids descending, asks ascending (even when sent scrambled), min(depth, the venue's maximum) a side."""
        async with on_loopback(venue, transport, depth=depth) as (fake, source):
            fake.scramble_books = scramble
            payload, outcome = await source.fetch("spot_ob", "BTC", budget=2.0)
        assert isinstance(payload, OrderBook), outcome
        bids, asks = [p for p, _ in payload.bids], [p for p, _ in payload.asks]
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
        assert len(set(bids)) == len(bids) == len(asks) == min(depth, BOOK_MAX[venue])
        (request,) = fake.on(BOOK_PATHS[venue])
        if venue == "binance":
            assert (int(request.params["limit"]), request.weight) == depth_request(depth)

    @pytest.mark.parametrize(
        ("depth", "limit", "weight"),
        [
            (1, 5, 5),
            (5, 5, 5),
            (6, 10, 5),
            (50, 50, 5),
            (100, 100, 5),
            (101, 500, 25),
            (501, 1000, 50),
            (5000, 1000, 50),
        ],
    )
    def test_binance_depth_limit_follows_the_weight_tiers(self, depth: int, limit: int, weight: int) -> None:
        """The smallest accepted limit covering the depth (capped at 1,000 levels), and its weight."""
        assert depth_request(depth) == (limit, weight)

    @pytest.mark.parametrize(
        ("venue", "asset", "rate", "hours"),
        [
            ("binance", "SOL", 0.00025, 8.0),
            ("binance", "ETH", -0.00005, 4.0),  # fundingInfo lists ETHUSDT at 4 hours
            ("okx", "SOL", 0.00025, 8.0),
            ("okx", "ETH", -0.00005, 8.0),
        ],
    )
    async def test_funding_fields(self, transport, venue, asset, rate, hours) -> None:
        """Current rate as the prediction, the venue's interval, the next settlement within one interval."""
        async with on_loopback(venue, transport) as (_, source):
            payload, outcome = await source.fetch("funding", asset, budget=2.0)
        assert payload is not None, outcome
        fields = msgspec.structs.asdict(payload)
        assert (fields["funding_rate"], fields["predicted_rate"], fields["interval_hours"]) == (rate, rate, hours)
        now = SystemClock().now()
        assert now < fields["next_funding_time"] <= now + hours * 3600
        assert (fields["open_interest_usd"], fields["oi_change_pct"]) == (0.0, 0.0)  # not measured

    @pytest.mark.parametrize("venue", ["binance", "okx"])
    @pytest.mark.parametrize(("asset", "label"), [("SOL", "bullish"), ("BTC", "neutral"), ("ETH", "bearish")])
    async def test_bias_reads_the_ratio_against_its_window(self, transport, venue, asset, label) -> None:
        """Score tanh(ln(latest / geometric mean) / 0.15): rising ratio bullish, flat neutral, falling bearish."""
        async with on_loopback(venue, transport) as (_, source):
            payload, outcome = await source.fetch("bias", asset, budget=2.0)
        assert payload is not None, outcome
        fields = msgspec.structs.asdict(payload)
        ratios = [1.8] * 95 + [1.4] if asset == "ETH" else [2.0] * 95 + [2.4] if asset == "SOL" else [1.5] * 96
        expected = math.tanh(math.log(ratios[-1] / statistics.geometric_mean(ratios)) / 0.15)
        assert fields["bias"] == label and fields["score"] == pytest.approx(expected, abs=1e-6)
        assert (fields["long_short_ratio"], fields["funding_rate"], fields["oi_change_pct"]) == (ratios[-1], 0.0, 0.0)

    @pytest.mark.parametrize(("timeframe", "orders"), [("1h", 27), ("24h", 30)])
    @pytest.mark.parametrize("asset", list(ASSETS))
    async def test_heatmap_sums_the_recent_filled_liquidations(self, transport, asset, timeframe, orders) -> None:
        """Orders within the timeframe, valued contracts x contract value x price, longs below, shorts above."""
        async with on_loopback("okx", transport, timeframe=timeframe) as (fake, source):
            payload, outcome = await source.fetch("heatmap", asset, budget=2.0)
            sent = fake.route(LIQUIDATIONS, {"instType": "SWAP", "instFamily": f"{asset}-USDT"}).body
        assert payload is not None, outcome
        heatmap = msgspec.structs.asdict(payload)
        price, _, contract_value = ASSETS[asset]
        details = sorted(sent["data"][0]["details"], key=lambda d: -int(d["ts"]))[:orders]
        usd = sum(float(d["sz"]) * float(contract_value) * float(d["bkPx"]) for d in details)
        assert (heatmap["price"], heatmap["timeframe"]) == (price, timeframe)
        assert sum(level.usd for level in heatmap["levels"]) == pytest.approx(usd)
        assert all((level.side == "short") == (level.price > price) for level in heatmap["levels"])

    def test_finish_trims_like_the_fetcher(self) -> None:
        """A venue payload gets the module's caps: the configured depth, the nearest 200 clusters."""
        bids = [(100.0 - i * 0.01, 1.0) for i in range(5000)]
        book = finish("spot_ob", {"symbol": "X", "exchange": "x", "ts": 1.0, "bids": bids, "asks": [(101.0, 1.0)]}, 50)
        assert isinstance(book, OrderBook) and len(book.bids) == 50 and book.bids[0] == (100.0, 1.0)
        levels = [{"price": 100.0 - i * 0.01, "side": "long", "usd": 1.0} for i in range(1, 501)]
        heatmap = finish("heatmap", {"symbol": "X", "timeframe": "1h", "price": 100.0, "levels": levels}, 50)
        assert len(msgspec.structs.asdict(heatmap)["levels"]) == MAX_HEATMAP_LEVELS
        assert MAX_PAYLOAD_BYTES == fetcher.MAX_PAYLOAD_BYTES


def okx_data(*rows: Any) -> VenueReply:
    """An OKX success envelope around `rows`."""
    return VenueReply(200, {"code": "0", "msg": "", "data": list(rows)})


#: A long liquidated far above the price: the price has run through it (the heatmap's side check refuses).
RUN_THROUGH = {"bkPx": "300", "sz": "1", "side": "sell", "posSide": "long", "ts": str(2**41)}
BAD_BODIES = [
    ("binance", "spot_ob", "/api/v3/depth", FakeBinance.malformed()),
    ("binance", "spot_ob", "/api/v3/depth", VenueReply(200, {"bids": "150", "asks": []})),
    ("binance", "spot_ob", "/api/v3/depth", VenueReply(200, {"bids": [["NaN", "1"]], "asks": [["151", "1"]]})),
    ("binance", "spot_ob", "/api/v3/depth", VenueReply(200, {"bids": [["150", "-1"]], "asks": [["151", "1"]]})),
    ("binance", "spot_ob", "/api/v3/depth", VenueReply(200, {"bids": [["150", "inf"]], "asks": [["151", "1"]]})),
    ("binance", "spot_ob", "/api/v3/depth", VenueReply(200, {"bids": [["0", "1"]], "asks": [["151", "1"]]})),
    ("binance", "spot_ob", "/api/v3/depth", VenueReply(200, {"bids": [["152", "1"]], "asks": [["151", "1"]]})),
    ("binance", "spot_ob", "/api/v3/depth", VenueReply(200, {"bids": [["150", "1"]], "asks": []})),
    ("binance", "spot_ob", "/api/v3/depth", VenueReply(200, {"bids": [["150"]], "asks": [["151", "1"]]})),
    ("binance", "funding", "/fapi/v1/premiumIndex", VenueReply(200, {"lastFundingRate": "x", "nextFundingTime": 1})),
    ("binance", "bias", RATIO_BINANCE, VenueReply(200, [])),
    ("binance", "bias", RATIO_BINANCE, VenueReply(200, [{"longShortRatio": "0", "timestamp": 1}])),
    ("okx", "spot_ob", "/api/v5/market/books", okx_data()),
    ("okx", "spot_ob", "/api/v5/market/books", okx_data({"bids": [], "asks": [], "ts": "1"})),
    ("okx", "funding", "/api/v5/public/funding-rate", okx_data({"fundingRate": "1e999", "fundingTime": "1"})),
    ("okx", "bias", RATIO_OKX, okx_data(["1"])),
    ("okx", "heatmap", "/api/v5/public/instruments", okx_data({"instId": SOL_SWAP, "ctVal": "10", "ctValCcy": "USD"})),
    ("okx", "heatmap", "/api/v5/public/mark-price", okx_data({"instId": SOL_SWAP, "markPx": "0"})),
    ("okx", "heatmap", LIQUIDATIONS, okx_data({"instId": SOL_SWAP, "details": [RUN_THROUGH]})),
    ("bybit", "spot_ob", "/v5/market/orderbook", VenueReply(200, {"retCode": 0, "result": {}})),
    ("bybit", "spot_ob", "/v5/market/orderbook", FakeBybit.malformed(b"<html>502 Bad Gateway</html>")),
]  # fmt: skip


class TestBadBodies:
    @pytest.mark.parametrize(("venue", "module", "path", "reply"), BAD_BODIES)
    async def test_a_body_that_does_not_fit_is_bad_payload(self, transport, venue, module, path, reply) -> None:
        """Malformed JSON, wrong shapes, NaN/inf/negative/zero numbers, crossed or empty books, inverse contracts."""
        async with on_loopback(venue, transport) as (fake, source):
            fake.scripts[path].push(reply)
            payload, outcome = await source.fetch(module, "SOL", budget=2.0)
        assert payload is None
        assert (outcome.error_class, outcome.reason, outcome.status, outcome.called) == (
            "bad_payload",
            "bad_payload",
            200,
            True,
        )
        assert outcome.detail.startswith(f"{venue}: ")

    async def test_an_unexpected_exception_is_data(self) -> None:
        """Nothing escapes fetch: a transport raising something unforeseen is an outcome too."""

        def explode(url: str) -> Response:
            raise RuntimeError("boom")

        source = BybitSource(MockTransport(explode), clock=SystemClock())
        payload, outcome = await source.fetch("spot_ob", "SOL", budget=1.0)
        assert payload is None and outcome.reason == "bad_payload" and "RuntimeError: boom" in outcome.detail


ERRORS = [
    ("binance", "spot_ob", "/api/v3/depth", FakeBinance.too_many("30"), "throttled", 429, 30.0),
    ("binance", "funding", "/fapi/v1/premiumIndex", FakeBinance.banned("120"), "throttled", 418, 120.0),
    ("binance", "bias", RATIO_BINANCE, FakeBinance.too_many("7"), "throttled", 429, 7.0),
    ("binance", "spot_ob", "/api/v3/depth", VenueReply(403, {"msg": "WAF"}), "throttled", 403, 60.0),
    ("binance", "spot_ob", "/api/v3/depth", VenueReply(451, {"msg": "restricted location"}), "entitlement", 451, None),
    ("binance", "spot_ob", "/api/v3/depth", FakeBinance.error(503), "transient", 503, None),
    ("okx", "spot_ob", "/api/v5/market/books", FakeOkx.too_many(429), "throttled", 429, 2.0),
    ("okx", "spot_ob", "/api/v5/market/books", FakeOkx.too_many(200), "throttled", 200, 2.0),
    ("okx", "funding", "/api/v5/public/funding-rate", FakeOkx.code("51001", "no such"), "endpoint_missing", 200, None),
    ("okx", "bias", RATIO_OKX, FakeOkx.code("50013", "Systems are busy"), "transient", 200, None),
    ("okx", "heatmap", LIQUIDATIONS, FakeOkx.error(500), "transient", 500, None),
    ("bybit", "spot_ob", BYBIT_BOOK, FakeBybit.ret_code(10006, "Too many visits!"), "throttled", 200, 5.0),
    ("bybit", "spot_ob", BYBIT_BOOK, FakeBybit.ret_code(10016, "Server error"), "transient", 200, None),
    ("bybit", "spot_ob", BYBIT_BOOK, FakeBybit.ret_code(10001, "params error"), "endpoint_missing", 200, None),
    ("bybit", "spot_ob", BYBIT_BOOK, FakeBybit.too_frequent(), "throttled", 403, 600.0),
    ("bybit", "spot_ob", BYBIT_BOOK, FakeBybit.geo_blocked(), "entitlement", 403, None),
    ("bybit", "spot_ob", BYBIT_BOOK, FakeBybit.error(502), "transient", 502, None),
]  # fmt: skip
REASONS = {"throttled": "rate_limited", "transient": "upstream_error", "entitlement": "payment_required"}
REASONS["endpoint_missing"] = "not_found"


class TestErrorClasses:
    @pytest.mark.parametrize(("venue", "module", "path", "reply", "error_class", "status", "retry"), ERRORS)
    async def test_venue_errors_map_to_our_classes(
        self, transport, venue, module, path, reply, error_class, status, retry
    ) -> None:
        """429/418 Retry-After, the WAF's 403, 451, OKX codes, Bybit retCodes and its 403 ban, 5xx."""
        async with on_loopback(venue, transport) as (fake, source):
            fake.scripts[path].push(reply)
            payload, outcome = await source.fetch(module, "SOL", budget=2.0)
        assert payload is None and outcome.called
        assert (outcome.error_class, outcome.reason, outcome.status) == (error_class, REASONS[error_class], status)
        assert outcome.retry_after == retry and outcome.detail.startswith(f"{venue}: ")

    async def test_a_ban_until_an_http_date(self, transport) -> None:
        """A 418 whose Retry-After is an HTTP-date two minutes ahead holds about two minutes."""
        async with on_loopback("binance", transport) as (fake, source):
            fake.script.push(FakeBinance.banned(http_date(SystemClock().now() + 120)))
            _, outcome = await source.fetch("spot_ob", "SOL", budget=2.0)
        assert outcome.error_class == "throttled" and outcome.retry_after == pytest.approx(119.5, abs=1.0)

    @pytest.mark.parametrize(("venue", "module"), SERVED)
    async def test_an_asset_the_venue_does_not_list_is_not_found(self, transport, venue, module) -> None:
        """Binance -1121, OKX 51001, Bybit 10001: endpoint_missing after a call."""
        async with on_loopback(venue, transport) as (_, source):
            _, outcome = await source.fetch(module, "DOGE", budget=2.0)
        assert (outcome.error_class, outcome.called) == ("endpoint_missing", True)

    @pytest.mark.parametrize("venue", list(BOOK_PATHS))
    async def test_a_slow_answer_is_a_timeout(self, transport, venue) -> None:
        """An answer later than the budget is transient/timeout, in about the budget."""
        async with on_loopback(venue, transport) as (fake, source):
            fake.script.push(VenueReply().slow(3.0))
            _, outcome = await source.fetch("spot_ob", "SOL", budget=0.3)
        assert (outcome.error_class, outcome.reason) == ("transient", "timeout")
        assert 250 <= outcome.latency_ms < 2000

    @pytest.mark.parametrize("venue", list(BOOK_PATHS))
    async def test_a_dropped_connection_and_a_closed_port_are_unreachable(self, transport, venue) -> None:
        """A connection closed without an answer, and a port nobody listens on: transient/unreachable."""
        async with on_loopback(venue, transport) as (fake, source):
            fake.script.default = Reply.dropped()  # every time: aiohttp retries an idempotent GET once
            _, dropped = await source.fetch("spot_ob", "SOL", budget=2.0)
        _, refused = await source.fetch("spot_ob", "SOL", budget=2.0)  # the fake has stopped
        assert [(o.error_class, o.reason) for o in (dropped, refused)] == [("transient", "unreachable")] * 2


HOLDS = [
    ("binance", "/api/v3/depth", FakeBinance.too_many("30"), 30.0),
    ("binance", "/api/v3/depth", FakeBinance.banned(http_date(VirtualClock.EPOCH + 90)), 90.0),
    ("okx", "/api/v5/market/books", FakeOkx.too_many(), 2.0),
    ("bybit", "/v5/market/orderbook", FakeBybit.ret_code(10006, "Too many visits!"), 5.0),
    ("bybit", "/v5/market/orderbook", FakeBybit.too_frequent(), 600.0),
]


class TestThrottleHold:
    @pytest.mark.parametrize(("venue", "path", "reply", "hold"), HOLDS)
    async def test_no_request_until_the_hold_has_passed(self, transport, venue, path, reply, hold) -> None:
        """After a throttle answer, fetches answer throttled (called=False) with what is left, sending nothing."""
        clock = VirtualClock()
        async with on_loopback(venue, transport, clock) as (fake, source):
            fake.scripts[path].push(reply)
            _, first = await source.fetch("spot_ob", "SOL", budget=2.0)
            await clock.advance(hold - 0.5)
            _, held = await source.fetch("spot_ob", "SOL", budget=2.0)
            sent_while_held = len(fake.requests)
            await clock.advance(0.5)
            _, after = await source.fetch("spot_ob", "SOL", budget=2.0)
        assert (first.error_class, first.retry_after, first.called) == ("throttled", hold, True)
        assert (held.error_class, held.called, sent_while_held) == ("throttled", False, 1)
        assert held.retry_after == pytest.approx(0.5)
        assert after.ok and len(fake.requests) == 2

    async def test_a_ban_on_futures_holds_every_futures_endpoint(self, transport) -> None:
        """Binance's 418 on premiumIndex holds the long/short ratio too (same host), not the spot book."""
        async with on_loopback("binance", transport, VirtualClock()) as (fake, source):
            fake.scripts["/fapi/v1/premiumIndex"].push(FakeBinance.banned("300"))
            await source.fetch("funding", "SOL", budget=2.0)
            _, bias = await source.fetch("bias", "SOL", budget=2.0)
            _, book = await source.fetch("spot_ob", "SOL", budget=2.0)
        assert (bias.error_class, bias.called) == ("throttled", False) and book.ok
        assert fake.on("/futures/data/globalLongShortAccountRatio") == []

    async def test_okx_holds_only_the_throttled_endpoint(self, transport) -> None:
        """OKX limits are per endpoint: a 50011 on books leaves funding-rate free."""
        async with on_loopback("okx", transport, VirtualClock()) as (fake, source):
            fake.scripts["/api/v5/market/books"].push(FakeOkx.too_many())
            await source.fetch("spot_ob", "SOL", budget=2.0)
            _, funding = await source.fetch("funding", "SOL", budget=2.0)
            _, book = await source.fetch("spot_ob", "SOL", budget=2.0)
        assert funding.ok and (book.called, book.error_class) == (False, "throttled")


def sliding_max(bookings: list[tuple[float, int]], window: float) -> int:
    """Most units booked within any half-open `window`, bookings in start order."""
    best = used = first = 0
    for at, units in bookings:
        used += units
        while bookings[first][0] <= at - window:
            used -= bookings[first][1]
            first += 1
        best = max(best, used)
    return best


class TestRateLimit:
    @pytest.mark.parametrize("seed", range(5))
    def test_never_more_than_the_limit_in_any_window(self, seed: int) -> None:
        """Random arrivals, weights and patience: the bookings never exceed the limit in any window."""
        rng = random.Random(seed)
        limit, now, bookings = RateLimit("test", 20, 2.0), 0.0, []
        for _ in range(3000):
            now += rng.expovariate(8.0)
            units = rng.randint(1, 5)
            wait = limit.reserve(units, now, max_wait=rng.uniform(0.0, 1.0))
            if wait is not None:
                bookings.append((now + wait, units))
        assert sliding_max(bookings, 2.0) <= 20 and len(bookings) > 500
        assert [at for at, _ in bookings] == sorted(at for at, _ in bookings)

    def test_waiters_queue_in_arrival_order(self) -> None:
        """Two per second: the third and fourth wait one second, the fifth two."""
        limit = RateLimit("test", 2, 1.0)
        waits = [limit.reserve(1, 0.0, max_wait=10) for _ in range(5)]
        assert waits == pytest.approx([0.0, 0.0, 1.0, 1.0, 2.0], abs=1e-5)

    def test_a_refusal_books_nothing(self) -> None:
        """A caller that will not wait long enough is refused and leaves the room to others."""
        limit = RateLimit("test", 1, 10.0)
        assert limit.reserve(1, 0.0, max_wait=1.0) == 0.0
        assert limit.reserve(1, 1.0, max_wait=1.0) is None and limit.earliest(1, 1.0) == pytest.approx(10.0)
        assert limit.reserve(1, 10.001, max_wait=0.0) == 0.0
        assert limit.reserve(2, 100.0, max_wait=1e9) is None and limit.earliest(2, 100.0) == math.inf

    @pytest.mark.parametrize(
        ("documented", "share", "ours"), [(6000, 0.5, 3000), (5, 0.5, 2), (5, 0.01, 1), (20, 1, 20)]
    )
    def test_our_share_of_a_documented_limit(self, documented: int, share: float, ours: int) -> None:
        """A share of the documented limit, rounded down, never below one request."""
        assert share_of(documented, share) == ours

    @pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
    def test_a_share_outside_zero_to_one_is_refused(self, share: float) -> None:
        """A source cannot be built to use nothing, or more than the venue allows."""
        with pytest.raises(ValueError, match="share"):
            BybitSource(MockTransport(lambda url: Response(200, {}, b"")), clock=SystemClock(), share=share)


class InflightTransport(Transport):
    """A transport that counts requests in flight, so a test can let them finish before moving virtual time."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def get(self, url: str, headers: Mapping[str, str], *, max_body: int | None = None) -> Response:
        self.inflight += 1
        self.idle.clear()
        try:
            return await self.inner.get(url, headers, max_body=max_body)
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self.idle.set()


async def hammer(source: VenueSource, module: str, clock: VirtualClock, seconds: float, **drive: Any) -> Counter[str]:
    """Fetch `module` for every asset every half second for `seconds`; the outcomes' classes counted."""
    seen: Counter[str] = Counter()

    async def one(asset: str) -> None:
        _, outcome = await source.fetch(module, asset, budget=1.0)
        seen[outcome.error_class if outcome.called else f"{outcome.error_class} uncalled"] += 1

    end = clock.monotonic() + seconds
    async with asyncio.TaskGroup() as group:
        while clock.monotonic() < end:
            for asset in ASSETS:
                group.create_task(one(asset))
            if "wire" in drive:
                await step_on_the_wire(clock, drive["wire"], clock.monotonic() + 0.5)
            else:
                await clock.sleep(0.5)
        if "wire" in drive:
            await step_on_the_wire(clock, drive["wire"], end + 2.0)
    return seen


async def step_on_the_wire(clock: VirtualClock, wire: InflightTransport, until: float) -> None:
    """Move virtual time to `until` one timer at a time, letting real requests finish before each move."""
    while True:
        while True:  # let spawned tasks reach the wire, then every request in flight come back
            for _ in range(20):
                await asyncio.sleep(0)  # clock-ok: a yield
            if wire.inflight == 0:
                break
            await wire.idle.wait()  # real I/O on loopback; virtual time stands still meanwhile
        deadline = clock.next_deadline()
        if deadline is None or deadline > until:
            await clock.advance_to(until)
            return
        await clock.advance_to(deadline)


def assert_within_limits(source: Source, fake: VenueFake, venue: str, busiest: str, seconds: float) -> None:
    """No limit exceeded in any window at the fake, and the busiest one used to at least 90 %."""
    for name, limit in source.limits.items():
        paths, weighted = LIMIT_PATHS[venue][name]
        assert fake.max_in_window(limit.window, paths, weighted=weighted) <= limit.limit, name
    paths, weighted = LIMIT_PATHS[venue][busiest]
    used = sum(r.weight if weighted else 1 for r in fake.on(*paths))
    assert used >= 0.9 * source.limits[busiest].limit * seconds / source.limits[busiest].window


class TestAnHourOfVirtualTime:
    @pytest.mark.parametrize(
        ("venue", "module", "share", "busiest"),
        [
            ("binance", "spot_ob", 0.02, "spot"),
            ("binance", "funding", 0.01, "futures"),
            ("binance", "bias", 0.05, "futures_data"),
            ("okx", "spot_ob", 0.1, "books"),
            ("okx", "bias", 0.2, "long_short_ratio"),
            ("okx", "heatmap", 0.1, "mark_price"),
            ("bybit", "spot_ob", 0.01, "requests"),
        ],
    )
    async def test_a_source_never_exceeds_its_limits(self, vclock, venue, module, share, busiest) -> None:
        """Fetches for three assets every half second for an hour: every window within every limit, none wasted."""
        fake = FAKES[venue](clock=vclock)
        source = make_source(venue, "http://venue.test", fake.transport, vclock, share=share)
        seen = await hammer(source, module, vclock, 3600.0)
        assert set(seen) <= {"ok", "throttled uncalled"}, seen
        assert_within_limits(source, fake, venue, busiest, 3600.0)

    @pytest.mark.parametrize(("venue", "share", "busiest"), [("bybit", 0.01, "requests"), ("binance", 0.02, "spot")])
    async def test_ten_minutes_on_the_wire(self, transport, venue, share, busiest) -> None:
        """The same over real HTTP: requests arrive at the fake exactly when booked, within every limit."""
        clock = VirtualClock()
        wire = InflightTransport(transport)
        async with on_loopback(venue, wire, clock, share=share) as (fake, source):
            seen = await hammer(source, "spot_ob", clock, 600.0, wire=wire)
        assert set(seen) <= {"ok", "throttled uncalled"}, seen
        assert_within_limits(source, fake, venue, busiest, 600.0)
