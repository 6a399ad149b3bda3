"""JSON on the wire, typed on both ends, with one clear error for bad input.

Why JSON and not msgpack: any bot in any language, and ``nats sub 'sniper.>'``,
can read it; msgspec makes it fast enough that the NATS client, not the codec,
is the bottleneck (see bench/RESULTS.md).

Every decode path goes through `Decoder.decode`, which turns msgspec's errors,
oversize input and unknown schema versions into one `DecodeError` carrying the
subject and a preview, so an actor can count and log it and carry on.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, overload

import msgspec

from ._base import SCHEMA_VERSION, Message
from .errors import DecodeError

#: NATS' default max_payload; larger messages are rejected before parsing.
MAX_MESSAGE_BYTES = 1024 * 1024

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode(msg: Message) -> bytes:
    """Serialize a message to JSON bytes."""
    return _encoder.encode(msg)


class Decoder(Generic[T]):
    """A reusable typed decoder: a Message type, or a union of tagged Message types."""

    __slots__ = ("_dec", "max_bytes", "type")

    def __init__(self, type: Any, *, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.type = type
        self.max_bytes = max_bytes
        self._dec: msgspec.json.Decoder[T] = msgspec.json.Decoder(type)

    def decode(self, data: bytes, *, subject: str | None = None) -> T:
        """Decode `data` or raise DecodeError; never any other exception."""
        if len(data) > self.max_bytes:
            raise DecodeError(
                f"{len(data)} bytes exceeds the {self.max_bytes}-byte limit",
                subject=subject,
                data=data,
            )
        try:
            msg = self._dec.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise DecodeError(str(exc), subject=subject, data=data) from None
        version = getattr(msg, "v", SCHEMA_VERSION)
        if version != SCHEMA_VERSION and (version > SCHEMA_VERSION or version < 1):
            raise DecodeError(
                f"schema version {version} is not supported (this build speaks 1..{SCHEMA_VERSION})",
                subject=subject,
                data=data,
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
