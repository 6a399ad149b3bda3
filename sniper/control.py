"""`sniper flags`, `sniper circuit` and `sniper status`: operator commands, request/reply over NATS.

They talk to whichever sniper process serves ``<prefix>.cmd.flags`` /
``<prefix>.cmd.circuit`` / ``<prefix>.cmd.status`` (queue groups: exactly one
answers), so they work against a pipeline running on any host. Output is one
line per item (``status --json``: the reply as JSON); a refused command prints
the service's error and exits 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import msgspec

from messages import (
    CircuitCommand,
    CircuitReply,
    CircuitState,
    FlagCommand,
    FlagReply,
    SniperError,
    StatusQuery,
    StatusReply,
    Subjects,
    decode,
    encode,
)
from runtime import NatsBus
from runtime.errors import RequestTimeoutError

if TYPE_CHECKING:
    from .config import NatsAuth

R = TypeVar("R", bound=msgspec.Struct)


def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def _request(
    nats_url: str, subject: str, payload: bytes, reply_type: type[R], name: str, auth: NatsAuth | None = None
) -> R:
    bus = await NatsBus.connect(nats_url, name=name, **(auth.options() if auth else {}))
    try:
        env = await bus.request(subject, payload, timeout=5.0)
    except RequestTimeoutError as exc:
        raise SniperError(
            f"{exc}: is a sniper process with the '{subject.rsplit('.', 1)[-1]}' actor running?"
        ) from None
    finally:
        await bus.close()
    return decode(env.data, reply_type, subject=subject)


async def flags_command(nats_url: str, args: argparse.Namespace, *, auth: NatsAuth | None = None) -> int:
    subjects = Subjects(getattr(args, "prefix", "sniper"))
    if args.flags_command == "set":
        cmd = FlagCommand(flag=args.flag.upper(), enabled=args.value, why=args.why, who=_who())
    else:
        cmd = FlagCommand()
    reply: FlagReply = await _request(nats_url, subjects.command("flags"), encode(cmd), FlagReply, "sniper-flags", auth)
    if not reply.ok:
        print(f"sniper: flags: {reply.error}", file=sys.stderr)
        return 1
    for flag, enabled in reply.flags.items():
        print(f"{flag:<8} {'on' if enabled else 'off'}")
    return 0


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def circuit_command(nats_url: str, args: argparse.Namespace, *, auth: NatsAuth | None = None) -> int:
    subjects = Subjects(getattr(args, "prefix", "sniper"))
    if args.circuit_command == "reset":
        cmd = CircuitCommand(action="reset", module=args.module)
    else:
        cmd = CircuitCommand(action="list")
    reply: CircuitReply = await _request(
        nats_url, subjects.command("circuit"), encode(cmd), CircuitReply, "sniper-circuit", auth
    )
    if not reply.ok:
        print(f"sniper: circuit: {reply.error}", file=sys.stderr)
        return 1
    if args.circuit_command == "reset" and not reply.circuits:
        print(f"{args.module}: no breaker was open at the supervisor; every fetcher was told to clear its own")
    for st in sorted(reply.circuits, key=lambda c: (c.module, c.scope)):
        print(_breaker(st))
    return 0


def _breaker(st: CircuitState) -> str:
    line = f"{st.module:<8} {st.scope:<6} {st.state:<12} until {_when(st.until):<24} {st.cause or ''} {st.detail}"
    return line.rstrip()


async def status_command(nats_url: str, args: argparse.Namespace, *, auth: NatsAuth | None = None) -> int:
    """``sniper status [--asset A] [--json]``: each asset's last signal and held breakers, and every flag."""
    from .app import format_signal

    subjects = Subjects(getattr(args, "prefix", "sniper"))
    asset = getattr(args, "asset", None)
    query = StatusQuery(asset=asset.upper() if asset else None)
    reply: StatusReply = await _request(
        nats_url, subjects.command("status"), encode(query), StatusReply, "sniper-status", auth
    )
    if not reply.ok:
        print(f"sniper: status: {reply.error}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps(msgspec.to_builtins(reply), indent=2))
        return 0
    for name, status in reply.assets.items():
        if status.signal is None:
            print(f"{name:<5} no signal yet")
        else:
            print(f"{format_signal(status.signal)} at {_when(status.signal.ts)}")
        for st in status.circuits:
            print(f"      breaker {_breaker(st)}")
    if reply.omitted:
        print(f"({reply.omitted} more assets: ask for one with --asset)")
    print("flags: " + " ".join(f"{flag}={'on' if on else 'off'}" for flag, on in reply.flags.items()))
    return 0


async def discover_command(backend: str, asset: str, as_json: bool) -> int:
    """Run discovery once against `backend` and print the route map (no NATS needed)."""
    import json

    from actors.capabilities import describe
    from actors.discovery import discover
    from actors.routing import RequestSettings
    from actors.upstream import AiohttpTransport, UpstreamClient
    from runtime import SystemClock

    from .config import MODULES

    upstream = UpstreamClient(backend, AiohttpTransport(), clock=SystemClock())
    try:
        found = await discover(upstream, RequestSettings(), MODULES, probe_asset=asset.upper())
    finally:
        await upstream.close()
    rows = [describe(found.bindings[m]) for m in MODULES]
    if as_json:
        print(
            json.dumps(
                {
                    "spec": found.spec_path,
                    "version": found.spec_version,
                    "spec_problem": found.spec_problem,
                    "modules": rows,
                    "requests": upstream.stats.requests,
                },
                indent=2,
            )
        )
        return 0 if all(r["usable"] for r in rows) else 1
    if found.spec_version:
        print(f"spec: {backend}{found.spec_path} (OpenAPI {found.spec_version})")
    else:
        print(f"spec: none ({found.spec_problem}); probed known paths")
    for row in rows:
        if not row["usable"]:
            print(f"{row['module']:<8} UNUSABLE  {row['reason']}")
            continue
        params = " ".join(
            f"{p['name']}={p['role']}"
            + (f"[{p['form']}]" if "form" in p else "")
            + (f"({p['value']})" if "value" in p else "")
            + ("" if p["in"] == "query" else f"@{p['in']}")
            for p in row["params"]
        )
        print(f"{row['module']:<8} GET {row['path']}  {params}")
        for note in row["notes"]:
            print(f"{'':<8}   note: {note}")
    print("requests: " + ", ".join(f"{k}={v}" for k, v in upstream.stats.requests.items()))
    return 0 if all(r["usable"] for r in rows) else 1
