"""Spot-ETF flows: keyed by BTC or ETH, never by the traded asset (optional).

Only BTC and ETH have spot ETFs. Every other asset reads BTC's flows as a
market-wide risk gauge (``--etf-proxy``), so 100 assets share one request per
key: answers are single-flight and cached, since the data is daily. The
seed's backend answers 402 here (a paid route): optional by default.

Sub-score: tanh(net flow / 250 M USD).
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from ._kit import ModuleSpec, ModuleTerms, Payload, Short, Signed, clip, keep_best, role, route, symbol

#: Issuers kept per payload: the largest flows.
MAX_ETF_ISSUERS = 50
#: Net flow (USD) at which the sub-score reaches tanh(1) = 0.76.
ETF_SCALE = 250e6


class EtfIssuerFlow(msgspec.Struct, frozen=True, kw_only=True):
    ticker: Short
    flow_usd: Signed


class EtfFlows(Payload, tag="etf", frozen=True, kw_only=True):
    """Daily net flow of BTC or ETH spot ETFs (keyed by BTC/ETH, not the traded asset)."""

    asset: Literal["BTC", "ETH"]
    as_of: Short
    net_flow_usd: Signed
    issuers: tuple[EtfIssuerFlow, ...] = ()


def normalise(payload: EtfFlows, depth: int) -> EtfFlows:
    """The `MAX_ETF_ISSUERS` issuers with the largest flows (the net flow is the backend's, untouched)."""
    issuers = keep_best(payload.issuers, MAX_ETF_ISSUERS, key=lambda i: -abs(i.flow_usd))
    return payload if issuers is payload.issuers else msgspec.structs.replace(payload, issuers=issuers)


def score(payload: EtfFlows, *, scale: float = ETF_SCALE) -> float:
    return clip(math.tanh(payload.net_flow_usd / scale))  # tanh(±inf) is ±1, tanh(NaN) is NaN -> 0


SPEC = ModuleSpec(
    name="etf",
    order=20,
    payload=EtfFlows,
    summary="BTC/ETH spot-ETF net flows",
    core=False,
    weight=0.15,
    score=score,
    normalise=normalise,
    route=route("etf", "/advanced/etf/flows", role("asset", "asset")),
    aliases=(
        route("etf", "/advanced/etf/flows", symbol("asset", "base")),
        route("etf", "/etf/flows", symbol("asset", "base")),
        route("etf", "/api/v2/flows/etf/{ccy}", symbol("ccy", "base", "path")),
    ),
    terms=ModuleTerms((frozenset({"etf"}),), frozenset({"flow", "netflow"})),
    form="base",
    keyed_by=frozenset({"BTC", "ETH"}),
    proxy="BTC",
    cache_ttl=60.0,
)
