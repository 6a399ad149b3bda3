"""Module endpoints over real HTTP: payloads per flavor, symbol forms, routing."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest

from marketsim._payloads import (
    PAYLOAD_TYPES,
    EtfFlows,
    FundingRate,
    InstitutionalBias,
    LiquidationHeatmap,
    SpotOrderBook,
    WhaleAlerts,
)

FLAVORS = ["seed", "guessed", "v2"]
MODULES = ["whale", "etf", "heatmap", "spot_ob", "bias", "funding"]

# One equivalent request per flavor and module (same asset and options).
REQUESTS = {
    "seed": {
        "whale": "/whales/alerts?symbol=SOL",
        "etf": "/advanced/etf/flows?asset=BTC",
        "heatmap": "/liquidations/heatmap?symbol=SOL-USDT-SWAP&timeframe=4h",
        "spot_ob": "/spot/orderbook?symbol=SOLUSDT&exchange=okx&depth=20",
        "bias": "/institutional/bias?symbol=SOL-USDT-SWAP",
        "funding": "/derivatives/funding-rate?symbol=SOL-USDT-SWAP",
    },
    "guessed": {
        "whale": "/advanced/whale/alerts?symbol=SOL",
        "etf": "/advanced/etf/flows?asset=BTC",
        "heatmap": "/advanced/liquidation/heatmap/SOL?timeframe=4h",
        "spot_ob": "/advanced/spot/orderbook/SOL?exchange=okx&depth=20",
        "bias": "/institutional/bias?symbol=SOL-USDT-SWAP",
        "funding": "/funding?symbol=SOL",
    },
    "v2": {
        "whale": "/api/v2/onchain/whale-transfers?coin=SOL",
        "etf": "/api/v2/flows/etf/BTC",
        "heatmap": "/api/v2/derivatives/liquidation-map/SOL-USDT-SWAP?interval=4h",
        "spot_ob": "/api/v2/market/depth/okx/SOL-USDT?limit=20",
        "bias": "/api/v2/positioning/SOL-USDT-SWAP",
        "funding": "/api/v2/derivatives/funding/SOL-USDT-SWAP",
    },
}


def check_invariants(module: str, body: dict[str, Any]) -> None:
    """Shape (strict msgspec decode) plus the module's semantic invariants."""
    payload = msgspec.convert(body, type=PAYLOAD_TYPES[module], strict=True)
    if module == "whale":
        assert isinstance(payload, WhaleAlerts)
        assert payload.symbol == "SOL" and 0 <= len(payload.alerts) <= 8
        prices = {round(a.amount_usd / a.amount, 1) for a in payload.alerts}
        assert all(90 < p < 360 for p in prices)  # consistent with SOL ~180
    elif module == "etf":
        assert isinstance(payload, EtfFlows)
        assert payload.asset == "BTC"
        assert [i.ticker for i in payload.issuers] == ["IBIT", "FBTC", "GBTC", "ARKB", "BITB"]
        assert payload.net_flow_usd == sum(i.flow_usd for i in payload.issuers)
    elif module == "heatmap":
        assert isinstance(payload, LiquidationHeatmap)
        assert payload.symbol == "SOL-USDT-SWAP" and payload.timeframe == "4h"
        assert 10 <= len(payload.levels) <= 40
        for level in payload.levels:
            assert level.side == ("short" if level.price > payload.price else "long")
            assert abs(level.price / payload.price - 1) <= 0.08
    elif module == "spot_ob":
        assert isinstance(payload, SpotOrderBook)
        assert payload.symbol == "SOLUSDT" and payload.exchange == "okx"
        assert len(payload.bids) == len(payload.asks) == 20
        assert all(a[0] > b[0] for a, b in itertools.pairwise(payload.bids))
        assert all(b[0] > a[0] for a, b in itertools.pairwise(payload.asks))
        assert payload.bids[0][0] < payload.asks[0][0]
        assert all(size > 0 for _, size in payload.bids + payload.asks)
    elif module == "bias":
        assert isinstance(payload, InstitutionalBias)
        assert payload.symbol == "SOL-USDT-SWAP"
        expected = "bullish" if payload.score > 0.15 else "bearish" if payload.score < -0.15 else "neutral"
        assert payload.bias == expected
    else:
        assert isinstance(payload, FundingRate)
        assert payload.symbol == "SOL-USDT-SWAP" and payload.interval_hours == 8
        assert payload.next_funding_time % (8 * 3600) == 0 and payload.open_interest_usd > 0


