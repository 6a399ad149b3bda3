"""From module payloads to one score: pure functions, no I/O, no clock.

Every module yields a sub-score in [-1, 1] (positive = bullish):

* ``spot_ob``: order-book imbalance near the mid: (bid size - ask size) /
  (bid size + ask size) over levels within `near_mid` (default 0.5%) of mid.
* ``whale``: net exchange flow in USD: (outflows - inflows) / (outflows +
  inflows); coins leaving exchanges are read as accumulation (bullish).
* ``heatmap``: liquidation-cluster skew: short liquidations above the price
  (fuel for a squeeze up) against long liquidations below it (a magnet down),
  each cluster weighted by exp(-distance / `heat_scale`).
* ``etf``: tanh(net flow / `etf_scale`), default scale 250M USD.
* ``bias``: the backend's positioning score as given.

The signal score is the weighted mean over the modules present (weights
renormalise). Confidence is present weight / expected weight, where expected
means enabled: a module switched off by a flag is a choice, not missing data.
Direction is ``long`` at score >= `threshold`, ``short`` at <= -`threshold`,
``flat`` in between or when confidence is below `min_confidence`.

Every sub-score is finite and in [-1, 1], whatever numbers a payload holds.
Fetchers already refuse non-finite or huge numbers (`messages.modules`
bounds them, and caps list lengths, so sums stay finite), but a payload built
in code, or a future field, must not turn into a NaN or a false +1: a side
total that is not finite counts as no evidence (0.0), a ratio of two huge
finite totals is taken of their halves (no overflow), and `_clip` maps NaN to 0.
A payload that cannot be scored at all (an order book with an empty side)
raises ValueError, which the assembler reports as ``bad_payload``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from messages import EtfFlows, InstitutionalBias, LiquidationHeatmap, OrderBook, Payload, WhaleAlerts

DEFAULT_WEIGHTS: dict[str, float] = {"whale": 0.2, "etf": 0.15, "heatmap": 0.2, "spot_ob": 0.25, "bias": 0.2}


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    threshold: float = 0.15
    min_confidence: float = 0.3
    near_mid: float = 0.005
    heat_scale: float = 0.03
    etf_scale: float = 250e6


def _clip(x: float) -> float:
    """`x` within [-1, 1]; NaN is 0.0 (no evidence), never a bound."""
    if math.isnan(x):
        return 0.0
    return max(-1.0, min(1.0, x))


def _ratio(pos: float, neg: float) -> float:
    """(pos - neg) / (pos + neg) for non-negative totals; 0.0 when either is not finite or both are 0."""
    if not (math.isfinite(pos) and math.isfinite(neg)):
        return 0.0  # an overflowed or NaN total is no evidence either way (inf/inf must not read as +1)
    total = pos + neg
    if math.isinf(total):  # two finite halves of a huge book: halving is exact and cannot overflow
        pos, neg = pos / 2, neg / 2
        total = pos + neg
    return 0.0 if total <= 0 else _clip((pos - neg) / total)


def score_order_book(ob: OrderBook, cfg: ScoringConfig) -> float:
    if not ob.bids or not ob.asks:
        raise ValueError("order book has an empty side")
    mid = ob.bids[0][0] / 2 + ob.asks[0][0] / 2  # halves first: the sum of two huge prices cannot overflow
    lo, hi = mid * (1 - cfg.near_mid), mid * (1 + cfg.near_mid)
    bid = sum(size for price, size in ob.bids if price >= lo)
    ask = sum(size for price, size in ob.asks if price <= hi)
    return _ratio(bid, ask)


def score_whale(w: WhaleAlerts, cfg: ScoringConfig) -> float:
    out = sum(a.amount_usd for a in w.alerts if a.direction == "exchange_outflow")
    inflow = sum(a.amount_usd for a in w.alerts if a.direction == "exchange_inflow")
    return _ratio(out, inflow)


def score_heatmap(h: LiquidationHeatmap, cfg: ScoringConfig) -> float:
    if not (math.isfinite(h.price) and h.price > 0):
        return 0.0  # no price, no distances
    above = below = 0.0
    for lv in h.levels:
        dist = abs(lv.price - h.price) / h.price
        weight = lv.usd * math.exp(-dist / cfg.heat_scale)
        if lv.price > h.price and lv.side == "short":
            above += weight
        elif lv.price < h.price and lv.side == "long":
            below += weight
    return _ratio(above, below)


def score_etf(e: EtfFlows, cfg: ScoringConfig) -> float:
    return _clip(math.tanh(e.net_flow_usd / cfg.etf_scale))  # tanh(±inf) is ±1, tanh(NaN) is NaN -> 0


def score_bias(b: InstitutionalBias, cfg: ScoringConfig) -> float:
    return _clip(b.score)


def sub_score(payload: Payload, cfg: ScoringConfig) -> float:
    """The sub-score of one module payload: finite, in [-1, 1].

    Raises TypeError for a payload type without a scorer and ValueError for
    a payload that cannot be scored (an order book with an empty side).
    """
    match payload:
        case OrderBook():
            score = score_order_book(payload, cfg)
        case WhaleAlerts():
            score = score_whale(payload, cfg)
        case LiquidationHeatmap():
            score = score_heatmap(payload, cfg)
        case EtfFlows():
            score = score_etf(payload, cfg)
        case InstitutionalBias():
            score = score_bias(payload, cfg)
        case _:
            raise TypeError(f"no scoring for {type(payload).__name__}")
    return _clip(score)  # the last guard: whatever a scorer did, no NaN or out-of-range value leaves


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float
    confidence: float
    direction: str


def combine(components: Mapping[str, float], expected: set[str] | frozenset[str], cfg: ScoringConfig) -> Verdict:
    """Weighted mean of present sub-scores; confidence is the present share of expected weight."""
    weights = cfg.weights
    present = {m: s for m, s in components.items() if weights.get(m, 0) > 0}
    w_present = sum(weights[m] for m in present)
    w_expected = sum(weights.get(m, 0) for m in expected | set(present))
    if w_present <= 0 or w_expected <= 0:
        return Verdict(0.0, 0.0, "flat")
    # Round first, so the reported numbers and the direction derived from them agree.
    score = round(_clip(sum(weights[m] * s for m, s in present.items()) / w_present), 6)
    confidence = round(min(1.0, w_present / w_expected), 6)
    if confidence < cfg.min_confidence:
        direction = "flat"
    elif score >= cfg.threshold:
        direction = "long"
    elif score <= -cfg.threshold:
        direction = "short"
    else:
        direction = "flat"
    return Verdict(score, confidence, direction)
