"""`sniper demo` and `sniper run`: the same pipeline, with or without embedded parts.

The demo starts what a fresh machine lacks (nats-server from the wheel, the
reference backend with its seed-like defaults: ETF flows behind a 402 paywall)
and prints one line per signal, received over NATS like any other bot would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable

from runtime import Bus
from runtime.logs import get_logger
from runtime.nats_bus import redact_url

from .app import format_signal, print_signals, run_pipeline, wait_for_stop
from .config import NatsAuth, Settings, settings_from

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
        counter: list[Callable[[], int]] = []

        async def subscribe_printer(bus: Bus) -> None:
            counter.append(await print_signals(bus, settings, _out))

        running = await stack.enter_async_context(run_pipeline(settings, before_start=subscribe_printer))
        count = counter[0]
        nats = redact_url(running.nats_url or "")
        print(
            f"sniper demo: NATS {nats}, backend {backend}, assets {','.join(settings.assets)}, "
            f"interval {settings.interval:g}s, window {settings.window:g}s. Ctrl-C to stop.",
            file=sys.stderr,
            flush=True,
        )
        try:
            await wait_for_stop(args.duration, supervisor=running.supervisor)
        finally:
            log.info("demo_stopping", signals=count())
    return 0


async def run(settings: Settings, duration: float | None) -> int:
    """Run until `duration`, a signal, or an actor's failure (ActorFailedError: exit status 3).

    Once NATS is connected and before any actor starts, the backend must answer
    once (`sniper.preflight`): a wrong --backend exits 2 instead of running blind.
    """
    from .preflight import check_backend

    async def backend_answers(_: Bus) -> None:
        if settings.backend is not None:
            await check_backend(settings.backend)

    async with run_pipeline(settings, before_start=backend_answers) as running:
        await wait_for_stop(duration, supervisor=running.supervisor)
    return 0


async def record(
    nats_url: str, out: str, subjects: str, duration: float | None, *, auth: NatsAuth | None = None
) -> int:
    from messages import ConfigError
    from runtime import NatsBus, SystemClock

    from .recording import StreamRecorder

    try:  # open the output first: a bad path fails before any connection is made
        fh = sys.stdout.buffer if out == "-" else await asyncio.to_thread(open, out, "ab")
    except OSError as exc:
        raise ConfigError(f"--out {out}: {exc.strerror or exc}") from None
    try:
        bus = await NatsBus.connect(nats_url, name="sniper-record", **(auth.options() if auth else {}))
    except BaseException:
        if fh is not sys.stdout.buffer:
            fh.close()
        raise
    try:
        recorder = await StreamRecorder(bus, SystemClock(), fh, subjects=subjects).start()
        log.info("recording", subjects=subjects, out=out)
        await wait_for_stop(duration)
        await recorder.stop()
        log.info("recorded", messages=recorder.count, out=out)
    finally:
        if fh is not sys.stdout.buffer:
            fh.close()
        await bus.close()
    return 0


async def replay_file(
    nats_url: str, path: str, speed: float, subjects: str | None, *, auth: NatsAuth | None = None
) -> int:
    from runtime import NatsBus, SystemClock

    from .recording import read_recording, replay

    lines = list(read_recording(path, subjects=subjects))  # read fully first: a bad file fails before publishing
    bus = await NatsBus.connect(nats_url, name="sniper-replay", **(auth.options() if auth else {}))
    try:
        count = await replay(lines, bus, SystemClock(), speed=speed)
        await bus.flush()
        log.info("replayed", messages=count, file=path, speed=speed)
    finally:
        await bus.close()
    return 0


__all__ = ["demo", "format_signal", "run"]
