"""From module payloads to one score: pure functions, no I/O, no clock.

Every module yields a sub-score in [-1, 1] (positive = bullish), declared
with the module in its file (`messages.modules.<name>.score`; the README's
Scoring table sums them up).

The signal score is the weighted mean over the modules present (weights
renormalise; each module declares its default weight). Confidence is present
weight / expected weight, where expected means enabled: a module switched off
by a flag is a choice, not missing data. Direction is ``long`` at score >=
`threshold`, ``short`` at <= -`threshold`, ``flat`` in between or when
confidence is below `min_confidence`.

Every sub-score is finite and in [-1, 1], whatever numbers a payload holds.
Fetchers already refuse non-finite or huge numbers (the payload Structs bound
them, and caps list lengths, so sums stay finite), but a payload built in
code, or a future field, must not turn into a NaN or a false +1: the module
scorers count a side total that is not finite as no evidence, and
`sub_score` clips once more (NaN to 0). A payload that cannot be scored at
all (an order book with an empty side) raises ValueError, which the
assembler reports as ``bad_payload``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from messages import REGISTRY, Payload
from messages.modules._kit import clip

#: Module name -> default weight of its sub-score (declared by each module).
DEFAULT_WEIGHTS: dict[str, float] = {name: spec.weight for name, spec in REGISTRY.items()}


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    threshold: float = 0.15
    min_confidence: float = 0.3


def sub_score(payload: Payload, cfg: ScoringConfig | None = None) -> float:
    """The sub-score of one module payload: finite, in [-1, 1].

    Raises TypeError for a payload of no registered module and ValueError
    for a payload that cannot be scored (an order book with an empty side).
    """
    spec = REGISTRY.get(str(payload.__struct_config__.tag))
    if spec is None or not isinstance(payload, spec.payload):
        raise TypeError(f"no scoring for {type(payload).__name__}")
    return clip(spec.score(payload))  # the last guard: whatever a scorer did, no NaN or out-of-range value leaves


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float
    confidence: float
    direction: str


def combine(
    components: Mapping[str, float],
    expected: set[str] | frozenset[str],
    cfg: ScoringConfig,
    trust: Mapping[str, float] | None = None,
) -> Verdict:
    """Weighted mean of present sub-scores; confidence is the present share of expected weight.

    `trust` scales a present module's weight (a venue's answer: `ModuleSpec.venue_trust`; 1 if absent)
    in the score and in the confidence; the expected weight stays whole.
    """
    trust = trust or {}
    weights = {m: w * trust.get(m, 1.0) for m, w in cfg.weights.items()}
    present = {m: s for m, s in components.items() if weights.get(m, 0) > 0}
    w_present = sum(weights[m] for m in present)
    w_expected = sum(cfg.weights.get(m, 0) for m in expected | set(present))
    if w_present <= 0 or w_expected <= 0:
        return Verdict(0.0, 0.0, "flat")
    # Round first, so the reported numbers and the direction derived from them agree.
    score = round(clip(sum(weights[m] * s for m, s in present.items()) / w_present), 6)
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
