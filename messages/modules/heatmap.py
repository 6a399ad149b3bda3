"""Liquidation heatmap of the asset's perpetual swap (core).

Sub-score: liquidation clusters pull the price: short liquidations above
the price minus long liquidations below it, each weighted by
usd * exp(-distance / 3 %), as a ratio in [-1, 1].
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from ._kit import (
    Amount,
    ModuleSpec,
    ModuleTerms,
    Payload,
    Price,
    Short,
    Symbol,
    keep_best,
    ratio,
    role,
    route,
    symbol,
)

#: Clusters kept per payload: the nearest to the price.
MAX_HEATMAP_LEVELS = 200
#: Relative distance from the price at which a cluster's weight falls to 1/e.
HEAT_SCALE = 0.03


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


def check(payload: LiquidationHeatmap) -> str | None:
    wrong = [lv for lv in payload.levels if (lv.side == "short") != (lv.price > payload.price)]
    if len(wrong) > len(payload.levels) // 2:
        return "liquidation sides contradict the price (shorts should sit above, longs below)"
    return None


def normalise(payload: LiquidationHeatmap, depth: int) -> LiquidationHeatmap:
    """The `MAX_HEATMAP_LEVELS` clusters nearest to the price (the ones scoring weighs most)."""
    price = payload.price
    levels = keep_best(payload.levels, MAX_HEATMAP_LEVELS, key=lambda lv: abs(lv.price - price))
    return payload if levels is payload.levels else msgspec.structs.replace(payload, levels=levels)


def score(payload: LiquidationHeatmap, *, scale: float = HEAT_SCALE) -> float:
    if not (math.isfinite(payload.price) and payload.price > 0):
        return 0.0  # no price, no distances
    above = below = 0.0
    for lv in payload.levels:
        dist = abs(lv.price - payload.price) / payload.price
        weight = lv.usd * math.exp(-dist / scale)
        if lv.price > payload.price and lv.side == "short":
            above += weight
        elif lv.price < payload.price and lv.side == "long":
            below += weight
    return ratio(above, below)


SPEC = ModuleSpec(
    name="heatmap",
    order=30,
    payload=LiquidationHeatmap,
    summary="liquidation heatmap of the perpetual swap",
    core=True,
    weight=0.2,
    # A venue publishes its own recent liquidation orders, not a model of resting liquidation levels.
    venue_trust=0.5,
    score=score,
    check=check,
    normalise=normalise,
    route=route("heatmap", "/liquidations/heatmap", symbol("symbol", "okx_swap"), role("timeframe", "timeframe")),
    aliases=(
        route("heatmap", "/liquidations/heatmap", symbol("symbol", "okx_swap"), role("timeframe", "timeframe")),
        route(
            "heatmap",
            "/advanced/liquidation/heatmap/{symbol}",
            symbol("symbol", "base", "path"),
            role("timeframe", "timeframe"),
        ),
        route(
            "heatmap",
            "/api/v2/derivatives/liquidation-map/{instId}",
            symbol("instId", "okx_swap", "path"),
            role("interval", "timeframe"),
        ),
    ),
    terms=ModuleTerms(
        (frozenset({"liquidation", "liq"}), frozenset({"heatmap", "heat", "map", "cluster", "level"})),
        frozenset({"heatmap"}),
    ),
    form="okx_swap",
)
