"""`sniper demo` and `sniper run`: the same pipeline, with or without embedded parts.

The demo starts what a fresh machine lacks (nats-server from the wheel, the
reference backend with its seed-like defaults: ETF flows behind a 402 paywall)
and prints one line per signal, received over NATS like any other bot would.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from actors.logs import get_logger

from .app import format_signal, print_signals, run_pipeline, wait_for_stop
from .config import Settings, settings_from

log = get_logger("demo")


def _out(line: str) -> None:
    print(line, flush=True)


async def demo(args: argparse.Namespace) -> int:
    async with contextlib.AsyncExitStack() as stack:
        backend = args.backend
        if backend is None:
            from marketsim import serve

            faults: dict[str, list[object]] = {}
            for module, fault in args.fault:
                faults.setdefault(module, []).append(fault)
            srv = await stack.enter_async_context(serve(port=0, seed=args.seed, faults=faults or None))
            backend = srv.url
            log.info("reference_backend_started", url=backend, flavor=srv.sim.flavor)
        settings = settings_from(args, backend=backend, nats=args.nats)
        running = await stack.enter_async_context(run_pipeline(settings))
        count = await print_signals(running.bus, settings, _out)
        print(
            f"sniper demo: NATS {running.nats_url}, backend {backend}, assets {','.join(settings.assets)}, "
            f"interval {settings.interval:g}s, window {settings.window:g}s. Ctrl-C to stop.",
            file=sys.stderr,
            flush=True,
        )
        await wait_for_stop(args.duration)
        log.info("demo_stopping", signals=count())
    return 0


async def run(settings: Settings, duration: float | None) -> int:
    async with run_pipeline(settings):
        await wait_for_stop(duration)
    return 0


__all__ = ["demo", "format_signal", "run"]
