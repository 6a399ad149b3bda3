"""`sniper watch [--once] [--asset A]`: a live terminal table of the pipeline, as a read-only client sees it.

One row per asset: last cycle, direction, score, confidence, signal age, each
module's status (``degraded`` with its reason) and the breakers holding the
asset back; below it the flags and recent alerts. It reads what a ``bot`` user
may read (`sniper.gateway.live.LiveState`: the signal stream, ``health.*``,
``alert.*`` and the ``cmd.status`` query), so it works with the bot's password.

Live mode redraws in place (rich's ``Live``) at each change and every second
(ages move) until Ctrl-C or ``--for``. ``--once`` prints one snapshot after the
catch-up (the stream and one status query) and exits 0, or 1 with one line on
stderr when no signal is known.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from messages import Subjects
from runtime import NatsBus, SystemClock

from .gateway.live import LiveState, breakers_for

if TYPE_CHECKING:
    from .config import NatsAuth

#: Width when stdout is not a terminal (a pipe, a file): wide enough that no cell wraps.
PIPE_WIDTH = 220
STATUS_STYLE = {"ok": "green", "degraded": "yellow", "disabled": "grey50", "missing": "bold red"}
DIRECTION_STYLE = {"long": "bold green", "short": "bold red", "flat": "dim"}
HEALTH_STYLE = {"healthy": "green", "soft_fail": "yellow", "hard_fail": "bold red"}


def age(seconds: float) -> str:
    """``7s``, ``2m05s``, ``1h02m``, ``3d04h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s // 60 % 60:02d}m"
    return f"{s // 86400}d{s // 3600 % 24:02d}h"


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _module(status: Mapping[str, Any] | None) -> Text:
    if status is None:
        return Text("-", style="dim")
    name = str(status["status"])
    reason = status.get("reason")
    shown = f"{name}({reason})" if reason and reason != name else name
    source = status.get("source")
    if source and source != "backend":  # a venue answered (the fallback)
        shown += f"@{source}"
    return Text(shown, style=STATUS_STYLE.get(name, ""))


def _breaker(b: Mapping[str, Any]) -> str:
    scope = "" if b["scope"] == "all" else f"[{b['scope']}]"
    return f"{b['module']}{scope} {b['state']}"


def render(snapshot: Mapping[str, Any], now: float) -> RenderableType:
    """The snapshot as a table (assets x modules) with the flags, breakers and alerts under it."""
    modules: list[str] = snapshot["modules"]
    table = Table(title="sniper", title_justify="left", header_style="bold", expand=False)
    for name in ("asset", "cycle", "direction", "score", "conf", "age", "health"):
        table.add_column(name, justify="right" if name in ("cycle", "score", "conf", "age") else "left", no_wrap=True)
    for module in modules:
        table.add_column(module, no_wrap=True)
    table.add_column("breakers", no_wrap=True)
    for asset, entry in snapshot["assets"].items():
        health = entry.get("health")
        table.add_row(
            Text(asset, style="bold"),
            str(entry["cycle"]),
            Text(entry["direction"].upper(), style=DIRECTION_STYLE.get(entry["direction"], "")),
            f"{entry['score']:+.3f}",
            f"{entry['confidence']:.2f}",
            age(now - entry["ts"]),
            Text(health["state"], style=HEALTH_STYLE.get(health["state"], "")) if health else Text("-", style="dim"),
            *(_module(entry["modules"].get(m)) for m in modules),
            ", ".join(_breaker(b) for b in breakers_for(snapshot, asset)) or "-",
        )
    if not snapshot["assets"]:
        table.caption = "no signal yet: waiting for the next cycle"
    parts: list[RenderableType] = [table]
    flags = snapshot["flags"]
    status = snapshot["status"]
    line = Text("flags: ")
    for flag, on in flags.items():
        line.append(f"{flag}={'on' if on else 'off'} ", style="green" if on else "grey50")
    if status["error"]:
        line.append(f"(status query failing: {status['error']}; breakers and flags as last known)", style="yellow")
    elif not flags:
        line.append("unknown (no status reply yet)", style="dim")
    parts.append(line)
    for b in snapshot["breakers"]:
        until = f" until {_when(b.get('until'))}" if b.get("until") else ""
        parts.append(Text(f"breaker {b['module']} {b['scope']} {b['state']}{until} {b.get('cause') or ''}".rstrip()))
    for alert in snapshot["alerts"][:5]:
        labels = " ".join(f"{k}={v}" for k, v in alert["labels"].items() if k != "alertname")
        style = "bold red" if alert["state"] == "firing" else "dim"
        parts.append(Text(f"alert {alert['name']} {alert['state']} {labels} since {_when(alert['starts_at'])}", style))
    link = "live" if snapshot["connected"] else "NATS link lost"
    source = "signal stream" if snapshot["source"] == "stream" else "live signals only (no signal stream)"
    parts.append(Text(f"{link}; {source}; at {_when(snapshot['ts'])}", style="dim"))
    return Group(*parts)


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=PIPE_WIDTH)


async def watch_command(nats_url: str, args: argparse.Namespace, *, auth: NatsAuth | None = None) -> int:
    """``sniper watch``: see the module docstring."""
    subjects = Subjects(getattr(args, "prefix", "sniper"))
    asset: str | None = getattr(args, "asset", None)
    clock = SystemClock()
    bus = await NatsBus.connect(nats_url, name="sniper-watch", **(auth.options() if auth else {}))
    live = LiveState(clock=clock, assets=[asset] if asset else None)
    try:
        await live.start(bus, subjects)
        if args.once:
            return _once(live, bus, asset)
        await _follow(live, clock, getattr(args, "duration", None))
        return 0
    finally:
        await live.stop()
        await bus.close()


def _once(live: LiveState, bus: NatsBus, asset: str | None) -> int:
    snapshot = live.snapshot()
    if bus.stats.permission_violations:
        refused = "; ".join(bus.stats.errors[-3:])
        print(
            f"sniper: watch: the broker refused {bus.stats.permission_violations} operation(s): {refused}",
            file=sys.stderr,
        )
    if not snapshot["assets"]:
        where = f"for {asset} " if asset else ""
        stream = (
            f"the stream {live.stream} holds none" if live.source == "stream" else f"there is no stream {live.stream}"
        )
        status = f"the status query failed ({live.status_error})" if live.status_error else "the status reply had none"
        print(f"sniper: watch: no signal known {where}at {bus.url}: {stream} and {status}", file=sys.stderr)
        return 1
    _console().print(render(snapshot, live.clock.now()))
    return 0


async def _follow(live: LiveState, clock: SystemClock, duration: float | None) -> None:
    """Redraw at each change and every second, until Ctrl-C / SIGTERM, `duration` or the state closing."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    deadline = None if duration is None else clock.monotonic() + duration
    changes = live.subscribe()
    try:
        with Live(render(live.snapshot(), clock.now()), console=_console(), auto_refresh=False) as screen:
            while not stop.is_set() and (deadline is None or clock.monotonic() < deadline):
                with contextlib.suppress(TimeoutError):
                    change = await clock.timeout(1.0, changes.get())
                    if change.get("type") == "closed":
                        break
                while not changes.empty():  # one redraw for a burst
                    changes.get_nowait()
                screen.update(render(live.snapshot(), clock.now()), refresh=True)
    finally:
        live.unsubscribe(changes)
        for sig in installed:
            loop.remove_signal_handler(sig)
