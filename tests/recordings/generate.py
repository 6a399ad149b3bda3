"""Regenerate the recorded streams used by the golden tests.

    .venv/bin/python tests/recordings/generate.py

Each scenario runs the real pipeline (embedded nats-server, the reference
backend over loopback HTTP, every actor) for a few cycles of SOL and BTC and
records every message with `StreamRecorder`, exactly as `sniper record` does.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for the packages

from actors.routing import RequestSettings
from marketsim import StatusFault, serve
from runtime import NatsBus, SystemClock
from sniper.app import run_pipeline
from sniper.config import Settings
from sniper.embedded import EmbeddedNats
from sniper.recording import StreamRecorder

HERE = Path(__file__).resolve().parent
SCENARIOS: dict[str, dict[str, Any]] = {
    "normal": dict(default_faults=False),
    "etf_402": dict(),
    "core_down": dict(
        faults={"whale": [StatusFault(503)], "heatmap": [StatusFault(500)], "spot_ob": [StatusFault(404)]}
    ),
}


async def record(name: str, sim_kwargs: dict[str, Any], cycles: int = 4) -> None:
    async with serve(port=0, seed=11, **sim_kwargs) as srv, EmbeddedNats() as nats:
        # The recorder subscribes before any actor starts, so cycle 0's tick is in the stream.
        bus = await NatsBus.connect(nats.url, name="recorder")
        path = HERE / f"{name}.jsonl"
        out = path.open("wb")
        recorder = await StreamRecorder(bus, SystemClock(), out, subjects="sniper.>").start()
        settings = Settings(
            nats=nats.url,
            backend=srv.url,
            assets=("SOL", "BTC"),
            interval=1.0,
            window=0.6,
            request=RequestSettings(depth=10),
        )
        async with run_pipeline(settings):
            await asyncio.sleep(cycles * settings.interval + 0.3)
        await recorder.stop()
        out.close()
        await bus.close()
        print(f"{path.name}: {recorder.count} messages")


async def main() -> None:
    for name, kwargs in SCENARIOS.items():
        await record(name, kwargs)


if __name__ == "__main__":
    asyncio.run(main())
