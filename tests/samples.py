"""Small, valid backend bodies for each module, shaped like the reference backend's."""

from __future__ import annotations

WHALE = {
    "symbol": "SOL",
    "window": "1h",
    "alerts": [
        {
            "id": "wh-1",
            "ts": 1767225000.0,
            "amount": 30000.0,
            "amount_usd": 5.4e6,
            "from": "binance",
            "to": "unknown wallet",
            "direction": "exchange_outflow",
            "tx": "0xabc",
        },
        {
            "id": "wh-2",
            "ts": 1767225100.0,
            "amount": 10000.0,
            "amount_usd": 1.8e6,
            "from": "unknown wallet",
            "to": "okx",
            "direction": "exchange_inflow",
            "tx": "0xdef",
        },
    ],
}
ETF = {
    "asset": "BTC",
    "as_of": "2026-01-01",
    "net_flow_usd": 1.2e8,
    "issuers": [{"ticker": "IBIT", "flow_usd": 1.0e8}, {"ticker": "FBTC", "flow_usd": 2.0e7}],
}
HEATMAP = {
    "symbol": "SOL-USDT-SWAP",
    "timeframe": "1h",
    "price": 180.0,
    "levels": [{"price": 184.0, "side": "short", "usd": 2.0e6}, {"price": 176.0, "side": "long", "usd": 1.0e6}],
}
ORDER_BOOK = {
    "symbol": "SOLUSDT",
    "exchange": "binance",
    "ts": 1767225600.0,
    "bids": [[179.9, 40.0], [179.8, 10.0]],
    "asks": [[180.1, 10.0], [180.2, 10.0]],
}
BIAS = {
    "symbol": "SOL-USDT-SWAP",
    "bias": "bullish",
    "score": 0.4,
    "long_short_ratio": 1.3,
    "funding_rate": 0.0001,
    "oi_change_pct": 2.0,
}
FUNDING = {
    "symbol": "SOL-USDT-SWAP",
    "funding_rate": 0.0001,
    "predicted_rate": 0.00012,
    "interval_hours": 8.0,
    "next_funding_time": 1767254400.0,
    "open_interest_usd": 1.5e9,
    "oi_change_pct": 3.5,
}

#: The reference backend's default ("seed" flavor) paths, as in messages.modules.DEFAULT_ROUTES.
PATHS = {
    "whale": "/whales/alerts",
    "etf": "/advanced/etf/flows",
    "heatmap": "/liquidations/heatmap",
    "spot_ob": "/spot/orderbook",
    "bias": "/institutional/bias",
    "funding": "/derivatives/funding-rate",
}
BODIES = {
    PATHS["whale"]: WHALE,
    PATHS["etf"]: ETF,
    PATHS["heatmap"]: HEATMAP,
    PATHS["spot_ob"]: ORDER_BOOK,
    PATHS["bias"]: BIAS,
    PATHS["funding"]: FUNDING,
}
