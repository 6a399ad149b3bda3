"""NATS micro services over any bus: $SRV.PING/INFO/STATS as nats.micro speaks them, stats counted at the Sub.

A toy actor serves one endpoint (ticks in, heartbeats out: the runtime's own
messages, nothing of sniper's). nats.micro's own `from_dict` reads every
answer, so the wire format is checked against the library that defines it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from nats.micro.service import INFO_RESPONSE_TYPE, PING_RESPONSE_TYPE, STATS_RESPONSE_TYPE
from nats.micro.service import ServiceInfo as MicroInfo
from nats.micro.service import ServicePing as MicroPing
from nats.micro.service import ServiceStats as MicroStats

from messages import Heartbeat, Tick, encode
from messages.errors import DecodeError
from messages.runtime import ActorStateName
from messages.subjects import MicroVerb, micro_subjects
from runtime import Actor, ActorState, Bus, Context, MemoryBus, NatsBus, Sub, Supervisor, SystemClock, VirtualClock
from runtime.actor import CONTROL_PENDING
from runtime.bus import Envelope
from runtime.errors import RequestTimeoutError, SetupError
from runtime.micro import DISCOVERY_RATE, Endpoint, Service
from runtime.testing import Collector, wait_until
from sniper.embedded import EmbeddedNats

VERSION = "1.2.3"
METADATA = {"request_schema": '{"type":"object"}', "response_schema": '{"type":"object"}'}


def failed(reply: Heartbeat) -> str | None:
    """A reply reporting a failure: the toy endpoint's `ok: false`."""
    return None if reply.state == "running" else f"answered {reply.state}"


class Echo(Actor):
    """Answers ticks on `cmd.echo` with a heartbeat: cycle 7 and bad input are refused in the reply, 13 crashes."""

    name = "echo"
    heartbeat_interval: float | None = None

    def subscriptions(self) -> list[Sub]:
        return [
            Sub(
                self.subjects.command("echo"),
                Tick,
                self.on_request,
                queue="echo",
                pending=CONTROL_PENDING,
                on_bad=self.on_bad,
                max_rate=50.0,
                endpoint=Endpoint("echo", METADATA, failed=failed),
            ),
            Sub(self.subjects.tick_all(), Tick, self.on_tick),  # not an endpoint: never listed or counted
        ]

    async def on_request(self, tick: Tick, env: Envelope) -> None:
        if tick.cycle == 13:
            raise RuntimeError("unlucky")
        state: ActorStateName = "failed" if tick.cycle == 7 else "running"
        await self.reply(env, Heartbeat(actor=self.name, ts=self.clock.now(), state=state))

    async def on_bad(self, err: DecodeError, env: Envelope) -> None:
        await self.reply(env, Heartbeat(actor=self.name, ts=self.clock.now(), state="stopped"))

    async def on_tick(self, tick: Tick) -> None:
        pass


def request(cycle: int) -> bytes:
    return encode(Tick(asset="SOL", cycle=cycle, ts=1.0, deadline=2.0))


async def ask(bus: Bus, subject: str) -> dict[str, Any]:
    env = await bus.request(subject, b"", timeout=2)
    answer: dict[str, Any] = json.loads(env.data)
    return answer


@dataclass
class Served:
    ctx: Context
    service: Service
    echo: Echo


@pytest.fixture
async def served(vctx: Context) -> AsyncIterator[Served]:
    """The toy endpoint on the memory bus in virtual time, its service answering discovery."""
    service = Service("sniper", VERSION, clock=vctx.clock, description="a toy", metadata={"prefix": "sniper"})
    vctx.service = service
    echo = Echo()
    async with Supervisor(vctx, [echo]):
        await service.start(vctx.bus)
        yield Served(vctx, service, echo)
        await service.stop()


