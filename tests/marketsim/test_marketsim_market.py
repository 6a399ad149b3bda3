"""Unit tests of the market model, symbol forms and parameter validation."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable

import msgspec
import pytest

from marketsim import KNOWN_PRICES, Market, NoEtfError
from marketsim._payloads import PAYLOAD_TYPES
from marketsim._routes import FLAVORS, Param, RequestError
from marketsim._symbols import BASE, BINANCE_SPOT, OKX_SPOT, OKX_SWAP

ASSETS = ["BTC", "ETH", "SOL", "DOGE", "FOO", "1INCH"]
SEEDS = [0, 1, 42]


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_764_000_000.0

    def __call__(self) -> float:
        return self.t


class TestSymbolForms:
    @pytest.mark.parametrize(
        ("form", "text", "base"),
        [
            (BASE, "SOL", "SOL"),
            (BASE, "1INCH", "1INCH"),
            (BASE, "SOLUSDT", None),
            (BASE, "ETHUSDC", None),
            (BASE, "SOL-USDT-SWAP", None),
            (BASE, "sol", None),
            (BASE, "S", None),
            (BASE, "SOL\n", None),
            (BINANCE_SPOT, "SOLUSDT", "SOL"),
            (BINANCE_SPOT, "1000PEPEUSDT", "1000PEPE"),
            (BINANCE_SPOT, "SOL-USDT", None),
            (BINANCE_SPOT, "SOLUSDC", None),
            (OKX_SWAP, "SOL-USDT-SWAP", "SOL"),
            (OKX_SWAP, "SOL-USDT", None),
            (OKX_SWAP, "SOL-USD-SWAP", None),
            (OKX_SPOT, "SOL-USDT", "SOL"),
            (OKX_SPOT, "SOL-USDT-SWAP", None),
            (OKX_SPOT, "SOLUSDT", None),
        ],
    )
    def test_parse(self, form, text, base):
        """Each form accepts only its own spelling and yields the base."""
        assert form.parse(text) == base

    @pytest.mark.parametrize("form", [BASE, BINANCE_SPOT, OKX_SWAP, OKX_SPOT])
    @pytest.mark.parametrize("text", ["SOL", "SOLUSDT", "SOL-USDT", "SOL-USDT-SWAP", "BTCUSDT", "x"])
    def test_public_pattern_agrees_with_parser(self, form, text):
        """The documented pattern accepts exactly what the server accepts."""
        assert (re.fullmatch(form.public_pattern, text) is not None) == (form.parse(text) is not None)

    @pytest.mark.parametrize(
        ("form", "example"),
        [(BASE, "SOL"), (BINANCE_SPOT, "SOLUSDT"), (OKX_SWAP, "SOL-USDT-SWAP"), (OKX_SPOT, "SOL-USDT")],
    )
    def test_example_round_trips(self, form, example):
        """The example is SOL in the form, and parses back to SOL."""
        assert form.example == example
        assert form.parse(example) == "SOL"


class TestParam:
    DEPTH = Param("depth", "query", "depth", "Levels", minimum=1, maximum=500, default=50)

    @pytest.mark.parametrize(("raw", "value"), [(None, 50), ("1", 1), ("500", 500), ("77", 77)])
    def test_int_accepts(self, raw, value):
        """Integers inside the range (or the default) pass."""
        assert self.DEPTH.parse(raw) == value

    @pytest.mark.parametrize("raw", ["0", "501", "-1", "abc", "", "1.5", " 5", "+5", "5_0", "\uff10"])
    def test_int_rejects(self, raw):
        """Out-of-range or non-integer values are a 422."""
        with pytest.raises(RequestError) as info:
            self.DEPTH.parse(raw)
        assert info.value.status == 422
        assert "depth" in info.value.detail

    @pytest.mark.parametrize(("location", "status"), [("path", 404), ("query", 422)])
    def test_wrong_symbol_form_status(self, location, status):
        """A wrong symbol spelling is 404 in a path and 422 in a query."""
        param = Param("symbol", location, "base", "d", form=OKX_SWAP)
        with pytest.raises(RequestError) as info:
            param.parse("SOL")
        assert info.value.status == status

    def test_missing_required_query(self):
        """A missing required query parameter is a 422 naming it."""
        param = Param("symbol", "query", "base", "d", form=BASE)
        with pytest.raises(RequestError, match="missing required query parameter 'symbol'"):
            param.parse(None)

    @pytest.mark.parametrize("flavor", sorted(FLAVORS))
    def test_every_flavor_covers_every_module_once(self, flavor):
        """A flavor has exactly one route per module."""
        assert sorted(r.module for r in FLAVORS[flavor]) == sorted(PAYLOAD_TYPES)


class TestPriceWalk:
    @pytest.mark.parametrize("asset", ASSETS)
    def test_first_price_is_start_price(self, asset):
        """An asset starts at its known price, or the default for unknowns."""
        assert Market(0, FakeClock()).price(asset) == KNOWN_PRICES.get(asset, 1.0)

    @pytest.mark.parametrize("seed", SEEDS)
    def test_same_seed_same_path(self, seed):
        """Two markets with one seed and one clock walk identically."""
        clock = FakeClock()
        first, second = Market(seed, clock), Market(seed, clock)
        for _ in range(5):
            first.price("BTC"), second.price("BTC")
            clock.t += 3600
            assert first.price("BTC") == second.price("BTC")

    def test_different_seeds_diverge(self):
        """Different seeds give different paths."""
        clock = FakeClock()
        markets = [Market(seed, clock) for seed in SEEDS]
        for market in markets:
            market.price("ETH")
        clock.t += 86_400
        assert len({market.price("ETH") for market in markets}) == len(SEEDS)

    @pytest.mark.parametrize("step", [0.0, -60.0])
    def test_no_move_without_elapsed_time(self, step):
        """The price stays put when the clock stands still or goes back."""
        clock = FakeClock()
        market = Market(3, clock)
        before = market.price("SOL")
        clock.t += step
        assert market.price("SOL") == before

    @pytest.mark.parametrize("seed", SEEDS)
    def test_daily_move_is_plausible(self, seed):
        """A day of 65% annual volatility stays well within +-30%."""
        clock = FakeClock()
        market = Market(seed, clock)
        start = market.price("BTC")
        clock.t += 86_400
        assert 0.7 < market.price("BTC") / start < 1.3


class TestPayloadInvariants:
    @pytest.mark.parametrize("seed", SEEDS)
    @pytest.mark.parametrize("asset", ASSETS)
    def test_whale_alerts(self, seed, asset):
        """0-8 alerts in the last hour, newest first, USD consistent with price."""
        clock = FakeClock()
        market = Market(seed, clock)
        body = market.whale_alerts(asset)
        price = market.price(asset)
        assert body.symbol == asset and 0 <= len(body.alerts) <= 8
        assert [a.ts for a in body.alerts] == sorted((a.ts for a in body.alerts), reverse=True)
        for alert in body.alerts:
            assert clock.t - 3600 <= alert.ts <= clock.t
            assert math.isclose(alert.amount_usd, alert.amount * price, rel_tol=1e-6)
            assert (alert.direction == "exchange_inflow") == (alert.from_ == "unknown wallet" != alert.to)

    @pytest.mark.parametrize("seed", SEEDS)
    @pytest.mark.parametrize("asset", ["BTC", "ETH"])
    def test_etf_net_is_issuer_sum(self, seed, asset):
        """The net flow equals the sum of issuer flows exactly."""
        body = Market(seed, FakeClock()).etf_flows(asset)
        assert body.net_flow_usd == sum(i.flow_usd for i in body.issuers)
        assert body.as_of == "2025-11-24"

    @pytest.mark.parametrize("asset", ["SOL", "FOO"])
    def test_etf_other_assets(self, asset):
        """Only BTC and ETH have ETFs."""
        with pytest.raises(NoEtfError, match=f"no ETF for asset {asset}"):
            Market(0, FakeClock()).etf_flows(asset)

    @pytest.mark.parametrize("seed", SEEDS)
    @pytest.mark.parametrize("asset", ASSETS)
    @pytest.mark.parametrize("timeframe", ["15m", "24h"])
    def test_heatmap(self, seed, asset, timeframe):
        """10-40 distinct levels within 8%; shorts above price, longs below."""
        body = Market(seed, FakeClock()).heatmap(asset, timeframe)
        assert 10 <= len(body.levels) <= 40
        assert len({level.price for level in body.levels}) == len(body.levels)
        for level in body.levels:
            assert abs(level.price / body.price - 1) <= 0.08
            assert level.side == ("short" if level.price > body.price else "long")
            assert level.usd > 0

    @pytest.mark.parametrize("seed", SEEDS)
    @pytest.mark.parametrize("asset", ASSETS)
    @pytest.mark.parametrize("depth", [1, 7, 500])
    def test_order_book(self, seed, asset, depth):
        """Depth levels per side, strictly ordered away from a positive mid."""
        body = Market(seed, FakeClock()).order_book(asset, "okx", depth)
        bids, asks = [p for p, _ in body.bids], [p for p, _ in body.asks]
        assert len(bids) == len(asks) == depth
        assert all(a > b for a, b in itertools.pairwise(bids))
        assert all(b > a for a, b in itertools.pairwise(asks))
        assert 0 < bids[0] < asks[0]
        assert all(size > 0 for _, size in body.bids + body.asks)

    @pytest.mark.parametrize("seed", range(20))
    def test_bias_label_follows_score(self, seed):
        """The bias label is derived from the score's thresholds."""
        body = Market(seed, FakeClock()).bias("SOL")
        expected = "bullish" if body.score > 0.15 else "bearish" if body.score < -0.15 else "neutral"
        assert -1 <= body.score <= 1 and body.bias == expected and body.long_short_ratio > 0

    @pytest.mark.parametrize("module", sorted(PAYLOAD_TYPES))
    def test_snapshots_are_stable_within_a_bucket(self, module):
        """Two reads at the same instant give the same body."""
        market = Market(5, FakeClock())
        build: Callable[[], msgspec.Struct] = {
            "whale": lambda: market.whale_alerts("SOL"),
            "etf": lambda: market.etf_flows("BTC"),
            "heatmap": lambda: market.heatmap("SOL", "1h"),
            "spot_ob": lambda: market.order_book("SOL", "binance", 10),
            "bias": lambda: market.bias("SOL"),
            "funding": lambda: market.funding("SOL"),
        }[module]
        assert msgspec.json.encode(build()) == msgspec.json.encode(build())
