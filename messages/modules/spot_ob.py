"""Spot order book of the asset on one exchange (core).

A backend may send more levels than asked for; the best ``--depth`` per side
are kept (at most `MAX_BOOK_LEVELS`).

Sub-score: book imbalance near the mid, (bid size - ask size) / (bid size +
ask size) over the levels within 0.5 % of the mid price.
"""

from __future__ import annotations

import itertools

import msgspec

from ._kit import Amount, EpochSeconds, ModuleSpec, ModuleTerms, Payload, Price, Symbol, ratio, role, route, symbol

#: Levels kept per side: the best; the fetcher keeps min(configured depth, this).
MAX_BOOK_LEVELS = 1000
#: Relative distance from the mid within which levels count for the imbalance.
NEAR_MID = 0.005

PriceLevel = tuple[Price, Amount]


class OrderBook(Payload, tag="spot_ob", frozen=True, kw_only=True):
    """Spot order book snapshot: bids descending, asks ascending, ``[price, size]``."""

    symbol: Symbol
    exchange: Symbol
    ts: EpochSeconds
    bids: tuple[PriceLevel, ...]
    asks: tuple[PriceLevel, ...]


def check(payload: OrderBook) -> str | None:
    if not payload.bids or not payload.asks:
        return "order book has an empty side"
    if payload.bids[0][0] >= payload.asks[0][0]:
        return f"crossed book: best bid {payload.bids[0][0]} >= best ask {payload.asks[0][0]}"
    if any(a[0] <= b[0] for a, b in itertools.pairwise(payload.bids)):
        return "bids are not in descending price order"
    if any(a[0] >= b[0] for a, b in itertools.pairwise(payload.asks)):
        return "asks are not in ascending price order"
    return None


def normalise(payload: OrderBook, depth: int) -> OrderBook:
    """The best `depth` levels per side, at most `MAX_BOOK_LEVELS` (`check` has made sure the sides are sorted)."""
    depth = max(1, min(depth, MAX_BOOK_LEVELS))
    if len(payload.bids) <= depth and len(payload.asks) <= depth:
        return payload
    return msgspec.structs.replace(payload, bids=payload.bids[:depth], asks=payload.asks[:depth])


def score(payload: OrderBook, *, near_mid: float = NEAR_MID) -> float:
    if not payload.bids or not payload.asks:
        raise ValueError("order book has an empty side")
    mid = payload.bids[0][0] / 2 + payload.asks[0][0] / 2  # halves first: the sum of two huge prices cannot overflow
    lo, hi = mid * (1 - near_mid), mid * (1 + near_mid)
    bid = sum(size for price, size in payload.bids if price >= lo)
    ask = sum(size for price, size in payload.asks if price <= hi)
    return ratio(bid, ask)


SPEC = ModuleSpec(
    name="spot_ob",
    order=40,
    payload=OrderBook,
    summary="spot order book",
    core=True,
    weight=0.25,
    score=score,
    check=check,
    normalise=normalise,
    route=route(
        "spot_ob", "/spot/orderbook", symbol("symbol", "concat"), role("exchange", "exchange"), role("depth", "depth")
    ),
    aliases=(
        route(
            "spot_ob",
            "/spot/orderbook",
            symbol("symbol", "concat"),
            role("exchange", "exchange"),
            role("depth", "depth"),
        ),
        route(
            "spot_ob",
            "/advanced/spot/orderbook/{symbol}",
            symbol("symbol", "base", "path"),
            role("exchange", "exchange"),
            role("depth", "depth"),
        ),
        route(
            "spot_ob",
            "/api/v2/market/depth/{venue}/{pair}",
            role("venue", "exchange", "path"),
            symbol("pair", "dash", "path"),
            role("limit", "depth"),
        ),
    ),
    terms=ModuleTerms(
        (frozenset({"orderbook", "depth", "book"}),),
        frozenset({"spot", "orderbook"}),
        frozenset({"future", "swap", "perp", "perpetual", "derivative", "option"}),
    ),
    form="concat",
)