class TestPayloads:
    @pytest.mark.parametrize("module", MODULES)
    @pytest.mark.parametrize("flavor", FLAVORS)
    async def test_shape_and_invariants(self, start, call, flavor, module):
        """Every module answers 200 with a valid, self-consistent body."""
        srv = await start(flavor=flavor, default_faults=False, seed=11)
        reply = await call(srv, "GET", REQUESTS[flavor][module])
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/json")
        check_invariants(module, reply.json())

    @pytest.mark.parametrize("module", MODULES)
    async def test_bodies_identical_across_flavors(self, start, call, clock, module):
        """Same seed and instant: all flavors return byte-identical bodies."""
        bodies = set()
        for flavor in FLAVORS:
            srv = await start(flavor=flavor, default_faults=False, seed=5, now=clock)
            bodies.add((await call(srv, "GET", REQUESTS[flavor][module])).raw)
        assert len(bodies) == 1

    @pytest.mark.parametrize("depth", [1, 500])
    async def test_depth_bounds(self, start, call, depth):
        """Depth 1 and 500 are both accepted and honoured."""
        srv = await start()
        body = (await call(srv, "GET", f"/spot/orderbook?symbol=BTCUSDT&depth={depth}")).json()
        assert len(body["bids"]) == len(body["asks"]) == depth

    async def test_defaults(self, start, call):
        """Optional parameters default to timeframe 1h, binance, depth 50."""
        srv = await start()
        heatmap = (await call(srv, "GET", "/liquidations/heatmap?symbol=ETH-USDT-SWAP")).json()
        book = (await call(srv, "GET", "/spot/orderbook?symbol=ETHUSDT")).json()
        assert heatmap["timeframe"] == "1h"
        assert (book["exchange"], len(book["bids"])) == ("binance", 50)

    @pytest.mark.parametrize("path", ["/whales/alerts?symbol=BTC", "/spot/orderbook?symbol=BTCUSDT"])
    async def test_head_is_served(self, start, session, path):
        """HEAD works like GET without a body."""
        srv = await start()
        async with session.head(srv.url + path) as response:
            assert response.status == 200


