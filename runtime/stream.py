"""Durable streams: what a late joiner can read back, with publishes deduplicated by id.

A `StreamSpec` says which subjects a JetStream stream captures and how much it
keeps (by age, by size, and at most so many per subject, so every subject's
newest message survives a flood on another). A publisher that sets the
``Nats-Msg-Id`` header (`MSG_ID`) on a message gets it stored once even if it
publishes it again within `duplicate_window` (a retry, a replayed cycle).

Readers ask the bus for the newest message of each subject (`Bus.last_per_subject`)
or follow the stream from there (`Bus.follow_stream`), which is JetStream's
``DeliverPolicy.LAST_PER_SUBJECT``. `NatsBus` uses JetStream (`runtime.nats_stream`);
`MemoryStreams` is the in-memory bus's model of the same rules for fast tests.
Without JetStream, `ensure_stream` raises `StreamUnavailable`: the caller logs
it and goes on without durability (degrade, don't crash).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .bus import Envelope, subject_matches
from .errors import BusError

#: The header JetStream deduplicates on (within the stream's duplicate window).
MSG_ID = "Nats-Msg-Id"


class StreamUnavailable(BusError):
    """A stream cannot be created, changed or read (JetStream off, no rights, no such stream)."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A stream to create (or bring to this configuration) on start."""

    name: str
    subjects: tuple[str, ...]
    max_age: float  # seconds; older messages are discarded
    max_bytes: int  # the whole stream; the oldest messages go first
    max_msgs_per_subject: int  # newest N per subject are kept
    duplicate_window: float = 120.0  # seconds in which a repeated Nats-Msg-Id is not stored again
    replicas: int = 1

    def captures(self, subject: str) -> bool:
        return any(subject_matches(pattern, subject) for pattern in self.subjects)


@dataclass(slots=True)
class _Stored:
    envelope: Envelope
    at: float
    size: int


class MemoryStream:
    """One stream's contents under the spec's rules (per-subject limit, age, size, dedup by id)."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self._by_subject: dict[str, list[_Stored]] = {}
        self._ids: OrderedDict[str, float] = OrderedDict()
        self.duplicates = 0

    def captures(self, env: Envelope) -> bool:
        return self.spec.captures(env.subject)

    def store(self, env: Envelope, now: float) -> bool:
        """Keep `env` (False if its id was seen within the duplicate window: not stored again)."""
        msg_id = (env.headers or {}).get(MSG_ID)
        while self._ids and next(iter(self._ids.values())) < now - self.spec.duplicate_window:
            self._ids.popitem(last=False)
        if msg_id is not None:
            if msg_id in self._ids:
                self.duplicates += 1
                return False
            self._ids[msg_id] = now
        kept = self._by_subject.setdefault(env.subject, [])
        kept.append(_Stored(env, now, len(env.data)))
        del kept[: max(0, len(kept) - self.spec.max_msgs_per_subject)]
        self._expire(now)
        return True

    def _expire(self, now: float) -> None:
        for subject, kept in list(self._by_subject.items()):
            kept[:] = [s for s in kept if s.at >= now - self.spec.max_age]
            if not kept:
                del self._by_subject[subject]
        stored = sorted((s for kept in self._by_subject.values() for s in kept), key=lambda s: s.at)
        total = sum(s.size for s in stored)
        for oldest in stored:
            if total <= self.spec.max_bytes:
                break
            self._by_subject[oldest.envelope.subject].remove(oldest)
            total -= oldest.size
        for subject in [s for s, kept in self._by_subject.items() if not kept]:
            del self._by_subject[subject]

    def last_per_subject(self, subject: str, now: float) -> list[Envelope]:
        self._expire(now)
        return [
            kept[-1].envelope
            for name, kept in sorted(self._by_subject.items())
            if kept and subject_matches(subject, name)
        ]
