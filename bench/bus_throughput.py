"""Messages per second through the actor runtime vs raw nats-py, same server, same run.

Baseline: a nats-py client publishes pre-encoded bytes; a second nats-py
connection counts them in a callback subscription (nats-py's fastest path).
Runtime: an actor publishes a `Tick` with `Actor.publish` (encode included);
another actor's declared subscription decodes it into a typed `Tick` and runs
its handler. Both use two connections to one embedded nats-server. Rounds
alternate (raw, runtime, raw, ...) so drift on the machine hits both alike;
the median of each is reported.

    python bench/bus_throughput.py [--messages 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nats
from nats.aio.msg import Msg

from actors.metrics import Metrics
from messages import Tick, encode
from runtime import Actor, Context, NatsBus, Sub, Supervisor, SystemClock
from runtime.hooks import RuntimeHooks
from sniper.embedded import EmbeddedNats

SUBJECT = "bench.tick.SOL"


def sample(i: int) -> Tick:
    return Tick(asset="SOL", cycle=i, ts=1_767_225_600.0 + i, deadline=1_767_225_603.0 + i, modules=("whale", "etf"))


async def raw_round(url: str, n: int) -> float:
    pub = await nats.connect(url)
    sub_nc = await nats.connect(url)
    done = asyncio.Event()
    count = 0

    async def cb(msg: Msg) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    await sub_nc.subscribe(SUBJECT, cb=cb, pending_msgs_limit=n + 1, pending_bytes_limit=-1)
    await sub_nc.flush()
    payloads = [encode(sample(i)) for i in range(n)]
    started = time.perf_counter()
    for data in payloads:
        await pub.publish(SUBJECT, data)
    await pub.flush()
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - started
    await pub.close()
    await sub_nc.close()
    return n / elapsed


class Sink(Actor):
    name = "sink"
    heartbeat_interval = None

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.count = 0
        self.done = asyncio.Event()

    def subscriptions(self) -> Iterable[Sub]:
        return [Sub("bench.tick.*", Tick, self.on_tick)]

    async def on_tick(self, tick: Tick) -> None:
        self.count += 1
        if self.count == self.n:
            self.done.set()


class Source(Actor):
    name = "source"
    heartbeat_interval = None


async def runtime_round(url: str, n: int, metrics: bool = False) -> float:
    pub_bus = await NatsBus.connect(url, name="bench-pub")
    sub_bus = await NatsBus.connect(url, name="bench-sub")
    from runtime import nats_bus

    nats_bus.DEFAULT_PENDING_MSGS = n + 1  # same queue bound as the raw baseline
    sink, source = Sink(n), Source()
    clock = SystemClock()
    # With --metrics, sniper's Prometheus set is the runtime's hooks, as in `sniper run` (handler timing included).
    hooks: RuntimeHooks = Metrics() if metrics else RuntimeHooks()
    async with (
        Supervisor(Context(bus=sub_bus, clock=clock, hooks=hooks), [sink]),
        Supervisor(Context(bus=pub_bus, clock=clock, hooks=hooks), [source]),
    ):
        await sub_bus.flush()
        msgs = [sample(i) for i in range(n)]
        started = time.perf_counter()
        for msg in msgs:
            await source.publish(SUBJECT, msg)
        await pub_bus.flush()
        await asyncio.wait_for(sink.done.wait(), 120)
        elapsed = time.perf_counter() - started
    assert sink.bad_messages == 0 and sink.handled == n
    await pub_bus.close()
    await sub_bus.close()
    return n / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--metrics", action="store_true", help="sniper's metrics as the runtime hooks (as sniper run)")
    args = parser.parse_args()
    raw: list[float] = []
    ours: list[float] = []
    async with EmbeddedNats() as server:
        await raw_round(server.url, 5_000)  # warm-up
        await runtime_round(server.url, 5_000)
        for _ in range(args.rounds):
            raw.append(await raw_round(server.url, args.messages))
            ours.append(await runtime_round(server.url, args.messages, args.metrics))
    r, o = statistics.median(raw), statistics.median(ours)
    print(f"messages per round: {args.messages}, rounds: {args.rounds}, hooks: {'metrics' if args.metrics else 'none'}")
    raw_rounds = ", ".join(f"{x:,.0f}" for x in raw)
    our_rounds = ", ".join(f"{x:,.0f}" for x in ours)
    print(f"raw nats-py publish -> callback:            median {r:>9,.0f} msg/s  (rounds: {raw_rounds})")
    print(f"actor runtime publish -> typed decode -> handler: median {o:>9,.0f} msg/s  (rounds: {our_rounds})")
    print(f"runtime / raw: {o / r:.0%} (target >= 60%)")


if __name__ == "__main__":
    asyncio.run(main())
