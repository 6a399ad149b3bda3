"""Fallback cost: upstream requests and p99 cycle overhead with spot_ob from Binance vs from the backend.

Two scenarios, alternated in one run (rounds x scenarios, medians):
  backend    the reference backend serves every module (ETF 402, as always)
  fallback   the backend answers 404 for the spot order book, and ``--fallback spot_ob=binance``
             takes it from a Binance fake on loopback (`tests.fakes.venues.FakeBinance`)

Everything on one machine: the backend and the fake in this process (they cost the same in both
scenarios but the fake's answers), a fresh embedded nats-server per round, the pipeline built by
`sniper.app.run_pipeline` as `sniper run` builds it. Overhead per signal = latency - the slowest
ok module's own latency (as `bench/cycle_latency.py`); requests per asset-cycle = the backend's
counters plus the fake's, per module, over the measured cycles.

    python bench/fallback.py [--assets 30] [--cycles 6] [--rounds 3] [--interval 2] [--window 1.5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cycle_latency import pct

from marketsim import serve
from marketsim._faults import StatusFault
from messages import Signal, Subjects, decode
from runtime import NatsBus
from runtime.bus import Envelope
from runtime.logs import configure
from sniper.app import run_pipeline
from sniper.config import Settings
from sniper.embedded import EmbeddedNats
from sniper.fallback import FallbackSettings
from tests.fakes.venues import ASSETS, FakeBinance

SCENARIOS = ("backend", "fallback")


async def one_round(scenario: str, assets: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """One scenario: its signals' overhead and the upstream requests per asset-cycle."""
    received: list[bytes] = []
    done = asyncio.Event()
    wanted = len(assets) * args.cycles

    async def on_signal(env: Envelope) -> None:
        received.append(env.data)
        if sum(1 for d in received if decode(d, Signal).cycle < args.cycles) >= wanted:
            done.set()

    async with serve(port=0, seed=3) as backend, FakeBinance() as binance, EmbeddedNats() as nats:
        plan: dict[str, tuple[str, ...]] = {}
        if scenario == "fallback":
            backend.sim.set_fault("spot_ob", StatusFault(status=404))
            plan = {"spot_ob": ("binance",)}
        observer = await NatsBus.connect(nats.url, name="observer")
        await observer.subscribe(Subjects().signal_all(), on_signal)
        settings = Settings(
            nats=nats.url,
            backend=backend.url,
            assets=tuple(assets),
            interval=args.interval,
            window=args.window,
            fallback=FallbackSettings(plan=plan, binance_api=binance.url, binance_futures_api=binance.url),
        )
        async with run_pipeline(settings):
            await asyncio.wait_for(done.wait(), args.interval * (args.cycles + 4) + 30)
        await observer.close()
        counters = backend.sim.counters()
        venue_requests = len(binance.on("/api/v3/depth"))
    signals = [s for s in (decode(d, Signal) for d in received) if s.cycle < args.cycles]
    overhead = []
    for s in signals:
        slowest = max((st.latency_ms or 0.0 for st in s.modules.values() if st.status == "ok"), default=0.0)
        overhead.append((s.ts - s.started) * 1000 - slowest)
    asset_cycles = len(assets) * args.cycles
    spot = [s.modules["spot_ob"] for s in signals]
    return {
        "scenario": scenario,
        "signals": len(signals),
        "overhead_p50": statistics.median(overhead),
        "overhead_p99": pct(overhead, 0.99),
        "backend_requests": sum(v["requests"] for k, v in counters.items() if k != "unmatched") / asset_cycles,
        "venue_requests": venue_requests / asset_cycles,
        "spot_ob_ok": sum(st.status == "ok" for st in spot) / len(spot),
        "spot_ob_sources": sorted({st.source for st in spot}),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--assets", type=int, default=30)
    parser.add_argument("--cycles", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=1.5)
    args = parser.parse_args()
    configure("warning")
    assets = [f"T{i:04d}" for i in range(args.assets)]
    for asset in assets:  # the fake lists these too (a price, a tick, OKX's contract value)
        ASSETS.setdefault(asset, (100.0, 0.01, "1"))
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in SCENARIOS}
    for n in range(args.rounds):
        for scenario in SCENARIOS if n % 2 == 0 else reversed(SCENARIOS):
            r = await one_round(scenario, assets, args)
            results[scenario].append(r)
            print(f"  round {n + 1} {scenario}: p99 overhead {r['overhead_p99']:.1f} ms, "
                  f"spot_ob ok {r['spot_ob_ok']:.0%} from {r['spot_ob_sources']}", flush=True)  # fmt: skip
    print(f"\n{args.assets} assets, {args.cycles} cycles per round, {args.rounds} rounds, interval {args.interval:g} s")
    header = f"{'overhead p50/p99 ms':>20} {'backend req/a-c':>16} {'venue req/a-c':>14} {'spot_ob ok':>10}"
    print(f"{'scenario':<9} {header}")
    for scenario, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], float | int)}
        print(
            f"{scenario:<9} {med['overhead_p50']:>9.1f}/{med['overhead_p99']:<10.1f} {med['backend_requests']:>16.2f} "
            f"{med['venue_requests']:>14.2f} {med['spot_ob_ok']:>10.0%}"
        )


if __name__ == "__main__":
    asyncio.run(main())
