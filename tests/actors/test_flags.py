"""The flags bucket is the one truth: whoever writes it, every reader follows, and bad values change nothing."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import nats
import pytest

from actors.fetcher import ModuleFetcher
from actors.fetchers import FETCHERS
from actors.flags import FlagKeeper
from actors.metrics import Metrics
from actors.status import StatusKeeper
from actors.testing import FakeBackend
from actors.upstream import MockTransport, UpstreamClient
from messages import CircuitState, FlagChanged, FlagCommand, FlagReply, Signal, Subjects, decode, encode
from messages.subjects import FLAGS_BUCKET
from runtime import Context, MemoryBus, SystemClock, VirtualClock
from runtime.kv import KeyValue, KVUnavailable
from runtime.supervisor import Supervisor
from runtime.testing import Recorder, wait_until
from sniper.app import run_pipeline
from sniper.config import Settings
from sniper.embedded import EmbeddedNats

from .. import samples
from ..harness import BACKEND, WITHOUT_DISCOVERY, Harness

ETF = samples.PATHS["etf"]
SUBJECTS = Subjects()


async def write(harness: Harness, key: str, value: bytes) -> int:
    """Write straight into the flags bucket, as any NATS client with the rights could."""
    store = await harness.bus.key_value(harness.subjects.kv_bucket(FLAGS_BUCKET))
    return await store.put(key, value)


async def listed(harness: Harness) -> dict[str, bool]:
    env = await harness.bus.request(harness.subjects.command("flags"), encode(FlagCommand()), timeout=1)
    reply = decode(env.data, FlagReply)
    assert reply.ok
    return reply.flags


def views(harness: Harness, flag: str) -> dict[str, Any]:
    """What each reader believes about `flag`: the keeper, the fetcher, the status keeper, the metric."""
    keeper = harness.actor("flags", FlagKeeper)
    fetcher = harness.actor(flag.lower(), ModuleFetcher)
    status = harness.actor("status", StatusKeeper)
    metric = harness.metrics.registry.get_sample_value("sniper_flag_enabled", {"flag": flag})
    return {"keeper": keeper.flags[flag], "fetcher": fetcher.enabled, "status": status.flags[flag], "metric": metric}


def bad_values(harness: Harness) -> float | None:
    return harness.metrics.registry.get_sample_value("sniper_bad_stored_values_total", {"bucket": FLAGS_BUCKET})


class TestWrittenByAnyone:
    async def test_a_direct_write_takes_effect_and_is_announced_as_written(self, harness: Harness) -> None:
        """A valid value put straight into the bucket switches the module off and is announced with its who/why."""
        changes = await Recorder[FlagChanged](harness.bus, harness.subjects.flags_changed(), FlagChanged).start()
        async with harness.run():
            await harness.clock.sleep(1)
            value = FlagChanged(flag="WHALE", enabled=False, ts=harness.clock.now(), who="node-bot", why="maintenance")
            revision = await write(harness, "WHALE", encode(value))
            await harness.clock.sleep(10)
            assert views(harness, "WHALE") == {"keeper": False, "fetcher": False, "status": False, "metric": 0.0}
            assert (await listed(harness))["WHALE"] is False
        (announced,) = changes.messages
        assert (announced.flag, announced.enabled, announced.who, announced.why) == (
            "WHALE",
            False,
            "node-bot",
            "maintenance",
        )
        assert announced.revision == revision
        assert harness.signals.messages[-1].modules["whale"].status == "disabled"

    async def test_an_off_on_written_directly_lifts_the_quarantine(self, harness: Harness) -> None:
        """ETF quarantined by a 402; ETF off then on, written by another client, closes the breaker (flag_changed)."""
        harness.backend.fail(ETF, 402)
        async with harness.run():
            await harness.clock.sleep(6)
            harness.backend.heal(ETF)
            for enabled in (False, True):
                value = FlagChanged(flag="ETF", enabled=enabled, ts=harness.clock.now(), who="ops")
                await write(harness, "ETF", encode(value))
                await harness.clock.sleep(0.1)
            await harness.clock.sleep(10)
        closed = [c for c in harness.circuits.messages if c.module == "etf" and c.state == "closed"]
        assert closed and closed[0].cause == "flag_changed"
        assert harness.signals.messages[-1].modules["etf"].status == "ok"

    async def test_a_command_is_announced_once(self, harness: Harness) -> None:
        """A `cmd.flags` set goes through the same watch: one FlagChanged per revision, not two."""
        changes = await Recorder[FlagChanged](harness.bus, harness.subjects.flags_changed(), FlagChanged).start()
        async with harness.run():
            cmd = FlagCommand(flag="etf", enabled=False, why="plan expired", who="ops@desk")
            env = await harness.bus.request(harness.subjects.command("flags"), encode(cmd), timeout=1)
            assert decode(env.data, FlagReply).flags["ETF"] is False
            await harness.clock.sleep(5)
        assert [(c.flag, c.enabled, c.who) for c in changes.messages] == [("ETF", False, "ops@desk")]


class TestBadValues:
    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("WHALE", b"not json"),
            ("WHALE", b'{"type": "flag_changed", "flag": "WHALE", "enabled": "no", "ts": 1}'),
            ("WHALE", json.dumps({"type": "flag_changed", "flag": "ETF", "enabled": True, "ts": 1}).encode()),
            ("NOPE", encode(FlagChanged(flag="NOPE", enabled=True, ts=1))),
        ],
        ids=["not-json", "wrong-type", "other-flag", "unknown-key"],
    )
    async def test_ignored_logged_counted_and_every_reader_keeps_the_last_valid_value(
        self, harness: Harness, key: str, value: bytes, caplog: pytest.LogCaptureFixture
    ) -> None:
        """After WHALE off, a bad write leaves keeper, fetcher, status keeper, `flags list` and metric on off."""
        async with harness.run():
            await write(harness, "WHALE", encode(FlagChanged(flag="WHALE", enabled=False, ts=harness.clock.now())))
            await harness.clock.sleep(1)
            before = bad_values(harness)
            with caplog.at_level(logging.WARNING, logger="sniper"):
                await write(harness, key, value)
                await harness.clock.sleep(1)
            assert bad_values(harness) == (before or 0) + 1
            assert views(harness, "WHALE") == {"keeper": False, "fetcher": False, "status": False, "metric": 0.0}
            flags = await listed(harness)
            assert flags["WHALE"] is False and set(flags) == set(harness.actor("flags", FlagKeeper).defaults)
        assert any(r.getMessage() == "bad_stored_flag" for r in caplog.records)

    async def test_a_deleted_key_falls_back_to_the_default_everywhere(self, harness: Harness) -> None:
        """Deleting WHALE's key after an off brings keeper, fetcher, status and metric back to the default (on)."""
        async with harness.run():
            await write(harness, "WHALE", encode(FlagChanged(flag="WHALE", enabled=False, ts=harness.clock.now())))
            await harness.clock.sleep(1)
            store = await harness.bus.key_value(harness.subjects.kv_bucket(FLAGS_BUCKET))
            await store.delete("WHALE")
            await harness.clock.sleep(1)
            assert views(harness, "WHALE") == {"keeper": True, "fetcher": True, "status": True, "metric": 1.0}


