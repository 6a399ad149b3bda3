"""JSON on the wire, typed on both ends, with one clear error for bad input.

Why JSON and not msgpack: any bot in any language, and ``nats sub 'sniper.>'``,
can read it; msgspec makes it fast enough that the NATS client, not the codec,
is the bottleneck (see bench/RESULTS.md).

Every decode path goes through `Decoder.decode`, which turns msgspec's errors,
oversize input, too deep nesting and unknown schema versions into one
`DecodeError` carrying the subject, a `kind` and a preview, so an actor can
count and log it and carry on. No input makes it raise anything else
(``tests/messages/test_hostile_decode.py`` fuzzes every message type).

Why a nesting limit: every field is typed, so a message that decodes is
shallow; but msgspec skips unknown fields (forward compatibility) by
recursing, and ten thousand ``[`` in one raised RecursionError. `nesting_exceeds`
rejects such input before parsing, deterministically, at `MAX_DEPTH`; a message
with fewer brackets than that (a Signal, a Tick) costs two byte counts.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any, Generic, TypeVar, overload

import msgspec

from ._base import SCHEMA_VERSION, Message
from .errors import DecodeError

#: NATS' default max_payload; larger messages are rejected before parsing.
MAX_MESSAGE_BYTES = 1024 * 1024
#: Deepest nesting of JSON arrays and objects accepted (the deepest message sniper sends nests 5).
MAX_DEPTH = 32

# A JSON string, escapes included. It also matches an unterminated string up to
# the end (possessive, so every quote starts a match and the scan stays linear
# even on hostile input); that input is malformed and the parser says so.
_STRING = re.compile(rb'"[^"\\]*+(?:\\.?[^"\\]*+)*+"?', re.DOTALL)
# Brackets only, objects folded into arrays: nesting is all that counts.
_FOLD = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKET = bytes(c for c in range(256) if c not in b"[]{}")
_NOT_BRACKET_OR_QUOTE = bytes(c for c in range(256) if c not in b'[]{}"')
_STEPS = bytes.maketrans(b"[]", b"\x01\xff")  # +1 / -1 as signed bytes


def nesting_exceeds(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """True if the JSON in `data` nests arrays and objects deeper than `limit`.

    Exact for valid JSON (brackets inside strings do not count); for malformed
    input it may answer either way, and the parser rejects that input anyway.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # cannot nest deeper than it has brackets: the common path
    if b"\\" in data:  # escapes: strings need the full scan
        brackets = _STRING.sub(b"", data).translate(_FOLD, _NOT_BRACKET)
    else:  # without escapes quotes alternate: keep quotes and brackets, drop every string
        brackets = b"".join(data.translate(_FOLD, _NOT_BRACKET_OR_QUOTE).split(b'"')[::2])
    if b"[" * (limit + 1) in brackets:  # the usual attack, found by one substring search
        return True
    if len(brackets) > 4096:  # one exact pass: cheaper than `limit` passes over a big hostile input
        return _max_depth(brackets) > limit
    rest = brackets
    for _ in range(limit):  # each pass strips the innermost level; shallow input is done in a few
        inner = rest.replace(b"[]", b"")
        if not inner:
            return False
        if len(inner) == len(rest):  # unbalanced (malformed): measure how deep a parser would get
            return _max_depth(brackets) > limit
        rest = inner
    return True


def _max_depth(brackets: bytes) -> int:
    """The deepest prefix of a string of ``[`` and ``]``."""
    return max(accumulate(memoryview(brackets.translate(_STEPS)).cast("b")), default=0)


T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode(msg: Message) -> bytes:
    """Serialize a message to JSON bytes."""
    return _encoder.encode(msg)


class Decoder(Generic[T]):
    """A reusable typed decoder: a Message type, or a union of tagged Message types.

    It remembers the last input it decoded, by identity: one NATS message is
    handed to every local subscriber as the same bytes object (a tick to six
    fetchers and the assembler, a report to the assembler and the circuit
    supervisor), and they all share this decoder (`decoder_for`), so it is
    checked and decoded once instead of once per subscriber. Sharing is safe
    because messages are frozen facts nobody changes. Refused input is not
    remembered: its `DecodeError` names each subscriber's own subject.
    """

    __slots__ = ("_dec", "_last", "max_bytes", "type")

    def __init__(self, type: Any, *, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.type = type
        self.max_bytes = max_bytes
        self._dec: msgspec.json.Decoder[T] = msgspec.json.Decoder(type)
        self._last: tuple[bytes, T] | None = None  # (input, message), one tuple so it is read whole

    def decode(self, data: bytes, *, subject: str | None = None) -> T:
        """Decode `data` or raise DecodeError; never any other exception."""
        last = self._last
        if last is not None and last[0] is data:
            return last[1]
        msg = self._decode(data, subject)
        if type(data) is bytes:  # immutable: the same object is the same input (a bytearray may change)
            self._last = (data, msg)
        return msg

    def _decode(self, data: bytes, subject: str | None) -> T:
        if len(data) > self.max_bytes:
            raise DecodeError(
                f"{len(data)} bytes exceeds the {self.max_bytes}-byte limit",
                subject=subject,
                data=data,
                kind="too_large",
            )
        if nesting_exceeds(data):
            raise DecodeError(
                f"arrays and objects nest deeper than {MAX_DEPTH} levels", subject=subject, data=data, kind="too_deep"
            )
        try:
            msg = self._dec.decode(data)
        except msgspec.ValidationError as exc:  # JSON, but not this contract (a subclass of DecodeError: first)
            raise DecodeError(str(exc), subject=subject, data=data, kind="invalid") from None
        except msgspec.DecodeError as exc:
            raise DecodeError(str(exc), subject=subject, data=data, kind="malformed") from None
        except RecursionError:  # unreachable below MAX_DEPTH; kept so no input can escape as anything else
            raise DecodeError("nesting too deep to parse", subject=subject, data=data, kind="too_deep") from None
        version = getattr(msg, "v", SCHEMA_VERSION)
        if version != SCHEMA_VERSION and (version > SCHEMA_VERSION or version < 1):
            raise DecodeError(
                f"schema version {version} is not supported (this build speaks 1..{SCHEMA_VERSION})",
                subject=subject,
                data=data,
                kind="version",
            )
        return msg


_decoders: dict[Any, Decoder[Any]] = {}


def decoder_for(type: Any) -> Decoder[Any]:
    """A cached Decoder for `type` (building msgspec decoders is not free)."""
    dec = _decoders.get(type)
    if dec is None:
        dec = _decoders[type] = Decoder(type)
    return dec


@overload
def decode(data: bytes, type: type[T], *, subject: str | None = None) -> T: ...
@overload
def decode(data: bytes, type: Any, *, subject: str | None = None) -> Any: ...
def decode(data: bytes, type: Any, *, subject: str | None = None) -> Any:
    """Decode one message of `type` (or a union) or raise DecodeError."""
    return decoder_for(type).decode(data, subject=subject)
