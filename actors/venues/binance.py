"""Binance as a fallback source: spot order book, and bias and funding from the USD-M perpetual.

Why: when the backend lacks a module, the same data is public and keyless
here (issue 16). Endpoints (keyless; the documented facts are in
/work/shared/NOTES.md, "Venues"):

* ``spot_ob``: ``GET /api/v3/depth?symbol=SOLUSDT&limit=N`` on the spot
  market-data host. The limit is the smallest accepted value covering the
  configured depth (at most the module's 1,000-level cap, so never the
  250-weight tier); its request weight (5/25/50 for <= 100/500/1000) is
  booked against the spot weight limit. The body has no timestamp
  (``lastUpdateId`` is a sequence number): ``ts`` is when we read it.
* ``funding``: ``GET /fapi/v1/premiumIndex?symbol=SOLUSDT`` (weight 1). Binance
  publishes one real-time rate (``lastFundingRate``), the one charged at
  ``nextFundingTime``: it is both ``funding_rate`` and ``predicted_rate``.
  The interval comes from ``GET /fapi/v1/fundingInfo`` (symbols whose
  interval was changed; any other keeps 8 hours), read at most hourly.
  ``open_interest_usd`` and ``oi_change_pct`` stay 0.0 (not measured: the
  score then does not amplify).
* ``bias``: ``GET /futures/data/globalLongShortAccountRatio?symbol=SOLUSDT&period=5m&limit=96``
  (8 hours of 5-minute points; the venue keeps 30 days), mapped by
  `_client.positioning`: the crowd's account ratio against its own 8-hour
  mean, not institutional flows.
* ``heatmap``: not served. Binance's REST liquidation history was withdrawn;
  only the websocket ``forceOrder`` stream remains.

Errors: 429 and 418 (a ban of 2 minutes to 3 days) carry Retry-After, in
seconds or as an HTTP-date: throttled, and no request to that host until it
has passed. 403 is the WAF's rate limit (throttled); 451 a restricted
location (entitlement: retrying never heals it); ``-1121 Invalid symbol``
comes as a 400 (endpoint_missing, like any 4xx the route does not fit).

Limits (per IP, documented; we use `share` of each): spot 6,000 weight per
minute; USD-M 2,400 weight per minute; ``/futures/data/*`` 1,000 requests per
5 minutes; ``fundingInfo`` 500 per 5 minutes. The USD-M limits share one hold:
a ban on ``fapi`` covers all of it.
"""

from __future__ import annotations

import asyncio

import msgspec

from actors.upstream import Outcome, Transport
from messages import ModulePayload
from messages.modules import MAX_BOOK_LEVELS
from runtime.clock import Clock

from ._client import (
    DEFAULT_DEPTH,
    DEFAULT_QUOTE,
    DEFAULT_SHARE,
    BaseVenue,
    Hold,
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

#: Binance's market-data-only spot host (no account endpoints behind it).
BINANCE_SPOT_API = "https://data-api.binance.vision"
#: The USD-M futures host.
BINANCE_FUTURES_API = "https://fapi.binance.com"

#: Documented per-IP limits: (units, window in seconds).
SPOT_WEIGHT = (6000, 60.0)
FUTURES_WEIGHT = (2400, 60.0)
FUTURES_DATA_REQUESTS = (1000, 300.0)
FUNDING_INFO_REQUESTS = (500, 300.0)

#: Depth limits Binance has always accepted (newer servers take any 1-5000), and the weight tiers.
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000, 5000)
DEPTH_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (5000, 250))
#: Long/short ratio points read per bias: 96 five-minute points, 8 hours.
RATIO_PERIOD = "5m"
RATIO_POINTS = 96
#: Funding interval of a symbol fundingInfo does not list, and how long its answer is reused.
DEFAULT_FUNDING_HOURS = 8.0
FUNDING_INFO_TTL = 3600.0


def depth_request(depth: int) -> tuple[int, int]:
    """(limit, weight) for a book of `depth` levels: the smallest accepted limit covering min(depth, the cap)."""
    wanted = max(1, min(depth, MAX_BOOK_LEVELS))
    limit = next(n for n in DEPTH_LIMITS if n >= wanted)
    weight = next(w for top, w in DEPTH_WEIGHTS if limit <= top)
    return limit, weight


class _Depth(msgspec.Struct):
    bids: list[list[str | float]]
    asks: list[list[str | float]]


class _Premium(msgspec.Struct):
    lastFundingRate: str | float  # field names as the venue spells them
    nextFundingTime: int | str


class _FundingInfo(msgspec.Struct):
    symbol: str
    fundingIntervalHours: int | float | str


class _Ratio(msgspec.Struct):
    longShortRatio: str | float
    timestamp: int | str


def reclassify(outcome: Outcome) -> Outcome:
    """Binance's statuses beyond upstream.classify: 403 is the WAF's rate limit, 451 a restricted location."""
    if outcome.status == 403:
        return Outcome("throttled", "rate_limited", 403, outcome.detail or "WAF limit", retry_after=outcome.retry_after)
    if outcome.status == 451:
        return Outcome("entitlement", "payment_required", 451, outcome.detail or "restricted location")
    return outcome


