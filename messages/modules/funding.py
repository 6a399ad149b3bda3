"""Funding of the asset's perpetual swap: current and predicted rate, open-interest change (optional).

Sub-score: crowded longs paying high funding read bearish. The rate (the
predicted next one, per 8 hours) above the usual baseline of 0.01 % gives
-tanh(excess / 0.05 %): longs paying 0.06 % per 8 h score -0.76, shorts
paying the same +0.88 (the baseline is subtracted first). Rising open
interest means the crowd is still building: a 24 h increase of up to 20 %
amplifies the score by up to 1.5 times; falling open interest leaves it.
"""

from __future__ import annotations

import math
from typing import Annotated

import msgspec

from ._kit import Amount, EpochSeconds, ModuleSpec, ModuleTerms, Payload, Signed, Symbol, clip, route, symbol

#: The usual funding rate per 8 hours (the interest component most venues charge).
BASELINE_RATE = 0.0001
#: Excess rate per 8 hours at which the sub-score reaches tanh(1) = 0.76.
FUNDING_SCALE = 0.0005
#: Open-interest increase (percent over 24 h) at which the amplification is full (1.5 times).
OI_FULL_PCT = 20.0

Hours = Annotated[float, msgspec.Meta(gt=0, le=168)]


class FundingRate(Payload, tag="funding", frozen=True, kw_only=True):
    """Funding of a perpetual swap: rates are fractions per funding interval (0.0001 = 0.01 %)."""

    symbol: Symbol
    funding_rate: Signed
    predicted_rate: Signed
    interval_hours: Hours = 8.0
    next_funding_time: EpochSeconds = 0.0
    open_interest_usd: Amount = 0.0
    oi_change_pct: Signed = 0.0


def score(payload: FundingRate) -> float:
    per_8h = payload.predicted_rate * 8.0 / payload.interval_hours
    base = -math.tanh((per_8h - BASELINE_RATE) / FUNDING_SCALE)
    amplify = 1.0 + 0.5 * max(0.0, min(payload.oi_change_pct, OI_FULL_PCT)) / OI_FULL_PCT
    return clip(base * amplify)


SPEC = ModuleSpec(
    name="funding",
    order=60,
    payload=FundingRate,
    summary="funding rate of the perpetual swap",
    core=False,
    weight=0.15,
    score=score,
    route=route("funding", "/derivatives/funding-rate", symbol("symbol", "okx_swap")),
    aliases=(
        route("funding", "/derivatives/funding-rate", symbol("symbol", "okx_swap")),
        route("funding", "/funding", symbol("symbol", "base")),
        route("funding", "/api/v2/derivatives/funding/{instId}", symbol("instId", "okx_swap", "path")),
    ),
    terms=ModuleTerms(
        (frozenset({"funding"}),),
        frozenset({"rate", "fundingrate", "perpetual", "swap"}),
        frozenset({"bias", "positioning", "position", "sentiment", "institutional"}),  # bias mentions funding
    ),
    form="okx_swap",
)
