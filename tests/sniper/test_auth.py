"""Authenticated, authorised NATS: the repository's nats.conf on a real nats-server.

Every test starts a server FROM ``nats.conf`` (free port, temporary store, the
three passwords in its environment) and checks what each user may do:

* nobody gets in anonymously or with a wrong password;
* ``sniper`` runs the whole pipeline (and ``sniper run``) without a single
  permission violation;
* ``operator`` runs ``sniper flags set`` and ``sniper circuit reset`` against
  it, but cannot publish data, signals or ticks;
* ``bot`` reads signals and the key-value buckets, and whatever it forges
  reaches no subscriber and changes no stored value;
* ``bot`` and ``operator`` discover the micro service (``$SRV.PING/INFO/STATS``)
  and ask the read-only ``cmd.status``; the bot still may not set a flag.

"Nothing arrived" is proven by order, not by waiting: after the forger's
flush (a PING/PONG round trip, so the server has handled its publishes) a
legitimate marker is published, and once the marker is in, anything the
server had let through would already be there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.micro.service import ServiceInfo, ServicePing, ServiceStats

from actors.metrics import Metrics
from marketsim import RunningServer, serve
from messages import CircuitState, Signal, Subjects, decode
from messages.subjects import SIGNALS_STREAM
from runtime import NatsBus
from runtime.bus import Envelope
from runtime.errors import BusConnectError, RequestTimeoutError
from runtime.nats_bus import redact_url
from runtime.testing import Collector, Recorder, wait_until
from sniper.app import run_pipeline
from sniper.config import NatsAuth, Settings
from sniper.control import circuit_command, flags_command, status_command
from sniper.embedded import EmbeddedNats

pytestmark = pytest.mark.nats

ROOT = Path(__file__).resolve().parents[2]
SNIPER = [sys.executable, "-m", "sniper"]
USERS = ("sniper", "operator", "bot")
#: Fresh, long passwords per test run: a leak in any output is unmistakable.
PASSWORDS = {user: f"{user}-{secrets.token_hex(12)}" for user in USERS}
ENV = {f"NATS_{user.upper()}_PASSWORD": password for user, password in PASSWORDS.items()}
SUBJECTS = Subjects()


@dataclass
class Secured:
    """A nats-server started from the repository's nats.conf."""

    server: EmbeddedNats

    def url(self, user: str | None = None, password: str | None = None) -> str:
        if user is None:
            return self.server.url
        secret = PASSWORDS[user] if password is None else password
        return self.server.url.replace("nats://", f"nats://{user}:{secret}@")

    async def connect(self, user: str) -> NatsBus:
        return await NatsBus.connect(self.url(user), name=f"test-{user}", connect_deadline=5)


@pytest.fixture
async def secured() -> AsyncIterator[Secured]:
    async with EmbeddedNats(config=ROOT / "nats.conf", env=ENV) as server:
        yield Secured(server)


@pytest.fixture
async def buses(secured: Secured) -> AsyncIterator[dict[str, NatsBus]]:
    """One connection per user."""
    connected = {user: await secured.connect(user) for user in USERS}
    yield connected
    for bus in connected.values():
        await bus.close()


def violations(bus: NatsBus) -> list[str]:
    return [e for e in bus.stats.errors if "permissions violation" in e.lower()]


class Listener:
    """A subscriber that records every message, and knows when a marker has arrived.

    Readiness: on nats-server 2.15 a subscription acknowledged by the
    subscriber's flush (PING/PONG) may still miss a publish made by another
    connection a few milliseconds later (seen here under load, also with plain
    nats-py and no auth). So `live` publishes probes until one arrives; probes
    are left out of `subjects`.
    """

    def __init__(self) -> None:
        self.seen: list[Envelope] = []
        self._arrived = asyncio.Event()

    async def on(self, env: Envelope) -> None:
        self.seen.append(env)
        self._arrived.set()

    def _seen(self, subject: str) -> bool:
        return any(env.subject == subject for env in self.seen)

    async def live(self, publisher: NatsBus, subject: str) -> None:
        """Publish probes on `subject` until one comes through: the subscription is in force at the server."""
        async with asyncio.timeout(10):
            while True:
                await publisher.publish(subject, b"probe")
                await publisher.flush()
                try:
                    await wait_until(lambda: self._seen(subject), timeout=0.25, changed=self._arrived)
                    return
                except TimeoutError:
                    continue

    async def marker(self, publisher: NatsBus, subject: str) -> None:
        """Publish a legitimate marker and wait until it has come through."""
        await publisher.publish(subject, b"marker")
        await publisher.flush()
        await wait_until(lambda: self._seen(subject), timeout=10, changed=self._arrived)

    @property
    def subjects(self) -> list[str]:
        return [env.subject for env in self.seen if not env.subject.endswith(".probe")]


