"""sniper's wire contract: the one place messages and subjects are defined.

Every message is a frozen, tagged msgspec Struct encoded as JSON. Subjects are
built by `Subjects`; no other module spells a subject. Decode with
`decode(data, Type)` or a cached `Decoder`; bad input (malformed, oversized,
nested deeper than `MAX_DEPTH`, or outside a bound declared in `_base`)
raises `DecodeError`, and nothing else.
"""

from __future__ import annotations

from ._base import SCHEMA_VERSION, Message
from .alerts import Alert, AlertCommand, AlertLog, AlertReply, Mute
from .codec import MAX_DEPTH, MAX_MESSAGE_BYTES, Decoder, decode, decoder_for, encode
from .control import (
    AssetStatus,
    CircuitCommand,
    CircuitReply,
    CircuitState,
    FlagChanged,
    FlagCommand,
    FlagReply,
    StatusQuery,
    StatusReply,
)
from .cycle import Direction, Health, HealthState, ModuleStatus, Signal, Tick
from .errors import (
    ConfigError,
    ContractError,
    DecodeError,
    EmbeddedServerError,
    SniperError,
    SubjectError,
    SymbolError,
)
from .modules import (
    DEFAULT_ROUTES,
    MODULES,
    PAYLOAD_TYPES,
    REASONS,
    REGISTRY,
    Degraded,
    EtfFlows,
    EtfIssuerFlow,
    InstitutionalBias,
    LiquidationHeatmap,
    LiquidationLevel,
    ModuleData,
    ModulePayload,
    ModuleSpec,
    OrderBook,
    Payload,
    Reason,
    SharedFetch,
    WhaleAlert,
    WhaleAlerts,
)
from .routes import ParamBinding, Route, RouteMap
from .runtime import ActorGaveUp, ActorRestarted, Heartbeat, LeaderChanged, Lease
from .subjects import DEFAULT_PREFIX, Subjects

#: Every message type that travels on the bus (for record/replay and schema).
AnyMessage = (
    Tick
    | ModuleData
    | Degraded
    | Signal
    | Health
    | Heartbeat
    | ActorRestarted
    | ActorGaveUp
    | RouteMap
    | CircuitState
    | FlagChanged
    | FlagCommand
    | FlagReply
    | CircuitCommand
    | CircuitReply
    | StatusQuery
    | StatusReply
    | Alert
    | AlertLog
    | AlertCommand
    | AlertReply
    | Mute
    | Lease
    | LeaderChanged
    | SharedFetch
)
ALL_MESSAGE_TYPES = AnyMessage

__all__ = [
    "ALL_MESSAGE_TYPES",
    "DEFAULT_PREFIX",
    "DEFAULT_ROUTES",
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "MODULES",
    "PAYLOAD_TYPES",
    "REASONS",
    "REGISTRY",
    "SCHEMA_VERSION",
    "ActorGaveUp",
    "ActorRestarted",
    "Alert",
    "AlertCommand",
    "AlertLog",
    "AlertReply",
    "AnyMessage",
    "AssetStatus",
    "CircuitCommand",
    "CircuitReply",
    "CircuitState",
    "ConfigError",
    "ContractError",
    "DecodeError",
    "Decoder",
    "Degraded",
    "Direction",
    "EmbeddedServerError",
    "EtfFlows",
    "EtfIssuerFlow",
    "FlagChanged",
    "FlagCommand",
    "FlagReply",
    "Health",
    "HealthState",
    "Heartbeat",
    "InstitutionalBias",
    "LeaderChanged",
    "Lease",
    "LiquidationHeatmap",
    "LiquidationLevel",
    "Message",
    "ModuleData",
    "ModulePayload",
    "ModuleSpec",
    "ModuleStatus",
    "Mute",
    "OrderBook",
    "ParamBinding",
    "Payload",
    "Reason",
    "Route",
    "RouteMap",
    "SharedFetch",
    "Signal",
    "SniperError",
    "StatusQuery",
    "StatusReply",
    "SubjectError",
    "Subjects",
    "SymbolError",
    "Tick",
    "WhaleAlert",
    "WhaleAlerts",
    "decode",
    "decoder_for",
    "encode",
]