class BinanceSource(BaseVenue):
    """Binance spot and USD-M public market data, as module payloads (see the module docstring)."""

    name = "binance"
    modules = frozenset({"spot_ob", "bias", "funding"})

    def __init__(
        self,
        transport: Transport,
        *,
        clock: Clock,
        api: str = BINANCE_SPOT_API,
        futures_api: str = BINANCE_FUTURES_API,
        depth: int = DEFAULT_DEPTH,
        quote: str = DEFAULT_QUOTE,
        share: float = DEFAULT_SHARE,
    ) -> None:
        super().__init__(clock=clock, depth=depth, quote=quote, share=share)
        self.spot = VenueHttp(api, transport, clock=clock, reclassify=reclassify)
        self.futures = VenueHttp(futures_api, transport, clock=clock, reclassify=reclassify)
        futures_hold = Hold()  # a 429 or a 418 on fapi covers every fapi endpoint
        documented = {
            "spot": SPOT_WEIGHT,
            "futures": FUTURES_WEIGHT,
            "futures_data": FUTURES_DATA_REQUESTS,
            "funding_info": FUNDING_INFO_REQUESTS,
        }
        self.limits = {
            name: RateLimit(name, share_of(units, share), window, hold=None if name == "spot" else futures_hold)
            for name, (units, window) in documented.items()
        }
        self._intervals: dict[str, float] = {}  # symbol -> hours, for symbols fundingInfo lists
        self._intervals_until = -1.0  # monotonic time the fundingInfo answer expires

    async def _fetch(self, module: str, asset: str, deadline: float) -> tuple[ModulePayload | None, Outcome]:
        if module == "spot_ob":
            return await self._book(asset, deadline)
        if module == "funding":
            return await self._funding(asset, deadline)
        return await self._bias(asset, deadline)

    async def _book(self, asset: str, deadline: float) -> tuple[ModulePayload | None, Outcome]:
        symbol = market(asset, "binance", self.quote)
        limit, weight = depth_request(self.depth)
        query = {"symbol": symbol, "limit": str(limit)}
        outcome = await self.spot.get(
            "spot_ob", "/api/v3/depth", query, limit=self.limits["spot"], units=weight, deadline=deadline
        )
        if not outcome.ok:
            return None, outcome
        book = decode(outcome.body, _Depth, "depth")
        fields = {
            "symbol": symbol,
            "exchange": "binance",
            "ts": self.clock.now(),  # the body carries no time: when we read it
            "bids": book_side(book.bids, "bids", descending=True),
            "asks": book_side(book.asks, "asks", descending=False),
        }
        return finish("spot_ob", fields, self.depth), outcome

    async def _funding(self, asset: str, deadline: float) -> tuple[ModulePayload | None, Outcome]:
        symbol = market(asset, "binance", self.quote, "swap")
        premium, (hours, info) = await asyncio.gather(
            self.futures.get(
                "funding", "/fapi/v1/premiumIndex", {"symbol": symbol}, limit=self.limits["futures"], deadline=deadline
            ),
            self._interval_hours(symbol, deadline),
        )
        for outcome in (premium, info):
            if not outcome.ok:
                return None, outcome
        index = decode(premium.body, _Premium, "premiumIndex")
        rate = number(index.lastFundingRate, "lastFundingRate", signed=True)
        fields = {
            "symbol": symbol,
            "funding_rate": rate,
            "predicted_rate": rate,  # Binance's one rate is the one charged next: no separate forecast
            "interval_hours": hours,
            "next_funding_time": millis(index.nextFundingTime, "nextFundingTime"),
            # open_interest_usd, oi_change_pct: the Struct's 0.0 (not measured; premiumIndex has no open interest)
        }
        return finish("funding", fields, self.depth), premium

    async def _interval_hours(self, symbol: str, deadline: float) -> tuple[float, Outcome]:
        """The symbol's funding interval, from fundingInfo read at most once per `FUNDING_INFO_TTL`."""
        if self.clock.monotonic() >= self._intervals_until:
            outcome = await self.futures.get(
                "funding", "/fapi/v1/fundingInfo", {}, limit=self.limits["funding_info"], deadline=deadline
            )
            if not outcome.ok:
                return DEFAULT_FUNDING_HOURS, outcome
            listed = decode(outcome.body, list[_FundingInfo], "fundingInfo")
            self._intervals = {
                item.symbol: number(item.fundingIntervalHours, "fundingIntervalHours", positive=True) for item in listed
            }
            self._intervals_until = self.clock.monotonic() + FUNDING_INFO_TTL
        else:
            outcome = Outcome("ok", "ok", called=False)
        return self._intervals.get(symbol, DEFAULT_FUNDING_HOURS), outcome

    async def _bias(self, asset: str, deadline: float) -> tuple[ModulePayload | None, Outcome]:
        symbol = market(asset, "binance", self.quote, "swap")
        query = {"symbol": symbol, "period": RATIO_PERIOD, "limit": str(RATIO_POINTS)}
        outcome = await self.futures.get(
            "bias",
            "/futures/data/globalLongShortAccountRatio",
            query,
            limit=self.limits["futures_data"],
            deadline=deadline,
        )
        if not outcome.ok:
            return None, outcome
        rows = decode(outcome.body, list[_Ratio], "globalLongShortAccountRatio")
        rows.sort(key=lambda row: number(row.timestamp, "timestamp"))  # documented oldest first; made sure
        ratios = [number(row.longShortRatio, "longShortRatio", positive=True) for row in rows]
        if not ratios:
            raise VenueDataError("globalLongShortAccountRatio: no points")
        return finish("bias", positioning(symbol, ratios), self.depth), outcome