async def forged_reach_nobody(forger: NatsBus, subjects: list[str], sniper: NatsBus) -> Listener:
    """Publish on `subjects` as `forger`; return the sniper-user listener after a marker came through."""
    listener = Listener()
    await sniper.subscribe("sniper.>", listener.on)
    await listener.live(sniper, "sniper.test.probe")
    for subject in subjects:
        await forger.publish(subject, b'{"type": "forged"}')
    await forger.flush()  # PING/PONG: the server has handled every publish above
    await listener.marker(sniper, "sniper.test.marker")
    return listener


FORGED = [
    "sniper.data.whale.SOL",
    "sniper.degraded.etf.SOL",
    "sniper.signal.SOL",
    "sniper.tick.SOL",
    "sniper.routes",
    "sniper.cmd.flags",
    "sniper.cmd.circuit",
    "sniper.flags.changed",
    "sniper.health.SOL",
    "sniper.circuit.etf",
    "sniper.heartbeat.scheduler",
]


class TestConfig:
    def test_listens_on_loopback_and_has_no_anonymous_user(self) -> None:
        """nats.conf binds 127.0.0.1, defines the three users and never names a no_auth_user."""
        text = (ROOT / "nats.conf").read_text()
        assert "listen: 127.0.0.1:4222" in text and not re.search(r"(?m)^\s*no_auth_user", text)
        for user in USERS:
            assert f"user: {user}" in text and f"password: $NATS_{user.upper()}_PASSWORD" in text

    async def test_embedded_demo_server_binds_loopback_without_auth(self) -> None:
        """`sniper demo`'s own broker has no users, so it must only listen on loopback."""
        server = EmbeddedNats()
        server.store_dir = Path("/nonexistent")  # command() only formats paths
        argv = server.command()
        assert argv[argv.index("-a") + 1] == "127.0.0.1"
        async with EmbeddedNats() as running:
            assert running.url.startswith("nats://127.0.0.1:")
            bus = await NatsBus.connect(running.url)  # anonymous is fine there
            await bus.close()

    @pytest.mark.parametrize(
        ("host", "url_host", "bound_host"),
        [(None, "127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1", "0.0.0.0"), ("::1", "[::1]", "[::1]")],
    )
    async def test_metrics_listen_on_loopback_unless_told(
        self, host: str | None, url_host: str, bound_host: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """/metrics binds 127.0.0.1 by default; the log line names the address actually bound."""
        import aiohttp

        from actors.metrics import Metrics
        from sniper.metrics_server import serve_metrics

        if host == "::1" and not socket.has_ipv6:
            pytest.skip("no IPv6 here")
        caplog.set_level(logging.INFO, logger="sniper.metrics")
        kwargs = {} if host is None else {"host": host}
        try:
            context = serve_metrics(Metrics(), 0, **kwargs)
            url = await context.__aenter__()
        except OSError as exc:  # ::1 not configured in this container
            pytest.skip(f"cannot bind {host}: {exc}")
        try:
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            assert url == f"http://{url_host}:{port}/metrics"
            async with aiohttp.ClientSession() as http, http.get(url) as resp:
                assert resp.status == 200
        finally:
            await context.__aexit__(None, None, None)
        (record,) = [r for r in caplog.records if r.getMessage() == "metrics_serving"]
        assert record.fields["bound"] == f"{bound_host}:{port}"  # type: ignore[attr-defined]  # StructLogger's fields


class TestRedaction:
    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("nats://sniper:pw@h:4222", "nats://sniper:***@h:4222"),
            ("nats://s3cret-token@h:4222", "nats://***@h:4222"),
            ("nats://h:4222", "nats://h:4222"),
            ("sniper:pw@h:4222", "sniper:***@h:4222"),
            ("nats://u:p@ss@h:4222", "nats://u:***@h:4222"),
            ("tls://a:x@h1:4222,nats://b:y@h2:4222", "tls://a:***@h1:4222,nats://b:***@h2:4222"),
            ("nats://sniper:@h:4222", "nats://sniper:***@h:4222"),
        ],
    )
    def test_redact_url(self, url: str, shown: str) -> None:
        """Passwords and tokens become ***; users, hosts and ports stay readable."""
        assert redact_url(url) == shown

    async def test_connect_error_names_the_url_without_the_password(self) -> None:
        """A connect failure (closed port) names the URL with the password redacted, in message and logs."""
        with pytest.raises(BusConnectError) as caught:
            await NatsBus.connect("nats://sniper:hunter2-secret@127.0.0.1:1", connect_deadline=1)
        assert "nats://sniper:***@127.0.0.1:1" in str(caught.value) and "hunter2" not in str(caught.value)

    async def test_password_argument_is_scrubbed_from_errors(self) -> None:
        """A password given as an argument never shows either, even if an error were to echo it."""
        with pytest.raises(BusConnectError) as caught:
            await NatsBus.connect("nats://127.0.0.1:1", user="sniper", password="hunter2-secret", connect_deadline=1)
        assert "hunter2" not in str(caught.value)
        bus = NatsBus.__new__(NatsBus)
        bus._secrets = ["hunter2-secret", "ab"]
        assert bus.scrub("echo hunter2-secret and ab") == "echo *** and ab"  # too short to scrub: 'ab'

    @pytest.mark.slow
    def test_cli_error_lines_hide_the_password(self) -> None:
        """`sniper flags list` against a closed port with --nats-password: exit 2, no password on stderr."""
        result = subprocess.run(
            [*SNIPER, "flags", "list", "--nats", "nats://op:hunter2-secret@127.0.0.1:1"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        assert result.returncode == 2 and "nats://op:***@127.0.0.1:1" in result.stderr
        assert "hunter2" not in result.stderr + result.stdout


class TestLogin:
    async def test_anonymous_connect_is_refused(self, secured: Secured) -> None:
        """No credentials: refused at once, with one clear message."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(BusConnectError, match="refused the credentials"):
            await NatsBus.connect(secured.url(), connect_deadline=5)
        assert loop.time() - started < 5, "an authorization violation is not retried until the deadline"

    @pytest.mark.parametrize("user", USERS)
    async def test_wrong_password_is_refused_and_never_shown(
        self, secured: Secured, user: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A wrong password is refused; the error and the logs show the user, not the password."""
        caplog.set_level(logging.DEBUG)
        wrong = f"wrong-{secrets.token_hex(8)}"
        with pytest.raises(BusConnectError) as caught:
            await NatsBus.connect(secured.url(user, wrong), connect_deadline=5)
        message = str(caught.value)
        assert f"nats://{user}:***@127.0.0.1:" in message and "refused the credentials" in message
        assert wrong not in message and wrong not in caplog.text

    @pytest.mark.parametrize("user", USERS)
    async def test_each_user_logs_in(self, secured: Secured, user: str, caplog: pytest.LogCaptureFixture) -> None:
        """The right password opens the door; the 'connected' line names the user, not the password."""
        caplog.set_level(logging.DEBUG)
        bus = await secured.connect(user)
        await bus.close()
        assert f"connected to NATS nats://{user}:***@" in caplog.text and PASSWORDS[user] not in caplog.text

    @pytest.mark.parametrize("via", ["url", "arguments"])
    async def test_credentials_in_url_or_arguments(self, secured: Secured, via: str) -> None:
        """nats://user:pass@host and user=/password= are equivalent."""
        if via == "url":
            bus = await NatsBus.connect(secured.url("bot"))
        else:
            bus = await NatsBus.connect(secured.url(), **NatsAuth("bot", PASSWORDS["bot"]).options())
        assert bus.url == redact_url(secured.url("bot") if via == "url" else secured.url())
        await bus.close()


class TestBot:
    async def test_bot_receives_signals_health_and_alerts(self, buses: dict[str, NatsBus]) -> None:
        """What the sniper publishes on signal/health/alert subjects reaches the bot."""
        bot, sniper = buses["bot"], buses["sniper"]
        listener = Listener()
        for kind in ("signal", "health", "alert"):
            await bot.subscribe(f"sniper.{kind}.>", listener.on)
            await listener.live(sniper, f"sniper.{kind}.probe")
        expected = ["sniper.alert.etf", "sniper.health.SOL", "sniper.signal.SOL"]
        for subject in expected:
            await sniper.publish(subject, b"{}")
        await wait_until(lambda: len(listener.subjects) >= len(expected))
        assert sorted(listener.subjects) == expected and violations(bot) == []

    async def test_bot_forgeries_reach_no_subscriber(self, buses: dict[str, NatsBus]) -> None:
        """Every publish the bot makes under sniper. is denied: the sniper's subscriber gets only the marker."""
        listener = await forged_reach_nobody(buses["bot"], FORGED, buses["sniper"])
        assert listener.subjects == ["sniper.test.marker"]
        await wait_until(lambda: len(violations(buses["bot"])) >= len(FORGED))

    async def test_refused_publishes_are_counted_and_summarised(
        self, buses: dict[str, NatsBus], caplog: pytest.LogCaptureFixture
    ) -> None:
        """300 refused publishes: all counted (also on /metrics), one log line until the next summary period."""
        bot = buses["bot"]
        metrics = Metrics()
        metrics.watch_bus(bot.stats)
        with caplog.at_level(logging.WARNING, logger="sniper.bus.nats"):
            for n in range(300):
                await bot.publish(f"sniper.data.whale.SOL{n}", b"{}")
            await bot.flush()
            await wait_until(lambda: bot.stats.permission_violations >= 300)
        lines = [r for r in caplog.records if "permission violation" in r.getMessage()]
        assert len(lines) == 1 and "sniper.data.whale.sol" in lines[0].getMessage().lower()
        assert metrics.registry.get_sample_value("sniper_bus_permission_violations_total") == 300

    async def test_bot_cannot_subscribe_to_data(self, buses: dict[str, NatsBus]) -> None:
        """The bot's subscription to module data is refused: data never reaches it, signals still do."""
        bot, sniper = buses["bot"], buses["sniper"]
        listener = Listener()
        data_seen: list[str] = []

        async def on_data(msg: Msg) -> None:
            data_seen.append(msg.subject)

        data = await bot.client.subscribe("sniper.data.>", cb=on_data)  # nats-py's own handle: counts and queue
        await bot.subscribe("sniper.signal.>", listener.on)
        await listener.live(sniper, "sniper.signal.probe")  # both SUBs handled by the server
        await sniper.publish("sniper.data.whale.SOL", b"{}")
        await listener.marker(sniper, "sniper.signal.marker")
        # Anything the server sent before the marker has been read into the data subscription's queue by now.
        assert (data.delivered, data.pending_msgs, data_seen) == (0, 0, [])
        assert listener.subjects == ["sniper.signal.marker"]
        await wait_until(lambda: any("subscription" in v for v in violations(bot)))

    async def test_bot_reads_every_bucket(self, buses: dict[str, NatsBus]) -> None:
        """Bucket info and get by key work for the bot on flags, circuits and routes."""
        bot, sniper = buses["bot"], buses["sniper"]
        for name in ("flags", "circuits", "routes"):
            await self.read_bucket(bot, sniper, SUBJECTS.kv_bucket(name))
        assert violations(bot) == []

    @staticmethod
    async def read_bucket(bot: NatsBus, sniper: NatsBus, bucket: str) -> None:
        written = await sniper.key_value(bucket)
        await written.put("k1", b"stored")
        kv = await bot.key_value(bucket)
        entry = await kv.get("k1")
        assert entry is not None and entry.value == b"stored"

    async def test_bot_cannot_make_the_broker_publish_for_it(self, buses: dict[str, NatsBus]) -> None:
        """A consumer delivering a bucket's history to sniper.tick.SOL is refused: nothing reaches the sniper."""
        from nats.js.api import ConsumerConfig, DeliverPolicy

        bot, sniper = buses["bot"], buses["sniper"]
        await (await sniper.key_value("sniper_routes")).put("current", b"stored")
        listener = Listener()
        await sniper.subscribe("sniper.tick.SOL", listener.on)
        await sniper.flush()
        jsm = bot.client.jsm(timeout=0.5)
        config = ConsumerConfig(deliver_subject="sniper.tick.SOL", deliver_policy=DeliverPolicy.ALL)
        with pytest.raises(nats.errors.TimeoutError):
            await jsm.add_consumer("KV_sniper_routes", config)
        await wait_until(lambda: any("$js.api.consumer.create" in v for v in violations(bot)))
        await sniper.flush()
        assert listener.subjects == []

    async def test_bot_cannot_write_a_bucket(self, buses: dict[str, NatsBus]) -> None:
        """A put to sniper_flags is denied (it times out unanswered) and the stored value is unchanged."""
        bot, sniper = buses["bot"], buses["sniper"]
        flags = await sniper.key_value("sniper_flags")
        revision = await flags.put("ETF", b"trusted")
        js = bot.client.jetstream(timeout=0.5)
        forged_kv = await js.key_value("sniper_flags")  # opening (stream info) is a read: allowed
        with pytest.raises(nats.errors.TimeoutError):
            await forged_kv.put("ETF", b"forged")
        with pytest.raises(nats.errors.TimeoutError):
            await forged_kv.delete("ETF")
        entry = await flags.get("ETF")
        assert entry is not None and (entry.value, entry.revision) == (b"trusted", revision)
        await wait_until(lambda: sum('"$kv.sniper_flags.etf"' in v for v in violations(bot)) >= 2)

    @pytest.mark.parametrize(
        "operation",
        ["create", "update", "delete", "purge", "delete_msg"],
    )
    async def test_bot_cannot_change_streams(self, buses: dict[str, NatsBus], operation: str) -> None:
        """JetStream API writes (stream create/update/delete/purge, message delete) are denied to the bot."""
        from nats.js.api import StreamConfig

        bot, sniper = buses["bot"], buses["sniper"]
        flags = await sniper.key_value("sniper_flags")
        await flags.put("ETF", b"kept")
        jsm = bot.client.jsm(timeout=0.5)
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "create": lambda: jsm.add_stream(StreamConfig(name="BOTS", subjects=["bots.>"])),
            "update": lambda: jsm.update_stream(StreamConfig(name="KV_sniper_flags", max_msgs=1)),
            "delete": lambda: jsm.delete_stream("KV_sniper_flags"),
            "purge": lambda: jsm.purge_stream("KV_sniper_flags"),
            "delete_msg": lambda: jsm.delete_msg("KV_sniper_flags", 1),
        }
        with pytest.raises(nats.errors.TimeoutError):
            await calls[operation]()
        entry = await flags.get("ETF")
        assert entry is not None and entry.value == b"kept"
        info = await sniper.client.jsm().stream_info("KV_sniper_flags")
        assert info.config.max_msgs in (None, -1) and info.state.messages >= 1
        await wait_until(lambda: len(violations(bot)) >= 1)


class TestOperator:
    async def test_operator_cannot_publish_data(self, buses: dict[str, NatsBus]) -> None:
        """Data, degraded, signal, tick, routes, ...: the operator's forgeries reach no subscriber."""
        forged = [s for s in FORGED if not s.startswith("sniper.cmd.")]
        listener = await forged_reach_nobody(buses["operator"], forged, buses["sniper"])
        assert listener.subjects == ["sniper.test.marker"]
        await wait_until(lambda: len(violations(buses["operator"])) >= len(forged))

    async def test_operator_may_send_commands(self, buses: dict[str, NatsBus]) -> None:
        """sniper.cmd.* from the operator reaches the sniper's subscriber (replies are tested below)."""
        listener = Listener()
        await buses["sniper"].subscribe("sniper.cmd.>", listener.on)
        await listener.live(buses["operator"], "sniper.cmd.probe")
        await buses["operator"].publish("sniper.cmd.flags", b"{}")
        await listener.marker(buses["operator"], "sniper.cmd.marker")
        assert listener.subjects == ["sniper.cmd.flags", "sniper.cmd.marker"]

    @pytest.mark.parametrize("bucket", ["sniper_flags", "sniper_circuits", "sniper_routes"])
    async def test_operator_reads_buckets_but_writes_none(self, buses: dict[str, NatsBus], bucket: str) -> None:
        """The operator changes state only through commands: a direct put to any bucket is denied."""
        operator, sniper = buses["operator"], buses["sniper"]
        await (await sniper.key_value(bucket)).put("seed", b"1")
        kv = await operator.client.jetstream(timeout=0.5).key_value(bucket)
        entry = await kv.get("seed")
        assert entry is not None and entry.value == b"1"
        with pytest.raises(nats.errors.TimeoutError):
            await kv.put("seed", b"forged")
        stored = await (await sniper.key_value(bucket)).get("seed")
        assert stored is not None and stored.value == b"1"


@dataclass
class Pipeline:
    secured: Secured
    backend: RunningServer
    bus: NatsBus
    signals: Recorder[Signal]


@pytest.fixture
async def pipeline(secured: Secured) -> AsyncIterator[Pipeline]:
    """The whole pipeline as the sniper user (credentials as settings), observed by the bot."""
    async with serve(port=0, seed=5) as backend:
        bot = await secured.connect("bot")
        signals = await Recorder[Signal](bot, SUBJECTS.signal_all(), Signal).start()
        settings = Settings(
            nats=secured.url(),
            nats_auth=NatsAuth("sniper", PASSWORDS["sniper"]),
            backend=backend.url,
            interval=0.4,
            window=0.3,
        )
        async with run_pipeline(settings) as running:
            await signals.wait_count(2, timeout=20)
            assert isinstance(running.bus, NatsBus)
            yield Pipeline(secured, backend, running.bus, signals)
            assert violations(running.bus) == [], "the sniper user may do everything the pipeline does"
        await bot.close()


def statuses(sig: Signal) -> dict[str, str]:
    return {m: st.reason or st.status for m, st in sig.modules.items()}


class TestPipelineAsSniper:
    async def test_pipeline_runs_as_sniper_user(self, pipeline: Pipeline) -> None:
        """Signals flow to the bot; flags, circuits and routes buckets were created and written."""
        sig = pipeline.signals.messages[0]
        assert statuses(sig)["whale"] == "ok" and statuses(sig)["etf"] in ("payment_required", "circuit_open")
        info = await pipeline.bus.client.jsm().stream_info("KV_sniper_circuits")
        assert info.state.messages >= 1

    async def test_operator_sets_a_flag_and_resets_a_circuit(
        self, pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`sniper flags set` and `sniper circuit list/reset` (sniper.control) work as the operator."""
        url = pipeline.secured.url()
        operator = NatsAuth("operator", PASSWORDS["operator"])

        def args(**kw: object) -> argparse.Namespace:
            return argparse.Namespace(prefix="sniper", **kw)

        assert await circuit_command(url, args(circuit_command="list"), auth=operator) == 0
        assert any(ln.split()[:3] == ["etf", "all", "quarantined"] for ln in capsys.readouterr().out.splitlines())
        assert (
            await flags_command(url, args(flags_command="set", flag="ETF", value=False, why="test"), auth=operator) == 0
        )
        assert "ETF      off" in capsys.readouterr().out
        seen = len(pipeline.signals.messages)
        await pipeline.signals.wait_for(lambda ss: len(ss) > seen and statuses(ss[-1])["etf"] == "disabled")
        assert (
            await flags_command(url, args(flags_command="set", flag="ETF", value=True, why="back"), auth=operator) == 0
        )
        capsys.readouterr()
        assert await circuit_command(url, args(circuit_command="reset", module="etf"), auth=operator) == 0
        assert await circuit_command(url, args(circuit_command="list"), auth=operator) == 0
        assert not any(ln.split()[:3] == ["etf", "all", "quarantined"] for ln in capsys.readouterr().out.splitlines())

    @pytest.mark.slow
    async def test_operator_cli_process_with_credentials_from_the_environment(self, pipeline: Pipeline) -> None:
        """`sniper flags list` as a process, credentials in SNIPER_NATS_USER / SNIPER_NATS_PASSWORD."""
        env = {**os.environ, "SNIPER_NATS_USER": "operator", "SNIPER_NATS_PASSWORD": PASSWORDS["operator"]}
        proc = await asyncio.create_subprocess_exec(
            *SNIPER,
            "flags",
            "list",
            "--nats",
            pipeline.secured.url(),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert "WHALE    on" in out.decode() and PASSWORDS["operator"] not in err.decode()

    async def test_bot_discovers_the_service_and_asks_status_but_sets_no_flag(
        self, pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """As the bot: $SRV.PING/INFO/STATS and `sniper status` answer; a flag set is denied, and only that."""
        bot = await pipeline.secured.connect("bot")
        try:
            ping = ServicePing.from_dict(json.loads((await bot.request("$SRV.PING", b"", timeout=5)).data))
            info = ServiceInfo.from_dict(json.loads((await bot.request("$SRV.INFO.sniper", b"", timeout=5)).data))
            scoped = f"$SRV.STATS.sniper.{ping.id}"
            stats = ServiceStats.from_dict(json.loads((await bot.request(scoped, b"", timeout=5)).data))
            assert ping.name == info.name == stats.name == "sniper" and info.id == stats.id == ping.id
            assert {e.subject for e in info.endpoints} == {f"sniper.cmd.{c}" for c in ("flags", "circuit", "status")}
            args = argparse.Namespace(prefix="sniper", asset="SOL", json=False)
            assert await status_command(pipeline.secured.url(), args, auth=NatsAuth("bot", PASSWORDS["bot"])) == 0
            assert capsys.readouterr().out.startswith("SOL ")
            with pytest.raises(RequestTimeoutError):
                await bot.request("sniper.cmd.flags", b'{"flag": "WHALE", "enabled": false}', timeout=1)
            await wait_until(lambda: violations(bot) != [])
            assert all('"sniper.cmd.flags"' in v.lower() for v in violations(bot)), violations(bot)
        finally:
            await bot.close()
        operator = await pipeline.secured.connect("operator")
        try:
            operator_ping = ServicePing.from_dict(
                json.loads((await operator.request("$SRV.PING", b"", timeout=5)).data)
            )
            assert operator_ping.id == ping.id and violations(operator) == []
        finally:
            await operator.close()

    async def test_bot_catches_up_from_the_signal_stream_without_a_violation(self, pipeline: Pipeline) -> None:
        """As the bot: the newest signal per asset (info + get) and an ordered consumer from there, no violation."""
        bot = await pipeline.secured.connect("bot")
        try:
            stream = SUBJECTS.stream(SIGNALS_STREAM)
            (last,) = await bot.last_per_subject(stream, SUBJECTS.signal_all())
            assert decode(last.data, Signal).asset == "SOL"
            followed = Collector[Envelope]()
            sub = await bot.follow_stream(stream, SUBJECTS.signal_all(), followed)
            await followed.wait(2)  # the stored newest, then a live one
            await sub.unsubscribe()
            assert violations(bot) == []
        finally:
            await bot.close()

    async def test_a_consumer_aimed_at_a_tick_subject_steers_nothing(self, pipeline: Pipeline) -> None:
        """The bot may create a consumer on sniper_signals with deliver subject sniper.tick.SOL: signals go on."""
        from nats.js.api import ConsumerConfig, DeliverPolicy

        bot = await pipeline.secured.connect("bot")
        try:
            jsm = bot.client.jsm(timeout=2)
            config = ConsumerConfig(deliver_subject="sniper.tick.SOL", deliver_policy=DeliverPolicy.ALL)
            await jsm.add_consumer(SUBJECTS.stream(SIGNALS_STREAM), config)
            seen = len(pipeline.signals.messages)
            await pipeline.signals.wait_count(seen + 3)
            assert all(s.complete for s in pipeline.signals.messages[seen:])
        finally:
            await bot.close()

    async def test_bot_cannot_run_commands(self, pipeline: Pipeline) -> None:
        """A command request from the bot is denied: no reply, and the flag is unchanged."""
        bot = NatsAuth("bot", PASSWORDS["bot"])
        with pytest.raises(Exception, match=r"no reply|no responders"):
            await flags_command(
                pipeline.secured.url(),
                argparse.Namespace(prefix="sniper", flags_command="set", flag="WHALE", value=False, why="forged"),
                auth=bot,
            )
        seen = len(pipeline.signals.messages)
        await pipeline.signals.wait_count(seen + 1)
        assert statuses(pipeline.signals.messages[-1])["whale"] == "ok"


@pytest.mark.slow
class TestRecordReplay:
    async def test_bot_records_what_the_sniper_replays(self, secured: Secured, tmp_path: Path) -> None:
        """`sniper record` as the bot (--nats-user, password from the environment), replay as the sniper user."""
        from sniper.demo import replay_file
        from sniper.recording import read_recording

        source = ROOT / "tests" / "recordings" / "etf_402.jsonl"
        out = tmp_path / "signals.jsonl"
        env = {**os.environ, "SNIPER_NATS_PASSWORD": PASSWORDS["bot"]}
        recorder = await asyncio.create_subprocess_exec(
            *SNIPER,
            "record",
            "--nats",
            secured.url(),
            "--nats-user",
            "bot",
            "--subjects",
            "sniper.signal.>",
            "--out",
            str(out),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert recorder.stderr is not None
        while b"recording" not in await asyncio.wait_for(recorder.stderr.readline(), 20):
            pass
        probe = await secured.connect("sniper")
        observer, bot = Listener(), await secured.connect("bot")
        await bot.subscribe("sniper.signal.>", observer.on)
        await observer.live(probe, "sniper.signal.probe")  # the broker routes signals to bots by now
        await probe.close()
        sniper = NatsAuth("sniper", PASSWORDS["sniper"])
        assert await replay_file(secured.url(), str(source), 50.0, None, auth=sniper) == 0
        expected = [(ln.subject, ln.data) for ln in read_recording(source, subjects="sniper.signal.>")]
        await wait_until(lambda: sum(s != "sniper.signal.probe" for s in observer.subjects) >= len(expected))
        await bot.close()
        recorder.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(recorder.communicate(), 20)
        assert recorder.returncode == 0, err.decode()
        copied = [(ln.subject, ln.data) for ln in read_recording(out) if not ln.subject.endswith(".probe")]
        assert copied == expected and len(expected) == 9
        assert PASSWORDS["bot"] not in err.decode()


@pytest.mark.slow
class TestSnipeRunProcess:
    async def test_sniper_run_as_sniper_user(self, secured: Secured) -> None:
        """`sniper run` with SNIPER_NATS_USER/SNIPER_NATS_PASSWORD produces signals; no password on stderr."""
        async with serve(port=0, seed=5) as backend:
            bot = await secured.connect("bot")
            signals = await Recorder[Signal](bot, SUBJECTS.signal_all(), Signal).start()
            circuits = await Recorder[CircuitState](
                await secured.connect("operator"), "sniper.circuit.*", CircuitState
            ).start()
            env = {
                **os.environ,
                "SNIPER_NATS": secured.url(),
                "SNIPER_NATS_USER": "sniper",
                "SNIPER_NATS_PASSWORD": PASSWORDS["sniper"],
                "SNIPER_BACKEND": backend.url,
                "SNIPER_ASSETS": "ETH",
                "SNIPER_INTERVAL": "0.5",
                "SNIPER_WINDOW": "0.4",
            }
            proc = await asyncio.create_subprocess_exec(
                *SNIPER, "run", cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            try:
                await signals.wait_for(lambda ss: sum(s.asset == "ETH" for s in ss) >= 2, timeout=30)
            finally:
                proc.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(proc.communicate(), 30)
            await bot.close()
            await circuits.bus.close()
        text = err.decode()
        assert proc.returncode == 0, text
        assert PASSWORDS["sniper"] not in text and "permission violation" not in text
        assert "nats=nats://127.0.0.1:" in text  # the start line names the URL (no credentials in it here)
        assert circuits.messages, "the operator may read circuit events"
