"""What a fetcher publishes: data from one module, or a typed reason it has none.

The payload Structs double as the *upstream contract*: a fetcher decodes the
backend's JSON body straight into them, so a field of the wrong type is a
`bad_payload` degradation at the edge instead of a crash deep inside scoring.
Their ``module`` tag is optional when decoding a backend body (backends do not
send it) and always present on the wire.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ._base import Asset, Cycle, Message, Module, Timestamp

NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
UnitScore = Annotated[float, msgspec.Meta(ge=-1, le=1)]

#: Why a module produced no data this cycle. Stable strings: bots and
#: dashboards match on them.
Reason = Literal[
    "payment_required",  # 402, or 401/403 caused by the plan: retrying never heals it
    "not_found",  # 404: the route (or the symbol form) does not exist
    "rate_limited",  # 429 / 418 ban
    "upstream_error",  # 5xx, or an error envelope inside a 200
    "timeout",  # no answer inside the cycle's budget
    "unreachable",  # connection refused / reset / DNS
    "bad_payload",  # an answer that does not match the contract
    "circuit_open",  # the breaker holds calls back; no request was made
    "disabled",  # a feature flag switched the module off
]
REASONS: tuple[str, ...] = Reason.__args__  # type: ignore[attr-defined]


class Payload(msgspec.Struct, frozen=True, kw_only=True, tag_field="module"):
    """Base of module payloads; the tag is the module name."""


class WhaleAlert(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    ts: Timestamp
    amount: NonNegative
    amount_usd: NonNegative
    source: str = msgspec.field(name="from")
    to: str
    direction: Literal["exchange_inflow", "exchange_outflow", "transfer"]
    tx: str = ""


class WhaleAlerts(Payload, tag="whale", frozen=True, kw_only=True):
    """Large on-chain transfers of the asset in a recent window."""

    symbol: str
    window: str = "1h"
    alerts: tuple[WhaleAlert, ...] = ()


class EtfIssuerFlow(msgspec.Struct, frozen=True, kw_only=True):
    ticker: str
    flow_usd: float


class EtfFlows(Payload, tag="etf", frozen=True, kw_only=True):
    """Daily net flow of BTC or ETH spot ETFs (keyed by BTC/ETH, not the traded asset)."""

    asset: Literal["BTC", "ETH"]
    as_of: str
    net_flow_usd: float
    issuers: tuple[EtfIssuerFlow, ...] = ()


class LiquidationLevel(msgspec.Struct, frozen=True, kw_only=True):
    price: Positive
    side: Literal["long", "short"]
    usd: NonNegative


class LiquidationHeatmap(Payload, tag="heatmap", frozen=True, kw_only=True):
    """Estimated liquidation clusters around the current price of a perpetual swap."""

    symbol: str
    timeframe: str
    price: Positive
    levels: tuple[LiquidationLevel, ...] = ()


PriceLevel = tuple[Positive, NonNegative]


class OrderBook(Payload, tag="spot_ob", frozen=True, kw_only=True):
    """Spot order book snapshot: bids descending, asks ascending, ``[price, size]``."""

    symbol: str
    exchange: str
    ts: Timestamp
    bids: tuple[PriceLevel, ...]
    asks: tuple[PriceLevel, ...]


class InstitutionalBias(Payload, tag="bias", frozen=True, kw_only=True):
    """Positioning of the perpetual swap: a label and a score in [-1, 1]."""

    symbol: str
    bias: Literal["bullish", "bearish", "neutral"]
    score: UnitScore
    long_short_ratio: NonNegative = 1.0
    funding_rate: float = 0.0
    oi_change_pct: float = 0.0


ModulePayload = WhaleAlerts | EtfFlows | LiquidationHeatmap | OrderBook | InstitutionalBias

#: Module name -> the payload type its fetcher decodes the backend body into.
PAYLOAD_TYPES: dict[str, type[Payload]] = {
    "whale": WhaleAlerts,
    "etf": EtfFlows,
    "heatmap": LiquidationHeatmap,
    "spot_ob": OrderBook,
    "bias": InstitutionalBias,
}


class ModuleData(Message, frozen=True, kw_only=True):
    """A module answered for (asset, cycle). Published on ``data.<module>.<ASSET>``."""

    module: Module
    asset: Asset
    cycle: Cycle
    ts: Timestamp
    latency_ms: NonNegative = 0.0
    payload: ModulePayload


class Degraded(Message, frozen=True, kw_only=True):
    """A module has no data for (asset, cycle), and why. Published on ``degraded.<module>.<ASSET>``.

    This is the "failures are data" rule: the assembler treats it as a fact
    about the cycle, the health logic classifies it, and nothing throws.
    """

    module: Module
    asset: Asset
    cycle: Cycle
    ts: Timestamp
    reason: Reason
    detail: str = ""
    status: int | None = None
    retry_after: NonNegative | None = None
    #: False when no upstream call was made (disabled, circuit open, no route,
    #: tick already late): the breaker must not read it as the backend's answer.
    called: bool = True
