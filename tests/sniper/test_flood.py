"""A sustained flood of forged messages over a real nats-server leaves the pipeline steady.

`sniper.hostile` publishes junk and well-formed messages for assets, modules
and cycles nobody configured, on every subject sniper subscribes to, from a
separate process as fast as one connection can. The real assets' signals
keep their cadence, memory and the metric series stay bounded.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from pathlib import Path

import pytest

from actors.metrics import metrics_of
from marketsim import serve
from messages import Signal, Subjects
from runtime import ActorState, NatsBus
from runtime.testing import Recorder
from sniper.app import run_pipeline
from sniper.config import MODULES, Settings
from sniper.embedded import EmbeddedNats

pytestmark = [pytest.mark.nats, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
ASSETS = ("SOL", "BTC")
INTERVAL = 1.0
FLOOD_MESSAGES = 100_000


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def series(registry) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {(s.name, tuple(sorted(s.labels.items()))) for m in registry.collect() for s in m.samples}


async def hostile(url: str, *, count: int, seconds: float) -> int:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sniper.hostile",
        "--nats",
        url,
        "--count",
        str(count),
        "--seconds",
        str(seconds),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return int(out.decode().strip())


class TestFloodOverRealNats:
    async def test_100k_forged_messages_change_nothing_that_matters(self, nats_server: EmbeddedNats) -> None:
        """Signals for every real asset keep coming; RSS grows < 20 MB; no metric series appears."""
        async with serve(port=0, seed=5) as backend:
            observer = await NatsBus.connect(nats_server.url, name="observer")
            signals = await Recorder[Signal](observer, Subjects().signal_all(), Signal).start()
            settings = Settings(nats=nats_server.url, backend=backend.url, assets=ASSETS, interval=INTERVAL, window=0.6)
            try:
                async with run_pipeline(settings) as running:
                    await signals.wait_for(lambda ss: all(sum(s.asset == a for s in ss) >= 2 for a in ASSETS))
                    registry = metrics_of(running.ctx).registry
                    gc.collect()
                    rss_before, series_before = rss_bytes(), series(registry)
                    flood_started = len(signals.messages)
                    loop = asyncio.get_running_loop()
                    t0 = loop.time()
                    sent = await hostile(nats_server.url, count=FLOOD_MESSAGES, seconds=40)
                    flood_seconds = loop.time() - t0
                    during = signals.messages[flood_started:]
                    target = len(signals.messages) + 2 * len(ASSETS)
                    await signals.wait_for(lambda ss: len(ss) >= target)
                    gc.collect()
                    rss_after, series_after = rss_bytes(), series(registry)
                    actors = running.supervisor.actors.values()
                    assert all(a.state is ActorState.RUNNING and a.restarts == 0 for a in actors)
                    # The flood did reach the pipeline: refused, shed unread, or dropped by the bus.
                    refused = sum(a.bad_messages for a in actors)
                    shed = sum(
                        s.value for m in registry.collect() for s in m.samples if s.name == "sniper_shed_messages_total"
                    )
                    dropped = running.bus.stats.slow_consumer_drops
                    assert registry.get_sample_value("sniper_bus_slow_consumer_drops_total") == dropped
                    print(f"refused {refused}, shed {shed:.0f}, dropped {dropped}")
                    assert refused + shed + dropped > FLOOD_MESSAGES / 4
            finally:
                await observer.close()
        assert sent == FLOOD_MESSAGES
        assert rss_after - rss_before < 20 * 1024 * 1024, f"RSS grew {(rss_after - rss_before) / 2**20:.1f} MB"
        legit = {*ASSETS, *MODULES, "all"}
        assert series_after == series_before  # every series is declared at start from the configuration
        for _, labels in series_after:
            for key, value in labels:
                if key in ("asset", "module", "scope"):
                    assert value in legit, (key, value)
        # Cadence: each asset got (nearly) every cycle while the flood ran.
        for asset in ASSETS:
            got = [s for s in during if s.asset == asset]
            assert len(got) >= int(0.95 * flood_seconds / INTERVAL) - 1, (asset, len(got), flood_seconds)
            assert all(s.complete for s in got)
        assert {s.asset for s in signals.messages} == set(ASSETS)  # no junk signal for a forged asset
