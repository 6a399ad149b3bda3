"""Command line: ``python -m marketsim [options]``.

Parsing is a pure function (``parse_args``) so it is unit-testable; bad
values are reported by argparse (exit status 2) with the reason.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._faults import Fault, parse_fault_spec
from ._routes import DEFAULT_FLAVOR
from ._server import run
from ._simulator import FLAVOR_NAMES, MODULE_KEYS

__all__ = ["CliOptions", "build_parser", "main", "parse_args"]


@dataclass(frozen=True, slots=True)
class CliOptions:
    """Parsed command line; ``simulator_kwargs()`` feeds ``Simulator``."""

    host: str = "127.0.0.1"
    port: int = 8000
    seed: int = 0
    flavor: str = DEFAULT_FLAVOR
    spec: bool = True
    default_faults: bool = True
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    access_log: bool = False

    def simulator_kwargs(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "flavor": self.flavor,
            "spec": self.spec,
            "default_faults": self.default_faults,
            "faults": self.faults,
        }


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: not an integer") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: must be 0..65535 (0 picks a free port)")
    return port


def parse_fault_arg(text: str) -> tuple[str, Fault]:
    """``MODULE=SPEC`` (e.g. ``etf=status:402``) as an argparse type; also used by ``sniper demo --fault``."""
    module, sep, spec = text.partition("=")
    if not sep or not spec:
        raise argparse.ArgumentTypeError(f"invalid fault {text!r}: expected MODULE=SPEC, e.g. etf=status:402")
    if module not in MODULE_KEYS:
        modules = ", ".join(MODULE_KEYS)
        raise argparse.ArgumentTypeError(f"invalid fault {text!r}: unknown module {module!r} (modules: {modules})")
    try:
        return module, parse_fault_spec(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid fault {text!r}: {exc}") from None


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m marketsim",
        description="Reference market-data backend: six modules, route flavors, OpenAPI, faults.",
        epilog=(
            "fault SPEC: status:CODE[:retry_after=S] | latency:MS | timeout | "
            "malformed[:truncated|wrong_types|empty|html] | envelope[:CODE][:msg=TEXT] | "
            "oversize[:BYTES][:levels=N] (a valid body of ~BYTES, default 2000000, or N list items, streamed); "
            "any SPEC takes :rate=P (0..1). Repeat --fault to combine faults on one module; "
            "a module named by --fault loses its default faults."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    parser.add_argument("--port", type=_port, default=8000, help="TCP port, 0 = any free port (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of all synthetic data (default: %(default)s)")
    parser.add_argument(
        "--flavor", choices=FLAVOR_NAMES, default=DEFAULT_FLAVOR, help="route naming (default: %(default)s)"
    )
    parser.add_argument("--no-spec", dest="spec", action="store_false", help="answer /openapi.json with 404")
    parser.add_argument(
        "--no-default-faults",
        dest="default_faults",
        action="store_false",
        help="do not put ETF flows behind the default 402 paywall",
    )
    parser.add_argument(
        "--fault",
        dest="faults",
        action="append",
        type=parse_fault_arg,
        default=[],
        metavar="MODULE=SPEC",
        help=f"inject a fault; MODULE is one of {', '.join(MODULE_KEYS)}",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    return parser


def parse_args(argv: Sequence[str] | None = None, prog: str | None = None) -> CliOptions:
    """Parse ``argv`` (default ``sys.argv[1:]``); exits with status 2 on errors. `prog` names the command in usage."""
    ns = build_parser(prog).parse_args(argv)
    faults: dict[str, list[Fault]] = {}
    for module, fault in ns.faults:
        faults.setdefault(module, []).append(fault)
    return CliOptions(
        host=ns.host,
        port=ns.port,
        seed=ns.seed,
        flavor=ns.flavor,
        spec=ns.spec,
        default_faults=ns.default_faults,
        faults=faults,
        access_log=ns.access_log,
    )


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    options = parse_args(argv, prog)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    try:
        run(options.host, options.port, access_log=options.access_log, **options.simulator_kwargs())
    except OSError as exc:
        print(f"marketsim: cannot listen on {options.host}:{options.port}: {exc}", file=sys.stderr)
        return 1
    return 0
