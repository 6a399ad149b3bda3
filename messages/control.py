"""The control plane: circuit breaker states, feature flags, operator commands.

Commands are request/reply on ``cmd.<name>``. They are decoded strictly
(unknown fields are an error, so a typo is answered instead of ignored) and
the ``type`` tag is optional, so an operator can send the documented
``{"flag": "ETF", "enabled": false}`` from any NATS client.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ._base import Message, Module, Timestamp

CircuitStateName = Literal["closed", "open", "half_open", "quarantined"]
ErrorClassName = Literal["transient", "throttled", "entitlement"]
CircuitCause = ErrorClassName | Literal["reset", "recovered", "flag_changed"]


class CircuitState(Message, frozen=True, kw_only=True):
    """A breaker's state, published on ``circuit.<module>`` and stored in the circuits bucket.

    `scope` is ``all`` for a module-wide breaker (entitlement, throttling) or
    an asset for an asset-specific one (transient errors). While `state` is
    open or quarantined, fetchers make no upstream call before `until`; in
    half_open they let `probes` calls through.
    """

    module: Module
    scope: str
    state: CircuitStateName
    ts: Timestamp
    until: Timestamp | None = None
    cause: CircuitCause | None = None
    detail: str = ""
    opens: int = 0
    probes: int = 1


class FlagChanged(Message, frozen=True, kw_only=True):
    """A feature flag changed (also the value stored per flag in the flags bucket)."""

    flag: str
    enabled: bool
    ts: Timestamp
    who: str = ""
    why: str = ""
    revision: int = 0


class FlagCommand(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``{"flag": "ETF", "enabled": false, "why": "..."}``; without `flag` it only lists."""

    flag: str | None = None
    enabled: bool | None = None
    why: str = ""
    who: str = ""


class FlagReply(Message, frozen=True, kw_only=True):
    """``{"ok": true, "flags": {...}}``, or ``{"ok": false, "error": "..."}`` with nothing changed."""

    ok: bool
    flags: dict[str, bool] = msgspec.field(default_factory=dict)
    error: str | None = None


class CircuitCommand(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``{"action": "reset", "module": "etf"}`` or ``{"action": "list"}``."""

    action: Literal["list", "reset"]
    module: str | None = None


class CircuitReply(Message, frozen=True, kw_only=True):
    ok: bool
    circuits: list[CircuitState] = msgspec.field(default_factory=list)
    error: str | None = None
