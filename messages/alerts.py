"""Alerts: what the Alerter decided, for people (Telegram, Alertmanager) and for other bots (NATS).

An alert is named by its labels (``{"alertname": "core_down", "asset": "SOL"}``);
its `fingerprint` is a hash of the sorted labels, as Alertmanager's is, so the
same incident has the same identity in every process and after a restart.
`Alert` travels on ``alert.<name>`` when an alert starts firing and when it
resolves. `AlertLog` is the notification log's entry (bucket ``alerts``, one key
per fingerprint): who was told what and when, so a restarted or second
alerter neither repeats nor forgets a notification.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

from ._base import Count, Detail, ErrorText, Fence, Message, Timestamp

AlertName = Literal["core_down", "backend_down", "test"]
AlertState = Literal["firing", "resolved"]
#: At most this many labels per alert (alertname, asset, ...).
MAX_LABELS = 8
LabelName = Annotated[str, msgspec.Meta(pattern=r"^[a-z_][a-z0-9_]{0,31}(?!\n)$")]
LabelValue = Annotated[str, msgspec.Meta(max_length=64)]
Labels = Annotated[dict[LabelName, LabelValue], msgspec.Meta(max_length=MAX_LABELS)]
Fingerprint = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{16}(?!\n)$", description="sha256 of the sorted labels")]


def fingerprint(labels: Mapping[str, str]) -> str:
    """16 hex digits of sha256 over the sorted ``name=value`` pairs (the same labels, the same alert)."""
    text = "\x00".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Alert(Message, frozen=True, kw_only=True):
    """An alert started firing or resolved. Published on ``alert.<name>``.

    `starts_at` is when the condition began (not when it crossed the
    ``--alert-for`` threshold); `ends_at` is set once resolved. `summary` is
    one line for people, at most 500 characters.
    """

    name: AlertName
    state: AlertState
    labels: Labels
    fingerprint: Fingerprint
    starts_at: Timestamp
    ends_at: Timestamp | None = None
    summary: Detail = ""
    ts: Timestamp
    #: The alerter's lease term: ignore an alert fenced below the highest seen (a deposed alerter's).
    fence: Fence = 0


class AlertLog(Message, frozen=True, kw_only=True):
    """The notification log's entry for one alert: the key is its fingerprint, in the ``alerts`` bucket.

    `notified_at` is the last firing notification (None: nobody was told yet);
    `resolved_notified` says the resolution was sent. Entries are written
    compare-and-set, so of two alerters exactly one claims each notification.
    """

    alert: Alert
    notified_at: Timestamp | None = None
    notifications: Count = 0
    resolved_notified: bool = False


class AlertCommand(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``{"action": "list"}``, ``{"action": "mute", "seconds": 3600}`` or ``{"action": "unmute"}`` on ``cmd.alerts``.

    Every alerter answers (no queue group), so a mute reaches all replicas; it
    is kept in the ``alerts`` bucket and survives a restart. `seconds` is at
    most a week.
    """

    action: Literal["list", "mute", "unmute"]
    seconds: Annotated[float, msgspec.Meta(gt=0, le=7 * 86400)] | None = None


class AlertReply(Message, frozen=True, kw_only=True):
    """The alerts firing now (at most 64) and until when notifications are muted (0: not muted)."""

    ok: bool
    firing: Annotated[list[Alert], msgspec.Meta(max_length=64)] = msgspec.field(default_factory=list)
    muted_until: Timestamp = 0.0
    error: ErrorText | None = None


class Mute(Message, frozen=True, kw_only=True):
    """Notifications are silenced until `until` (key ``mute`` of the ``alerts`` bucket)."""

    until: Timestamp
