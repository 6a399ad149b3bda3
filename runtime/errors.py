"""Every exception the runtime raises on purpose, in one tree.

What flows between actors is data, never an exception (a handler's error is
logged, counted and survived; see `runtime.actor`). The exceptions below are
for the code that owns a bus, a store or a supervisor, and can act on them::

    ActorSystemError
    ├── BusError                 talking to the message bus
    │   ├── BusClosedError       you closed it (or never opened it)
    │   ├── BusConnectError      it could not be reached in time (broken by others)
    │   ├── PublishError         a message could not be sent (too large, buffer full, connection lost)
    │   ├── RequestTimeoutError  nobody answered a request in time
    │   ├── KVUnavailable        a key-value bucket cannot be reached or created (`runtime.kv`)
    │   ├── KVConflict           a compare-and-set lost against another writer (`runtime.kv`)
    │   └── StreamUnavailable    a durable stream cannot be created or read (`runtime.stream`)
    ├── SetupError               a runtime object configured in a way that cannot work (also a ValueError)
    ├── StartupError             an actor did not become ready in time
    └── ActorFailedError         an actor exceeded its restart intensity: the process must exit

The split follows trio's habit: "closed by you" (`BusClosedError`) and "broken
by others" (`BusConnectError`) need different reactions, so they are different
types. Undecodable input is the contract's `messages.DecodeError`, which the
runtime counts and drops, never raises to a caller.
"""

from __future__ import annotations


class ActorSystemError(Exception):
    """Base of every exception the runtime raises on purpose."""


class BusError(ActorSystemError):
    """A problem talking to the message bus."""


class BusClosedError(BusError):
    """The bus was closed by its owner; publishing or subscribing is a bug."""


class BusConnectError(BusError):
    """The bus could not be reached within the connect deadline."""


class PublishError(BusError):
    """A message could not be published: larger than the broker allows, or the connection could not take it.

    Carries the subject, the encoded size and a short reason (``too_large``,
    ``buffer_full``, ``closed``) so the actor can log and count it as data.
    """

    def __init__(self, reason: str, *, subject: str, size: int, detail: str = "") -> None:
        self.reason = reason
        self.subject = subject
        self.size = size
        super().__init__(f"could not publish {size} bytes on {subject!r}: {reason}{': ' + detail if detail else ''}")


class RequestTimeoutError(BusError, TimeoutError):
    """A request got no reply in time (nobody listening, or too slow)."""


class SetupError(ActorSystemError, ValueError):
    """A runtime object configured in a way that cannot work (a restart policy, two actors of one name)."""


class StartupError(ActorSystemError):
    """An actor did not finish starting (subscribe + on_start) within the start-up deadline."""


class ActorFailedError(ActorSystemError):
    """An actor crashed more often than its supervisor's restart intensity allows.

    OTP escalates to the parent; here the parent is the service manager
    (systemd, compose): `sniper run` exits non-zero (status 3) after the
    `ActorGaveUp` event is out, so it restarts the process instead of a
    half-dead one running on with exit status 0.
    """
