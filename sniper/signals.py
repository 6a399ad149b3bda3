"""`sniper signals last | tail`: read signals back from the durable stream, as a late-joining bot would.

``last`` prints the newest stored signal of every asset (or one) and exits;
``tail`` prints those, then every new one, until stopped (or ``--for``). Both
read the stream ``<prefix>_signals`` (JetStream's last-per-subject delivery),
so they show what was decided while nobody listened. Exit 1 when the stream
holds nothing for the asset asked.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from messages import DecodeError, Signal, Subjects, decode
from messages.subjects import SIGNALS_STREAM
from runtime import NatsBus
from runtime.bus import Envelope

from .app import format_signal, wait_for_stop

if TYPE_CHECKING:
    from .config import NatsAuth


def _line(env: Envelope, as_json: bool) -> str:
    if as_json:
        return env.data.decode(errors="replace")
    try:
        return format_signal(decode(env.data, Signal, subject=env.subject))
    except DecodeError as err:
        return f"{env.subject}: not a signal this build reads ({err.reason})"


async def signals_command(nats_url: str, args: argparse.Namespace, *, auth: NatsAuth | None = None) -> int:
    subjects = Subjects(getattr(args, "prefix", "sniper"))
    stream = subjects.stream(SIGNALS_STREAM)
    subject = subjects.signal(args.asset.upper()) if args.asset else subjects.signal_all()
    bus = await NatsBus.connect(nats_url, name="sniper-signals", **(auth.options() if auth else {}))
    try:
        if args.signals_command == "last":
            found = await bus.last_per_subject(stream, subject)
            for env in found:
                print(_line(env, args.json), flush=True)
            if not found:
                print(f"sniper: signals: stream {stream} holds no signal on {subject}", file=sys.stderr)
                return 1
            return 0

        async def show(env: Envelope) -> None:
            print(_line(env, args.json), flush=True)

        sub = await bus.follow_stream(stream, subject, show)
        try:
            await wait_for_stop(args.duration)
        finally:
            await sub.unsubscribe()
        return 0
    finally:
        await bus.close()