class TestValidation:
    @pytest.mark.parametrize(
        ("flavor", "path", "status", "detail"),
        [
            ("seed", "/whales/alerts?symbol=SOLUSDT", 422, "invalid value 'SOLUSDT'"),
            ("seed", "/whales/alerts?symbol=sol", 422, "invalid value 'sol'"),
            ("seed", "/whales/alerts", 422, "missing required query parameter 'symbol'"),
            ("seed", "/whales/alerts?coin=SOL", 422, "missing required"),
            ("seed", "/advanced/etf/flows?asset=SOL", 404, "no ETF for asset SOL"),
            ("seed", "/advanced/etf/flows?asset=btc", 422, "invalid value 'btc'"),
            ("seed", "/liquidations/heatmap?symbol=SOL", 422, "expected OKX USDT-margined perpetual"),
            ("seed", "/liquidations/heatmap?symbol=SOLUSDT", 422, "invalid value"),
            ("seed", "/liquidations/heatmap?symbol=SOL-USDT-SWAP&timeframe=2h", 422, "one of 15m, 1h, 4h, 12h, 24h"),
            ("seed", "/spot/orderbook?symbol=SOL-USDT", 422, "expected Binance spot pair"),
            ("seed", "/spot/orderbook?symbol=SOLUSDT&exchange=kraken", 422, "exchange"),
            ("seed", "/spot/orderbook?symbol=SOLUSDT&depth=0", 422, "between 1 and 500"),
            ("seed", "/spot/orderbook?symbol=SOLUSDT&depth=501", 422, "between 1 and 500"),
            ("seed", "/spot/orderbook?symbol=SOLUSDT&depth=abc", 422, "between 1 and 500"),
            ("seed", "/institutional/bias?symbol=SOL", 422, "invalid value 'SOL'"),
            ("guessed", "/advanced/whale/alerts?symbol=SOL-USDT-SWAP", 422, "invalid value"),
            ("guessed", "/advanced/liquidation/heatmap/SOL-USDT-SWAP", 404, "unknown symbol 'SOL-USDT-SWAP'"),
            ("guessed", "/advanced/liquidation/heatmap/SOLUSDT", 404, "unknown symbol 'SOLUSDT'"),
            ("guessed", "/advanced/liquidation/heatmap/SOL?timeframe=1d", 422, "timeframe"),
            ("guessed", "/advanced/spot/orderbook/SOLUSDT", 404, "unknown symbol"),
            ("guessed", "/advanced/spot/orderbook/SOL?depth=999", 422, "depth"),
            ("guessed", "/institutional/bias?symbol=SOL", 422, "invalid value"),
            ("v2", "/api/v2/onchain/whale-transfers?symbol=SOL", 422, "missing required query parameter 'coin'"),
            ("v2", "/api/v2/flows/etf/SOL", 404, "no ETF for asset SOL"),
            ("v2", "/api/v2/flows/etf/btc", 404, "unknown symbol 'btc'"),
            ("v2", "/api/v2/derivatives/liquidation-map/SOL", 404, "unknown symbol 'SOL'"),
            ("v2", "/api/v2/derivatives/liquidation-map/SOL-USDT-SWAP?interval=7m", 422, "interval"),
            ("v2", "/api/v2/market/depth/binance/SOLUSDT", 404, "unknown symbol 'SOLUSDT'"),
            ("v2", "/api/v2/market/depth/binance/SOL-USDT-SWAP", 404, "unknown symbol"),
            ("v2", "/api/v2/market/depth/kraken/SOL-USDT", 422, "venue"),
            ("v2", "/api/v2/market/depth/okx/SOL-USDT?limit=0", 422, "limit"),
            ("v2", "/api/v2/positioning/SOL-USDT", 404, "unknown symbol 'SOL-USDT'"),
            ("v2", "/api/v2/positioning/SOL", 404, "unknown symbol"),
        ],
    )
    async def test_rejections(self, start, call, flavor, path, status, detail):
        """Wrong forms: 404 in a path, 422 in a query; the detail says why."""
        srv = await start(flavor=flavor, default_faults=False)
        reply = await call(srv, "GET", path)
        assert reply.status == status
        assert detail in reply.json()["detail"]

    @pytest.mark.parametrize("asset", ["BTC", "ETH"])
    async def test_etf_assets(self, start, call, asset):
        """BTC and ETH both have ETF flows with their own issuers."""
        srv = await start(default_faults=False)
        body = (await call(srv, "GET", f"/advanced/etf/flows?asset={asset}")).json()
        expected = ["IBIT", "FBTC", "GBTC", "ARKB", "BITB"] if asset == "BTC" else ["ETHA", "FETH", "ETHE"]
        assert [i["ticker"] for i in body["issuers"]] == expected

    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
    async def test_wrong_method(self, start, call, method):
        """Module routes only serve GET: other methods get 405."""
        srv = await start()
        assert (await call(srv, method, REQUESTS["seed"]["whale"])).status == 405


class TestRouting:
    @pytest.mark.parametrize(("current", "other"), [(c, o) for c, o in itertools.permutations(FLAVORS, 2)])
    async def test_other_flavors_routes_are_not_found(self, start, call, current, other):
        """Routes of another flavor answer a plain 404 unless shared."""
        srv = await start(flavor=current, default_faults=False)
        own = {path.split("?")[0] for path in REQUESTS[current].values()}
        foreign = [p for p in REQUESTS[other].values() if p.split("?")[0] not in own]
        assert foreign
        for path in foreign:
            reply = await call(srv, "GET", path)
            assert (reply.status, reply.json()) == (404, {"detail": "Not Found"})

    @pytest.mark.parametrize("path", ["/", "/whales", "/whales/alerts/extra", "/api/v2/positioning/", "/x%2Fy"])
    async def test_unknown_paths(self, start, call, path):
        """Anything else is a plain JSON 404."""
        srv = await start()
        reply = await call(srv, "GET", path)
        assert (reply.status, reply.json()) == (404, {"detail": "Not Found"})

    async def test_runtime_flavor_switch_reroutes(self, start, call):
        """After a flavor switch the old paths 404 and the new ones serve."""
        srv = await start(default_faults=False)
        assert (await call(srv, "GET", REQUESTS["seed"]["bias"])).status == 200
        srv.sim.set_flavor("v2")
        assert (await call(srv, "GET", REQUESTS["seed"]["bias"])).status == 404
        assert (await call(srv, "GET", REQUESTS["v2"]["bias"])).status == 200
