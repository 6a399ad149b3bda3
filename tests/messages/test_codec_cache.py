"""A decoder decodes one bytes object once, however many local subscribers ask (issue 14)."""

from __future__ import annotations

import pytest

import messages as m
from messages.codec import Decoder

TICK = m.Tick(asset="SOL", cycle=3, ts=10.0, deadline=12.0, modules=("whale",))


def test_the_same_bytes_object_is_decoded_once() -> None:
    """Seven subscribers of one tick (six fetchers and the assembler) get the one message."""
    decoder: Decoder[m.Tick] = Decoder(m.Tick)
    data = m.encode(TICK)
    first = decoder.decode(data, subject="sniper.tick.SOL")
    assert first == TICK and all(decoder.decode(data) is first for _ in range(6))


def test_equal_bytes_in_another_object_are_decoded_again() -> None:
    """Identity, not equality: the next message is decoded, even when its bytes are the same."""
    decoder: Decoder[m.Tick] = Decoder(m.Tick)
    data = m.encode(TICK)
    first = decoder.decode(data)
    again = decoder.decode(bytes(bytearray(data)))
    assert again == first and again is not first


def test_a_bytearray_is_never_remembered() -> None:
    """A mutable buffer may hold other bytes next time: each call decodes what is there now."""
    decoder: Decoder[m.Tick] = Decoder(m.Tick)
    buffer = bytearray(m.encode(TICK))
    assert decoder.decode(buffer).cycle == 3  # type: ignore[arg-type]  # a caller passing a buffer anyway
    buffer[:] = m.encode(m.Tick(asset="SOL", cycle=4, ts=10.0, deadline=12.0, modules=("whale",)))
    assert decoder.decode(buffer).cycle == 4  # type: ignore[arg-type]


def test_refused_input_is_refused_for_every_subscriber_with_its_subject() -> None:
    decoder: Decoder[m.Tick] = Decoder(m.Tick)
    data = b'{"type": "tick", "asset": 1}'
    for subject in ("sniper.tick.SOL", "sniper.tick.BTC"):
        with pytest.raises(m.DecodeError) as caught:
            decoder.decode(data, subject=subject)
        assert caught.value.subject == subject
