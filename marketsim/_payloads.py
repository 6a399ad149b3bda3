"""Response bodies of the six modules, as msgspec structs.

The structs are the single source of truth for the wire format: the market
model builds them, msgspec encodes them, and the OpenAPI generator derives the
``components/schemas`` from them. Bodies are identical across route flavors;
only paths and parameter spellings differ.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "PAYLOAD_TYPES",
    "BiasLabel",
    "Direction",
    "EtfFlows",
    "EtfIssuerFlow",
    "FundingRate",
    "HTTPError",
    "InstitutionalBias",
    "LiquidationHeatmap",
    "LiquidationLevel",
    "SpotOrderBook",
    "Timeframe",
    "WhaleAlert",
    "WhaleAlerts",
]

Direction = Literal["exchange_inflow", "exchange_outflow", "transfer"]
Timeframe = Literal["15m", "1h", "4h", "12h", "24h"]
BiasLabel = Literal["bullish", "bearish", "neutral"]
Exchange = Literal["binance", "okx", "bybit", "coinbase"]

TIMEFRAMES: tuple[str, ...] = ("15m", "1h", "4h", "12h", "24h")
EXCHANGES: tuple[str, ...] = ("binance", "okx", "bybit", "coinbase")

_Usd = Annotated[float, Meta(description="Value in US dollars")]
_Ts = Annotated[float, Meta(description="Unix time in seconds", examples=[1764000000.0])]
_PriceLevel = Annotated[tuple[float, float], Meta(description="[price, size in base units]")]


class WhaleAlert(msgspec.Struct):
    """One large on-chain transfer."""

    id: Annotated[str, Meta(examples=["wh-5f2c9a1b7e3d"])]
    ts: _Ts
    amount: Annotated[float, Meta(gt=0, description="Size in base units")]
    amount_usd: _Usd
    from_: Annotated[str, Meta(examples=["binance"])] = msgspec.field(name="from")
    to: Annotated[str, Meta(examples=["unknown wallet"])]
    direction: Direction
    tx: Annotated[str, Meta(pattern="^0x[0-9a-f]{64}$")]


class WhaleAlerts(msgspec.Struct):
    """Whale transfers of one asset within the window, newest first."""

    symbol: Annotated[str, Meta(examples=["SOL"])]
    window: Literal["1h"]
    alerts: Annotated[list[WhaleAlert], Meta(max_length=8)]


class EtfIssuerFlow(msgspec.Struct):
    """Net creation/redemption of one spot ETF for the day."""

    ticker: Annotated[str, Meta(examples=["IBIT"])]
    flow_usd: _Usd


class EtfFlows(msgspec.Struct):
    """Daily spot ETF net flows; ``net_flow_usd`` is the sum over issuers."""

    asset: Literal["BTC", "ETH"]
    as_of: Annotated[str, Meta(description="UTC date", examples=["2026-11-24"])]
    net_flow_usd: _Usd
    issuers: list[EtfIssuerFlow]


class LiquidationLevel(msgspec.Struct):
    """Estimated liquidation volume clustered at one price."""

    price: float
    side: Literal["long", "short"]
    usd: _Usd


class LiquidationHeatmap(msgspec.Struct):
    """Liquidation clusters within 8% of price: shorts above, longs below."""

    symbol: Annotated[str, Meta(examples=["SOL-USDT-SWAP"])]
    timeframe: Timeframe
    price: float
    levels: Annotated[list[LiquidationLevel], Meta(min_length=10, max_length=40)]


class SpotOrderBook(msgspec.Struct):
    """Top of a spot order book: bids descending, asks ascending."""

    symbol: Annotated[str, Meta(examples=["SOLUSDT"])]
    exchange: Exchange
    ts: _Ts
    bids: list[_PriceLevel]
    asks: list[_PriceLevel]


class InstitutionalBias(msgspec.Struct):
    """Derivatives positioning summary; ``bias`` is derived from ``score``."""

    symbol: Annotated[str, Meta(examples=["SOL-USDT-SWAP"])]
    bias: BiasLabel
    score: Annotated[float, Meta(ge=-1, le=1)]
    long_short_ratio: Annotated[float, Meta(gt=0)]
    funding_rate: float
    oi_change_pct: float


class FundingRate(msgspec.Struct):
    """Perpetual swap funding: current and predicted rate, next funding time, open interest."""

    symbol: Annotated[str, Meta(examples=["SOL-USDT-SWAP"])]
    funding_rate: Annotated[float, Meta(description="Current rate per funding interval (0.0001 = 0.01 %)")]
    predicted_rate: Annotated[float, Meta(description="Predicted rate of the next interval")]
    interval_hours: Annotated[float, Meta(gt=0, description="Hours between fundings")]
    next_funding_time: _Ts
    open_interest_usd: Annotated[float, Meta(gt=0, description="Open interest in US dollars")]
    oi_change_pct: Annotated[float, Meta(description="Open-interest change over 24 h, in percent")]


class HTTPError(msgspec.Struct):
    """Error body, FastAPI style."""

    detail: str


PAYLOAD_TYPES: dict[str, type[msgspec.Struct]] = {
    "whale": WhaleAlerts,
    "etf": EtfFlows,
    "heatmap": LiquidationHeatmap,
    "spot_ob": SpotOrderBook,
    "bias": InstitutionalBias,
    "funding": FundingRate,
}
