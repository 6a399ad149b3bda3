"""One contract, two buses: MemoryBus must behave like NatsBus on a real server."""

from __future__ import annotations

import asyncio

import pytest

from runtime import Bus, Envelope, MemoryBus, subject_matches
from runtime.errors import BusClosedError, RequestTimeoutError

from .helpers import Collector


def Inbox() -> Collector[Envelope]:
    return Collector()


class TestBusContract:
    async def test_publish_reaches_matching_subscribers(self, any_bus: Bus) -> None:
        """A message reaches exact and wildcard subscribers with subject and bytes intact."""
        exact, star, tail = Inbox(), Inbox(), Inbox()
        await any_bus.subscribe("t.a.b", exact)
        await any_bus.subscribe("t.*.b", star)
        await any_bus.subscribe("t.>", tail)
        await any_bus.publish("t.a.b", b"payload")
        for inbox in (exact, star, tail):
            (env,) = await inbox.wait(1)
            assert (env.subject, env.data) == ("t.a.b", b"payload")

    async def test_order_is_kept_per_subscription(self, any_bus: Bus) -> None:
        """One subscription sees one publisher's messages in order."""
        inbox = Inbox()
        await any_bus.subscribe("o", inbox)
        for i in range(200):
            await any_bus.publish("o", str(i).encode())
        got = await inbox.wait(200)
        assert [int(e.data) for e in got] == list(range(200))

    async def test_queue_group_shares_messages(self, any_bus: Bus) -> None:
        """Members of one queue group split the messages; none is delivered twice."""
        both, seen_by = Inbox(), {"a": 0, "b": 0}

        def member(name: str):
            async def handler(env: Envelope) -> None:
                seen_by[name] += 1
                await both(env)

            return handler

        await any_bus.subscribe("q", member("a"), queue="workers")
        await any_bus.subscribe("q", member("b"), queue="workers")
        await any_bus.flush()
        for i in range(40):
            await any_bus.publish("q", str(i).encode())
        got = await both.wait(40)
        await any_bus.flush()
        assert sorted(int(e.data) for e in got) == list(range(40))
        assert sum(seen_by.values()) == 40

    async def test_request_reply(self, any_bus: Bus) -> None:
        """request() returns the responder's answer."""

        async def responder(env: Envelope) -> None:
            await any_bus.respond(env, env.data.upper())

        await any_bus.subscribe("svc.echo", responder)
        await any_bus.flush()
        answer = await any_bus.request("svc.echo", b"ping", timeout=2)
        assert answer.data == b"PING"

    async def test_request_without_responder_times_out_cleanly(self, any_bus: Bus) -> None:
        """No responder gives RequestTimeoutError, not a hang or a library error."""
        with pytest.raises(RequestTimeoutError):
            await any_bus.request("svc.nobody", b"?", timeout=0.5)

    async def test_handler_error_does_not_end_subscription(self, any_bus: Bus) -> None:
        """A raising handler is counted; later messages are still delivered."""
        inbox = Inbox()

        async def flaky(env: Envelope) -> None:
            if env.data == b"boom":
                raise RuntimeError("handler bug")
            await inbox(env)

        await any_bus.subscribe("f", flaky)
        await any_bus.publish("f", b"boom")
        await any_bus.publish("f", b"ok")
        (env,) = await inbox.wait(1)
        assert env.data == b"ok" and any_bus.stats.handler_errors == 1

    async def test_unsubscribe_stops_delivery(self, any_bus: Bus) -> None:
        """After unsubscribe (idempotent) no more messages arrive."""
        inbox, marker = Inbox(), Inbox()
        sub = await any_bus.subscribe("u", inbox)
        await any_bus.subscribe("u", marker)
        await sub.unsubscribe()
        await sub.unsubscribe()
        await any_bus.publish("u", b"x")
        await marker.wait(1)
        assert inbox.items == []

    async def test_closed_bus_refuses_work(self, any_bus: Bus) -> None:
        """Using a bus after close() raises BusClosedError (closed by you)."""
        await any_bus.close()
        assert any_bus.is_closed
        with pytest.raises(BusClosedError):
            await any_bus.publish("x", b"")
        with pytest.raises(BusClosedError):
            await any_bus.subscribe("x", Inbox())


class TestMemoryBusSpecifics:
    async def test_slow_consumer_drops_past_pending_limit(self) -> None:
        """Past the pending limit, new messages are dropped and counted, never blocking the publisher."""
        bus = MemoryBus(pending_limit=5)
        gate = asyncio.Event()

        async def stuck(env: Envelope) -> None:
            await gate.wait()

        await bus.subscribe("s", stuck)
        for _ in range(20):
            await bus.publish("s", b"x")
        assert bus.stats.slow_consumer_drops >= 14
        gate.set()
        await bus.close()


class TestSubjectMatching:
    @pytest.mark.parametrize(
        "pattern, subject, expected",
        [
            ("a.b", "a.b", True),
            ("a.*", "a.b", True),
            ("a.*", "a.b.c", False),
            ("a.>", "a.b.c", True),
            ("a.>", "a", False),
            ("*.b", "a.b", True),
            ("a.b", "a.c", False),
            (">", "x.y", True),
            ("a.*.c", "a.b.c", True),
            ("a.*.c", "a.b.d", False),
        ],
    )
    def test_wildcards_follow_nats(self, pattern: str, subject: str, expected: bool) -> None:
        """`*` matches one token and `>` one or more, as in NATS."""
        assert subject_matches(pattern, subject) is expected
