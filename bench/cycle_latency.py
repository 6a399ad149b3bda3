"""Cycle latency at scale: how long after the slowest healthy module does the signal come, and where is the knee?

Setup per scenario: N assets (``T0000``...), six modules, a 5-second interval,
window 3 s, the reference backend in its own process with latency injected per
module (whale 40 ms, heatmap 80 ms, spot_ob 120 ms, bias 30 ms; ETF answers
402), a fresh embedded nats-server, and every actor in one process, built by
`sniper.app.run_pipeline` exactly as `sniper run` builds it (scheduler,
assembler, circuit supervisor, flags, status, alerter, discovery, fetchers).

For each signal: latency = signal publish time - cycle start (both stamped by
the pipeline's clock), limit = the largest `latency_ms` among the modules that
answered ok in that cycle (the fetcher's measurement around its HTTP call,
carried in the signal's module statuses), overhead = latency - limit: tick
delivery, queueing for the event loop, JSON decode, publishing, assembling.
The target is p99 overhead <= 15 ms. Also reported: upstream requests per
asset-cycle (the backend's own counters) and CPU seconds per 1,000 signals.

CPU: `time.process_time()` of the pipeline process (every actor, plus this
benchmark's observer, which decodes each signal once), between the first
signal and the last one the scenario waits for; the reference backend and
nats-server, each in its own process, are read from ``/proc/<pid>/stat`` over
the same span and shown apart (they are not sniper's cost in production).

Every scenario runs in a child process of its own (a fresh interpreter, event
loop and broker) set up as `sniper run` sets up its process (`sniper.process`:
``SNIPER_LOOP``, ``SNIPER_GC``), under its own deadline: when it expires the
child reports the signals it got, marked ``(deadline)``, and stops its
pipeline; a child that does not exit 30 s later is killed, and the run moves
on. It never hangs. Also per scenario: GC pauses per generation, event-loop
stalls (a 5 ms probe), how long one full collection takes at the end, and how
many cores other processes used meanwhile (a busy machine skews a run).

Scenarios:
  etf_dead     ETF answers 402 (the seed's production failure); assets staggered (the default, as `sniper run`)
  etf_off      the same backend with FEATURE_ETF=off: the baseline for "the dead module adds nothing"
  burst_dead   as etf_dead, but every asset ticks at the same instant (--no-stagger)

    python bench/cycle_latency.py [--assets 100,500,1000,2000] [--cycles 4] [--interval 5] [--window 3]
                                  [--scenarios etf_dead[,etf_off,burst_dead]] [--loop asyncio|uvloop|both]
                                  [--gc tuned|default|both] [--deadline SECONDS] [--profile DIR] [--json FILE]

``--profile DIR`` samples each child with py-spy (``pip install py-spy``) over
its steady state and writes the collapsed stacks to DIR, printing the top
functions by own and by inclusive samples.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import statistics
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.fetchers import FETCHERS
from messages import Signal, Subjects, decode
from runtime import NatsBus
from runtime.bus import Envelope
from runtime.logs import configure
from sniper.app import run_pipeline
from sniper.config import MODULES, Settings
from sniper.embedded import EmbeddedNats, _die_with_parent
from sniper.process import GC_VAR, LOOP_VAR, run_process

LATENCY_MS = {"whale": 40, "heatmap": 80, "spot_ob": 120, "bias": 30}
TARGET_MS = 15.0
SCENARIOS: dict[str, dict[str, bool]] = {
    "etf_dead": {"stagger": True, "etf": True},
    "etf_off": {"stagger": True, "etf": False},
    "burst_dead": {"stagger": False, "etf": True},
}
DEAD_ETF = ["--fault", "etf=status:402"]
#: Seconds a child may take to stop its pipeline and exit after its deadline before it is killed.
STOP_GRACE = 30.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


async def start_backend(extra: list[str]) -> tuple[asyncio.subprocess.Process, str]:
    """The reference backend in its own process (dies with this one), with the injected latencies."""
    args = [sys.executable, "-m", "marketsim", "--port", "0", "--seed", "3"]
    for module, ms in LATENCY_MS.items():
        args += ["--fault", f"{module}=latency:{ms}"]
    proc = await asyncio.create_subprocess_exec(
        *args, *extra, stdout=asyncio.subprocess.PIPE, preexec_fn=_die_with_parent
    )
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
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def cpu_of(pid: int | None) -> float:
    """CPU seconds (user + system) of another process so far; 0 when it is gone."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_busy() -> float:
    """CPU seconds every process on the machine has used so far (/proc/stat: all but idle and iowait)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(f) for f in fields]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / _CLK_TCK


# -- one scenario, in a child process ------------------------------------------------


class Pauses:
    """Garbage-collector pauses per generation and event-loop stalls, in the pipeline process (ms).

    The loop probe sleeps 5 ms in turn and counts how much later than that it wakes:
    a stall holds every tick, answer and signal waiting behind it.
    """

    def __init__(self) -> None:
        self.gc: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self.stalls: list[float] = []
        self._started = 0.0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.gc[info["generation"]].append((time.perf_counter() - self._started) * 1000)

    def reset(self) -> None:
        for pauses in self.gc.values():
            pauses.clear()
        self.stalls.clear()

    async def probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            late = (loop.time() - before - 0.005) * 1000
            if late > 1.0:
                self.stalls.append(late)

    def summary(self) -> dict[str, Any]:
        return {
            **{f"gc{g}": [len(p), round(sum(p), 1), round(max(p, default=0.0), 1)] for g, p in self.gc.items()},
            "stalls_over_15ms": sum(s > TARGET_MS for s in self.stalls),
            "stall_max": round(max(self.stalls, default=0.0), 1),
        }


class Observer:
    """Signals as a bot sees them, counted until every asset has `cycles` of them (or the deadline).

    Kept as bytes and decoded at the end: thousands of live Signal objects would
    lengthen the pipeline process's garbage collections, which this measures.
    """

    def __init__(self, assets: int, cycles: int) -> None:
        self.cycles = cycles
        self.wanted = assets * cycles
        self.received: list[bytes] = []
        self.counted = 0  # signals of cycles < `cycles`
        self.first: asyncio.Event = asyncio.Event()
        self.done: asyncio.Event = asyncio.Event()
        self.first_cpu = 0.0
        self.first_received = 0
        self.pids: tuple[int | None, int | None] = (None, None)
        self.others_first = (0.0, 0.0)
        self.machine_first = (0.0, 0.0)

    async def on_signal(self, env: Envelope) -> None:
        cycle = decode(env.data, Signal, subject=env.subject).cycle
        self.received.append(env.data)
        if not self.first.is_set():
            self.first_cpu = time.process_time()
            self.first_received = len(self.received)
            self.others_first = (cpu_of(self.pids[0]), cpu_of(self.pids[1]))
            self.machine_first = (machine_busy(), time.monotonic())
            self.first.set()
        if cycle < self.cycles:
            self.counted += 1
            if self.counted >= self.wanted:
                self.done.set()


async def measure(
    scenario: str, n_assets: int, *, interval: float, window: float, cycles: int, deadline: float
) -> dict[str, Any]:
    """Run one scenario and print its result line before stopping the pipeline (a hung stop loses nothing)."""
    options = SCENARIOS[scenario]
    assets = [f"T{i:04d}" for i in range(n_assets)]
    began = time.monotonic()
    pauses = Pauses()
    gc.callbacks.append(pauses.on_gc)
    probe = asyncio.create_task(pauses.probe())
    proc, url = await start_backend(DEAD_ETF)
    try:
        async with EmbeddedNats() as nats:
            nats_pid = nats.process.pid if nats.process else None
            observer_bus = await NatsBus.connect(nats.url, name="observer")
            seen = Observer(n_assets, cycles)
            seen.pids = (proc.pid, nats_pid)
            await observer_bus.subscribe(Subjects().signal_all(), seen.on_signal)
            settings = Settings(
                nats=nats.url,
                backend=url,
                assets=tuple(assets),
                interval=interval,
                window=window,
                stagger=options["stagger"],
                flags={m: (m != "etf" or options["etf"]) for m in MODULES},
            )
            before = await asyncio.to_thread(counters, url)
            timed_out = False
            async with run_pipeline(settings):
                try:
                    async with asyncio.timeout(max(1.0, deadline - (time.monotonic() - began))):
                        await seen.first.wait()
                        pauses.reset()
                        print("STEADY", flush=True)  # the parent may start sampling now
                        await seen.done.wait()
                except TimeoutError:
                    timed_out = True
                cpu = time.process_time() - seen.first_cpu
                paused = pauses.summary()
                others = (cpu_of(proc.pid) - seen.others_first[0], cpu_of(nats_pid) - seen.others_first[1])
                # Everything else the machine ran meanwhile (other work on a shared machine skews a run).
                span = time.monotonic() - seen.machine_first[1]
                foreign = (machine_busy() - seen.machine_first[0] - cpu - sum(others)) / span if span > 0 else 0.0
                received = len(seen.received) - seen.first_received
                after = await asyncio.to_thread(counters, url)
                signals = [decode(data, Signal) for data in seen.received]
                result = summarise(signals, cycles, n_assets, before, after)
                result.update(
                    name=scenario,
                    assets=n_assets,
                    timed_out=timed_out,
                    cpu_s=cpu,
                    cpu_signals=received,
                    cpu_per_1000=cpu / received * 1000 if received else float("nan"),
                    backend_cpu_per_1000=others[0] / received * 1000 if received else float("nan"),
                    nats_cpu_per_1000=others[1] / received * 1000 if received else float("nan"),
                    foreign_cores=round(max(0.0, foreign), 2),
                    loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
                    **paused,
                )
                result.update(full_gc_ms=full_collection_ms())  # after the pauses were summed: not one of them
                print("RESULT " + json.dumps(result), flush=True)
                print("STOPPING", flush=True)
            await observer_bus.close()
    finally:
        probe.cancel()
        proc.terminate()
        await proc.wait()
    return result


def full_collection_ms() -> float:
    """How long one full collection takes now (SNIPER_GC=tuned makes them rare, not free)."""
    started = time.perf_counter()
    gc.collect()
    return round((time.perf_counter() - started) * 1000, 1)


def summarise(
    received: list[Signal], cycles: int, n_assets: int, before: dict[str, Any], after: dict[str, Any]
) -> dict[str, Any]:
    sigs = [s for s in received if s.cycle < cycles]
    slowest = {
        (s.asset, s.cycle): max((st.latency_ms or 0.0 for st in s.modules.values() if st.status == "ok"), default=0.0)
        for s in sigs
    }
    latency = [(s.ts - s.started) * 1000 for s in sigs]
    overhead = [(s.ts - s.started) * 1000 - slowest.get((s.asset, s.cycle), 0.0) for s in sigs]
    per_module = {m: after.get(m, {}).get("requests", 0) - before.get(m, {}).get("requests", 0) for m in FETCHERS}
    asset_cycles = n_assets * cycles
    limits = list(slowest.values())
    return {
        "signals": len(sigs),
        "expected": asset_cycles,
        "complete": sum(s.complete for s in sigs),
        "latency_p50": statistics.median(latency) if latency else float("nan"),
        "latency_p99": pct(latency, 0.99),
        "limit_p50": statistics.median(limits) if limits else float("nan"),
        "limit_p99": pct(limits, 0.99),
        "overhead_p50": statistics.median(overhead) if overhead else float("nan"),
        "overhead_p99": pct(overhead, 0.99),
        "overhead_max": max(overhead, default=float("nan")),
        # After cycle 0 (start-up: first connections to the backend, first requests built): the steady state.
        "steady_overhead_p99": pct([o for s, o in zip(sigs, overhead, strict=True) if s.cycle > 0], 0.99),
        "overhead_p99_by_cycle": [
            round(pct([o for s, o in zip(sigs, overhead, strict=True) if s.cycle == c], 0.99), 1) for c in range(cycles)
        ],
        "requests_per_asset_cycle": sum(per_module.values()) / asset_cycles,
        "per_module": {m: round(n / asset_cycles, 3) for m, n in per_module.items()},
    }


def child(args: argparse.Namespace) -> int:
    """One scenario, in a process run as `sniper run` runs (SNIPER_LOOP and SNIPER_GC come from the parent)."""
    configure("warning")
    scenario = measure(
        args.child, args.child_assets, interval=args.interval, window=args.window, cycles=args.cycles,
        deadline=args.deadline,
    )  # fmt: skip
    # The heap is frozen once every asset has ticked (here start-up takes a few seconds, not `sniper run`'s allowance).
    run_process(scenario, settle=args.interval + args.window + 5)
    return 0


# -- the run: one child per (loop, assets, scenario) -----------------------------------


async def run_child(args: argparse.Namespace, scenario: str, n_assets: int, loop: str, gc_: str) -> dict[str, Any]:
    """One scenario in a child; its result, or what is known when it failed or had to be killed."""
    deadline = args.deadline or 30 + args.interval * (args.cycles + 1) + args.window
    argv = [
        sys.executable, __file__, "--child", scenario, "--child-assets", str(n_assets),
        "--interval", str(args.interval), "--window", str(args.window), "--cycles", str(args.cycles),
        "--deadline", str(deadline),
    ]  # fmt: skip
    env = {**os.environ, LOOP_VAR: loop, GC_VAR: gc_}
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, env=env)
    assert proc.stdout is not None
    result: dict[str, Any] = {"name": scenario, "assets": n_assets, "error": "no result"}
    sampler: asyncio.Task[None] | None = None
    label = f"{scenario}-{n_assets}-{loop}-{gc_}"
    try:
        async with asyncio.timeout(deadline + 30 + STOP_GRACE):
            while line := (await proc.stdout.readline()).decode():
                if line.startswith("RESULT "):
                    result = json.loads(line.removeprefix("RESULT "))
                elif line.startswith("STEADY") and args.profile:
                    seconds = max(2.0, args.interval * (args.cycles - 1))
                    sampler = asyncio.create_task(profile(proc.pid, seconds, Path(args.profile) / f"{label}.txt"))
                elif line.startswith("STOPPING"):
                    break
            # The result is in: the child stops its pipeline; it gets STOP_GRACE seconds, then it is killed.
            async with asyncio.timeout(STOP_GRACE):
                await proc.wait()
    except TimeoutError:
        result.setdefault("note", "")
        result["note"] += " child killed (did not finish or stop in time)"
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if sampler is not None:
            await sampler
    if proc.returncode not in (0, None) and "error" in result:
        result["error"] = f"child exited with {proc.returncode}"
    result.setdefault("loop", loop)  # the loop the child ran on (uvloop asked for but missing: asyncio)
    result["gc"] = gc_
    return result


async def profile(pid: int, seconds: float, out: Path) -> None:
    """py-spy over the child's steady state; prints the top functions from the collapsed stacks."""
    spy = find_py_spy(out)
    if spy is None:
        print("profile: py-spy is not installed (pip install py-spy); not sampled")
        return
    proc = await asyncio.create_subprocess_exec(
        spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
        "--format", "raw", "--output", str(out), "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    print_profile(out, err.decode(errors="replace"))


def find_py_spy(out: Path) -> str | None:
    """The py-spy executable (on PATH or beside this Python), with `out`'s folder made; None if missing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def print_profile(out: Path, err: str) -> None:
    if out.exists():
        print(top_of(out.read_text(), label=out.stem))
    else:  # no ptrace permission, say
        print(f"profile: py-spy wrote nothing: {err.strip()[-300:]}")


def top_of(collapsed: str, *, label: str, n: int = 20) -> str:
    """The functions with most own and most inclusive samples, from py-spy's collapsed stacks (CPU, not idle)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        if frames:
            own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"profile {label}: {total} samples"]
    for title, table in (("own", own), ("inclusive", inclusive)):
        lines.append(f"  top {n} by {title} samples:")
        lines += [f"    {c / total:6.1%}  {f}" for f, c in table.most_common(n)] if total else []
    return "\n".join(lines)


