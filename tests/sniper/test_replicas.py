"""Full `sniper run` replicas on one bus: every (asset, cycle) once, one upstream call per tick, failover in time."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from actors.assembler import SignalAssembler
from actors.scheduler import Scheduler
from marketsim import serve
from messages import Lease, Signal, Tick, decode
from runtime import NatsBus
from runtime.testing import Recorder
from sniper.app import Running, run_pipeline
from sniper.config import Settings
from sniper.embedded import EmbeddedNats

from .. import samples
from ..harness import Harness

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ("SOL", "AVAX", "DOGE")
ROLES = ("scheduler", "assembler", "circuits", "alerter")
PER_TICK = ("whale", "heatmap", "spot_ob", "bias", "funding")  # every tick asks; ETF is cached (keyed by BTC/ETH)


@contextlib.asynccontextmanager
async def replicas(harness: Harness, n: int, **settings: Any) -> AsyncIterator[list[Running]]:
    """`n` full pipelines (every actor) on the harness's one bus, started in order."""
    settings.setdefault("assets", ASSETS)
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(harness.run(**settings)) for _ in range(n)]


def leaders(runs: Sequence[Running], role: str) -> list[Running]:
    return [r for r in runs if (a := r.actor(role)).leadership is not None and a.leadership.leading]


def per_cycle(signals: Sequence[Signal]) -> Counter[tuple[str, int, int]]:
    return Counter((s.asset, s.epoch, s.cycle) for s in signals)


def gaps(signals: Sequence[Signal]) -> dict[str, int]:
    """Per asset, the cycles missing between its first and last signal."""
    missing = {}
    for asset in {s.asset for s in signals}:
        cycles = sorted({s.cycle for s in signals if s.asset == asset})
        missing[asset] = cycles[-1] - cycles[0] + 1 - len(cycles)
    return missing


class TestTwoFullReplicas:
    async def test_every_asset_cycle_is_published_once_and_fetched_once(self, harness: Harness) -> None:
        """Two replicas: each (asset, epoch, cycle) one signal, each tick one call per module, ETF once per key."""
        async with replicas(harness, 2) as runs:
            await harness.clock.sleep(62)
            assert all(len(leaders(runs, role)) == 1 for role in ROLES)
        counts = per_cycle(harness.signals.messages)
        assert len(counts) >= 3 * 12 and set(counts.values()) == {1}
        assert len({(t.asset, t.epoch, t.cycle) for t in harness.ticks.messages}) == len(harness.ticks.messages)
        ticks = len(harness.ticks.messages)
        for module in PER_TICK:
            assert harness.backend.count(samples.PATHS[module]) == ticks, module
        etf = Counter(query["asset"] for path, query in harness.backend.calls if path == samples.PATHS["etf"])
        assert set(etf) == {"BTC"} and etf["BTC"] <= 2  # one call per cache lifetime (60 s) for all of them

    async def test_the_standby_takes_over_when_the_leader_stops(self, harness: Harness) -> None:
        """The leading replica stops: signals go on in the same epoch, at most two cycles missing, none twice."""
        async with contextlib.AsyncExitStack() as second_stack:
            async with harness.run(assets=ASSETS) as first:
                second = await second_stack.enter_async_context(harness.run(assets=ASSETS))
                await harness.clock.sleep(20)
                assert leaders([first, second], "scheduler") == [first]
            # the first replica (the leader of everything) has stopped; the second carries on
            await harness.clock.sleep(30)
            assert all(leaders([second], role) == [second] for role in ROLES)
        signals = harness.signals.messages
        assert set(per_cycle(signals).values()) == {1} and {s.epoch for s in signals} == {signals[0].epoch}
        assert max(gaps(signals).values()) <= 2
        assert {s.fence for s in signals} == {1, 2}

    async def test_a_takeover_keeps_the_backoff(self, harness: Harness) -> None:
        """Every core module failing: the new scheduler goes on counting hard failures where the old one was."""
        for module in ("whale", "heatmap", "spot_ob"):
            harness.backend.fail(samples.PATHS[module], 500)
        async with contextlib.AsyncExitStack() as second_stack:
            async with harness.run(assets=("SOL",)):
                await second_stack.enter_async_context(harness.run(assets=("SOL",)))
                await harness.health.wait_for(lambda hs: any(h.consecutive_failures >= 3 for h in hs))
                before = harness.health.messages[-1]
            await harness.health.wait_for(lambda hs: any(h.fence > before.fence for h in hs))
        after = next(h for h in harness.health.messages if h.fence > before.fence)
        assert after.state == "hard_fail" and after.consecutive_failures == before.consecutive_failures + 1
        assert after.next_delay > 5.0  # still backing off

    async def test_a_deposed_schedulers_late_tick_is_refused(self, harness: Harness) -> None:
        """After a takeover, a tick fenced with the old term opens no window and gets no answer."""
        async with replicas(harness, 2) as (first, second):
            await harness.clock.sleep(6)
            scheduler = first.actor("scheduler")
            assert isinstance(scheduler, Scheduler) and scheduler.leadership.term == 1
            await first.supervisor.stop()  # hands the leases to the second replica
            await harness.clock.sleep(6)
            assembler = second.actor("assembler")
            assert isinstance(assembler, SignalAssembler) and assembler.leadership.fence == 2
            before = len(harness.signals.messages)
            now = harness.clock.now()
            late = Tick(asset="SOL", cycle=10_000, ts=now, deadline=now + 3, fence=1, epoch=1)
            await harness.forge(harness.subjects.tick("SOL"), late)
            await harness.clock.sleep(4)
        assert all(s.cycle != 10_000 for s in harness.signals.messages[before:])
        assert assembler.bad_messages >= 1

    async def test_the_leases_say_who_runs_what(self, harness: Harness) -> None:
        """The leases bucket holds one Lease per singleton role, each naming the leading replica."""
        async with replicas(harness, 2) as runs:
            await harness.clock.sleep(3)
            bucket = await harness.bus.key_value(harness.subjects.kv_bucket("leases"))
            stored = {key: decode(entry.value or b"", Lease) for key, entry in (await bucket.entries()).items()}
            assert set(ROLES) <= set(stored)
            for role in ROLES:
                (leader,) = leaders(runs, role)
                assert stored[role].holder == leader.ctx.instance and stored[role].term == 1


