"""Record message streams and replay them: one format, one code path, any clock.

A recording is JSON lines, one per message, in arrival order::

    {"t": 1767225600.013, "subject": "sniper.tick.SOL", "msg": {"type": "tick", ...}}

``t`` is the receive time (wall clock), ``msg`` the message exactly as it was
on the wire (embedded unchanged, so a recording of a newer schema still
replays byte-for-byte). A payload that is not JSON is kept as ``"raw_b64"``
instead of being dropped: a recording of a hostile stream must reproduce it.

`replay` publishes lines back, sleeping on the injected clock between them:
``sniper replay`` uses the system clock (optionally faster with ``--speed``),
tests use a `VirtualClock` and replay an hour-long stream in milliseconds.
Live and replayed messages go through the same actors.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import msgspec

from messages import ContractError
from runtime import Bus, Clock, Envelope, Subscription, subject_matches


class Line(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One recorded message."""

    t: float
    subject: str
    # msgspec cannot put Raw in a union, so "absent" is an empty Raw.
    msg: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    raw_b64: str | None = None

    @property
    def data(self) -> bytes:
        if self.raw_b64 is not None:
            return base64.b64decode(self.raw_b64)
        return bytes(self.msg)


class _JsonLine(msgspec.Struct):
    t: float
    subject: str
    msg: msgspec.Raw


class _B64Line(msgspec.Struct):
    t: float
    subject: str
    raw_b64: str


def encode_line(line: Line) -> bytes:
    """One JSON line (without the newline); a line carries either ``msg`` or ``raw_b64``."""
    if line.raw_b64 is not None:
        return _line_encoder.encode(_B64Line(line.t, line.subject, line.raw_b64))
    return _line_encoder.encode(_JsonLine(line.t, line.subject, line.msg))


class RecordingError(ContractError):
    """A recording file that cannot be read (the line number says where)."""


_line_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(Line)
_json_check = msgspec.json.Decoder()


def to_line(t: float, subject: str, data: bytes) -> Line:
    """A recording line that gives back exactly `data`.

    JSON is embedded as is, unless it spans lines (pretty-printed, CRLF):
    embedding it would break the one-message-per-line format, so like
    anything that is not valid UTF-8 JSON it is kept byte-exact in base64.
    """
    if b"\n" not in data and b"\r" not in data:
        try:
            _json_check.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            pass
        else:
            return Line(t=t, subject=subject, msg=msgspec.Raw(data))
    return Line(t=t, subject=subject, raw_b64=base64.b64encode(data).decode())


_SUBJECT = re.compile(r"^[^\s.*>]+(\.[^\s.*>]+)*$")


def read_recording(path: str | Path, *, subjects: str | None = None) -> Iterator[Line]:
    """Lines of a recording, optionally only those matching a subject pattern.

    Every line is checked (JSON shape, a publishable subject, valid base64),
    so a bad file fails with its line number instead of half-way through a replay.
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115  # opened apart so only open errors become RecordingError; `with fh` closes it
    except OSError as exc:
        raise RecordingError(f"{path}: {exc.strerror or exc}") from None
    with fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                line = _line_decoder.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise RecordingError(f"{path}:{number}: not a recording line: {exc}") from None
            if not line.msg and line.raw_b64 is None:
                raise RecordingError(f"{path}:{number}: line has neither msg nor raw_b64")
            if not _SUBJECT.match(line.subject):
                raise RecordingError(f"{path}:{number}: {line.subject!r} is not a subject one can publish to")
            if line.raw_b64 is not None:
                try:
                    base64.b64decode(line.raw_b64, validate=True)
                except binascii.Error as exc:
                    raise RecordingError(f"{path}:{number}: raw_b64 is not base64: {exc}") from None
            if subjects is None or subject_matches(subjects, line.subject):
                yield line


class StreamRecorder:
    """Subscribes to a subject pattern and appends every message to a JSON-lines file."""

    def __init__(self, bus: Bus, clock: Clock, out: IO[bytes], *, subjects: str) -> None:
        self.bus = bus
        self.clock = clock
        self.out = out
        self.subjects = subjects
        self.count = 0
        self._sub: Subscription | None = None

    async def start(self) -> StreamRecorder:
        self._sub = await self.bus.subscribe(self.subjects, self._on)
        return self

    async def _on(self, env: Envelope) -> None:
        self.out.write(encode_line(to_line(self.clock.now(), env.subject, env.data)) + b"\n")
        self.count += 1

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        self.out.flush()


async def replay(lines: Iterable[Line], bus: Bus, clock: Clock, *, speed: float = 1.0) -> int:
    """Publish `lines` with their original spacing divided by `speed`; returns the count."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    count = 0
    first: float | None = None
    started = clock.monotonic()
    for line in lines:
        if first is None:
            first = line.t
        due = started + (line.t - first) / speed
        if due > clock.monotonic():
            await clock.sleep_until(due)
        await bus.publish(line.subject, line.data)
        count += 1
    return count
