"""Golden tests: recorded module streams replayed into an assembler give the recorded signals.

The recordings under tests/recordings/ were made by tests/recordings/generate.py
from the real pipeline (embedded NATS, reference backend over HTTP). Replaying
their ticks and module reports into a fresh SignalAssembler must reproduce the
signals that were recorded, in virtual time (one code path for live and
replay) and over a real nats-server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.assembler import SignalAssembler
from actors.fetchers import MODULES
from messages import Signal, decode
from runtime import Context, MemoryBus, NatsBus, Supervisor, SystemClock, VirtualClock
from runtime.testing import Recorder
from sniper.recording import Line, read_recording, replay

RECORDINGS = Path(__file__).parents[1] / "recordings"
SCENARIOS = ["normal", "etf_402", "core_down"]


def split(name: str) -> tuple[list[Line], list[Signal]]:
    lines = list(read_recording(RECORDINGS / f"{name}.jsonl"))
    inputs = [ln for ln in lines if ln.subject.split(".")[1] in ("tick", "data", "degraded")]
    signals = [decode(ln.data, Signal, subject=ln.subject) for ln in lines if ln.subject.split(".")[1] == "signal"]
    return inputs, signals


def comparable(sig: Signal) -> dict[str, Any]:
    """Everything but the publish time, which depends on delivery jitter."""
    doc: dict[str, Any] = msgspec.to_builtins(sig)
    doc.pop("ts")
    return doc


def signal_key(sig: Signal) -> tuple[str, int]:
    return sig.asset, sig.cycle


def check(expected: list[Signal], got: list[Signal], *, ts_tolerance: float) -> None:
    expected, got = sorted(expected, key=signal_key), sorted(got, key=signal_key)
    assert [comparable(s) for s in got] == [comparable(s) for s in expected]
    for e, g in zip(expected, got, strict=True):
        assert abs(e.ts - g.ts) <= ts_tolerance, (e.asset, e.cycle, e.ts, g.ts)


class TestRecordings:
    @pytest.mark.parametrize("name", SCENARIOS)
    def test_recording_has_ticks_reports_and_signals(self, name: str) -> None:
        """Each shipped recording holds the inputs and at least two signals per asset."""
        inputs, signals = split(name)
        kinds = {ln.subject.split(".")[1] for ln in inputs}
        assert "tick" in kinds and kinds & {"data", "degraded"}
        assert {s.asset for s in signals} == {"SOL", "BTC"} and len(signals) >= 4

    def test_scenarios_show_what_they_are_named_for(self) -> None:
        """normal: all ok; etf_402: one 402 then the quarantine, the rest ok; core_down: every core module degraded."""
        statuses = {
            name: [{m: st.reason or st.status for m, st in s.modules.items()} for s in split(name)[1]]
            for name in SCENARIOS
        }
        assert all(set(s.values()) == {"ok"} for s in statuses["normal"])
        etf = [s["etf"] for s in statuses["etf_402"]]
        assert etf[0] == "payment_required" and set(etf[1:]) == {"circuit_open"}
        assert all(s["whale"] == s["heatmap"] == s["spot_ob"] == s["bias"] == "ok" for s in statuses["etf_402"])
        assert all(s["whale"] != "ok" and s["heatmap"] != "ok" and s["spot_ob"] != "ok" for s in statuses["core_down"])


class TestGoldenReplay:
    @pytest.mark.parametrize("name", SCENARIOS)
    async def test_virtual_time_replay_reproduces_signals(self, name: str) -> None:
        """In virtual time the replayed inputs give exactly the recorded signals."""
        inputs, expected = split(name)
        clock = VirtualClock(start=inputs[0].t, autojump=True)
        bus = MemoryBus(clock=clock)
        ctx = Context(bus=bus, clock=clock)
        try:
            async with (
                Recorder[Signal](bus, ctx.subjects.signal_all(), Signal) as rec,
                Supervisor(ctx, [SignalAssembler(modules=MODULES, window=0.6)]),
            ):
                await replay(inputs, bus, clock)
                await clock.sleep(5)
            check(expected, rec.messages, ts_tolerance=0.05)
        finally:
            clock.stop_autojump()
            await bus.close()

    @pytest.mark.parametrize("name", SCENARIOS)
    async def test_real_nats_replay_reproduces_signals(self, name: str, nats_bus: NatsBus) -> None:
        """Over a real nats-server at four times the speed, the replayed inputs give the recorded signals."""
        inputs, expected = split(name)
        # The recording's ticks are dated when it was made: a live assembler refuses
        # them as off its clock, so a replay harness lifts the skew limit on purpose.
        ctx = Context(bus=nats_bus, clock=SystemClock(), max_clock_skew=float("inf"))
        async with (
            Recorder[Signal](nats_bus, ctx.subjects.signal_all(), Signal) as rec,
            Supervisor(ctx, [SignalAssembler(modules=MODULES, window=0.6)]),
        ):
            await nats_bus.flush()
            await replay(inputs, nats_bus, ctx.clock, speed=4.0)
            await rec.wait_count(len(expected), timeout=10)
        # Publish times shift with the replay speed; the signal contents must not.
        check(expected, rec.messages, ts_tolerance=float("inf"))
