"""The cost of durable signals: signals per second with and without the signal stream, same server, same run.

Each round publishes `n` encoded `Signal`s as the assembler does (`NatsBus.publish`,
one per (asset, cycle)) and a subscriber counts them, so the figure is end to end:

* plain: no stream, no header (``--no-signal-stream``);
* durable: the stream `sniper_signals` captures the subject and every publish
  carries ``Nats-Msg-Id`` (what the assembler does); the round ends when the
  subscriber has all of them *and* the stream has stored them all.

Rounds alternate (plain, durable, plain, ...) so drift hits both alike; the
median of each is reported, with durable/plain as a percentage.

    python bench/durable_signals.py [--signals 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from messages import ModuleStatus, Signal, Subjects, encode
from messages.subjects import SIGNALS_STREAM
from runtime import NatsBus
from runtime.bus import Envelope
from runtime.stream import MSG_ID, StreamSpec
from sniper.embedded import EmbeddedNats

ASSETS = 100


def signal(i: int) -> Signal:
    modules = {m: ModuleStatus(status="ok", latency_ms=40.0) for m in ("whale", "heatmap", "spot_ob", "bias")}
    return Signal(
        asset=f"A{i % ASSETS:03d}",
        cycle=i // ASSETS,
        ts=1_767_225_600.0 + i,
        started=1_767_225_600.0 + i,
        direction="long",
        score=0.4,
        confidence=0.85,
        modules=modules,
        etf_available=False,
        components={"whale": 1.0, "heatmap": 0.3, "spot_ob": 0.5, "bias": 0.4},
        epoch=1_767_225_600_000,
    )


async def one_round(url: str, n: int, durable: bool, round_no: int) -> float:
    subjects = Subjects(f"bench{round_no}{'d' if durable else 'p'}")
    pub = await NatsBus.connect(url, name="pub")
    sub = await NatsBus.connect(url, name="sub")
    spec = StreamSpec(
        name=subjects.stream(SIGNALS_STREAM),
        subjects=(subjects.signal_all(),),
        max_age=3600,
        max_bytes=1 << 30,
        max_msgs_per_subject=n,
    )
    if durable:
        await pub.ensure_stream(spec)
    got = 0
    done = asyncio.Event()

    async def count(env: Envelope) -> None:
        nonlocal got
        got += 1
        if got == n:
            done.set()

    await sub.subscribe(subjects.signal_all(), count, pending=n + 1)
    await sub.flush()
    messages = [signal(i) for i in range(n)]
    started = time.perf_counter()
    for msg in messages:
        data = encode(msg)
        if durable:
            await pub.publish(subjects.signal(msg.asset), data, headers={MSG_ID: msg.msg_id})
        else:
            await pub.publish(subjects.signal(msg.asset), data)
    await pub.flush()
    await asyncio.wait_for(done.wait(), 120)
    if durable:  # stored too, not only delivered
        js = pub._nc.jetstream()
        while (await js.stream_info(spec.name)).state.messages < n:  # noqa: ASYNC110  # polling the broker: no event to wait on
            await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    await pub.close()
    await sub.close()
    return n / elapsed


async def main(n: int, rounds: int) -> None:
    async with EmbeddedNats() as server:
        plain, durable = [], []
        for r in range(rounds):
            plain.append(await one_round(server.url, n, False, r))
            durable.append(await one_round(server.url, n, True, r))
            print(f"round {r + 1}: plain {plain[-1]:,.0f}/s, durable {durable[-1]:,.0f}/s", flush=True)
    p, d = statistics.median(plain), statistics.median(durable)
    print(f"\nsignals/s (median of {rounds}, {n} signals of ~{len(encode(signal(0)))} B, {ASSETS} assets):")
    print(f"  plain (no stream)          {p:>10,.0f}")
    print(f"  durable (stream + Msg-Id)  {d:>10,.0f}   {100 * d / p:.0f}% of plain")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.signals, args.rounds))
