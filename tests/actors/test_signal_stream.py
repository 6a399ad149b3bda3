"""Durable signals: the assembler keeps every signal in a stream once, named by (asset, epoch, cycle)."""

from __future__ import annotations

import logging

import pytest

from actors.assembler import SignalAssembler
from actors.scheduler import Scheduler
from messages import Health, Signal, decode, encode
from messages.subjects import SIGNALS_STREAM
from runtime import MemoryBus, VirtualClock
from runtime.bus import Envelope
from runtime.stream import MSG_ID, StreamSpec, StreamUnavailable
from runtime.testing import Collector

from ..harness import Harness

ASSETS = ("SOL", "BTC")


def stream_name(harness: Harness) -> str:
    return harness.subjects.stream(SIGNALS_STREAM)


async def last_signals(harness: Harness) -> dict[str, Signal]:
    found = await harness.bus.last_per_subject(stream_name(harness), harness.subjects.signal_all())
    return {s.asset: s for s in (decode(e.data, Signal) for e in found)}


class TestSignalStream:
    async def test_a_late_joiner_reads_the_newest_signal_of_every_asset(self, harness: Harness) -> None:
        """After three cycles the stream gives each asset's last signal, the one published last."""
        async with harness.run(assets=ASSETS):
            await harness.clock.sleep(12)
            last = await last_signals(harness)
        published = {s.asset: s for s in harness.signals.messages}
        assert last == published and {a: s.cycle for a, s in last.items()} == {"SOL": 2, "BTC": 1}  # BTC staggered

    async def test_signals_carry_the_scheduler_epoch_and_their_id(self, harness: Harness) -> None:
        """Each signal carries the scheduler's epoch (its start, ms) and goes out with Nats-Msg-Id asset.epoch.cycle."""
        start_ms = int(harness.clock.now() * 1000)
        seen = Collector[Envelope]()
        await harness.bus.subscribe(harness.subjects.signal_all(), seen)
        async with harness.run(assets=ASSETS):
            await harness.clock.sleep(6)
            epoch = harness.actor("scheduler", Scheduler).epoch
        assert epoch == start_ms
        assert seen.items
        for env in seen.items:
            signal = decode(env.data, Signal)
            assert signal.epoch == epoch and (env.headers or {})[MSG_ID] == f"{signal.asset}.{epoch}.{signal.cycle}"

    async def test_a_republished_cycle_is_stored_once(self, harness: Harness) -> None:
        """The same signal published again (a retry, a replay) with its id is not stored a second time."""
        async with harness.run():
            await harness.clock.sleep(6)
            signal = harness.signals.messages[-1]
            again = signal.__class__(**{**{f: getattr(signal, f) for f in signal.__struct_fields__}, "score": 0.0})
            await harness.bus.publish(harness.subjects.signal("SOL"), encode(again), headers={MSG_ID: signal.msg_id})
            assert (await last_signals(harness))["SOL"] == signal
            assert harness.bus._streams[stream_name(harness)].duplicates == 1

    async def test_a_new_epoch_is_not_mistaken_for_a_duplicate(
        self, vclock: VirtualClock, memory_bus: MemoryBus
    ) -> None:
        """A restarted pipeline numbers cycles from 0 again; its cycle 0 is stored, not dropped as a repeat."""
        first = await Harness(vclock, memory_bus).record()
        async with first.run():
            await vclock.sleep(2)
        await vclock.sleep(1)
        second = await Harness(vclock, memory_bus).record()
        async with second.run():
            await vclock.sleep(2)
            last = await last_signals(second)
        assert last["SOL"].cycle == 0 and last["SOL"].epoch > first.signals.messages[0].epoch
        assert memory_bus._streams[stream_name(second)].duplicates == 0

    async def test_health_is_kept_only_when_asked(self, harness: Harness) -> None:
        """--stream-health adds the Health verdicts to the stream; by default only signals are kept."""
        async with harness.run(stream_health=True):
            await harness.clock.sleep(6)
            found = await harness.bus.last_per_subject(stream_name(harness), harness.subjects.health_all())
        assert [decode(e.data, Health).asset for e in found] == ["SOL"]

    async def test_switched_off_there_is_no_stream(self, harness: Harness) -> None:
        """--no-signal-stream: signals flow, nothing is kept."""
        async with harness.run(signal_stream=False):
            await harness.clock.sleep(6)
            with pytest.raises(StreamUnavailable):
                await last_signals(harness)
        assert harness.signals.messages


class _NoStreams(MemoryBus):
    async def ensure_stream(self, spec: StreamSpec) -> None:
        raise StreamUnavailable("JetStream is not enabled (test)")


class TestWithoutJetStream:
    async def test_the_pipeline_runs_on_and_says_why(
        self, vclock: VirtualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """When the stream cannot be made, signals still flow and one warning says so."""
        bus = _NoStreams(clock=vclock)
        harness = await Harness(vclock, bus).record()
        with caplog.at_level(logging.WARNING, logger="sniper"):
            async with harness.run():
                await vclock.sleep(11)
        await bus.close()
        assert [s.cycle for s in harness.signals.messages] == [0, 1, 2]
        assert [r.getMessage() for r in caplog.records].count("signal_stream_unavailable") == 1
        assert isinstance(harness.actor("assembler", SignalAssembler), SignalAssembler)