class TestServiceOnMemoryBus:
    @pytest.mark.parametrize("verb", ["PING", "INFO", "STATS"])
    async def test_every_subject_form_answers(self, served: Served, verb: MicroVerb) -> None:
        """$SRV.<VERB>, $SRV.<VERB>.sniper and $SRV.<VERB>.sniper.<id> each get this instance's answer."""
        for subject in micro_subjects(verb, "sniper", served.service.id):
            answer = await ask(served.ctx.bus, subject)
            assert (answer["name"], answer["id"], answer["version"]) == ("sniper", served.service.id, VERSION)

    async def test_ping_parses_with_nats_micro(self, served: Served) -> None:
        """The PING answer is nats.micro's ping_response, metadata included."""
        answer = await ask(served.ctx.bus, "$SRV.PING")
        ping = MicroPing.from_dict(answer)
        assert answer["type"] == PING_RESPONSE_TYPE and ping.metadata == {"prefix": "sniper"}

    async def test_info_lists_the_endpoint_with_subject_queue_and_metadata(self, served: Served) -> None:
        """INFO lists only the endpoint Sub, with its subject, queue group and schemas; not the plain Sub."""
        answer = await ask(served.ctx.bus, "$SRV.INFO.sniper")
        info = MicroInfo.from_dict(answer)
        assert answer["type"] == INFO_RESPONSE_TYPE and info.description == "a toy"
        (endpoint,) = info.endpoints
        assert (endpoint.name, endpoint.subject, endpoint.queue_group) == ("echo", "sniper.cmd.echo", "echo")
        assert endpoint.metadata == METADATA

    async def test_stats_count_requests_and_errors(self, served: Served) -> None:
        """Good, refused (ok-false reply), undecodable and crashing requests: each counted once, errors named."""
        bus = served.ctx.bus
        for data in (request(1), request(2), request(7)):
            await bus.publish("sniper.cmd.echo", data, reply="_INBOX.test")
        await served.ctx.clock.sleep(0.01)  # virtual: lets the deliveries run
        (endpoint,) = MicroStats.from_dict(await ask(bus, "$SRV.STATS")).endpoints
        assert (endpoint.num_requests, endpoint.num_errors, endpoint.last_error) == (3, 1, "answered failed")
        await bus.publish("sniper.cmd.echo", request(13), reply="_INBOX.test")
        await served.ctx.clock.sleep(0.01)
        (endpoint,) = MicroStats.from_dict(await ask(bus, "$SRV.STATS")).endpoints
        assert (endpoint.num_requests, endpoint.num_errors) == (4, 2)
        assert "RuntimeError('unlucky')" in (endpoint.last_error or "")

    async def test_bad_input_answered_with_an_error_counts_once(self, served: Served) -> None:
        """Undecodable input, refused and then answered ok-false by `on_bad`: one error, named by its cause."""
        await served.ctx.bus.publish("sniper.cmd.echo", b"{not json", reply="_INBOX.test")
        await served.ctx.clock.sleep(0.01)
        (endpoint,) = MicroStats.from_dict(await ask(served.ctx.bus, "$SRV.STATS")).endpoints
        assert (endpoint.num_requests, endpoint.num_errors) == (1, 1)
        assert (endpoint.last_error or "").startswith("bad request:") and served.echo.bad_messages == 1

    async def test_stats_time_and_start_come_from_the_injected_clock(self, served: Served) -> None:
        """`started` is read from the virtual clock, the processing time virtual (0 for a handler that never waits)."""
        assert served.service.started is not None
        assert abs(served.service.started - VirtualClock.EPOCH) < 60
        started = datetime.fromtimestamp(served.service.started, UTC)
        await served.ctx.bus.request("sniper.cmd.echo", request(1), timeout=1)
        answer = await ask(served.ctx.bus, "$SRV.STATS")
        stats = MicroStats.from_dict(answer)
        assert answer["type"] == STATS_RESPONSE_TYPE
        # nats.micro writes milliseconds and reads the time back naive, in UTC
        assert stats.started == started.replace(tzinfo=None, microsecond=started.microsecond // 1000 * 1000)
        assert (stats.endpoints[0].processing_time, stats.endpoints[0].average_processing_time) == (0, 0)

    async def test_another_service_or_instance_does_not_answer(self, served: Served) -> None:
        """Requests scoped to another service name or another id find no responder here."""
        for subject in ("$SRV.PING.other", f"$SRV.INFO.sniper.not{served.service.id}"):
            with pytest.raises(RequestTimeoutError):
                await served.ctx.bus.request(subject, b"", timeout=1)

    async def test_discovery_requests_are_rate_limited(self, served: Served) -> None:
        """A burst of pings beyond the budget is dropped unanswered and counted, never queued without bound."""
        answers = Collector[Envelope]()
        await served.ctx.bus.subscribe("_INBOX.flood", answers)
        burst = int(DISCOVERY_RATE) + 50
        for _ in range(burst):
            await served.ctx.bus.publish("$SRV.PING", b"", reply="_INBOX.flood")
        await served.ctx.clock.sleep(0.001)
        assert len(answers.items) == DISCOVERY_RATE and served.service.shed == 50

    async def test_counters_survive_a_restart(self, served: Served) -> None:
        """The supervisor restarts the crashed actor; its endpoint keeps one record and its counts."""
        echo = served.echo
        await served.ctx.bus.publish("sniper.cmd.echo", request(13), reply="_INBOX.test")
        await wait_until(lambda: echo.restarts == 1 and echo.state is ActorState.RUNNING)
        await served.ctx.bus.request("sniper.cmd.echo", request(1), timeout=1)
        assert [(r.endpoint.name, r.num_requests, r.num_errors) for r in served.service.endpoints] == [("echo", 2, 1)]


class TestServiceSetup:
    @pytest.mark.parametrize(("name", "version"), [("sn per", "1.0.0"), ("sniper", "1.0"), ("", "1.0.0")])
    def test_a_bad_name_or_version_is_refused(self, name: str, version: str) -> None:
        """Names are tokens and versions semantic, as nats.micro requires."""
        with pytest.raises(SetupError):
            Service(name, version, clock=SystemClock())

    def test_a_bad_endpoint_name_is_refused(self) -> None:
        """An endpoint name with a dot would break the protocol's subjects."""
        with pytest.raises(SetupError):
            Endpoint("cmd.echo")

    async def test_a_process_without_endpoints_lists_none(self, memory_bus: MemoryBus, vclock: VirtualClock) -> None:
        """Plain subscriptions register nothing: a service started anyway has an empty endpoint list."""
        service = Service("sniper", VERSION, clock=vclock, id="X1")
        ctx = Context(bus=memory_bus, clock=vclock, service=service)

        class Plain(Echo):
            def subscriptions(self) -> list[Sub]:
                return [Sub(self.subjects.tick_all(), Tick, self.on_tick)]

        async with Supervisor(ctx, [Plain()]):
            await service.start(memory_bus)
            assert MicroInfo.from_dict(await ask(memory_bus, "$SRV.INFO.sniper.X1")).endpoints == []
            await service.stop()


@pytest.mark.nats
class TestServiceOverNats:
    async def test_discovery_over_a_real_server(self, nats_bus: NatsBus) -> None:
        """PING, INFO and STATS by name and id over nats-server parse with nats.micro and count real requests."""
        clock = SystemClock()
        service = Service("sniper", VERSION, clock=clock)
        ctx = Context(bus=nats_bus, clock=clock, service=service)
        async with Supervisor(ctx, [Echo()]):
            await service.start(nats_bus)
            ping = MicroPing.from_dict(await ask(nats_bus, f"$SRV.PING.sniper.{service.id}"))
            info = MicroInfo.from_dict(await ask(nats_bus, "$SRV.INFO.sniper"))
            assert ping.id == info.id == service.id
            assert [(e.name, e.subject, e.queue_group) for e in info.endpoints] == [("echo", "sniper.cmd.echo", "echo")]
            await nats_bus.request("sniper.cmd.echo", request(1), timeout=2)
            await nats_bus.request("sniper.cmd.echo", request(7), timeout=2)
            (endpoint,) = MicroStats.from_dict(await ask(nats_bus, "$SRV.STATS")).endpoints
            assert (endpoint.num_requests, endpoint.num_errors) == (2, 1)
            assert endpoint.processing_time > 0 and endpoint.average_processing_time == endpoint.processing_time // 2
            await service.stop()

    async def test_every_instance_answers_a_ping_and_only_one_a_request(self, nats_server: EmbeddedNats) -> None:
        """Two processes: $SRV.PING gets both ids; a request on the endpoint is answered by one (queue group)."""
        clock = SystemClock()
        buses = [await NatsBus.connect(nats_server.url, name=f"p{n}") for n in range(2)]
        services = [Service("sniper", VERSION, clock=clock) for _ in buses]
        supervisors = [
            Supervisor(Context(bus=bus, clock=clock, service=svc), [Echo()])
            for bus, svc in zip(buses, services, strict=True)
        ]
        try:
            for supervisor, bus, svc in zip(supervisors, buses, services, strict=True):
                await supervisor.start()
                await svc.start(bus)
            asker = buses[0]
            pongs, replies = Collector[Envelope](), Collector[Envelope]()
            await asker.subscribe("_INBOX.pings", pongs)
            await asker.subscribe("_INBOX.echo", replies)
            await asker.flush()
            await asker.publish("$SRV.PING", b"", reply="_INBOX.pings")
            await asker.publish("sniper.cmd.echo", request(1), reply="_INBOX.echo")
            got = await pongs.wait(2)
            assert {MicroPing.from_dict(json.loads(env.data)).id for env in got} == {s.id for s in services}
            await replies.wait(1)
            counts = [
                MicroStats.from_dict(await ask(bus, f"$SRV.STATS.sniper.{svc.id}")).endpoints[0].num_requests
                for bus, svc in zip(buses, services, strict=True)
            ]
            assert sorted(counts) == [0, 1] and len(replies.items) == 1
        finally:
            for supervisor, svc in zip(supervisors, services, strict=True):
                await svc.stop()
                await supervisor.stop()
            for bus in buses:
                await bus.close()
