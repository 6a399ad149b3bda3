"""Bybit as a fallback source for the spot order book.

Why: a third keyless book (issue 16), so a ban at one venue and an outage at
another still leave one. ``GET /v5/market/orderbook?category=spot&symbol=SOLUSDT&limit=N``
answers ``{"retCode": 0, "result": {"s", "b": [[price, size]], "a": [...], "ts", "u"}}``;
N is the configured depth, at most 200 (the spot maximum; without a limit
Bybit sends one level). The symbol and its ``category`` come from
`actors.symbols` (``bybit_category``).

Not served: ``bias``, ``funding`` and ``heatmap``, which the issue asks of
OKX and Binance (Bybit's REST has a long/short ratio and tickers with
funding, so they could follow this file's pattern; its liquidations are on
the websocket only).

Errors: ``retCode`` != 0 arrives with HTTP 200 (10006/10018 too many requests:
throttled; 10001/10017 parameters or route: endpoint_missing; 10016 server
error and unknown codes: transient). HTTP 403 "access too frequent" is an IP
ban of at least 10 minutes: throttled, held >= 600 s. A 403 that names a
country or region is the CDN's geographic block: entitlement.

Limit: 600 requests per 5 s per IP (documented); we use `share` of it.
"""

from __future__ import annotations

import dataclasses

import msgspec

from actors import symbols
from actors.upstream import Outcome, Transport
from messages import ModulePayload
from messages.modules import MAX_BOOK_LEVELS
from runtime.clock import Clock

from ._client import (
    DEFAULT_DEPTH,
    DEFAULT_QUOTE,
    DEFAULT_SHARE,
    BaseVenue,
    RateLimit,
    VenueHttp,
    book_side,
    decode,
    finish,
    market,
    millis,
    share_of,
)

BYBIT_API = "https://api.bybit.com"
#: Documented per-IP limit: requests per window (seconds).
REQUESTS = (600, 5.0)
#: Largest spot ``limit``.
MAX_SPOT_LEVELS = 200
#: Shortest hold after a 403 "access too frequent" (Bybit: banned for at least 10 minutes).
BAN_SECONDS = 600.0

THROTTLE_CODES = frozenset({10006, 10018})
MISSING_CODES = frozenset({10001, 10017})
ENTITLEMENT_CODES = frozenset({10024})  # regulatory restriction
_GEO_WORDS = ("country", "region", "location", "cloudfront")


class _RetCode(msgspec.Struct):
    retCode: int  # field names as the venue spells them
    retMsg: str = ""


class _Book(msgspec.Struct):
    b: list[list[str | float]]
    a: list[list[str | float]]
    ts: int | str


class _Answer(msgspec.Struct):
    result: _Book


def reclassify(outcome: Outcome) -> Outcome:
    """Bybit's 403 ban and its ``retCode`` inside a 200."""
    if outcome.status == 403:
        if any(word in outcome.detail.lower() for word in _GEO_WORDS):
            return Outcome("entitlement", "payment_required", 403, outcome.detail)
        retry = max(BAN_SECONDS, outcome.retry_after or 0.0)
        return Outcome("throttled", "rate_limited", 403, outcome.detail or "access too frequent", retry_after=retry)
    if not outcome.ok:
        return outcome
    try:
        code = msgspec.json.decode(outcome.body, type=_RetCode)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return outcome  # not an envelope: the payload decoder will call it bad_payload
    if code.retCode == 0:
        return outcome
    detail = f"retCode {code.retCode}: {code.retMsg}"[:200]
    if code.retCode in THROTTLE_CODES:
        return Outcome("throttled", "rate_limited", outcome.status, detail)
    if code.retCode in MISSING_CODES:
        return Outcome("endpoint_missing", "not_found", outcome.status, detail)
    if code.retCode in ENTITLEMENT_CODES:
        return Outcome("entitlement", "payment_required", outcome.status, detail)
    return dataclasses.replace(outcome, error_class="transient", reason="upstream_error", detail=detail, body=b"")


class BybitSource(BaseVenue):
    """Bybit's spot order book, as an `OrderBook` payload (see the module docstring)."""

    name = "bybit"
    modules = frozenset({"spot_ob"})

    def __init__(
        self,
        transport: Transport,
        *,
        clock: Clock,
        api: str = BYBIT_API,
        depth: int = DEFAULT_DEPTH,
        quote: str = DEFAULT_QUOTE,
        share: float = DEFAULT_SHARE,
    ) -> None:
        super().__init__(clock=clock, depth=depth, quote=quote, share=share)
        self.http = VenueHttp(api, transport, clock=clock, reclassify=reclassify)
        self.limits = {"requests": RateLimit("requests", share_of(REQUESTS[0], share), REQUESTS[1])}

    async def _fetch(self, module: str, asset: str, deadline: float) -> tuple[ModulePayload | None, Outcome]:
        symbol = market(asset, "bybit", self.quote)
        category = symbols.bybit_category(symbols.instrument(asset, self.quote))
        limit = min(self.depth, MAX_SPOT_LEVELS, MAX_BOOK_LEVELS)
        query = {"category": category, "symbol": symbol, "limit": str(limit)}
        outcome = await self.http.get(
            "spot_ob", "/v5/market/orderbook", query, limit=self.limits["requests"], deadline=deadline
        )
        if not outcome.ok:
            return None, outcome
        book = decode(outcome.body, _Answer, "orderbook").result
        fields = {
            "symbol": symbol,
            "exchange": "bybit",
            "ts": millis(book.ts, "orderbook ts"),
            "bids": book_side(book.b, "bids", descending=True),
            "asks": book_side(book.a, "asks", descending=False),
        }
        return finish("spot_ob", fields, self.depth), outcome
