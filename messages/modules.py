"""What a fetcher publishes: data from one module, or a typed reason it has none.

The payload Structs double as the *upstream contract*: a fetcher decodes the
backend's JSON body straight into them, so a field of the wrong type is a
`bad_payload` degradation at the edge instead of a crash deep inside scoring.
Their ``module`` tag is optional when decoding a backend body (backends do not
send it) and always present on the wire.

**Caps.** Every string of a payload has a maximum length and every number a
finite range (`MAX_MAGNITUDE`), checked when a body is decoded, so a 2 MB
string or a 1e308 flow is `bad_payload` instead of a crash or a NaN score.
Lists are not rejected for being long (a 10^6-level sorted book is a valid
answer): each fetcher trims its payload to the ``MAX_*`` counts below after
validating it (`ModuleFetcher.normalise`), so the `ModuleData` a fetcher
publishes stays far below the broker's 1 MiB message limit whatever the
backend sends (``tests/test_hostile_upstream.py`` computes the worst case).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ._base import (
    ASSET_NAMES,
    MODULE_NAMES,
    Cycle,
    CycleAsset,
    CycleModule,
    Detail,
    HttpStatus,
    LatencyMs,
    Message,
    Seconds,
    Timestamp,
)

NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
UnitScore = Annotated[float, msgspec.Meta(ge=-1, le=1)]

# -- caps of payloads (README "Upstream contract", Caps) -----------------------
#: Largest magnitude of any payload number: USD values, prices, sizes, times.
#: Sums over the capped lists below stay finite, so scoring cannot overflow.
MAX_MAGNITUDE = 1e15
#: Items a fetcher keeps per payload list (more are trimmed, not rejected).
MAX_WHALE_ALERTS = 200  # the newest
MAX_ETF_ISSUERS = 50  # the largest flows
MAX_HEATMAP_LEVELS = 200  # the nearest to the price
MAX_BOOK_LEVELS = 1000  # per side, the best; the fetcher keeps min(configured depth, this)
#: Longest strings, in characters.
MAX_SYMBOL_CHARS = 64  # symbols, exchanges
MAX_LABEL_CHARS = 64  # alert ids, wallet labels
MAX_TX_CHARS = 128  # transaction hashes and signatures
MAX_SHORT_CHARS = 32  # windows, timeframes, dates, tickers

Amount = Annotated[float, msgspec.Meta(ge=0, le=MAX_MAGNITUDE)]
Price = Annotated[float, msgspec.Meta(gt=0, le=MAX_MAGNITUDE)]
Signed = Annotated[float, msgspec.Meta(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]
EpochSeconds = Annotated[
    float, msgspec.Meta(ge=0, le=MAX_MAGNITUDE, description="Seconds since the Unix epoch (milliseconds pass too)")
]
Symbol = Annotated[str, msgspec.Meta(max_length=MAX_SYMBOL_CHARS)]
Label = Annotated[str, msgspec.Meta(max_length=MAX_LABEL_CHARS)]
TxHash = Annotated[str, msgspec.Meta(max_length=MAX_TX_CHARS)]
Short = Annotated[str, msgspec.Meta(max_length=MAX_SHORT_CHARS)]

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
    id: Label
    ts: EpochSeconds
    amount: Amount
    amount_usd: Amount
    source: Label = msgspec.field(name="from")
    to: Label
    direction: Literal["exchange_inflow", "exchange_outflow", "transfer"]
    tx: TxHash = ""


class WhaleAlerts(Payload, tag="whale", frozen=True, kw_only=True):
    """Large on-chain transfers of the asset in a recent window."""

    symbol: Symbol
    window: Short = "1h"
    alerts: tuple[WhaleAlert, ...] = ()


class EtfIssuerFlow(msgspec.Struct, frozen=True, kw_only=True):
    ticker: Short
    flow_usd: Signed


class EtfFlows(Payload, tag="etf", frozen=True, kw_only=True):
    """Daily net flow of BTC or ETH spot ETFs (keyed by BTC/ETH, not the traded asset)."""

    asset: Literal["BTC", "ETH"]
    as_of: Short
    net_flow_usd: Signed
    issuers: tuple[EtfIssuerFlow, ...] = ()


class LiquidationLevel(msgspec.Struct, frozen=True, kw_only=True):
    price: Price
    side: Literal["long", "short"]
    usd: Amount


class LiquidationHeatmap(Payload, tag="heatmap", frozen=True, kw_only=True):
    """Estimated liquidation clusters around the current price of a perpetual swap."""

    symbol: Symbol
    timeframe: Short
    price: Price
    levels: tuple[LiquidationLevel, ...] = ()


PriceLevel = tuple[Price, Amount]


class OrderBook(Payload, tag="spot_ob", frozen=True, kw_only=True):
    """Spot order book snapshot: bids descending, asks ascending, ``[price, size]``."""

    symbol: Symbol
    exchange: Symbol
    ts: EpochSeconds
    bids: tuple[PriceLevel, ...]
    asks: tuple[PriceLevel, ...]


class InstitutionalBias(Payload, tag="bias", frozen=True, kw_only=True):
    """Positioning of the perpetual swap: a label and a score in [-1, 1]."""

    symbol: Symbol
    bias: Literal["bullish", "bearish", "neutral"]
    score: UnitScore
    long_short_ratio: Amount = 1.0
    funding_rate: Signed = 0.0
    oi_change_pct: Signed = 0.0


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

    module: CycleModule
    asset: CycleAsset
    cycle: Cycle
    ts: Timestamp
    latency_ms: LatencyMs = 0.0
    payload: ModulePayload

    def __post_init__(self) -> None:
        MODULE_NAMES.check(self.module)
        ASSET_NAMES.check(self.asset)


class Degraded(Message, frozen=True, kw_only=True):
    """A module has no data for (asset, cycle), and why. Published on ``degraded.<module>.<ASSET>``.

    This is the "failures are data" rule: the assembler treats it as a fact
    about the cycle, the health logic classifies it, and nothing throws.
    `detail` is at most 500 characters; `retry_after` at most 1e9 seconds.
    """

    module: CycleModule
    asset: CycleAsset
    cycle: Cycle
    ts: Timestamp
    reason: Reason
    detail: Detail = ""
    status: HttpStatus | None = None
    retry_after: Seconds | None = None
    #: False when no upstream call was made (disabled, circuit open, no route,
    #: tick already late): the breaker must not read it as the backend's answer.
    called: bool = True

    def __post_init__(self) -> None:
        MODULE_NAMES.check(self.module)
        ASSET_NAMES.check(self.asset)