def within(r: dict[str, Any]) -> bool:
    """Every expected signal came, and the p99 overhead is within the target."""
    return "signals" in r and r["signals"] == r["expected"] and r["overhead_p99"] <= TARGET_MS


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\ninterval {args.interval:g}s, window {args.window:g}s, {args.cycles} cycles per scenario; "
        f"backend latency {LATENCY_MS}, ETF 402; target p99 overhead <= {TARGET_MS:g} ms; "
        "CPU: the pipeline process (the backend's and nats-server's in brackets)"
    )
    print(
        f"{'scenario':<11} {'loop/GC':<15} {'assets':>6} {'signals':>11} {'latency p50/p99':>17} "
        f"{'overhead p50/p99/max':>22} {'req/a-c':>8} {'CPU s/1k sig':>12} {'(backend, nats)':>16}  within"
    )
    for r in results:
        variant = f"{r['loop']}/{r['gc']}"
        if "signals" not in r:
            print(f"{r['name']:<11} {variant:<15} {r['assets']:>6}  {r.get('error')}{r.get('note', '')}")
            continue
        flag = " (deadline)" if r["timed_out"] else ""
        print(
            f"{r['name']:<11} {variant:<15} {r['assets']:>6} {r['signals']:>5}/{r['expected']:<5} "
            f"{r['latency_p50']:>7.1f}/{r['latency_p99']:<7.1f} "
            f"{r['overhead_p50']:>6.1f}/{r['overhead_p99']:>6.1f}/{r['overhead_max']:<7.1f} "
            f"{r['requests_per_asset_cycle']:>8.2f} {r['cpu_per_1000']:>12.2f} "
            f"({r['backend_cpu_per_1000']:>5.2f}, {r['nats_cpu_per_1000']:>5.2f})  "
            f"{'yes' if within(r) else 'NO'}{flag}{r.get('note', '')}"
        )
        gcs = ", ".join(f"gen{g} {n}x max {m:g} ms" for g, (n, _, m) in enumerate(r[f"gc{g}"] for g in range(3)))
        print(
            f"{'':<11} p99 overhead by cycle {r['overhead_p99_by_cycle']} (after cycle 0: "
            f"{r['steady_overhead_p99']:.1f}); GC pauses {gcs}; "
            f"a full collection now {r['full_gc_ms']:g} ms; loop stalls > {TARGET_MS:g} ms: "
            f"{r['stalls_over_15ms']} (longest {r['stall_max']:g} ms); other work on the machine "
            f"{r['foreign_cores']:g} cores"
        )
    for pair in dict.fromkeys((r["loop"], r["gc"]) for r in results if r["name"] == "etf_dead"):
        runs = [r for r in results if r["name"] == "etf_dead" and (r["loop"], r["gc"]) == pair]
        fits = [r["assets"] for r in runs if within(r)]
        largest = f"{max(fits)} assets" if fits else "none measured"
        print(f"largest asset count within {TARGET_MS:g} ms (etf_dead, {pair[0]} loop, {pair[1]} GC): {largest}")
    by_key = {(r["name"], r["assets"], r["loop"], r["gc"]): r for r in results if "signals" in r}
    for (name, n, loop, gc_), dead in by_key.items():
        absent = by_key.get(("etf_off", n, loop, gc_))
        if name == "etf_dead" and absent is not None:
            diff = dead["overhead_p99"] - absent["overhead_p99"]
            print(f"{n} assets, {loop}/{gc_}: dead ETF vs ETF switched off, p99 overhead difference {diff:+.1f} ms")


