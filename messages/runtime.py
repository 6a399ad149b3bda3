"""Messages the actor runtime publishes about itself."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ._base import ActorName, Count, ErrorText, Fence, Hostname, Message, Seconds, Timestamp

ActorStateName = Literal["new", "starting", "running", "stopping", "stopped", "crashed", "failed"]


class Heartbeat(Message, frozen=True, kw_only=True):
    """Published by every running actor on ``heartbeat.<actor>`` at a fixed interval.

    A missing heartbeat is how an operator (or a later watchdog) notices a
    hung host; the counters make a slow leak of bad messages visible.
    """

    actor: ActorName
    ts: Timestamp
    state: ActorStateName
    host: Hostname = ""
    uptime: Seconds = 0.0
    handled: Count = 0
    bad_messages: Count = 0
    restarts: Count = 0


class ActorRestarted(Message, frozen=True, kw_only=True):
    """An actor crashed and its supervisor is restarting it after `delay` seconds.

    `error` (the exception) is at most 1000 characters.
    """

    actor: ActorName
    ts: Timestamp
    attempt: Count
    delay: Seconds
    error: ErrorText


class ActorGaveUp(Message, frozen=True, kw_only=True):
    """An actor crashed more than the restart intensity allows; it stays down.

    Mirrors OTP: more than `max_restarts` restarts within `period` seconds.
    `error` (the last exception) is at most 1000 characters.
    """

    actor: ActorName
    ts: Timestamp
    restarts: Count
    period: Seconds
    error: ErrorText


#: Who holds a lease: ``<host>-<pid>-<random>``, unique per process.
Holder = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.\-]{1,128}(?!\n)$", description="A process instance, host-pid-random")
]


class Lease(Message, frozen=True, kw_only=True):
    """Who may act as the singleton `role`, stored under key `role` in the leases bucket.

    `term` is the fencing token: it grows each time the lease changes hands
    (by one; past any term of the role seen on the bus when the entry was
    deleted), never on a renewal, and the holder puts it in what it publishes
    (`fence`), so receivers can ignore a deposed holder's late messages. The
    holder rewrites the entry every ttl/4 (`renewed`); any process may take it
    over once `renewed + ttl` has passed on its own clock, or at once when
    `released` (a clean stop). Takeovers and renewals are compare-and-set
    writes on the entry's revision: two contenders cannot both win a term.
    """

    role: ActorName
    holder: Holder
    term: Fence
    renewed: Timestamp
    ttl: Seconds
    released: bool = False


class LeaderChanged(Message, frozen=True, kw_only=True):
    """A process took the lease of singleton `role` (published on ``leader.<role>`` by the new holder).

    `previous` is the holder it took over from ("" for a free or released lease).
    """

    role: ActorName
    holder: Holder
    term: Fence
    ts: Timestamp
    previous: Annotated[str, msgspec.Meta(max_length=128)] = ""
    host: Hostname = ""
