"""Messages the actor runtime publishes about itself."""

from __future__ import annotations

from typing import Literal

from ._base import Message, Timestamp

ActorStateName = Literal["new", "starting", "running", "stopping", "stopped", "crashed", "failed"]


class Heartbeat(Message, frozen=True, kw_only=True):
    """Published by every running actor on ``heartbeat.<actor>`` at a fixed interval.

    A missing heartbeat is how an operator (or a later watchdog) notices a
    hung host; the counters make a slow leak of bad messages visible.
    """

    actor: str
    ts: Timestamp
    state: ActorStateName
    host: str = ""
    uptime: float = 0.0
    handled: int = 0
    bad_messages: int = 0
    restarts: int = 0


class ActorRestarted(Message, frozen=True, kw_only=True):
    """An actor crashed and its supervisor is restarting it after `delay` seconds."""

    actor: str
    ts: Timestamp
    attempt: int
    delay: float
    error: str


class ActorGaveUp(Message, frozen=True, kw_only=True):
    """An actor crashed more than the restart intensity allows; it stays down.

    Mirrors OTP: more than `max_restarts` restarts within `period` seconds.
    """

    actor: str
    ts: Timestamp
    restarts: int
    period: float
    error: str