async def parent(args: argparse.Namespace) -> list[dict[str, Any]]:
    counts = [int(n) for n in args.assets.split(",") if n.strip()]
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - SCENARIOS.keys()
    if unknown:
        raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; choose from {sorted(SCENARIOS)}")
    loops = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    gcs = ["default", "tuned"] if args.gc == "both" else [args.gc]
    results = []
    for n in counts:
        for scenario in scenarios:
            for loop in loops:
                for gc_ in gcs:
                    r = await run_child(args, scenario, n, loop, gc_)
                    results.append(r)
                    overhead = f"p99 overhead {r['overhead_p99']:.1f} ms" if "signals" in r else r.get("error")
                    print(f"  done: {scenario} {n} assets, {loop} loop, {gc_} GC: {overhead}", flush=True)
    report(results, args)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--assets", default="100,500,1000,2000", help="asset counts, comma-separated")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--scenarios", default="etf_dead", help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--loop", choices=("asyncio", "uvloop", "both"), default="asyncio", help="SNIPER_LOOP")
    parser.add_argument("--gc", choices=("tuned", "default", "both"), default="tuned", help="SNIPER_GC")
    parser.add_argument("--deadline", type=float, default=0.0, help="seconds per scenario (default from the cycles)")
    parser.add_argument("--profile", metavar="DIR", help="sample each scenario with py-spy; stacks go to DIR")
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    parser.add_argument("--child", choices=tuple(SCENARIOS), help=argparse.SUPPRESS)
    parser.add_argument("--child-assets", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.exit(child(args))
    results = asyncio.run(parent(args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
