"""Scale-out: how many assets stay within 15 ms p99 cycle overhead with fetchers in 1, 2 or 4 processes?

Layouts (each process a real ``python -m sniper run``, as deployed):
  1   one process with every actor (the single-process figure, measured here the same way as the others)
  2   one core process (scheduler, assembler, circuits, flags, status, alerter, discovery) and the
      fetchers in 2 processes (``--actors whale,etf,...``: every module), which share the ticks
      through their queue groups
  4   the same with the fetchers in 4 processes

Per layout the asset counts are tried in increasing order until one misses the target (the ones after
it would too): the largest count within the target is that layout's figure. Same setup as
`bench/cycle_latency.py` (whose measurement this reuses): a 5 s interval, window 3 s, the reference
backend in its own process with latency injected per module (whale 40 ms, heatmap 80 ms, spot_ob
120 ms, bias 30 ms; ETF answers 402), a fresh embedded nats-server per run, overhead = signal latency
minus the slowest ok module's own latency. CPU per process (from /proc) over the measured span.

Scaling efficiency = (largest count with k fetcher processes / largest count with one process) /
(processes used: k + 1). On a machine with fewer cores than processes the processes share them:
the figure says how much more one machine carries by splitting, not what k machines would.

    python bench/scale_out.py [--layouts 1,2,4] [--assets 500,1000,1500,2000,3000] [--cycles 4]
                              [--interval 5] [--window 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cycle_latency import DEAD_ETF, TARGET_MS, counters, cpu_of, start_backend, summarise

from messages import Signal, Subjects, decode
from runtime import NatsBus
from runtime.bus import Envelope
from sniper.app import actor_names
from sniper.config import MODULES
from sniper.embedded import EmbeddedNats, _die_with_parent

ROOT = Path(__file__).resolve().parent.parent
FETCHER_ACTORS = ",".join(MODULES)
CORE = ",".join(name for name in actor_names() if name not in MODULES)
#: Seconds a process may take to say `pipeline_started`.
START_TIMEOUT = 60.0


async def start_sniper(
    nats: str, backend: str, assets: list[str], args: argparse.Namespace, actors: str | None
) -> asyncio.subprocess.Process:
    """One `sniper run` process; returns once it logged pipeline_started."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SNIPER_NATS": nats,
        "SNIPER_BACKEND": backend,
        "SNIPER_ASSETS": ",".join(assets),
        "SNIPER_INTERVAL": str(args.interval),
        "SNIPER_WINDOW": str(args.window),
        "SNIPER_LOG_FORMAT": "json",
        "SNIPER_LOG_LEVEL": "info",
    }
    argv = [sys.executable, "-m", "sniper", "run"] + (["--actors", actors] if actors else [])
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, preexec_fn=_die_with_parent
    )
    assert proc.stderr is not None
    async with asyncio.timeout(START_TIMEOUT):
        while line := (await proc.stderr.readline()).decode():
            if "pipeline_started" in line:
                break
        else:
            raise RuntimeError(f"sniper ({actors or 'all actors'}) exited before it started")
    asyncio.get_running_loop().create_task(_drain(proc.stderr))
    return proc


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


class Signals:
    """The signals of cycles < `cycles`, kept as bytes until the end (decoded once, for the summary)."""

    def __init__(self, assets: int, cycles: int) -> None:
        self.cycles = cycles
        self.wanted = assets * cycles
        self.received: list[bytes] = []
        self.counted = 0
        self.first = asyncio.Event()
        self.done = asyncio.Event()

    async def on_signal(self, env: Envelope) -> None:
        self.received.append(env.data)
        self.first.set()
        if decode(env.data, Signal).cycle < self.cycles:
            self.counted += 1
            if self.counted >= self.wanted:
                self.done.set()


