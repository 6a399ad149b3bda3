"""Durable streams: the same rules on the in-memory bus and on JetStream, and a clear error without one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from runtime import Bus, MemoryBus, NatsBus, VirtualClock
from runtime.bus import Envelope
from runtime.stream import MSG_ID, MemoryStream, StreamSpec, StreamUnavailable
from runtime.testing import STREAM_CHECKS
from sniper.embedded import EmbeddedNats

SPEC = StreamSpec(name="s", subjects=("x.>",), max_age=60, max_bytes=100, max_msgs_per_subject=3)


def env(subject: str, data: bytes, msg_id: str | None = None) -> Envelope:
    return Envelope(subject, data, None, {MSG_ID: msg_id} if msg_id else None)


class TestConformance:
    @pytest.mark.parametrize("check", STREAM_CHECKS, ids=lambda c: c.__name__)
    async def test_bus_keeps_streams_by_the_rules(self, any_bus: Bus, check: Callable[[Bus], Awaitable[None]]) -> None:
        """Every stream check passes on MemoryBus and on NatsBus over a real JetStream."""
        await check(any_bus)


class TestMemoryStream:
    def test_keeps_at_most_n_per_subject(self) -> None:
        """The fourth message on one subject pushes out the first; another subject is untouched."""
        stream = MemoryStream(SPEC)
        for i in range(4):
            stream.store(env("x.a", b"%d" % i), now=0)
        stream.store(env("x.b", b"b"), now=0)
        assert [e.data for e in stream.last_per_subject("x.>", now=0)] == [b"3", b"b"]
        assert len(stream._by_subject["x.a"]) == 3

    def test_old_messages_expire(self) -> None:
        """A message older than max_age is gone, and with it a subject that has nothing newer."""
        stream = MemoryStream(SPEC)
        stream.store(env("x.a", b"old"), now=0)
        stream.store(env("x.b", b"new"), now=50)
        assert [e.data for e in stream.last_per_subject("x.>", now=61)] == [b"new"]

    def test_size_limit_drops_the_oldest_first(self) -> None:
        """Past max_bytes the oldest messages go, whatever their subject."""
        stream = MemoryStream(SPEC)
        stream.store(env("x.a", b"a" * 60), now=0)
        stream.store(env("x.b", b"b" * 60), now=1)
        assert [e.subject for e in stream.last_per_subject("x.>", now=1)] == ["x.b"]

    @pytest.mark.parametrize(("later", "stored"), [(119.0, False), (121.0, True)])
    def test_an_id_is_refused_only_within_the_duplicate_window(self, later: float, stored: bool) -> None:
        """The same Nats-Msg-Id is dropped within the window (120 s) and stored again after it."""
        stream = MemoryStream(StreamSpec("s", ("x.>",), 1e6, 1 << 20, 10))
        assert stream.store(env("x.a", b"1", "id"), now=0)
        assert stream.store(env("x.a", b"2", "id"), now=later) is stored
        assert stream.duplicates == (0 if stored else 1)

    def test_the_filter_narrows_to_one_subject(self) -> None:
        """Asking for one subject gives only that subject's newest message."""
        stream = MemoryStream(SPEC)
        stream.store(env("x.a", b"a"), now=0)
        stream.store(env("x.b", b"b"), now=0)
        assert [e.data for e in stream.last_per_subject("x.b", now=0)] == [b"b"]


class TestUnavailable:
    async def test_a_memory_bus_without_the_stream_says_so(self, vclock: VirtualClock) -> None:
        """Reading a stream nobody created is StreamUnavailable on the memory bus too."""
        bus = MemoryBus(clock=vclock)
        with pytest.raises(StreamUnavailable, match="no stream"):
            await bus.last_per_subject("nope", "x.>")
        await bus.close()

    @pytest.mark.nats
    async def test_a_server_without_jetstream_is_a_clear_error(self) -> None:
        """On a nats-server without JetStream, creating a stream fails fast with StreamUnavailable."""
        async with EmbeddedNats(jetstream=False) as server:
            bus = await NatsBus.connect(server.url, name="no-js")
            try:
                with pytest.raises(StreamUnavailable, match="JetStream"):
                    await bus.ensure_stream(SPEC)
            finally:
                await bus.close()
