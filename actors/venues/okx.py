"""OKX as a fallback source: spot order book, funding, bias, and a heatmap from its liquidation orders.

Why: when the backend lacks a module, OKX publishes the same data keyless
(issue 16). Every answer is an envelope ``{"code": "0", "msg": "", "data": [...]}``
with *string* codes; an error can arrive with HTTP 200 (see `reclassify`).
Endpoints:

* ``spot_ob``: ``GET /api/v5/market/books?instId=SOL-USDT&sz=N``, N = the
  configured depth, at most 400. Levels are ``[price, size, "0", orders]``.
* ``funding``: ``GET /api/v5/public/funding-rate?instId=SOL-USDT-SWAP``. OKX's
  ``fundingRate`` is the current period's rate, charged at ``fundingTime``
  (so that is our ``next_funding_time``; OKX's ``nextFundingTime`` is the
  settlement after it, and their difference the interval). ``nextFundingRate``
  is the forecast of the period after, empty under OKX's current-period
  method: then the current rate is the prediction. Open interest: 0.0, not
  measured.
* ``bias``: ``GET /api/v5/rubik/stat/contracts/long-short-account-ratio-contract``
  ``?instId=SOL-USDT-SWAP&period=5m&limit=96`` (rows ``[ts, ratio]``, newest
  first), mapped by `_client.positioning`.
* ``heatmap``: ``GET /api/v5/public/liquidation-orders?instType=SWAP&instFamily=SOL-USDT&state=filled&limit=100``,
  priced at ``GET /api/v5/public/mark-price``, sizes converted with the
  contract value from ``GET /api/v5/public/instruments`` (read once a day).

**The heatmap's limits.** It is built from the liquidation orders OKX has
*filled*: at most the 100 most recent (a busy hour has more, so a busy
window is undercounted), only OKX's own, and only those within the
configured timeframe. They are grouped by side into bins of 0.1 % of the
mark price, valued at their bankruptcy price (contracts x contract value x
price, USDT taken as USD). That is where leverage *was* flushed, not a
model of where resting positions *would* be liquidated, which is what a
backend heatmap estimates; a window in which the price has run through its
own liquidations fails the module's side check and answers bad_payload.

Limits (per IP, per endpoint, documented; we use `share` of each): books
20 requests per 2 s; funding-rate 20 per 2 s (OKX counts per instrument, we
count them together); long/short ratio 5 per 2 s; liquidation orders 40 per
2 s; mark price 10 per 2 s; instruments 20 per 2 s. Limits are per
endpoint, so a 50011 holds that endpoint only, for its 2-second window.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any, Generic, TypeVar

import msgspec

from actors import symbols
from actors.upstream import Outcome, Transport
from messages import ModulePayload
from runtime.clock import Clock

from ._client import (
    DEFAULT_DEPTH,
    DEFAULT_QUOTE,
    DEFAULT_SHARE,
    BaseVenue,
    RateLimit,
    VenueDataError,
    VenueHttp,
    book_side,
    decode,
    finish,
    market,
    millis,
    number,
    positioning,
    share_of,
)

R = TypeVar("R")

OKX_API = "https://www.okx.com"

#: Documented per-IP limits per endpoint: requests per 2 seconds.
BOOKS = 20
FUNDING_RATE = 20
LONG_SHORT_RATIO = 5
LIQUIDATION_ORDERS = 40
MARK_PRICE = 10
INSTRUMENTS = 20
WINDOW = 2.0

#: Largest ``sz`` /market/books accepts.
MAX_BOOK_SIZE = 400
RATIO_PERIOD = "5m"
RATIO_POINTS = 96
#: Liquidation orders per answer (OKX's maximum), bin width (fraction of the mark price).
LIQUIDATION_LIMIT = 100
LIQUIDATION_BIN = 0.001
#: How long a contract value is reused.
CONTRACT_VALUE_TTL = 86_400.0

#: OKX codes beyond upstream.py's table: too many requests, and requests that do not fit the API
#: (50014 parameter empty, 51000 parameter error, 51001 instrument does not exist).
THROTTLE_CODES = frozenset({"50011", "50061", "50040"})
MISSING_CODES = frozenset({"50014", "51000", "51001"})
_ENVELOPE_DETAIL = re.compile(r"^code (\S+): ")
_TIMEFRAME = re.compile(r"([1-9][0-9]{0,3})([mhd])")
_UNIT_SECONDS = {"m": 60.0, "h": 3600.0, "d": 86_400.0}


def reclassify(outcome: Outcome) -> Outcome:
    """An error envelope's class by OKX's code (upstream.py calls unknown codes transient)."""
    match = _ENVELOPE_DETAIL.match(outcome.detail) if outcome.status == 200 and not outcome.ok else None
    if match is None:
        return outcome
    code = match[1]
    if code in THROTTLE_CODES:
        return Outcome("throttled", "rate_limited", outcome.status, outcome.detail)
    if code in MISSING_CODES:
        return Outcome("endpoint_missing", "not_found", outcome.status, outcome.detail)
    return outcome


def timeframe_seconds(timeframe: str) -> float:
    """``15m``, ``1h``, ``24h``, ``1d`` in seconds."""
    match = _TIMEFRAME.fullmatch(timeframe)
    if match is None:
        raise ValueError(f"timeframe {timeframe!r} is not a number and m, h or d (15m, 1h, 24h)")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


class _Envelope(msgspec.Struct, Generic[R]):
    code: str
    data: list[R]
    msg: str = ""


class _Book(msgspec.Struct):
    bids: list[list[str | float]]
    asks: list[list[str | float]]
    ts: str | int


class _Funding(msgspec.Struct):
    fundingRate: str  # field names as the venue spells them
    fundingTime: str | int
    nextFundingTime: str | int = ""
    nextFundingRate: str = ""


class _Instrument(msgspec.Struct):
    instId: str
    ctVal: str
    ctValCcy: str


class _MarkPrice(msgspec.Struct):
    instId: str
    markPx: str


class _Liquidation(msgspec.Struct):
    bkPx: str
    sz: str
    side: str
    ts: str | int
    posSide: str = ""


class _Liquidations(msgspec.Struct):
    instId: str
    details: list[_Liquidation] = []


def first(envelope: _Envelope[R], what: str) -> R:
    if not envelope.data:
        raise VenueDataError(f"{what}: empty data")
    return envelope.data[0]


def liquidation_levels(
    orders: list[_Liquidation], *, price: float, contract_value: float, since: float
) -> list[dict[str, Any]]:
    """Filled liquidations since `since` (epoch s), summed per side into bins of `LIQUIDATION_BIN` x `price`."""
    bins: dict[tuple[str, int], list[float]] = {}  # (side, bin) -> [usd, usd x price]
    width = price * LIQUIDATION_BIN
    for order in orders:
        if millis(order.ts, "liquidation ts") < since:
            continue
        bankruptcy = number(order.bkPx, "bkPx", positive=True)
        usd = number(order.sz, "sz") * contract_value * bankruptcy
        if usd == 0:
            continue
        # posSide is the liquidated position; in one-way mode it is "net" and the order's side tells:
        # a forced sell closes a long, a forced buy a short.
        side = order.posSide if order.posSide in ("long", "short") else ("long" if order.side == "sell" else "short")
        cell = bins.setdefault((side, math.floor(bankruptcy / width)), [0.0, 0.0])
        cell[0] += usd
        cell[1] += usd * bankruptcy
    levels = [{"price": acc / usd, "side": side, "usd": usd} for (side, _), (usd, acc) in bins.items()]
    return sorted(levels, key=lambda level: level["price"])


class OkxSource(BaseVenue):
    """OKX public market data, as module payloads (see the module docstring)."""

    name = "okx"
    modules = frozenset({"spot_ob", "funding", "bias", "heatmap"})

    def __init__(
        self,
        transport: Transport,
        *,
        clock: Clock,
        api: str = OKX_API,
        depth: int = DEFAULT_DEPTH,
        quote: str = DEFAULT_QUOTE,
        share: float = DEFAULT_SHARE,
        timeframe: str = "1h",
    ) -> None:
        super().__init__(clock=clock, depth=depth, quote=quote, share=share)
        self.http = VenueHttp(api, transport, clock=clock, reclassify=reclassify)
        self.timeframe = timeframe
        self.window = timeframe_seconds(timeframe)
        documented = {
            "books": BOOKS,
            "funding_rate": FUNDING_RATE,
            "long_short_ratio": LONG_SHORT_RATIO,
            "liquidation_orders": LIQUIDATION_ORDERS,
            "mark_price": MARK_PRICE,
            "instruments": INSTRUMENTS,
        }
        self.limits = {name: RateLimit(name, share_of(n, share), WINDOW) for name, n in documented.items()}
        self._contract_values: dict[str, tuple[float, float]] = {}  # instId -> (expires, contract value)

    async def _fetch(self, module: str, asset: str, deadline: float) -> tuple[ModulePayload | None, Outcome]:
        if module == "spot_ob":
            return await self._book(asset, deadline)
        if module == "funding":
            return await self._funding(asset, deadline)
        if module == "bias":
            return await self._bias(asset, deadline)
        return await self._heatmap(asset, deadline)

    async def _get(self, module: str, path: str, query: dict[str, str], limit: str, deadline: float) -> Outcome:
        return await self.http.get(module, path, query, limit=self.limits[limit], deadline=deadline)

    async def _book(self, asset: str, deadline: float) -> tuple[ModulePayload | None, Outcome]:
        inst_id = market(asset, "okx", self.quote)
        size = str(min(self.depth, MAX_BOOK_SIZE))
        outcome = await self._get("spot_ob", "/api/v5/market/books", {"instId": inst_id, "sz": size}, "books", deadline)
        if not outcome.ok:
            return None, outcome
        book = first(decode(outcome.body, _Envelope[_Book], "books"), "books")
        fields = {
            "symbol": inst_id,
            "exchange": "okx",
            "ts": millis(book.ts, "books ts"),
            "bids": book_side(book.bids, "bids", descending=True),
            "asks": book_side(book.asks, "asks", descending=False),
        }
        return finish("spot_ob", fields, self.depth), outcome

    async def _funding(self, asset: str, deadline: float) -> tuple[ModulePayload | None, Outcome]:
        inst_id = market(asset, "okx", self.quote, "swap")
        query = {"instId": inst_id}
        outcome = await self._get("funding", "/api/v5/public/funding-rate", query, "funding_rate", deadline)
        if not outcome.ok:
            return None, outcome
        funding = first(decode(outcome.body, _Envelope[_Funding], "funding-rate"), "funding-rate")
        rate = number(funding.fundingRate, "fundingRate", signed=True)
        settles = millis(funding.fundingTime, "fundingTime")
        fields: dict[str, Any] = {
            "symbol": inst_id,
            "funding_rate": rate,
            "predicted_rate": number(funding.nextFundingRate, "nextFundingRate", signed=True)
            if funding.nextFundingRate
            else rate,  # current-period method: the current rate is what will be charged
            "next_funding_time": settles,
            # open_interest_usd, oi_change_pct: the Struct's 0.0 (not measured here)
        }
        if funding.nextFundingTime != "":  # otherwise the Struct's 8 hours
            fields["interval_hours"] = (millis(funding.nextFundingTime, "nextFundingTime") - settles) / 3600
        return finish("funding", fields, self.depth), outcome

    async def _bias(self, asset: str, deadline: float) -> tuple[ModulePayload | None, Outcome]:
        inst_id = market(asset, "okx", self.quote, "swap")
        query = {"instId": inst_id, "period": RATIO_PERIOD, "limit": str(RATIO_POINTS)}
        path = "/api/v5/rubik/stat/contracts/long-short-account-ratio-contract"
        outcome = await self._get("bias", path, query, "long_short_ratio", deadline)
        if not outcome.ok:
            return None, outcome
        rows = decode(outcome.body, _Envelope[list[str | float]], "long-short-account-ratio-contract").data
        if any(len(row) < 2 for row in rows):
            raise VenueDataError("long-short-account-ratio-contract: a row without [ts, ratio]")
        rows.sort(key=lambda row: number(row[0], "ts"))  # OKX sends newest first
        ratios = [number(row[1], "longShortAcctRatio", positive=True) for row in rows]
        return finish("bias", positioning(inst_id, ratios), self.depth), outcome

    async def _heatmap(self, asset: str, deadline: float) -> tuple[ModulePayload | None, Outcome]:
        inst_id = market(asset, "okx", self.quote, "swap")
        family = market(asset, "okx", self.quote)  # instFamily is BASE-QUOTE, spelled as the spot pair
        base = symbols.instrument(asset, self.quote).base
        contract_value, outcome = await self._contract_value(inst_id, base, deadline)
        if not outcome.ok:
            return None, outcome
        liq_query = {"instType": "SWAP", "instFamily": family, "state": "filled", "limit": str(LIQUIDATION_LIMIT)}
        mark_query = {"instType": "SWAP", "instId": inst_id}
        liquidations, mark = await asyncio.gather(
            self._get("heatmap", "/api/v5/public/liquidation-orders", liq_query, "liquidation_orders", deadline),
            self._get("heatmap", "/api/v5/public/mark-price", mark_query, "mark_price", deadline),
        )
        for answer in (liquidations, mark):
            if not answer.ok:
                return None, answer
        price = number(first(decode(mark.body, _Envelope[_MarkPrice], "mark-price"), "mark-price").markPx, "markPx")
        batches = decode(liquidations.body, _Envelope[_Liquidations], "liquidation-orders").data
        orders = [order for batch in batches if batch.instId == inst_id for order in batch.details]
        since = self.clock.now() - self.window
        fields = {
            "symbol": inst_id,
            "timeframe": self.timeframe,
            "price": price,
            "levels": liquidation_levels(orders, price=price, contract_value=contract_value, since=since),
        }
        return finish("heatmap", fields, self.depth), liquidations

    async def _contract_value(self, inst_id: str, base: str, deadline: float) -> tuple[float, Outcome]:
        """Base units per contract (0.01 BTC for BTC-USDT-SWAP), read once per `CONTRACT_VALUE_TTL`."""
        cached = self._contract_values.get(inst_id)
        if cached is not None and cached[0] > self.clock.monotonic():
            return cached[1], Outcome("ok", "ok", called=False)
        query = {"instType": "SWAP", "instId": inst_id}
        outcome = await self._get("heatmap", "/api/v5/public/instruments", query, "instruments", deadline)
        if not outcome.ok:
            return 0.0, outcome
        spec = first(decode(outcome.body, _Envelope[_Instrument], "instruments"), "instruments")
        if spec.ctValCcy != base:  # an inverse contract counts in USD: its liquidations would need another formula
            raise VenueDataError(f"instruments: {inst_id} contracts are valued in {spec.ctValCcy}, not {base}")
        value = number(spec.ctVal, "ctVal", positive=True)
        self._contract_values[inst_id] = (self.clock.monotonic() + CONTRACT_VALUE_TTL, value)
        return value, outcome
