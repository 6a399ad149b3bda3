"""The control plane: circuit breaker states, feature flags, operator commands.

Commands are request/reply on ``cmd.<name>``. They are decoded strictly
(unknown fields are an error, so a typo is answered instead of ignored) and
the ``type`` tag is optional, so an operator can send the documented
``{"flag": "ETF", "enabled": false}`` from any NATS client. ``cmd.status`` is
the read-only one: it changes nothing, so bots may ask it too.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ._base import (
    MAX_CIRCUITS,
    MAX_MODULES,
    MAX_STATUS_ASSETS,
    Asset,
    Count,
    Detail,
    ErrorText,
    Fence,
    FlagArgument,
    FlagName,
    Message,
    Module,
    Note,
    Scope,
    Timestamp,
)
from .cycle import Signal

CircuitStateName = Literal["closed", "open", "half_open", "quarantined"]
ErrorClassName = Literal["transient", "throttled", "entitlement"]
CircuitCause = ErrorClassName | Literal["reset", "recovered", "flag_changed"]


class CircuitState(Message, frozen=True, kw_only=True):
    """A breaker's state, published on ``circuit.<module>`` and stored in the circuits bucket.

    `scope` is ``all`` for a module-wide breaker (entitlement, throttling) or
    an asset for an asset-specific one (transient errors). While `state` is
    open or quarantined, fetchers make no upstream call before `until`; in
    half_open they let `probes` calls through. `detail` is at most 500 characters.
    `fence` is the circuit supervisor's lease term: fetchers ignore a state
    fenced below the highest they have seen (a deposed supervisor's).
    """

    module: Module
    scope: Scope
    state: CircuitStateName
    ts: Timestamp
    until: Timestamp | None = None
    cause: CircuitCause | None = None
    detail: Detail = ""
    opens: Count = 0
    probes: Count = 1
    fence: Fence = 0


class FlagChanged(Message, frozen=True, kw_only=True):
    """A feature flag changed (also the value stored per flag in the flags bucket).

    `who` and `why` are at most 200 characters each.
    """

    flag: FlagName
    enabled: bool
    ts: Timestamp
    who: Note = ""
    why: Note = ""
    revision: Count = 0


class FlagCommand(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``{"flag": "ETF", "enabled": false, "why": "..."}``; without `flag` it only lists.

    `flag` is a flag name in any case; `who` and `why` are at most 200 characters each.
    """

    flag: FlagArgument | None = None
    enabled: bool | None = None
    why: Note = ""
    who: Note = ""


class FlagReply(Message, frozen=True, kw_only=True):
    """``{"ok": true, "flags": {...}}``, or ``{"ok": false, "error": "..."}`` with nothing changed."""

    ok: bool
    flags: Annotated[dict[FlagName, bool], msgspec.Meta(max_length=MAX_MODULES)] = msgspec.field(default_factory=dict)
    error: ErrorText | None = None


class CircuitCommand(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``{"action": "reset", "module": "etf"}`` or ``{"action": "list"}``."""

    action: Literal["list", "reset"]
    module: Module | None = None


class CircuitReply(Message, frozen=True, kw_only=True):
    """``{"ok": true, "circuits": [...]}`` (at most 1024 breakers), or ``{"ok": false, "error": "..."}``."""

    ok: bool
    circuits: Annotated[list[CircuitState], msgspec.Meta(max_length=MAX_CIRCUITS)] = msgspec.field(default_factory=list)
    error: ErrorText | None = None


class StatusQuery(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``{}`` for every configured asset, or ``{"asset": "SOL"}`` for one (a configured asset)."""

    asset: Asset | None = None


class AssetStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One asset as the pipeline sees it: its last signal, and the breakers holding it back.

    `signal` is None until the first one; `circuits` are the breakers that are
    not closed, for this asset or module-wide (scope ``all``).
    """

    signal: Signal | None = None
    circuits: Annotated[list[CircuitState], msgspec.Meta(max_length=MAX_CIRCUITS)] = msgspec.field(default_factory=list)


class StatusReply(Message, frozen=True, kw_only=True):
    """``{"ok": true, "ts": ..., "assets": {"SOL": {...}}, "flags": {...}}``, or ``{"ok": false, "error": "..."}``.

    At most 64 assets; `omitted` counts the configured assets left out (ask for
    one by name to see it). `flags` holds every feature flag's current value.
    """

    ok: bool
    ts: Timestamp | None = None
    assets: Annotated[dict[Asset, AssetStatus], msgspec.Meta(max_length=MAX_STATUS_ASSETS)] = msgspec.field(
        default_factory=dict
    )
    flags: Annotated[dict[FlagName, bool], msgspec.Meta(max_length=MAX_MODULES)] = msgspec.field(default_factory=dict)
    omitted: Count = 0
    error: ErrorText | None = None
