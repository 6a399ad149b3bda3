"""The module registry, and what a fetcher publishes: data from one module, or a typed reason it has none.

Each module is one file in this package (``whale.py``, ``etf.py``, ...,
``funding.py``) whose ``SPEC`` declares everything about it (see `_kit`);
`REGISTRY` collects them at import, and every list of modules in sniper
derives from it. Adding a module is adding a file.

The payload Structs double as the *upstream contract*: a fetcher decodes the
backend's JSON body straight into them, so a field of the wrong type is a
`bad_payload` degradation at the edge instead of a crash deep inside scoring.
Their ``module`` tag is optional when decoding a backend body (backends do not
send it) and always present on the wire. Caps: see `_kit`.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Literal, TypeAlias, Union

from .._base import (
    ASSET_NAMES,
    MODULE_NAMES,
    Asset,
    Cycle,
    CycleAsset,
    CycleModule,
    Detail,
    HttpStatus,
    LatencyMs,
    Message,
    Seconds,
    Timestamp,
)
from ..routes import Route
from ..runtime import Holder
from ._kit import MAX_MAGNITUDE, ModuleSpec, Payload
from .bias import InstitutionalBias
from .etf import MAX_ETF_ISSUERS, EtfFlows, EtfIssuerFlow
from .heatmap import MAX_HEATMAP_LEVELS, LiquidationHeatmap, LiquidationLevel
from .spot_ob import MAX_BOOK_LEVELS, OrderBook
from .whale import MAX_WHALE_ALERTS, WhaleAlert, WhaleAlerts

#: Why a module produced no data this cycle. Stable strings: bots and
#: dashboards match on them.
Reason = Literal[
    "payment_required",  # 402, or 401/403 caused by the plan: retrying never heals it
    "not_found",  # 404: the route (or the symbol form) does not exist
    "rate_limited",  # 429 / 418 ban
    "upstream_error",  # 5xx, or an error envelope inside a 200
    "timeout",  # no answer inside the cycle's budget
    "unreachable",  # connection refused / reset / DNS
    "bad_payload",  # an answer that does not match the contract
    "circuit_open",  # the breaker holds calls back; no request was made
    "disabled",  # a feature flag switched the module off
]
REASONS: tuple[str, ...] = Reason.__args__  # type: ignore[attr-defined]
#: Where a module's data came from: the market-data backend, or a venue's public API (the fallback, issue 16).
Source = Literal["backend", "binance", "okx", "bybit"]
SOURCES: tuple[str, ...] = Source.__args__  # type: ignore[attr-defined]
VENUES: tuple[str, ...] = SOURCES[1:]


def _load() -> dict[str, ModuleSpec]:
    """Every module file of this package (a ``SPEC`` in each), in `ModuleSpec.order`."""
    specs = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            specs.append(importlib.import_module(f"{__name__}.{info.name}").SPEC)
    specs.sort(key=lambda spec: spec.order)
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names) or len({spec.order for spec in specs}) != len(specs):
        raise ValueError(f"two module files declare one name or one order: {names}")
    return {spec.name: spec for spec in specs}


#: The module registry: name -> everything about the module, in the order modules are listed everywhere.
REGISTRY: dict[str, ModuleSpec] = _load()
#: Module names, in order.
MODULES: tuple[str, ...] = tuple(REGISTRY)
#: Module name -> the payload type its fetcher decodes the backend body into.
PAYLOAD_TYPES: dict[str, type[Payload]] = {name: spec.payload for name, spec in REGISTRY.items()}
#: The routes the seed analysis recommended, which the reference backend serves by default.
DEFAULT_ROUTES: dict[str, Route] = {name: spec.route for name, spec in REGISTRY.items()}
#: Modules that decide health by default (a cycle in which all of them failed is a hard failure).
DEFAULT_CORE: frozenset[str] = frozenset(name for name, spec in REGISTRY.items() if spec.core)

if TYPE_CHECKING:
    ModulePayload: TypeAlias = Payload
else:
    #: What `ModuleData.payload` holds: one of the registered payloads, told apart by their ``module`` tag.
    ModulePayload = Union[tuple(PAYLOAD_TYPES.values())]  # noqa: UP007  # built from the registry at import


class ModuleData(Message, frozen=True, kw_only=True):
    """A module answered for (asset, cycle). Published on ``data.<module>.<ASSET>``."""

    module: CycleModule
    asset: CycleAsset
    cycle: Cycle
    ts: Timestamp
    latency_ms: LatencyMs = 0.0
    payload: ModulePayload
    #: Who answered: the backend, or a venue the module fell back to.
    source: Source = "backend"

    def __post_init__(self) -> None:
        MODULE_NAMES.check(self.module)
        ASSET_NAMES.check(self.asset)


class Degraded(Message, frozen=True, kw_only=True):
    """A module has no data for (asset, cycle), and why. Published on ``degraded.<module>.<ASSET>``.

    This is the "failures are data" rule: the assembler treats it as a fact
    about the cycle, the health logic classifies it, and nothing throws.
    `detail` is at most 500 characters; `retry_after` at most 1e9 seconds.
    """

    module: CycleModule
    asset: CycleAsset
    cycle: Cycle
    ts: Timestamp
    reason: Reason
    detail: Detail = ""
    status: HttpStatus | None = None
    retry_after: Seconds | None = None
    #: False when no upstream call was made (disabled, circuit open, no route,
    #: tick already late): the breaker must not read it as the backend's answer.
    called: bool = True
    #: Whose answer `reason` is: the backend's, or (every source failing) the last venue's tried.
    source: Source = "backend"
    #: The backend's verdict, published for the breakers and discovery although a fallback source's
    #: report (``data`` from a venue, or its own ``degraded``) stands for the module in the signal.
    superseded: bool = False

    def __post_init__(self) -> None:
        MODULE_NAMES.check(self.module)
        ASSET_NAMES.check(self.asset)


SharedFetchState = Literal["claimed", "answered"]


class SharedFetch(Message, frozen=True, kw_only=True):
    """One upstream call for (module, key) shared by every process: the ``cache`` bucket's ``<module>.<key>``.

    A fetcher about to call for a key many assets share (ETF flows, keyed by
    BTC or ETH) first claims the entry compare-and-set (``claimed`` by
    `holder`, lapsing at `until`); fetchers of other processes then wait for
    its answer instead of calling too. The claimant writes the answer
    (``answered``): a `payload`, fresh until `until` (the module's cache
    lifetime), or a failure's `reason`, fresh for no time (it answers only
    those who waited for that call).
    """

    module: CycleModule
    key: Asset
    holder: Holder
    state: SharedFetchState
    ts: Timestamp
    until: Timestamp
    payload: ModulePayload | None = None
    latency_ms: LatencyMs = 0.0
    reason: Reason | None = None
    detail: Detail = ""
    status: HttpStatus | None = None
    retry_after: Seconds | None = None

    def __post_init__(self) -> None:
        MODULE_NAMES.check(self.module)


__all__ = [
    "DEFAULT_CORE",
    "DEFAULT_ROUTES",
    "MAX_BOOK_LEVELS",
    "MAX_ETF_ISSUERS",
    "MAX_HEATMAP_LEVELS",
    "MAX_MAGNITUDE",
    "MAX_WHALE_ALERTS",
    "MODULES",
    "PAYLOAD_TYPES",
    "REASONS",
    "REGISTRY",
    "Degraded",
    "EtfFlows",
    "EtfIssuerFlow",
    "InstitutionalBias",
    "LiquidationHeatmap",
    "LiquidationLevel",
    "ModuleData",
    "ModulePayload",
    "ModuleSpec",
    "OrderBook",
    "Payload",
    "Reason",
    "SharedFetch",
    "WhaleAlert",
    "WhaleAlerts",
]
