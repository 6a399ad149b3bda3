"""Pipeline settings: one validated object, from flags with environment fallbacks.

Every flag of ``sniper run`` has an environment variable (``--assets`` is
``SNIPER_ASSETS``), so containers configure sniper without a command line.
Precedence: flag, then environment, then default. A value that makes no sense
raises `ConfigError` naming the flag or variable; nothing starts half-configured.

Every numeric limit is a module constant below (``*_BOUNDS``), in one place:
`Settings` checks against them and the error quotes them, e.g.
``--interval / SNIPER_INTERVAL must be between 0.1 and 86400 seconds, got inf``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar
from urllib.parse import urlsplit

from actors.routing import RequestSettings
from actors.scheduler import DEFAULT_CORE, TradingHours
from actors.upstream import DEFAULT_MAX_BODY
from messages import ConfigError, Subjects
from messages.modules import MAX_BOOK_LEVELS
from runtime.nats_bus import redact_url

T = TypeVar("T")

MODULES: tuple[str, ...] = ("whale", "etf", "heatmap", "spot_ob", "bias")
_ASSET = re.compile(r"^[A-Z0-9]{1,20}$")

# -- bounds (inclusive); each limit lives only here ---------------------------
#: --interval and --off-hours-interval, seconds: a tenth of a second to a day.
INTERVAL_BOUNDS: tuple[float, float] = (0.1, 86_400.0)
#: --window, seconds: at least this, and at most the interval.
WINDOW_MIN = 0.05
#: --quarantine, seconds a 402 keeps a module quiet: ten seconds to a week.
QUARANTINE_BOUNDS: tuple[float, float] = (10.0, 7 * 86_400.0)
#: --discovery-interval, seconds (on-demand refreshes are at least 10 s apart too).
DISCOVERY_INTERVAL_BOUNDS: tuple[float, float] = (10.0, 86_400.0)
#: --circuit-probes, calls a half-open breaker lets through.
CIRCUIT_PROBES_BOUNDS: tuple[int, int] = (1, 100)
#: --depth, order-book levels asked for (the fetcher keeps at most MAX_BOOK_LEVELS per side anyway).
DEPTH_BOUNDS: tuple[int, int] = (1, MAX_BOOK_LEVELS)
#: --metrics-port (0: any free port).
PORT_BOUNDS: tuple[int, int] = (0, 65_535)
#: --max-clock-skew, seconds a peer's timestamp may differ from ours.
MAX_CLOCK_SKEW_BOUNDS: tuple[float, float] = (1.0, 3_600.0)
DEFAULT_MAX_CLOCK_SKEW = 30.0
#: --max-body-bytes, largest upstream response body read: 64 KiB to 64 MiB.
MAX_BODY_BYTES_BOUNDS: tuple[int, int] = (64 * 1024, 64 * 1024 * 1024)
DEFAULT_MAX_BODY_BYTES = DEFAULT_MAX_BODY  # 4 MiB, the upstream client's own default

#: URL schemes nats-py connects with (a URL without one means nats://).
NATS_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})


def _show(value: float) -> str:
    """A number as a person writes it: 86400, 0.1, 1e-09, inf, nan."""
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) < 1e15):
        return str(int(value))
    return f"{value:g}"


def check_between(value: float, bounds: tuple[float, float], name: str, unit: str) -> None:
    """ConfigError unless `value` is finite and within `bounds` (inclusive); the message quotes both."""
    low, high = bounds
    if not (math.isfinite(value) and low <= value <= high):
        unit = f" {unit}" if unit else ""
        raise ConfigError(f"{name} must be between {_show(low)} and {_show(high)}{unit}, got {_show(value)}")


def check_nats_url(url: str, name: str = "--nats / SNIPER_NATS") -> None:
    """ConfigError unless `url` is one or more NATS URLs (``nats://host:4222``, comma-separated).

    The message shows the URL with any password redacted.
    """
    parts = [p.strip() for p in url.split(",")]
    for part in parts:
        try:
            split = urlsplit(part if "://" in part else f"nats://{part}")
            port = split.port
        except ValueError:  # "Invalid IPv6 URL", a port that is not a number or out of range
            split, port = urlsplit(""), -1
        if (
            not part
            or any(c.isspace() for c in part)
            or split.scheme not in NATS_SCHEMES
            or not split.hostname
            or port == -1
            or port == 0
            or split.query
            or split.fragment
        ):
            raise ConfigError(
                f"{name}: {redact_url(url)!r} is not a NATS URL like nats://127.0.0.1:4222 "
                f"(schemes {', '.join(sorted(NATS_SCHEMES))}; comma-separated for a cluster)"
            )


class NatsAuthOptions(TypedDict, total=False):
    """The credential keywords of `NatsBus.connect`."""

    user: str
    password: str
    creds: str


def _has_userinfo(url: str) -> bool:
    return any("@" in part for part in url.split(","))


@dataclass(frozen=True)
class NatsAuth:
    """How to log in to NATS besides the URL: a user and password, or a ``.creds`` file.

    The password is left out of ``repr``; nothing in sniper prints it.
    """

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    creds: str | None = None

    def check(self, url: str | None) -> None:
        """ConfigError for contradictory or unusable credentials (nothing is sent anywhere)."""
        if self.password is not None and self.user is None:
            raise ConfigError("--nats-password / SNIPER_NATS_PASSWORD needs --nats-user / SNIPER_NATS_USER")
        if self.creds is not None and self.user is not None:
            raise ConfigError("use either --nats-creds / SNIPER_NATS_CREDS or --nats-user / SNIPER_NATS_USER, not both")
        if url is not None and _has_userinfo(url) and (self.user is not None or self.creds is not None):
            raise ConfigError(
                f"--nats / SNIPER_NATS: {redact_url(url)!r} already carries credentials; "
                "drop them from the URL or drop --nats-user / --nats-creds"
            )
        if self.creds is not None:
            if not os.path.isfile(self.creds) or not os.access(self.creds, os.R_OK):
                raise ConfigError(f"--nats-creds / SNIPER_NATS_CREDS: {self.creds!r} is not a readable file")
            if importlib.util.find_spec("nkeys") is None:
                raise ConfigError("--nats-creds / SNIPER_NATS_CREDS needs the 'nkeys' package (pip install nkeys)")

    def options(self) -> NatsAuthOptions:
        """Keyword arguments for `NatsBus.connect` (empty when the URL says it all)."""
        out: NatsAuthOptions = {}
        if self.user is not None:
            out["user"] = self.user
            out["password"] = self.password or ""
        if self.creds is not None:
            out["creds"] = self.creds
        return out


@dataclass(frozen=True)
class Settings:
    """Everything a sniper process needs to know to run the pipeline."""

    nats: str | None = None
    nats_auth: NatsAuth = field(default_factory=NatsAuth)
    backend: str | None = None
    assets: tuple[str, ...] = ("SOL",)
    interval: float = 5.0
    window: float = 3.0
    off_hours_interval: float | None = None
    trading_hours: TradingHours = field(default_factory=lambda: TradingHours.parse("00:00-24:00"))
    prefix: str = "sniper"
    core: frozenset[str] = DEFAULT_CORE
    actors: tuple[str, ...] = ()  # empty: all
    request: RequestSettings = field(default_factory=RequestSettings)
    etf_proxy: str = "BTC"
    #: FEATURE_<NAME> defaults per module (all on unless the environment says off).
    flags: Mapping[str, bool] = field(default_factory=lambda: {m: True for m in MODULES})
    metrics_port: int | None = None
    #: Where /metrics listens: loopback unless told otherwise (0.0.0.0 in a container).
    metrics_host: str = "127.0.0.1"
    quarantine: float = 3600.0
    circuit_probes: int = 1
    stagger: bool = True
    discovery_interval: float = 600.0
    #: Largest difference between a peer's timestamp and ours that is believed (seconds).
    max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW
    #: Largest upstream response body read (bytes).
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        if self.nats is not None:
            check_nats_url(self.nats)
        self.nats_auth.check(self.nats)
        if self.backend is not None:
            try:
                parts = urlsplit(self.backend)
                port_ok = parts.port != 0
            except ValueError:  # "Invalid IPv6 URL", a port that is not a number or out of range
                parts, port_ok = urlsplit(""), False
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or not port_ok
                or any(c.isspace() for c in self.backend)
            ):
                raise ConfigError(
                    f"--backend / SNIPER_BACKEND: {self.backend!r} is not an http(s) URL like http://127.0.0.1:8000"
                )
        if not self.assets:
            raise ConfigError("--assets / SNIPER_ASSETS: at least one asset is needed")
        for asset in self.assets:
            if not _ASSET.match(asset):
                raise ConfigError(f"--assets / SNIPER_ASSETS: {asset!r} is not an asset like SOL or BTC")
        check_between(self.interval, INTERVAL_BOUNDS, "--interval / SNIPER_INTERVAL", "seconds")
        check_between(
            self.window,
            (WINDOW_MIN, self.interval),
            f"--window / SNIPER_WINDOW (at most the interval, {_show(self.interval)} s)",
            "seconds",
        )
        if self.off_hours_interval is not None:
            check_between(
                self.off_hours_interval, INTERVAL_BOUNDS, "--off-hours-interval / SNIPER_OFF_HOURS_INTERVAL", "seconds"
            )
            if self.off_hours_interval < self.window:
                raise ConfigError(
                    f"--off-hours-interval / SNIPER_OFF_HOURS_INTERVAL must be at least the window "
                    f"({_show(self.window)} s), got {_show(self.off_hours_interval)}"
                )
        if self.actors:
            from .app import actor_names  # imported here: sniper.app imports this module

            wrong = set(self.actors) - set(actor_names())
            if wrong:
                raise ConfigError(f"--actors: unknown {sorted(wrong)}; choose from {list(actor_names())}")
        unknown = self.core - set(MODULES)
        if unknown:
            raise ConfigError(f"--core / SNIPER_CORE: unknown modules {sorted(unknown)}; known: {list(MODULES)}")
        try:
            Subjects(self.prefix)
        except ValueError as exc:
            raise ConfigError(f"--prefix / SNIPER_PREFIX: {exc}") from None
        if set(self.flags) != set(MODULES):
            raise ConfigError(f"feature flags must cover exactly {list(MODULES)}")
        if self.metrics_port is not None:
            check_between(self.metrics_port, PORT_BOUNDS, "--metrics-port / SNIPER_METRICS_PORT (0: any free port)", "")
        if not self.metrics_host or any(c.isspace() or c in "/@" for c in self.metrics_host):
            raise ConfigError(
                f"--metrics-host / SNIPER_METRICS_HOST: {self.metrics_host!r} is not a host or address like 127.0.0.1"
            )
        check_between(self.circuit_probes, CIRCUIT_PROBES_BOUNDS, "--circuit-probes / SNIPER_CIRCUIT_PROBES", "calls")
        check_between(self.quarantine, QUARANTINE_BOUNDS, "--quarantine / SNIPER_QUARANTINE", "seconds")
        check_between(
            self.discovery_interval,
            DISCOVERY_INTERVAL_BOUNDS,
            "--discovery-interval / SNIPER_DISCOVERY_INTERVAL",
            "seconds",
        )
        check_between(self.request.depth, DEPTH_BOUNDS, "--depth / SNIPER_DEPTH", "levels")
        check_between(self.max_clock_skew, MAX_CLOCK_SKEW_BOUNDS, "--max-clock-skew / SNIPER_MAX_CLOCK_SKEW", "seconds")
        check_between(self.max_body_bytes, MAX_BODY_BYTES_BOUNDS, "--max-body-bytes / SNIPER_MAX_BODY_BYTES", "bytes")
        if self.etf_proxy not in ("BTC", "ETH"):
            raise ConfigError(f"--etf-proxy / SNIPER_ETF_PROXY must be BTC or ETH, got {self.etf_proxy!r}")

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.prefix)


def _number(text: str) -> float:
    """A float; its bounds are checked by `Settings`, whose message names them."""
    return float(text)


def _assets(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a.strip().upper() for a in text.split(",") if a.strip()))


def _modules(text: str) -> frozenset[str]:
    return frozenset(m.strip() for m in text.split(",") if m.strip())


def _actor_names(text: str) -> tuple[str, ...]:
    return tuple(_modules(text))


_DEFAULT_ASSETS: tuple[str, ...] = ("SOL",)
_ALL_ACTORS: tuple[str, ...] = ()  # empty: every actor


_ON = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}


def parse_switch(text: str) -> bool:
    """``on``/``off`` (also true/false, 1/0, yes/no), case-insensitive."""
    try:
        return _ON[text.strip().lower()]
    except KeyError:
        raise ValueError("expected on or off") from None


def feature_defaults(environ: Mapping[str, str]) -> dict[str, bool]:
    """FEATURE_ETF, FEATURE_HEATMAP, FEATURE_SPOT_OB, FEATURE_WHALE, FEATURE_BIAS (default on)."""
    return {m: _env(environ, f"FEATURE_{m.upper()}", parse_switch, True) for m in MODULES}


def _env(environ: Mapping[str, str], name: str, parse: Callable[[str], T], default: T) -> T:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"environment variable {name}={raw!r}: {exc}") from None


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags shared by `sniper run` and `sniper demo` (defaults come from the environment)."""
    g = parser.add_argument_group("pipeline")
    g.add_argument("--assets", type=_assets, help="comma-separated assets (SNIPER_ASSETS, default SOL)")
    g.add_argument("--interval", type=_number, help="seconds between cycles (SNIPER_INTERVAL, default 5)")
    g.add_argument(
        "--window", type=_number, help="assembly window in seconds (SNIPER_WINDOW, default 0.6 x interval, max 3)"
    )
    g.add_argument(
        "--off-hours-interval", type=_number, help="interval outside trading hours (SNIPER_OFF_HOURS_INTERVAL)"
    )
    g.add_argument(
        "--trading-hours", type=TradingHours.parse, help="HH:MM-HH:MM in Asia/Jakarta (SNIPER_TRADING_HOURS)"
    )
    g.add_argument("--prefix", help="subject prefix (SNIPER_PREFIX, default sniper)")
    g.add_argument("--core", type=_modules, help="core modules for health (SNIPER_CORE, default whale,heatmap,spot_ob)")
    g.add_argument(
        "--actors",
        type=lambda t: tuple(_modules(t)),
        help="run only these actors (SNIPER_ACTORS), e.g. scheduler,assembler",
    )
    g.add_argument("--exchange", help="spot order book exchange (SNIPER_EXCHANGE, default binance)")
    g.add_argument("--depth", type=int, help="order book depth (SNIPER_DEPTH, default 50)")
    g.add_argument("--timeframe", help="heatmap timeframe (SNIPER_TIMEFRAME, default 1h)")
    g.add_argument("--etf-proxy", choices=("BTC", "ETH"), help="ETF flows used for other assets (SNIPER_ETF_PROXY)")
    g.add_argument(
        "--metrics-port", type=int, help="serve Prometheus /metrics on this port, 0 = any (SNIPER_METRICS_PORT)"
    )
    g.add_argument(
        "--metrics-host",
        help="address /metrics listens on (SNIPER_METRICS_HOST, default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    g.add_argument(
        "--no-stagger",
        dest="stagger",
        action="store_const",
        const=False,
        help="tick every asset at the same instant (SNIPER_STAGGER=off)",
    )
    g.add_argument(
        "--discovery-interval",
        type=_number,
        help="seconds between route discoveries from /openapi.json (SNIPER_DISCOVERY_INTERVAL, default 600)",
    )
    g.add_argument(
        "--circuit-probes", type=int, help="calls let through a half-open breaker (SNIPER_CIRCUIT_PROBES, default 1)"
    )
    g.add_argument(
        "--quarantine", type=_number, help="seconds a 402 quarantines a module (SNIPER_QUARANTINE, default 3600)"
    )
    g.add_argument(
        "--max-clock-skew",
        type=_number,
        help=f"seconds a peer's clock may differ from ours (SNIPER_MAX_CLOCK_SKEW, default {DEFAULT_MAX_CLOCK_SKEW:g})",
    )
    g.add_argument(
        "--max-body-bytes",
        type=int,
        help=f"largest upstream response body read (SNIPER_MAX_BODY_BYTES, default {DEFAULT_MAX_BODY_BYTES})",
    )


def add_nats_auth_arguments(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """--nats-user, --nats-password, --nats-creds (environment: SNIPER_NATS_USER, ..._PASSWORD, ..._CREDS).

    With `suppress`, an absent flag leaves no attribute (for parent parsers that
    accept the flags both before and after a sub-command).
    """
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--nats-user", default=default, help="NATS user (SNIPER_NATS_USER); or put it in the URL, nats://user:pass@host"
    )
    parser.add_argument(
        "--nats-password",
        default=default,
        help="NATS password (SNIPER_NATS_PASSWORD; prefer the variable: a flag shows in the process list)",
    )
    parser.add_argument(
        "--nats-creds",
        default=default,
        metavar="FILE",
        help="NATS credentials file, JWT + nkey seed (SNIPER_NATS_CREDS; needs the nkeys package)",
    )


def nats_auth_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> NatsAuth:
    """NATS credentials from --nats-user/--nats-password/--nats-creds, then SNIPER_NATS_USER/_PASSWORD/_CREDS."""
    env = os.environ if environ is None else environ

    def pick(flag: str, var: str) -> str | None:
        value = getattr(args, flag, None)
        return value if value is not None else _env(env, var, str, None)

    return NatsAuth(
        user=pick("nats_user", "SNIPER_NATS_USER"),
        password=pick("nats_password", "SNIPER_NATS_PASSWORD"),
        creds=pick("nats_creds", "SNIPER_NATS_CREDS"),
    )


def settings_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None, **fixed: Any) -> Settings:
    """Build Settings from parsed flags, falling back to the environment, then defaults."""
    env = os.environ if environ is None else environ

    def pick(flag: str, var: str, parse: Callable[[str], T], default: T) -> T:
        value = getattr(args, flag, None)
        return value if value is not None else _env(env, var, parse, default)

    interval = pick("interval", "SNIPER_INTERVAL", _number, 5.0)
    request = RequestSettings(
        exchange=pick("exchange", "SNIPER_EXCHANGE", str, "binance"),
        depth=pick("depth", "SNIPER_DEPTH", int, 50),
        timeframe=pick("timeframe", "SNIPER_TIMEFRAME", str, "1h"),
    )
    values: dict[str, Any] = dict(
        nats=pick("nats", "SNIPER_NATS", str, None),
        nats_auth=nats_auth_from(args, env),
        backend=pick("backend", "SNIPER_BACKEND", str, None),
        assets=pick("assets", "SNIPER_ASSETS", _assets, _DEFAULT_ASSETS),
        interval=interval,
        window=pick("window", "SNIPER_WINDOW", _number, min(3.0, round(0.6 * interval, 3))),
        off_hours_interval=pick("off_hours_interval", "SNIPER_OFF_HOURS_INTERVAL", _number, None),
        trading_hours=pick(
            "trading_hours", "SNIPER_TRADING_HOURS", TradingHours.parse, TradingHours.parse("00:00-24:00")
        ),
        prefix=pick("prefix", "SNIPER_PREFIX", str, "sniper"),
        core=pick("core", "SNIPER_CORE", _modules, DEFAULT_CORE),
        actors=pick("actors", "SNIPER_ACTORS", _actor_names, _ALL_ACTORS),
        request=request,
        etf_proxy=pick("etf_proxy", "SNIPER_ETF_PROXY", str, "BTC"),
        flags=feature_defaults(env),
        metrics_port=pick("metrics_port", "SNIPER_METRICS_PORT", int, None),
        metrics_host=pick("metrics_host", "SNIPER_METRICS_HOST", str, "127.0.0.1"),
        quarantine=pick("quarantine", "SNIPER_QUARANTINE", _number, 3600.0),
        circuit_probes=pick("circuit_probes", "SNIPER_CIRCUIT_PROBES", int, 1),
        stagger=pick("stagger", "SNIPER_STAGGER", parse_switch, True),
        discovery_interval=pick("discovery_interval", "SNIPER_DISCOVERY_INTERVAL", _number, 600.0),
        max_clock_skew=pick("max_clock_skew", "SNIPER_MAX_CLOCK_SKEW", _number, DEFAULT_MAX_CLOCK_SKEW),
        max_body_bytes=pick("max_body_bytes", "SNIPER_MAX_BODY_BYTES", int, DEFAULT_MAX_BODY_BYTES),
    )
    values.update(fixed)
    try:
        return Settings(**values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
