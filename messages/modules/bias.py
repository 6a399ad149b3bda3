"""Institutional bias (positioning) of the asset's perpetual swap (optional).

Sub-score: the backend's own positioning score, already in [-1, 1].
"""

from __future__ import annotations

from typing import Literal

from ._kit import Amount, ModuleSpec, ModuleTerms, Payload, Signed, Symbol, UnitScore, clip, route, symbol


class InstitutionalBias(Payload, tag="bias", frozen=True, kw_only=True):
    """Positioning of the perpetual swap: a label and a score in [-1, 1]."""

    symbol: Symbol
    bias: Literal["bullish", "bearish", "neutral"]
    score: UnitScore
    long_short_ratio: Amount = 1.0
    funding_rate: Signed = 0.0
    oi_change_pct: Signed = 0.0


def score(payload: InstitutionalBias) -> float:
    return clip(payload.score)


SPEC = ModuleSpec(
    name="bias",
    order=50,
    payload=InstitutionalBias,
    summary="institutional bias (positioning) of the perpetual swap",
    core=False,
    weight=0.2,
    # Venues publish the long/short ratio of all accounts (the crowd), not institutional positioning.
    venue_trust=0.5,
    score=score,
    route=route("bias", "/institutional/bias", symbol("symbol", "okx_swap")),
    aliases=(
        route("bias", "/institutional/bias", symbol("symbol", "okx_swap")),
        route("bias", "/api/v2/positioning/{instId}", symbol("instId", "okx_swap", "path")),
    ),
    terms=ModuleTerms((frozenset({"bias", "sentiment", "positioning", "position"}),), frozenset({"institutional"})),
    form="okx_swap",
)
