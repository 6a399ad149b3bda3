"""Messages the actor runtime publishes about itself."""

from __future__ import annotations

from typing import Literal

from ._base import ActorName, Count, ErrorText, Hostname, Message, Seconds, Timestamp

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