class TestPrecedence:
    @pytest.mark.parametrize(("source", "etf"), [("bucket", False), ("environment", True)])
    async def test_which_source_wins_at_start_and_says_so(
        self, harness: Harness, source: str, etf: bool, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An ETF off stored by an operator survives FEATURE_ETF=on unless the environment is told to win."""
        await write(harness, "ETF", encode(FlagChanged(flag="ETF", enabled=False, ts=1, who="ops")))
        with caplog.at_level(logging.INFO, logger="sniper"):
            async with harness.run(feature_source=source):
                await harness.clock.sleep(1)
                assert views(harness, "ETF") == {"keeper": etf, "fetcher": etf, "status": etf, "metric": float(etf)}
        (line,) = [r for r in caplog.records if r.getMessage() == "flag_source" and r.fields["flag"] == "ETF"]  # type: ignore[attr-defined]
        assert line.fields["source"] == source  # type: ignore[attr-defined]

    async def test_every_flag_has_a_metric_series_from_the_start(self, harness: Harness) -> None:
        """sniper_flag_enabled has one series per flag before anyone set one."""
        async with harness.run():
            await harness.clock.sleep(1)
            for flag in harness.actor("flags", FlagKeeper).defaults:
                value = harness.metrics.registry.get_sample_value("sniper_flag_enabled", {"flag": flag})
                assert value == 1.0


@pytest.mark.nats
class TestStartingWithoutTheBucket:
    async def test_a_keeper_started_while_the_bucket_is_down_follows_it_once_it_answers(
        self, vclock: VirtualClock
    ) -> None:
        """The flags bucket unreachable at start (a fresh cluster electing): it retries, then lists the truth."""

        class Electing(MemoryBus):
            refusals = 3

            async def key_value(self, bucket: str) -> KeyValue:
                if bucket.endswith("_flags") and self.refusals > 0:
                    self.refusals -= 1
                    raise KVUnavailable("no stream leader yet (test)")
                return await super().key_value(bucket)

        bus = Electing(clock=vclock)
        store = await MemoryBus.key_value(bus, "sniper_flags")
        await store.put("BIAS", encode(FlagChanged(flag="BIAS", enabled=False, ts=vclock.now(), who="op")))
        keeper = FlagKeeper({m: True for m in samples.PATHS})
        async with Supervisor(Context(bus=bus, clock=vclock, hooks=Metrics()), [keeper]):
            assert keeper.flags["BIAS"] is True  # the default, while the bucket does not answer
            await wait_until(lambda: keeper.flags["BIAS"] is False)
        assert bus.refusals == 0
        await bus.close()


class TestFetcherStartingWithoutTheStore:
    async def test_a_fetcher_started_while_the_store_is_down_takes_up_a_stored_quarantine(
        self, vclock: VirtualClock
    ) -> None:
        """The circuits bucket unreachable at start: the fetcher retries and then holds the stored quarantine."""

        class Electing(MemoryBus):
            refusals = 3

            async def key_value(self, bucket: str) -> KeyValue:
                if bucket.endswith("_circuits") and self.refusals > 0:
                    self.refusals -= 1
                    raise KVUnavailable("no stream leader yet (test)")
                return await super().key_value(bucket)

        bus = Electing(clock=vclock)
        now = vclock.now()
        quarantine = CircuitState(module="etf", scope="all", state="quarantined", ts=now, until=now + 3000)
        await (await MemoryBus.key_value(bus, "sniper_circuits")).put("etf.all", encode(quarantine))
        fetcher = FETCHERS["etf"](UpstreamClient(BACKEND, MockTransport(FakeBackend(vclock)), clock=vclock))
        async with Supervisor(Context(bus=bus, clock=vclock, hooks=Metrics()), [fetcher]):
            assert fetcher.admit("SOL") is None  # nothing known yet
            await wait_until(lambda: fetcher.admit("SOL") is not None)
        denial = fetcher.admit("SOL")
        assert bus.refusals == 0 and denial is not None and denial.reason == "circuit_open"
        await bus.close()


class TestOverRealNats:
    async def test_a_value_put_by_a_plain_nats_client_is_announced_and_applied(self, nats_server: EmbeddedNats) -> None:
        """nats-py's own KV client writes WHALE off; sniper announces it and the next signals show whale disabled."""
        backend = FakeBackend(SystemClock(), samples.BODIES)
        settings = Settings(nats=nats_server.url, backend=BACKEND, interval=0.3, window=0.2, actors=WITHOUT_DISCOVERY)
        async with run_pipeline(settings, transport=MockTransport(backend)) as running:
            changes = await Recorder[FlagChanged](running.bus, SUBJECTS.flags_changed(), FlagChanged).start()
            signals = await Recorder[Signal](running.bus, SUBJECTS.signal_all(), Signal).start()
            client = await nats.connect(nats_server.url)
            try:
                kv = await client.jetstream().key_value(SUBJECTS.kv_bucket(FLAGS_BUCKET))
                value = FlagChanged(flag="WHALE", enabled=False, ts=time.time(), who="nats-py", why="test")
                revision = await kv.put("WHALE", encode(value))
                (announced,) = await changes.wait_count(1)
                assert (announced.who, announced.revision) == ("nats-py", revision)
                await kv.put("WHALE", b"garbage")
                await signals.wait_for(lambda msgs: any(s.modules["whale"].status == "disabled" for s in msgs))
                count = len(signals.messages)
                await signals.wait_count(count + 2)
                assert all(s.modules["whale"].status == "disabled" for s in signals.messages[count:])
            finally:
                await client.close()
