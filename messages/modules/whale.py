"""Whale alerts: large on-chain transfers of the traded asset (core).

Sub-score: net exchange flow in USD, (outflows - inflows) / (outflows +
inflows): coins leaving exchanges read bullish.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ._kit import (
    Amount,
    EpochSeconds,
    Label,
    ModuleSpec,
    ModuleTerms,
    Payload,
    Short,
    Symbol,
    TxHash,
    keep_best,
    ratio,
    route,
    symbol,
)

#: Alerts kept per payload: the newest.
MAX_WHALE_ALERTS = 200


class WhaleAlert(msgspec.Struct, frozen=True, kw_only=True):
    id: Label
    ts: EpochSeconds
    amount: Amount
    amount_usd: Amount
    source: Label = msgspec.field(name="from")
    to: Label
    direction: Literal["exchange_inflow", "exchange_outflow", "transfer"]
    tx: TxHash = ""


class WhaleAlerts(Payload, tag="whale", frozen=True, kw_only=True):
    """Large on-chain transfers of the asset in a recent window."""

    symbol: Symbol
    window: Short = "1h"
    alerts: tuple[WhaleAlert, ...] = ()


def normalise(payload: WhaleAlerts, depth: int) -> WhaleAlerts:
    """The newest `MAX_WHALE_ALERTS` alerts."""
    alerts = keep_best(payload.alerts, MAX_WHALE_ALERTS, key=lambda a: -a.ts)
    return payload if alerts is payload.alerts else msgspec.structs.replace(payload, alerts=alerts)


def score(payload: WhaleAlerts) -> float:
    out = sum(a.amount_usd for a in payload.alerts if a.direction == "exchange_outflow")
    inflow = sum(a.amount_usd for a in payload.alerts if a.direction == "exchange_inflow")
    return ratio(out, inflow)


SPEC = ModuleSpec(
    name="whale",
    order=10,
    payload=WhaleAlerts,
    summary="whale alerts: large on-chain transfers",
    core=True,
    weight=0.2,
    score=score,
    normalise=normalise,
    route=route("whale", "/whales/alerts", symbol("symbol", "base")),
    aliases=(
        route("whale", "/whales/alerts", symbol("symbol", "base")),
        route("whale", "/advanced/whale/alerts", symbol("symbol", "base")),
        route("whale", "/api/v2/onchain/whale-transfers", symbol("coin", "base")),
    ),
    terms=ModuleTerms((frozenset({"whale"}),), frozenset({"alert", "transfer", "onchain"})),
    form="base",
)
