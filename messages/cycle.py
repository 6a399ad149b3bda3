"""The cycle: a tick starts it, a signal ends it, health sums it up."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ._base import Asset, Cycle, Message, Module, Timestamp
from .modules import UnitScore

Unit = Annotated[float, msgspec.Meta(ge=0, le=1)]


class Tick(Message, frozen=True, kw_only=True):
    """Start of cycle `cycle` for `asset`; fetchers answer before `deadline`.

    The tick carries the window so every fetcher can size its HTTP timeout to
    fit inside it, and the list of modules the assembler should wait for.
    """

    asset: Asset
    cycle: Cycle
    ts: Timestamp
    deadline: Timestamp
    modules: tuple[Module, ...] = ()


ModuleStatusName = Literal["ok", "degraded", "disabled", "missing"]


class ModuleStatus(msgspec.Struct, frozen=True, kw_only=True):
    """How one module fared in a cycle: ``missing`` means nothing arrived in the window."""

    status: ModuleStatusName
    reason: str | None = None
    #: How long the fetcher's upstream call took (ok and degraded answers), for freshness and latency budgets.
    latency_ms: float | None = None


Direction = Literal["long", "short", "flat"]


class Signal(Message, frozen=True, kw_only=True):
    """The trading signal for one (asset, cycle). Published on ``signal.<ASSET>``.

    `score` is the weighted mean of the module sub-scores present; `confidence`
    is the share of total weight that was present (see README, "Scoring").
    """

    asset: Asset
    cycle: Cycle
    ts: Timestamp
    started: Timestamp
    direction: Direction
    score: UnitScore
    confidence: Unit
    modules: dict[str, ModuleStatus]
    etf_available: bool
    components: dict[str, UnitScore] = msgspec.field(default_factory=dict)
    complete: bool = False


HealthState = Literal["healthy", "soft_fail", "hard_fail"]


class Health(Message, frozen=True, kw_only=True):
    """The scheduler's verdict on a finished cycle. Published on ``health.<ASSET>``.

    Soft failure: only optional modules failed; does not count. Hard failure:
    every core module failed; backoff grows until any module succeeds.
    """

    asset: Asset
    cycle: Cycle
    ts: Timestamp
    state: HealthState
    consecutive_failures: int
    next_delay: float
    failed: tuple[str, ...] = ()
    ok: tuple[str, ...] = ()