async def run_layout(layout: int, n_assets: int, args: argparse.Namespace) -> dict[str, Any]:
    """One run: the layout's processes over one broker and backend, until `cycles` cycles or the deadline."""
    assets = [f"T{i:04d}" for i in range(n_assets)]
    backend, url = await start_backend(DEAD_ETF)
    procs: list[asyncio.subprocess.Process] = []
    deadline = 60 + args.interval * (args.cycles + 2)
    try:
        async with EmbeddedNats() as nats:
            observer = await NatsBus.connect(nats.url, name="observer")
            seen = Signals(n_assets, args.cycles)
            await observer.subscribe(Subjects().signal_all(), seen.on_signal)
            # Fetchers first, so every one is in its queue group before the first tick.
            for _ in range(layout if layout > 1 else 0):
                procs.append(await start_sniper(nats.url, url, assets, args, FETCHER_ACTORS))
            procs.append(await start_sniper(nats.url, url, assets, args, CORE if layout > 1 else None))
            before = await asyncio.to_thread(counters, url)
            timed_out = False
            cpu_first: list[float] = []
            try:
                async with asyncio.timeout(deadline):
                    await seen.first.wait()
                    cpu_first = [cpu_of(p.pid) for p in procs]
                    began = time.monotonic()
                    await seen.done.wait()
            except TimeoutError:
                timed_out = True
                began = time.monotonic()
            span = time.monotonic() - began
            cpu = [cpu_of(p.pid) - c for p, c in zip(procs, cpu_first or [0.0] * len(procs), strict=True)]
            after = await asyncio.to_thread(counters, url)
            await observer.close()
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        backend.terminate()
        await backend.wait()
    result = summarise([decode(d, Signal) for d in seen.received], args.cycles, n_assets, before, after)
    result.update(
        layout=layout,
        assets=n_assets,
        timed_out=timed_out,
        processes=len(procs),
        cores_used=round(sum(cpu) / span, 2) if span > 0 else float("nan"),
        cpu_s_by_process=[round(c, 2) for c in cpu],
    )
    return result


def within(r: dict[str, Any]) -> bool:
    return r["signals"] == r["expected"] and r["overhead_p99"] <= TARGET_MS and not r["timed_out"]


def report(results: list[dict[str, Any]], layouts: list[int]) -> None:
    print(f"\n{'layout':<22} {'assets':>6} {'signals':>11} {'overhead p50/p99':>17} {'req/a-c':>8} "
          f"{'cores used':>10}  CPU s by process (fetchers..., core)  within")  # fmt: skip
    for r in results:
        name = "1 process" if r["layout"] == 1 else f"core + {r['layout']} fetcher procs"
        print(
            f"{name:<22} {r['assets']:>6} {r['signals']:>5}/{r['expected']:<5} "
            f"{r['overhead_p50']:>7.1f}/{r['overhead_p99']:<8.1f} {r['requests_per_asset_cycle']:>8.2f} "
            f"{r['cores_used']:>10}  {r['cpu_s_by_process']}  {'yes' if within(r) else 'NO'}"
            f"{' (deadline)' if r['timed_out'] else ''}"
        )
    largest = {k: max((r["assets"] for r in results if r["layout"] == k and within(r)), default=0) for k in layouts}
    base = largest.get(1, 0)
    for k in layouts:
        line = f"largest within {TARGET_MS:g} ms p99 overhead, "
        line += "1 process" if k == 1 else f"core + {k} fetcher processes"
        line += f": {largest[k] or 'none measured'}"
        if k > 1 and base:
            speedup = largest[k] / base
            line += f" (x{speedup:.2f} of one process; efficiency {speedup / (k + 1):.0%} over {k + 1} processes)"
        print(line)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--layouts", default="1,2,4", help="fetcher processes per layout (1: all in one)")
    parser.add_argument("--assets", default="500,1000,1500,2000,3000", help="asset counts, tried in order")
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    args = parser.parse_args()
    layouts = [int(k) for k in args.layouts.split(",")]
    counts = [int(n) for n in args.assets.split(",")]
    results = []
    for layout in layouts:
        for n in counts:
            r = await run_layout(layout, n, args)
            results.append(r)
            late = " (deadline)" if r["timed_out"] else ""
            print(f"  done: layout {layout}, {n} assets: p99 overhead {r['overhead_p99']:.1f} ms, "
                  f"{r['signals']}/{r['expected']} signals{late}", flush=True)  # fmt: skip
            if not within(r):
                break  # larger counts miss it too
    report(results, layouts)
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(results, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
