"""A hostile publisher: forged and junk messages on every subject sniper subscribes to.

The bus is a trust boundary, so its defences are tested the way an attacker
(or a buggy bot) would probe them: as fast as one publisher can send, a mix
of junk bytes, deep nesting, extreme numbers and well-formed messages for
assets, modules and cycles nobody configured. Used by `tests/sniper/test_flood.py`
and `bench/flood.py`; runnable against a test broker as

    python -m sniper.hostile --nats nats://127.0.0.1:4222 --seconds 10

Never point it at a broker you do not own.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Callable, Iterator

import msgspec

from messages import (
    MODULES,
    CircuitState,
    Degraded,
    FlagChanged,
    Heartbeat,
    Subjects,
    Tick,
)
from runtime.nats_bus import NatsBus


def forged_messages(subjects: Subjects, rng: random.Random, now: Callable[[], float]) -> Iterator[tuple[str, bytes]]:
    """An endless mix of forged (subject, payload) pairs; assets are never SOL, BTC or ETH."""
    enc = msgspec.json.encode
    while True:
        asset = f"X{rng.randrange(10**6)}"
        module = rng.choice(MODULES)
        t = now()
        match rng.randrange(10):
            case 0:
                yield subjects.tick(asset), enc(Tick(asset=asset, cycle=rng.randrange(2**40), ts=t, deadline=t + 3))
            case 1:
                msg = Degraded(module=module, asset=asset, cycle=rng.randrange(10**6), ts=t, reason="timeout")
                yield subjects.degraded(module, asset), enc(msg)
            case 2:
                fake = f"m{rng.randrange(10**6)}"
                msg = Degraded(module=fake, asset="SOL", cycle=rng.randrange(10**6), ts=t, reason="upstream_error")
                yield subjects.degraded(fake, "SOL"), enc(msg)
            case 3:
                yield subjects.data(module, asset), b'{"type":"module_data","payload":' + b"[" * 5000
            case 4:
                yield subjects.signal(asset), b'{"type":"signal","cycle":1e400,"score":"NaN"}'
            case 5:
                state = CircuitState(module=module, scope=asset, state="open", ts=t, until=t + 100, cause="transient")
                yield subjects.circuit(module), enc(state)
            case 6:
                yield subjects.routes(), b'{"type":"route_map","v":1,"ts":1e15,"source":"openapi","revision":9e18}'
            case 7:
                yield subjects.flags_changed(), enc(FlagChanged(flag="ETF", enabled=True, ts=t, why="x" * 200))
            case 8:
                yield subjects.heartbeat(f"a{rng.randrange(10**6)}"), enc(Heartbeat(actor="x", ts=t, state="running"))
            case _:
                yield rng.choice((subjects.tick(asset), subjects.command("flags"))), rng.randbytes(rng.randrange(64))


async def flood(url: str, *, seconds: float, count: int | None = None, prefix: str = "sniper", seed: int = 1) -> int:
    """Publish forged messages as fast as one connection can for `seconds` (or until `count`); returns how many."""
    bus = await NatsBus.connect(url, name="hostile")
    sent = 0
    try:
        messages = forged_messages(Subjects(prefix), random.Random(seed), time.time)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and (count is None or sent < count):
            for _ in range(500):  # a batch between clock reads and yields
                subject, data = next(messages)
                await bus.publish(subject, data)
                sent += 1
            await bus.flush()
    finally:
        await bus.close()
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sniper.hostile", description=__doc__.splitlines()[0])
    parser.add_argument("--nats", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--count", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--prefix", default="sniper")
    args = parser.parse_args(argv)
    sent = asyncio.run(flood(args.nats, seconds=args.seconds, count=args.count, prefix=args.prefix))
    print(sent, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
