"""sniper's commands as a NATS micro service, wired by `run_pipeline`: discovered, described, each answered once.

`$SRV.PING` finds the ``sniper`` service, `$SRV.INFO` lists its flags,
circuit and status endpoints with their subjects, queue groups and JSON
Schemas, `$SRV.STATS` counts what they served, and the command subjects keep
answering as before: once per request, by the actors' own subscriptions (no
second subscriber, which nats.micro's `add_service` would have added).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import aiohttp
import pytest
from nats.micro.service import ServiceInfo, ServicePing, ServiceStats

from actors.testing import FakeBackend
from actors.upstream import MockTransport
from messages import CircuitReply, FlagReply, Signal, StatusReply, Subjects, decode
from messages.catalogue import CHANNELS
from messages.schema import one_message_schema
from runtime import Bus, NatsBus, SystemClock
from runtime.bus import Envelope
from runtime.errors import RequestTimeoutError
from runtime.testing import Collector, Recorder
from sniper import __version__
from sniper.app import run_pipeline
from sniper.config import Settings
from sniper.control import status_command
from sniper.embedded import EmbeddedNats

from .. import samples
from ..harness import BACKEND, WITHOUT_DISCOVERY, Harness

#: Each command, a request it carries out, its reply type and the queue group the catalogue documents.
COMMANDS: dict[str, tuple[bytes, Any]] = {
    "flags": (b"{}", FlagReply),
    "circuit": (b'{"action": "list"}', CircuitReply),
    "status": (b"{}", StatusReply),
}
#: Command subject -> the queue group the catalogue documents for it.
QUEUES = {ch.address_of(Subjects()): ch.queue for ch in CHANNELS if ch.reply is not None}
REQUESTS = {"flags": "FlagCommand", "circuit": "CircuitCommand", "status": "StatusQuery"}


async def ask(bus: Bus, subject: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads((await bus.request(subject, b"", timeout=5)).data)
    return answer


def check_info(info: ServiceInfo) -> None:
    """Three endpoints, each on its command subject and documented queue group, with parseable schemas."""
    assert (info.name, info.version, info.metadata["prefix"]) == ("sniper", __version__, "sniper")
    by_name = {e.name: e for e in info.endpoints}
    assert sorted(by_name) == sorted(COMMANDS)
    for name, endpoint in by_name.items():
        _, reply = COMMANDS[name]
        # No queue group (the circuit command: every supervisor hears it, the leader answers) is "" on the wire.
        assert endpoint.subject == f"sniper.cmd.{name}" and endpoint.queue_group == (QUEUES[endpoint.subject] or "")
        assert json.loads(endpoint.metadata["request_schema"]) == one_message_schema(REQUESTS[name])
        assert json.loads(endpoint.metadata["response_schema"]) == one_message_schema(reply.__name__)
        assert endpoint.metadata["description"]


class TestOnMemoryBus:
    async def test_the_pipeline_is_a_discoverable_service(self, harness: Harness) -> None:
        """Through `sniper run`'s wiring: PING and INFO answer, and each command counts in STATS once."""
        async with harness.run():
            ping = ServicePing.from_dict(await ask(harness.bus, "$SRV.PING.sniper"))
            check_info(ServiceInfo.from_dict(await ask(harness.bus, f"$SRV.INFO.sniper.{ping.id}")))
            for name, (body, reply_type) in COMMANDS.items():
                env = await harness.bus.request(harness.subjects.command(name), body, timeout=1)
                assert decode(env.data, reply_type).ok
            stats = ServiceStats.from_dict(await ask(harness.bus, "$SRV.STATS"))
        assert {(e.name, e.num_requests, e.num_errors) for e in stats.endpoints} == {(n, 1, 0) for n in COMMANDS}

    async def test_a_process_without_commands_is_no_service(self, harness: Harness) -> None:
        """`--actors scheduler,assembler` serves no command, so nothing answers $SRV.PING."""
        async with harness.run(actors=("scheduler", "assembler")) as running:
            assert running.ctx.service is not None and not running.ctx.service.running
            with pytest.raises(RequestTimeoutError):
                await harness.bus.request("$SRV.PING", b"", timeout=1)


@pytest.mark.nats
class TestOverRealNats:
    async def test_discovered_described_and_each_command_answered_once(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Over nats-server: INFO as above, one subscription per command subject, one reply per request."""
        async with EmbeddedNats(monitor=True) as server:
            backend = FakeBackend(SystemClock(), samples.BODIES)
            settings = Settings(nats=server.url, backend=BACKEND, interval=0.3, window=0.2, actors=WITHOUT_DISCOVERY)
            async with run_pipeline(settings, transport=MockTransport(backend)) as running:
                signals = await Recorder[Signal](running.bus, running.ctx.subjects.signal_all(), Signal).start()
                asker = await NatsBus.connect(server.url, name="asker")
                try:
                    pongs, replies = Collector[Envelope](), Collector[Envelope]()
                    await asker.subscribe("_INBOX.test.pong", pongs)
                    await asker.subscribe("_INBOX.test.reply", replies)
                    await asker.flush()
                    await asker.publish("$SRV.PING", b"", reply="_INBOX.test.pong")
                    (pong,) = await pongs.wait(1)
                    ping = ServicePing.from_dict(json.loads(pong.data))
                    check_info(ServiceInfo.from_dict(await ask(asker, f"$SRV.INFO.sniper.{ping.id}")))
                    for name, (body, _) in COMMANDS.items():
                        await asker.publish(f"sniper.cmd.{name}", body, reply="_INBOX.test.reply")
                    await replies.wait(len(COMMANDS))
                    stats = ServiceStats.from_dict(await ask(asker, f"$SRV.STATS.sniper.{ping.id}"))
                    # After the STATS round trip any second answer would have been in; there is none.
                    assert len(replies.items) == len(COMMANDS) and len(pongs.items) == 1
                    assert {(e.name, e.num_requests) for e in stats.endpoints} == {(n, 1) for n in COMMANDS}
                    await signals.wait_count(1)
                    args = argparse.Namespace(prefix="sniper", asset=None, json=True)
                    assert await status_command(server.url, args) == 0
                finally:
                    await asker.close()
                subscribers = await command_subscriptions(server.monitor_url)
        # The service's commands: one subscription each, in its queue group (cmd.circuit in none: every
        # circuit supervisor hears it, the one holding the lease answers). cmd.alerts is no endpoint:
        # every alerter answers it (no queue group), so a mute reaches them all.
        assert subscribers == {
            **{f"sniper.cmd.{n}": [QUEUES[f"sniper.cmd.{n}"]] for n in COMMANDS},
            "sniper.cmd.alerts": [None],
        }
        printed = json.loads(capsys.readouterr().out)
        assert printed["ok"] is True and printed["assets"]["SOL"]["signal"]["asset"] == "SOL"


async def command_subscriptions(monitor_url: str) -> dict[str, list[str | None]]:
    """The server's own view: every subscription on a command subject, with its queue group."""
    async with aiohttp.ClientSession() as http, http.get(f"{monitor_url}/connz?subs=detail") as resp:
        connz = await resp.json()
    found: dict[str, list[str | None]] = {}
    for conn in connz["connections"]:
        for sub in conn.get("subscriptions_list_detail", []):
            if sub["subject"].startswith("sniper.cmd."):
                found.setdefault(sub["subject"], []).append(sub.get("qgroup"))
    return found