@pytest.mark.slow
class TestOverRealNats:
    async def test_two_replicas_publish_each_cycle_once_and_call_once_per_tick(self) -> None:
        """Two pipelines, each its own NATS connection, against the reference backend: no duplicate anywhere."""
        async with EmbeddedNats() as nats, serve(port=0, seed=3) as backend:
            observer = await NatsBus.connect(nats.url, name="observer")
            signals = await Recorder[Signal](observer, "sniper.signal.*", Signal).start()
            ticks = await Recorder[Tick](observer, "sniper.tick.*", Tick).start()
            settings = Settings(nats=nats.url, backend=backend.url, assets=ASSETS, interval=0.5, window=0.4)
            async with run_pipeline(settings), run_pipeline(settings):
                await signals.wait_count(3 * 8, timeout=20)
                await asyncio.sleep(0.6)  # clock-ok: the last window closes before counting
            await observer.close()
        counts = per_cycle(signals.messages)
        assert set(counts.values()) == {1}
        assert len({(t.asset, t.epoch, t.cycle) for t in ticks.messages}) == len(ticks.messages)
        calls = backend.sim.counters()
        assert calls["whale"]["requests"] == len(ticks.messages)
        assert calls["etf"]["requests"] <= 2

    async def test_kill_9_of_the_leading_process_costs_at_most_two_cycles(self) -> None:
        """Two `sniper run` processes; SIGKILL of the one holding the leases: the other goes on, nothing twice."""
        async with EmbeddedNats() as nats, serve(port=0, seed=3) as backend:
            observer = await NatsBus.connect(nats.url, name="observer")
            signals = await Recorder[Signal](observer, "sniper.signal.*", Signal).start()
            procs = []
            try:
                for _ in range(2):
                    procs.append(await sniper_run(nats.url, backend.url))
                    await signals.wait_count(len(procs) * 2, timeout=20)  # the first leads; both are up
                leader = await holder_pid(observer, "scheduler")
                victim = next(p for p in procs if p.pid == leader)
                killed_at = len(signals.messages)
                victim.kill()
                await victim.wait()
                await signals.wait_count(killed_at + 2 * 6, timeout=20)  # six more cycles of both assets
            finally:
                for proc in procs:
                    if proc.returncode is None:
                        proc.terminate()
                        await proc.wait()
                await observer.close()
        got = signals.messages
        assert set(per_cycle(got).values()) == {1} and len({s.epoch for s in got}) == 1
        assert max(gaps(got).values()) <= 2 and len({s.fence for s in got}) >= 2  # a new term after the kill


async def sniper_run(nats: str, backend: str) -> asyncio.subprocess.Process:
    """A `sniper run` process with every actor, two assets, a 1 s interval (so a 1 s lease)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sniper", "run", "--nats", nats, "--backend", backend,
        "--assets", "SOL,AVAX", "--interval", "1", "--window", "0.8", "--log-format", "json",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip


async def holder_pid(bus: NatsBus, role: str) -> int:
    """The pid of the process holding `role`'s lease (the holder is ``<host>-<pid>-<random>``)."""
    entry = await (await bus.key_value("sniper_leases")).get(role)
    assert entry is not None and entry.value is not None
    return int(decode(entry.value, Lease).holder.rsplit("-", 2)[1])
