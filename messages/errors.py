"""Every exception sniper raises on purpose, in one tree.

Failures of *upstream services* are not exceptions in sniper: they become
`Degraded` messages with a reason (see `messages.modules`). The exceptions
below are for programming and operating errors that a caller can act on::

    SniperError
    ├── ContractError            bad input against the wire contract
    │   ├── DecodeError          bytes that are not a valid message (kept: subject, reason, preview)
    │   ├── SubjectError         a value that cannot be a subject token
    │   └── SymbolError          text that is not an instrument (also a ValueError)
    ├── BusError                 talking to the message bus
    │   ├── BusClosedError       you closed it (or never opened it)
    │   ├── BusConnectError      it could not be reached in time (broken by others)
    │   └── RequestTimeoutError  nobody answered a request in time
    ├── ConfigError              a flag, environment variable or file that makes no sense
    ├── StartupError             an actor did not become ready in time
    └── EmbeddedServerError      the bundled nats-server would not start

The split follows trio's habit: "closed by you" (`BusClosedError`) and "broken
by others" (`BusConnectError`) need different reactions, so they are different
types; everything else a caller might catch is a `SniperError`.
"""

from __future__ import annotations


class SniperError(Exception):
    """Base of every exception sniper raises on purpose."""


class ContractError(SniperError):
    """Input that violates the wire contract."""


class DecodeError(ContractError):
    """Bytes that could not be decoded into the expected message type.

    Carries the subject, the reason msgspec gave, and a short preview of the
    payload so an operator can find the producer without dumping megabytes.
    """

    def __init__(self, reason: str, *, subject: str | None = None, data: bytes = b"") -> None:
        self.reason = reason
        self.subject = subject
        self.preview = data[:120].decode("utf-8", "replace")
        self.size = len(data)
        where = f" on {subject!r}" if subject else ""
        super().__init__(f"undecodable message{where}: {reason}")


class SubjectError(ContractError, ValueError):
    """A value that cannot be a NATS subject token (empty, or holding '.', '*', '>' or space)."""


class SymbolError(ContractError, ValueError):
    """Text that cannot be parsed as, or formatted from, an instrument."""


class BusError(SniperError):
    """A problem talking to the message bus."""


class BusClosedError(BusError):
    """The bus was closed by its owner; publishing or subscribing is a bug."""


class BusConnectError(BusError):
    """The bus could not be reached within the connect deadline."""


class RequestTimeoutError(BusError, TimeoutError):
    """A request got no reply in time (nobody listening, or too slow)."""


class ConfigError(SniperError, ValueError):
    """A configuration value (flag, environment variable, file) that makes no sense."""


class StartupError(SniperError):
    """An actor did not finish starting (subscribe + on_start) within the start-up deadline."""


class EmbeddedServerError(SniperError):
    """The bundled nats-server could not be started or did not become ready."""
