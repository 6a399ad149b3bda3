"""Every exception sniper raises on purpose, in one tree.

Failures of *upstream services* are not exceptions in sniper: they become
`Degraded` messages with a reason (see `messages.modules`). The exceptions
below are for programming and operating errors that a caller can act on::

    SniperError
    ├── ContractError            bad input against the wire contract
    │   ├── DecodeError          bytes that are not a valid message (kept: subject, kind, reason, path, preview)
    │   ├── SubjectError         a value that cannot be a subject token
    │   └── SymbolError          text that is not an instrument (also a ValueError)
    ├── ConfigError              a flag, environment variable or file that makes no sense
    └── EmbeddedServerError      the bundled nats-server would not start

The runtime's own errors (the bus, key-value stores, supervisors) are a tree
of their own, `runtime.errors.ActorSystemError`: the runtime knows nothing
of sniper, so its errors cannot derive from `SniperError`.
"""

from __future__ import annotations

from typing import Literal


class SniperError(Exception):
    """Base of every exception sniper raises on purpose."""


class ContractError(SniperError):
    """Input that violates the wire contract."""


#: Longest `DecodeError.reason` kept: msgspec quotes offending values (an enum
#: value, an unknown field's name), and a hostile producer chooses their size.
MAX_REASON = 200

_AT = " - at `"


def _shorten(reason: str, limit: int = MAX_REASON) -> str:
    """`reason` cut to `limit` characters, keeping msgspec's trailing `` - at `$.path` `` if any."""
    if len(reason) <= limit:
        return reason
    head, sep, tail = reason.rpartition(_AT)
    if not sep or len(tail) > limit // 2:
        head, tail = reason, ""
    else:
        tail = sep + tail
    return head[: limit - len(tail) - 1] + "\u2026" + tail


DecodeErrorKind = Literal["too_large", "too_deep", "malformed", "invalid", "version"]


class DecodeError(ContractError):
    """Bytes that could not be decoded into the expected message type.

    Carries the subject, a short reason, and a short preview of the payload so
    an operator can find the producer without dumping megabytes. For programs:

    * `kind`, a stable word: ``too_large`` (over the size limit, never parsed),
      ``too_deep`` (arrays/objects nested beyond the limit, never parsed),
      ``malformed`` (not JSON), ``invalid`` (JSON that breaks the contract: a
      type, bound, pattern, length or cross-field rule), ``version`` (a schema
      version this build does not speak);
    * `path`, where in the document the problem is (``$.ts``), when known;
    * `reason`, the human sentence, at most `MAX_REASON` characters.
    """

    def __init__(
        self, reason: str, *, subject: str | None = None, data: bytes = b"", kind: DecodeErrorKind = "invalid"
    ) -> None:
        self.reason = _shorten(reason)
        self.kind: DecodeErrorKind = kind
        _, sep, tail = self.reason.rpartition(_AT)
        self.path: str | None = ("`" + tail).replace("`", "") if sep else None
        self.subject = subject
        self.preview = data[:120].decode("utf-8", "replace")
        self.size = len(data)
        where = f" on {subject!r}" if subject else ""
        super().__init__(f"undecodable message{where}: {self.reason}")


class SubjectError(ContractError, ValueError):
    """A value that cannot be a NATS subject token (empty, or holding '.', '*', '>' or space)."""


class SymbolError(ContractError, ValueError):
    """Text that cannot be parsed as, or formatted from, an instrument."""


class ConfigError(SniperError, ValueError):
    """A configuration value (flag, environment variable, file) that makes no sense."""


class EmbeddedServerError(SniperError):
    """The bundled nats-server could not be started or did not become ready."""
