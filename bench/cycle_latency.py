"""Cycle latency at scale: how long after the slowest healthy module does the signal come?

Setup: 100 assets, five modules, a 5-second interval, the reference backend in
its own process with latency injected per module (whale 40 ms, heatmap 80 ms,
spot_ob 120 ms, bias 30 ms), embedded nats-server, every actor in this process.

For each signal: latency = signal publish time - cycle start (both stamped by
this host's clock), limit = the largest `latency_ms` among the modules that
answered ok in that cycle (the fetcher's measurement around its HTTP call,
carried in the signal's module statuses),
overhead = latency - limit: tick delivery, scheduling 500 requests, JSON
decode, publishing, assembling. Also reported: upstream requests per
asset-cycle, from the backend's own counters.

Scenarios, same run, same machine, each the pipeline as `sniper run` builds it
(scheduler, assembler, circuit supervisor, flags, five fetchers):
  etf_dead     ETF answers 402 (the seed's production failure); assets staggered (the default)
  etf_off      the same backend with FEATURE_ETF=off: the baseline for "the dead module adds nothing"
  burst_dead   as etf_dead, but every asset ticks at the same instant (--no-stagger)

    python bench/cycle_latency.py [--assets 100] [--interval 5] [--cycles 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.fetchers import FETCHERS
from messages import Signal, Subjects
from runtime import NatsBus
from runtime.logs import configure
from runtime.testing import Recorder
from sniper.app import run_pipeline
from sniper.config import MODULES, Settings
from sniper.embedded import EmbeddedNats

LATENCY_MS = {"whale": 40, "heatmap": 80, "spot_ob": 120, "bias": 30}


async def start_backend(extra: list[str]) -> tuple[asyncio.subprocess.Process, str]:
    args = [sys.executable, "-m", "marketsim", "--port", "0", "--seed", "3"]
    for module, ms in LATENCY_MS.items():
        args += ["--fault", f"{module}={'latency'}:{ms}"]
    proc = await asyncio.create_subprocess_exec(*args, *extra, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    url = re.search(r"http://\S+", line)
    if not url:
        raise RuntimeError(f"backend did not start: {line!r}")
    return proc, url.group(0)


def counters(url: str) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(url + "/_admin/counters", timeout=5) as resp:
        data: dict[str, dict[str, Any]] = json.load(resp)
    return data


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def scenario(
    name: str,
    assets: list[str],
    interval: float,
    cycles: int,
    backend_extra: list[str],
    *,
    stagger: bool = True,
    etf: bool = True,
) -> dict[str, Any]:
    """The pipeline exactly as `sniper run` builds it (circuit breaker and flags included)."""
    proc, url = await start_backend(backend_extra)
    try:
        async with EmbeddedNats() as nats:
            observer = await NatsBus.connect(nats.url, name="observer")
            signals = await Recorder[Signal](observer, Subjects().signal_all(), Signal).start()
            settings = Settings(
                nats=nats.url,
                backend=url,
                assets=tuple(assets),
                interval=interval,
                window=3.0,
                stagger=stagger,
                flags={m: (m != "etf" or etf) for m in MODULES},
            )
            before = counters(url)
            async with run_pipeline(settings):
                await signals.wait_count(len(assets) * cycles, timeout=cycles * interval * 3 + 30)
            after = counters(url)
            await observer.close()
    finally:
        proc.terminate()
        await proc.wait()
    sigs = [s for s in signals.messages if s.cycle < cycles]
    slowest = {
        (s.asset, s.cycle): max((st.latency_ms or 0.0 for st in s.modules.values() if st.status == "ok"), default=0.0)
        for s in sigs
    }
    latency = [(s.ts - s.started) * 1000 for s in sigs]
    overhead = [(s.ts - s.started) * 1000 - slowest.get((s.asset, s.cycle), 0.0) for s in sigs]
    requests = sum(v["requests"] for k, v in after.items() if k in FETCHERS) - sum(
        v["requests"] for k, v in before.items() if k in FETCHERS
    )
    per_module = {m: after.get(m, {}).get("requests", 0) - before.get(m, {}).get("requests", 0) for m in FETCHERS}
    asset_cycles = len(assets) * cycles
    return {
        "name": name,
        "signals": len(sigs),
        "complete": sum(s.complete for s in sigs),
        "latency_p50": statistics.median(latency),
        "latency_p99": pct(latency, 0.99),
        "limit_p50": statistics.median(slowest.values()),
        "limit_p99": pct(list(slowest.values()), 0.99),
        "overhead_p50": statistics.median(overhead),
        "overhead_p99": pct(overhead, 0.99),
        "requests_per_asset_cycle": requests / asset_cycles,
        "per_module": {m: round(n / asset_cycles, 3) for m, n in per_module.items()},
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", type=int, default=100)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--cycles", type=int, default=6)
    args = parser.parse_args()
    configure("warning")
    assets = [f"T{i:03d}" for i in range(args.assets)]
    dead_etf = ["--fault", "etf=status:402"]
    results = [
        await scenario("etf_dead", assets, args.interval, args.cycles, dead_etf),
        await scenario("etf_off", assets, args.interval, args.cycles, dead_etf, etf=False),
        await scenario("burst_dead", assets, args.interval, args.cycles, dead_etf, stagger=False),
    ]
    print(
        f"{args.assets} assets, interval {args.interval:g}s, window 3s, {args.cycles} cycles; "
        f"backend latency {LATENCY_MS}"
    )
    print(
        f"{'scenario':<11} {'signals':>8} {'latency p50/p99 ms':>20} {'limit p50/p99 ms':>18} "
        f"{'overhead p50/p99 ms':>21} {'req/asset-cycle':>16}"
    )
    for r in results:
        print(
            f"{r['name']:<11} {r['signals']:>8} {r['latency_p50']:>9.1f}/{r['latency_p99']:<9.1f} "
            f"{r['limit_p50']:>8.1f}/{r['limit_p99']:<8.1f} {r['overhead_p50']:>10.1f}/{r['overhead_p99']:<9.1f} "
            f"{r['requests_per_asset_cycle']:>12.2f}   per module {r['per_module']}"
        )
    dead, absent, _ = results
    diff = dead["overhead_p99"] - absent["overhead_p99"]
    print(f"dead ETF vs ETF switched off, p99 overhead difference: {diff:+.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
