"""What the /gpts gateway costs: the same requests to the backend directly and through the gateway, same run.

Setup: the reference backend (``python -m marketsim``) and the gateway
(``python -m sniper gateway``) each in its own process, as deployed; this
process is the client (one aiohttp session, keep-alive, a pool as large as the
concurrency). Every request is ``GET /institutional/bias?symbol=SOL-USDT-SWAP``
(a small JSON answer), directly at the backend or as
``/gpts/institutional/bias?...`` at the gateway. Rounds alternate (direct,
gateway, direct, ...) so drift on the machine hits both alike; the median of
each is reported, per concurrency.

Reported: throughput (requests/s) and its ratio gateway/direct, latency
p50/p99 with the gateway's added p50/p99 (gateway minus direct), and the CPU
time each process spent per request (client, backend, gateway; from /proc):
with every process on one machine, throughput at high concurrency is bounded
by the CPU all of them need per request.
Targets: >= 70 % of direct throughput at concurrency 50; <= 3 ms added p99 at
concurrency 1.

    python bench/gateway.py [--requests 4000] [--rounds 5] [--concurrency 1,50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PATH = "/institutional/bias?symbol=SOL-USDT-SWAP"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def process(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 20)


@contextlib.asynccontextmanager
async def start_backend() -> AsyncIterator[tuple[str, int]]:
    async with process("-m", "marketsim", "--port", "0", "--seed", "3") as proc:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        url = re.search(r"http://\S+", line)
        if not url:
            raise RuntimeError(f"backend did not start: {line!r}")
        yield url.group(0), proc.pid


@contextlib.asynccontextmanager
async def start_gateway(backend: str) -> AsyncIterator[tuple[str, int]]:
    port = free_port()
    args = ["-m", "sniper", "gateway", "--backend", backend, "--port", str(port), "--log-format", "json"]
    async with process(*args, "--log-level", "warning") as proc:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"{url}/gpts{PATH}") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if proc.returncode is not None or time.monotonic() > deadline:
                    assert proc.stderr is not None
                    raise RuntimeError(f"gateway did not start: {(await proc.stderr.read()).decode()[-2000:]}")
                await asyncio.sleep(0.1)
        yield url, proc.pid


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) a process used so far: another process's from /proc (Linux), or our own."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    throughput: float  # requests/s
    latencies: list[float]  # seconds, one per request
    cpu_us: dict[str, float]  # CPU microseconds per request, by process: client, backend, gateway

    def pct(self, q: float) -> float:
        values = sorted(self.latencies)
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def one_round(url: str, requests: int, concurrency: int, pids: dict[str, int | None] | None = None) -> Round:
    """`requests` GETs of `url` by `concurrency` workers over one pooled session; CPU of `pids` per request."""
    pids = pids or {}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    latencies: list[float] = []
    left = requests
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(concurrency):  # warm the pool
            async with session.get(url) as r:
                await r.read()

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                started = time.perf_counter()
                async with session.get(url) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{url}: HTTP {r.status}")
                latencies.append(time.perf_counter() - started)

        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / len(latencies) * 1e6 for name, pid in pids.items()}
    return Round(len(latencies) / elapsed, latencies, cpu)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="requests per round (default 4000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", default="1,50", help="comma-separated (default 1,50)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    results: dict[int, dict[str, float]] = {}
    async with contextlib.AsyncExitStack() as stack:
        backend, backend_pid = await stack.enter_async_context(start_backend())
        gateway, gateway_pid = await stack.enter_async_context(start_gateway(backend))
        pids: dict[str, int | None] = {"client": None, "backend": backend_pid, "gateway": gateway_pid}
        direct_url, gateway_url = f"{backend}{PATH}", f"{gateway}/gpts{PATH}"
        for concurrency in levels:
            await one_round(direct_url, 500, concurrency)  # warm-up
            await one_round(gateway_url, 500, concurrency)
            direct: list[Round] = []
            via: list[Round] = []
            for _ in range(args.rounds):
                direct.append(await one_round(direct_url, args.requests, concurrency, pids))
                via.append(await one_round(gateway_url, args.requests, concurrency, pids))
            d_tp = statistics.median(r.throughput for r in direct)
            g_tp = statistics.median(r.throughput for r in via)
            d50, g50 = statistics.median(r.pct(0.5) for r in direct), statistics.median(r.pct(0.5) for r in via)
            d99, g99 = statistics.median(r.pct(0.99) for r in direct), statistics.median(r.pct(0.99) for r in via)
            results[concurrency] = {
                "direct_rps": d_tp,
                "gateway_rps": g_tp,
                "ratio": g_tp / d_tp,
                "direct_p50_ms": d50 * 1000,
                "gateway_p50_ms": g50 * 1000,
                "added_p50_ms": (g50 - d50) * 1000,
                "direct_p99_ms": d99 * 1000,
                "gateway_p99_ms": g99 * 1000,
                "added_p99_ms": (g99 - d99) * 1000,
            }
            print(f"concurrency {concurrency}: {args.requests} requests x {args.rounds} rounds, medians")
            print(f"  direct   {d_tp:>8,.0f} req/s  p50 {ms(d50)}  p99 {ms(d99)}")
            print(f"  gateway  {g_tp:>8,.0f} req/s  p50 {ms(g50)}  p99 {ms(g99)}")
            print(f"  gateway / direct: {g_tp / d_tp:.0%}   added p50 {ms(g50 - d50)}   added p99 {ms(g99 - d99)}")
            print(f"  rounds direct:  {', '.join(f'{r.throughput:,.0f}' for r in direct)}")
            print(f"  rounds gateway: {', '.join(f'{r.throughput:,.0f}' for r in via)}")
            for name, rounds in (("direct", direct), ("gateway", via)):
                cpu = {k: statistics.median(r.cpu_us[k] for r in rounds) for k in pids}
                results[concurrency].update({f"{name}_cpu_us_{k}": v for k, v in cpu.items()})
                shown = ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
                print(f"  CPU per request, {name:<8} (us): {shown}; total {sum(cpu.values()):.0f}")
    if 50 in results:
        print(f"target: >= 70 % of direct throughput at concurrency 50: {results[50]['ratio']:.0%}")
    if 1 in results:
        print(f"target: <= 3 ms added p99 at concurrency 1: {results[1]['added_p99_ms']:.2f} ms")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
