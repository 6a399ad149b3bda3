"""How a long-running pipeline process runs: its event loop and its garbage collector.

`run_process` replaces ``asyncio.run`` for ``sniper run`` and ``sniper demo``
(and ``bench/cycle_latency.py``, so the benchmark measures the same process).

Event loop, ``SNIPER_LOOP``:

* ``asyncio`` (default): the standard library's loop.
* ``uvloop``: uvloop's (``pip install 'sniper[fast]'``); where it is not
  installed, the standard loop, with one warning line saying so.
* ``auto``: uvloop when it is importable, else the standard loop, silently.

uvloop is opt-in: at 1,000 assets it saved ~6 % of the pipeline's CPU with
no measurable change in p99 overhead (bench/RESULTS.md, issue 14), and the
test suite runs on the standard loop.

Garbage collector, ``SNIPER_GC``:

* ``tuned`` (default): the full (generation 2) collection runs at most once
  per 1,000 generation-1 collections instead of once per 10, and once the
  pipeline has settled (`settle` seconds: every asset has ticked once)
  everything alive is frozen (`gc.freeze`), so a full collection no longer
  walks the start-up heap (imports, metric children, breakers: ~140,000
  objects at 1,000 assets).
* ``default``: Python's own settings.

Why: a pipeline of 1,000 assets keeps every asset's last signal, health and
breaker state alive for an interval, so those objects reach the oldest
generation and Python ran a full collection every few seconds, each a
75-125 ms pause of the whole event loop: every tick, answer and signal in
flight waited, and that, not CPU, was most of the p99 overhead past 15 ms.
With the tuning a full collection comes every few minutes and walks only
what changed since the freeze (14-24 ms at 1,000 assets). Steady state makes
no cyclic garbage (measured), so collecting the oldest generation rarely
holds back almost nothing; generations 0 and 1 are collected as before.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Literal, TypeVar, get_args

from messages import ConfigError
from runtime.logs import get_logger

T = TypeVar("T")
LoopName = Literal["asyncio", "uvloop", "auto"]
GcPolicy = Literal["tuned", "default"]
LOOP_VAR = "SNIPER_LOOP"
GC_VAR = "SNIPER_GC"
#: Generation-1 collections between two full collections with ``SNIPER_GC=tuned`` (Python's default: 10).
FULL_COLLECTION_EVERY = 1000
#: Seconds allowed for start-up (connect, preflight, actors' on_start) before the first interval counts.
STARTUP_ALLOWANCE = 10.0

log = get_logger("process")


def _choice(environ: Mapping[str, str], var: str, allowed: tuple[str, ...], default: str) -> str:
    value = environ.get(var, "").strip().lower() or default
    if value not in allowed:
        raise ConfigError(f"environment variable {var}={environ[var]!r}: must be one of {', '.join(allowed)}")
    return value


def loop_factory(environ: Mapping[str, str] = os.environ) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """The loop ``SNIPER_LOOP`` asks for, as (name in use, factory or None for the standard loop)."""
    wanted = _choice(environ, LOOP_VAR, get_args(LoopName), "asyncio")
    if wanted == "asyncio":
        return "asyncio", None
    if importlib.util.find_spec("uvloop") is None:
        if wanted == "uvloop":
            log.warning("uvloop_missing", fallback="asyncio", hint="pip install 'sniper[fast]'")
        return "asyncio", None
    import uvloop

    return "uvloop", uvloop.new_event_loop


def gc_policy(environ: Mapping[str, str] = os.environ) -> str:
    """``tuned`` or ``default``, from ``SNIPER_GC``."""
    return _choice(environ, GC_VAR, get_args(GcPolicy), "tuned")


def tune_gc(settle: float | None) -> None:
    """Rare full collections now; freeze the heap `settle` seconds into the running loop (None: never)."""
    threshold0, threshold1, _ = gc.get_threshold()
    gc.set_threshold(threshold0, threshold1, FULL_COLLECTION_EVERY)
    if settle is not None:
        asyncio.get_running_loop().call_later(settle, _freeze)


def settle_after(interval: float, window: float) -> float:
    """Seconds into a run by which every asset has had one cycle, so its long-lived state exists."""
    return STARTUP_ALLOWANCE + interval + window


def _freeze() -> None:
    gc.freeze()
    log.debug("heap_frozen", objects=gc.get_freeze_count())


def run_process(
    main: Coroutine[Any, Any, T], *, settle: float | None = None, environ: Mapping[str, str] = os.environ
) -> T:
    """``asyncio.run(main)`` on the loop ``SNIPER_LOOP`` names, with the GC policy of ``SNIPER_GC``.

    `settle`: seconds after which the pipeline's long-lived state exists (start-up plus one
    interval and window), when the heap is frozen; None leaves it unfrozen.
    """
    try:
        name, factory = loop_factory(environ)
        tuned = gc_policy(environ) == "tuned"
    except BaseException:
        main.close()  # never started: no "coroutine was never awaited"
        raise

    async def tuned_main() -> T:
        if tuned:
            tune_gc(settle)
        log.debug("event_loop", loop=name, gc="tuned" if tuned else "default")
        return await main

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(tuned_main())
