"""The cycle: a tick starts it, a signal ends it, health sums it up."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ._base import (
    ASSET_NAMES,
    MAX_MODULES,
    MAX_SAFE_INT,
    MODULE_NAMES,
    Asset,
    ByModule,
    Count,
    Cycle,
    CycleAsset,
    CycleModule,
    Detail,
    Fence,
    LatencyMs,
    Message,
    Modules,
    Seconds,
    Timestamp,
)
from .modules import Source
from .modules._kit import UnitScore

Unit = Annotated[float, msgspec.Meta(ge=0, le=1)]
#: When the scheduler began numbering cycles from 0 (ms since the Unix epoch; 0 from builds before it).
#: (asset, epoch, cycle) names one cycle uniquely, across restarts.
Epoch = Annotated[
    int,
    msgspec.Meta(ge=0, le=MAX_SAFE_INT, description="When cycle numbering began: ms since the Unix epoch"),
]


class Tick(Message, frozen=True, kw_only=True):
    """Start of cycle `cycle` for `asset`; fetchers answer before `deadline`.

    The tick carries the window so every fetcher can size its HTTP timeout to
    fit inside it, and the list of modules the assembler should wait for.
    `deadline` is after `ts`: a tick that ends before it starts is rejected.
    `fence` is the scheduler's lease term: fetchers and assemblers ignore a
    tick fenced below the highest they have seen (a deposed scheduler's).
    """

    asset: CycleAsset
    cycle: Cycle
    ts: Timestamp
    deadline: Timestamp
    modules: Annotated[tuple[CycleModule, ...], msgspec.Meta(max_length=MAX_MODULES)] = ()
    epoch: Epoch = 0
    fence: Fence = 0

    def __post_init__(self) -> None:
        # On decode, msgspec turns these ValueErrors into a ValidationError (a DecodeError).
        if not self.deadline > self.ts:
            raise ValueError(f"deadline ({self.deadline}) must be after ts ({self.ts})")
        ASSET_NAMES.check(self.asset)
        for module in self.modules:
            MODULE_NAMES.check(module)


ModuleStatusName = Literal["ok", "degraded", "disabled", "missing"]


class ModuleStatus(msgspec.Struct, frozen=True, kw_only=True):
    """How one module fared in a cycle: ``missing`` means nothing arrived in the window.

    `reason` is at most 500 characters (README, "Limits").
    """

    status: ModuleStatusName
    reason: Detail | None = None
    #: How long the fetcher's upstream call took (ok and degraded answers), for freshness and latency budgets.
    latency_ms: LatencyMs | None = None
    #: Where the data (or the last failure) came from: ``backend``, or a venue the module fell back to.
    source: Source = "backend"


Direction = Literal["long", "short", "flat"]


class Signal(Message, frozen=True, kw_only=True):
    """The trading signal for one (asset, cycle). Published on ``signal.<ASSET>``.

    `score` is the weighted mean of the module sub-scores present; `confidence`
    is the share of total weight that was present (see README, "Scoring").
    `modules` and `components` are keyed by module name, at most 32 entries.
    `epoch` is the scheduler's start (ms): (asset, epoch, cycle) is unique across restarts
    (a scheduler that takes over from another keeps its epoch and goes on counting).
    `fence` is the assembler's lease term: ignore a signal fenced below the highest seen.
    """

    asset: Asset
    cycle: Cycle
    ts: Timestamp
    started: Timestamp
    direction: Direction
    score: UnitScore
    confidence: Unit
    modules: ByModule[ModuleStatus]
    etf_available: bool
    components: ByModule[UnitScore] = msgspec.field(default_factory=dict)
    complete: bool = False
    epoch: Epoch = 0
    fence: Fence = 0

    @property
    def msg_id(self) -> str:
        """``<asset>.<epoch>.<cycle>``: unique across restarts; the stream stores each once (``Nats-Msg-Id``)."""
        return f"{self.asset}.{self.epoch}.{self.cycle}"


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
    consecutive_failures: Count
    next_delay: Seconds
    failed: Modules = ()
    ok: Modules = ()
    fence: Fence = 0
