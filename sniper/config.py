"""Pipeline settings: one validated object, from flags with environment fallbacks.

Each setting is declared once, as an `Option` in `OPTIONS`: name, parser,
default, bounds, unit and help. The flag and the variable follow from the name
(``off_hours_interval``: ``--off-hours-interval``, ``SNIPER_OFF_HOURS_INTERVAL``),
so containers configure sniper without a command line. The argparse flags, the
environment lookup, the `Settings` defaults, the checks and the ``--help`` text
are generated from the table. Precedence: flag, then environment, then default.
A value that makes no sense raises `ConfigError` naming the flag or variable;
nothing starts half-configured.

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
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, get_args
from urllib.parse import urlsplit

from actors.circuit import CircuitPolicy
from actors.flags import FlagSource
from actors.routing import RequestSettings
from actors.scheduler import TradingHours
from actors.upstream import DEFAULT_MAX_BODY
from actors.venues import BINANCE_FUTURES_API, BINANCE_SPOT_API, BYBIT_API, OKX_API
from messages import ConfigError, Subjects
from messages.modules import DEFAULT_CORE, MAX_BOOK_LEVELS, REGISTRY
from messages.modules import MODULES as REGISTERED_MODULES
from runtime.nats_bus import redact_url

from .fallback import FallbackSettings, fallback_problem, parse_fallback

if TYPE_CHECKING:
    from .gateway.app import GatewayConfig

T = TypeVar("T")

_ETF = REGISTRY["etf"]  # keyed by BTC/ETH: --etf-proxy picks which one other assets read
_ETF_KEYS = tuple(sorted(_ETF.keyed_by or ()))
MODULES: tuple[str, ...] = REGISTERED_MODULES  # the module registry (messages.modules), in its order
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
#: --max-body-bytes, largest upstream response body read: 64 KiB to 64 MiB.
MAX_BODY_BYTES_BOUNDS: tuple[int, int] = (64 * 1024, 64 * 1024 * 1024)
#: How long the signal stream keeps a signal: a minute to a year.
STREAM_MAX_AGE_BOUNDS: tuple[float, float] = (60.0, 365 * 86_400.0)
#: The signal stream's size: 1 MiB to 1 TiB.
STREAM_MAX_BYTES_BOUNDS: tuple[int, int] = (1 << 20, 1 << 40)
#: How long every core module of an asset must be failing before core_down fires.
ALERT_FOR_BOUNDS: tuple[float, float] = (0.0, 86_400.0)
#: How long alerts that start firing together are collected into one notification.
ALERT_GROUP_WAIT_BOUNDS: tuple[float, float] = (0.0, 3_600.0)
#: How often an unresolved alert is sent again: a minute to a week.
ALERT_REPEAT_BOUNDS: tuple[float, float] = (60.0, 7 * 86_400.0)
#: Signals kept per asset: at least the last one.
STREAM_PER_SUBJECT_BOUNDS: tuple[int, int] = (1, 1_000_000)
#: --replicas, copies JetStream keeps of each bucket and stream: 1 (a single server) to 5 (JetStream's most).
REPLICAS_BOUNDS: tuple[int, int] = (1, 5)
#: --venue-share: the part of each venue's documented rate limit one process uses.
VENUE_SHARE_BOUNDS: tuple[float, float] = (0.01, 1.0)
#: --window when none is given: this share of the interval, at most WINDOW_CAP seconds.
WINDOW_SHARE, WINDOW_CAP = 0.6, 3.0
#: sniper gateway --gateway-max-body, largest request body forwarded: none to 1 GiB.
GATEWAY_MAX_BODY_BOUNDS: tuple[int, int] = (0, 1 << 30)
#: sniper gateway --connect-timeout and --read-timeout, seconds.
GATEWAY_TIMEOUT_BOUNDS: tuple[float, float] = (0.1, 3_600.0)

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


def check_nats_url(url: str, name: str | None = None) -> None:
    """ConfigError unless `url` is one or more NATS URLs (``nats://host:4222``, comma-separated).

    The message names `name` (default ``--nats / SNIPER_NATS``) and shows the URL with any password redacted.
    """
    problem = _nats_problem(url)
    if problem:
        raise ConfigError(f"{name or OPTIONS_BY_NAME['nats'].label}: {problem}")


def _nats_problem(url: str) -> str | None:
    for part in (p.strip() for p in url.split(",")):
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
            return (
                f"{redact_url(url)!r} is not a NATS URL like nats://127.0.0.1:4222 "
                f"(schemes {', '.join(sorted(NATS_SCHEMES))}; comma-separated for a cluster)"
            )
    return None


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


# -- parsers: the text of a flag or variable to a value (`Settings` checks the value) --


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("expected a number") from None


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("expected a whole number") from None


def _assets(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a.strip().upper() for a in text.split(",") if a.strip()))


def _names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))


def _modules(text: str) -> frozenset[str]:
    return frozenset(_names(text))


_ON = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}


def parse_switch(text: str) -> bool:
    """``on``/``off`` (also true/false, 1/0, yes/no), case-insensitive."""
    try:
        return _ON[text.strip().lower()]
    except KeyError:
        raise ValueError("expected on or off") from None


# -- checks: what is wrong with a parsed value, or None; the message gets the flag / variable in front --


_TOKEN = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{20,100}$")
_CHAT = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})(:\d{1,12})?$")


def _token_problem(token: str) -> str | None:
    return None if _TOKEN.match(token) else "is not a Telegram bot token like 123456:ABC-DEF... (from @BotFather)"


def _chats_problem(chats: tuple[str, ...]) -> str | None:
    wrong = [c for c in chats if not _CHAT.match(c)]
    if wrong:
        return f"{wrong[0]!r} is not a chat id like -1001234567890, @channel or -1001234567890:42 (a topic)"
    return None


def _admins(text: str) -> tuple[int, ...]:
    try:
        return tuple(dict.fromkeys(int(part) for part in _names(text)))
    except ValueError:
        raise ValueError("expected comma-separated Telegram user or chat ids") from None


def _backend_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port_ok = parts.port != 0
    except ValueError:  # "Invalid IPv6 URL", a port that is not a number or out of range
        parts, port_ok = urlsplit(""), False
    if parts.scheme in ("http", "https") and parts.hostname and port_ok and not any(c.isspace() for c in url):
        return None
    return f"{url!r} is not an http(s) URL like http://127.0.0.1:8000"


def _assets_problem(assets: tuple[str, ...]) -> str | None:
    wrong = [a for a in assets if not _ASSET.match(a)]
    if wrong:
        return f"{wrong[0]!r} is not an asset like SOL or BTC"
    return None if assets else "at least one asset is needed"


def _core_problem(core: frozenset[str]) -> str | None:
    unknown = core - set(MODULES)
    return f"unknown modules {sorted(unknown)}; known: {list(MODULES)}" if unknown else None


def _prefix_problem(prefix: str) -> str | None:
    try:
        Subjects(prefix)
    except ValueError as exc:
        return str(exc)
    return None


def _host_problem(host: str) -> str | None:
    if host and not any(c.isspace() or c in "/@" for c in host):
        return None
    return f"{host!r} is not a host or address like 127.0.0.1"


def _gateway_prefix_problem(prefix: str) -> str | None:
    from .gateway.paths import check_prefix  # imported here: sniper.gateway imports this module

    return check_prefix(prefix)


def _networks(text: str) -> tuple[Any, ...]:
    from .gateway.proxy import parse_networks

    return parse_networks(text)


def _templates_problem(templates: tuple[str, ...]) -> str | None:
    from .gateway.paths import check_template

    problems = [p for t in templates if (p := check_template(t))]
    return problems[0] if problems else (None if templates else "name at least one path, or leave it out")


def either(words: Sequence[str]) -> str:
    """``BTC or ETH``, ``whale, etf or bias``."""
    return f"{', '.join(words[:-1])} or {words[-1]}" if len(words) > 1 else "".join(words)


def _text(value: Any) -> str:
    """A default as one types it: 5, SOL, whale,heatmap,spot_ob, 00:00-24:00, off; "" for none."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return _show(value)
    if isinstance(value, frozenset):  # modules, in the registry's order
        return ",".join(m for m in MODULES if m in value)
    return ",".join(value) if isinstance(value, tuple) else str(value)


@dataclass(frozen=True)
class Option:
    """One setting, declared once in `OPTIONS`; flags, variables, defaults, checks and help come from it.

    The flag is ``--name`` with dashes, the variable ``SNIPER_NAME``:
    ``off_hours_interval`` is ``--off-hours-interval`` and ``SNIPER_OFF_HOURS_INTERVAL``.
    """

    name: str
    help: str
    parse: Callable[[str], Any] = str
    default: Any = None
    bounds: tuple[float, float] | None = None  #: inclusive
    unit: str = ""
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None  #: what is wrong with a parsed value, or None
    follows: Callable[[Mapping[str, Any]], Any] | None = None  #: the default, from the values before it
    shown: str = ""  #: the default as --help says it, when the value alone would not say it
    note: str = ""  #: said after the variable in messages and help, e.g. "0: any free port"
    attr: str = ""  #: where the value goes in `Settings` ("request.depth"); default: the name
    group: str = "pipeline"  #: which parser gets the flag: connection, auth, pipeline or log
    flag: str = ""  #: default ``--name``; a flag storing `const` (``--no-stagger``) is named here
    const: Any = None
    metavar: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "flag", self.flag or f"--{self.name.replace('_', '-')}")
        object.__setattr__(self, "attr", self.attr or self.name)

    @property
    def var(self) -> str:
        return f"SNIPER_{self.name.upper()}"

    @property
    def label(self) -> str:
        """How messages name the setting: ``--interval / SNIPER_INTERVAL``."""
        return f"{self.flag} / {self.var}{f' ({self.note})' if self.note else ''}"

    def describe(self) -> str:
        """The --help text: what it is, then the variable, the default and the range."""
        if self.const is not None:
            return f"{self.help} ({self.var}={_text(self.const)})"
        facts = [self.var]
        if default := self.shown or _text(self.default):
            facts.append(f"default {default}")
        if self.bounds is not None:
            facts.append(f"{_show(self.bounds[0])} to {_show(self.bounds[1])} {self.unit}".rstrip())
        if self.note:
            facts.append(self.note)
        return f"{self.help} ({'; '.join(facts)})".replace("%", "%%")

    def convert(self, text: str) -> Any:
        """`parse` as an argparse type: ``argument --depth: expected a whole number, got '1.5'``."""
        try:
            return self.parse(text)
        except ValueError as exc:  # ConfigError is one too
            got = "" if repr(text) in str(exc) else f", got {text!r}"
            raise argparse.ArgumentTypeError(f"{exc}{got}") from None

    def validate(self, value: Any) -> None:
        """ConfigError if `value` breaks the bounds, the choices or the check (None always passes)."""
        if value is None:
            return
        if self.bounds is not None:
            check_between(value, self.bounds, self.label, self.unit)
        if self.choices and value not in self.choices:
            raise ConfigError(f"{self.label} must be {either(self.choices)}, got {value!r}")
        if self.check is not None and (problem := self.check(value)):
            raise ConfigError(f"{self.label}: {problem}")


_WINDOW_DEFAULT = (
    f"{_show(WINDOW_SHARE)} x interval, at most {_show(WINDOW_CAP)}; {_show(WINDOW_MIN)} s to the interval"
)


def default_window(values: Mapping[str, Any]) -> float:
    """--window when none is given: WINDOW_SHARE of the interval, at most WINDOW_CAP seconds."""
    interval: float = values["interval"]
    return min(WINDOW_CAP, round(WINDOW_SHARE * interval, 3))


_REQUEST, _POLICY = RequestSettings(), CircuitPolicy()  # the actors' own defaults, used as ours

#: Every setting of `sniper run` and `sniper demo`, and the log options of every command.
# fmt: off
OPTIONS: tuple[Option, ...] = (  # one option a line
    Option("nats", "NATS URL(s), comma-separated", group="connection", shown="an embedded server", check=_nats_problem),
    Option("backend", "market-data backend base URL, required", group="connection", check=_backend_problem),
    Option("nats_user", "NATS user; or in the URL, nats://user:pass@host", attr="nats_auth.user", group="auth"),
    Option("nats_password", "NATS password; prefer the variable", attr="nats_auth.password", group="auth"),
    Option("nats_creds", "NATS .creds file, needs nkeys", attr="nats_auth.creds", group="auth", metavar="FILE"),
    Option("assets", "comma-separated assets", _assets, ("SOL",), check=_assets_problem),
    Option("interval", "time between cycles", _number, 5.0, INTERVAL_BOUNDS, "seconds"),
    Option("window", "assembly window", _number, unit="seconds", follows=default_window, shown=_WINDOW_DEFAULT),
    Option("off_hours_interval", "interval off hours", _number, None, INTERVAL_BOUNDS, "seconds", shown="the interval"),
    Option("trading_hours", "HH:MM-HH:MM in Asia/Jakarta", TradingHours.parse, TradingHours.parse("00:00-24:00")),
    Option("prefix", "subject prefix", default="sniper", check=_prefix_problem),
    Option("core", "core modules for health", _modules, DEFAULT_CORE, check=_core_problem),
    Option("actors", "run only these actors, e.g. scheduler,assembler", _names, (), shown="all"),
    Option("exchange", "spot order book exchange", default=_REQUEST.exchange, attr="request.exchange"),
    Option("depth", "order book depth", _integer, _REQUEST.depth, DEPTH_BOUNDS, "levels", attr="request.depth"),
    Option("timeframe", "heatmap timeframe", default=_REQUEST.timeframe, attr="request.timeframe"),
    Option("etf_proxy", "ETF flows used for other assets", default=_ETF.proxy, choices=_ETF_KEYS),
    Option("metrics_port", "serve /metrics on this port", _integer, None, PORT_BOUNDS, note="0: any free port"),
    Option("metrics_host", "address /metrics listens on, 0.0.0.0 for all", default="127.0.0.1", check=_host_problem),
    Option(
        "signal_stream",
        "keep no signals in a JetStream stream for late joiners",
        parse_switch,
        True,
        flag="--no-signal-stream",
        const=False,
    ),
    Option("stream_max_age", "how long the stream keeps a signal", _number, 86_400.0, STREAM_MAX_AGE_BOUNDS, "seconds"),
    Option("stream_max_bytes", "size of the signal stream", _integer, 256 << 20, STREAM_MAX_BYTES_BOUNDS, "bytes"),
    Option("stream_per_subject", "signals kept per asset", _integer, 1000, STREAM_PER_SUBJECT_BOUNDS, "signals"),
    Option("stream_health", "keep Health verdicts in the signal stream too", parse_switch, False, const=True),
    Option(
        "replicas",
        "copies JetStream keeps of every bucket and stream created, 3 on a 3-node cluster",
        _integer,
        1,
        REPLICAS_BOUNDS,
        "replicas",
        metavar="N",
    ),
    Option(
        "feature_source",
        "which wins at start when the flags bucket holds a value: the bucket or FEATURE_*",
        default="bucket",
        choices=get_args(FlagSource),
    ),
    Option(
        "alert_for",
        "how long every core module fails before core_down fires",
        _number,
        60.0,
        ALERT_FOR_BOUNDS,
        "seconds",
        attr="alert.alert_for",
        group="alert",
    ),
    Option(
        "alert_group_wait",
        "alerts firing within this go out as one message",
        _number,
        10.0,
        ALERT_GROUP_WAIT_BOUNDS,
        "seconds",
        attr="alert.group_wait",
        group="alert",
    ),
    Option(
        "alert_repeat",
        "resend an unresolved alert this often",
        _number,
        4 * 3600.0,
        ALERT_REPEAT_BOUNDS,
        "seconds",
        attr="alert.repeat",
        group="alert",
    ),
    Option(
        "telegram_token",
        "Telegram bot token; prefer the variable (never logged)",
        attr="alert.telegram_token",
        group="alert",
        check=_token_problem,
    ),
    Option(
        "telegram_chat",
        "chat ids for alerts, comma-separated, :THREAD for a topic",
        _names,
        (),
        attr="alert.telegram_chats",
        group="alert",
        check=_chats_problem,
        shown="none",
    ),
    Option(
        "telegram_api",
        "Telegram Bot API base URL",
        default="https://api.telegram.org",
        attr="alert.telegram_api",
        group="alert",
        check=_backend_problem,
    ),
    Option(
        "telegram_commands",
        "answer /status /flags /flag /mute /unmute from admins",
        parse_switch,
        False,
        attr="alert.telegram_commands",
        group="alert",
        const=True,
    ),
    Option(
        "telegram_admins",
        "user or chat ids allowed to command, comma-separated",
        _admins,
        (),
        attr="alert.telegram_admins",
        group="alert",
        shown="none",
    ),
    Option(
        "alertmanager",
        "also post alerts to this Alertmanager (its /api/v2/alerts)",
        attr="alert.alertmanager",
        group="alert",
        check=_backend_problem,
    ),
    Option("stagger", "tick every asset at the same instant", parse_switch, True, flag="--no-stagger", const=False),
    Option("discovery_interval", "time between discoveries", _number, 600.0, DISCOVERY_INTERVAL_BOUNDS, "seconds"),
    Option("circuit_probes", "probe calls when half-open", _integer, _POLICY.probes, CIRCUIT_PROBES_BOUNDS, "calls"),
    Option("quarantine", "how long a 402 silences a module", _number, _POLICY.quarantine, QUARANTINE_BOUNDS, "seconds"),
    Option("max_clock_skew", "how far a peer's clock may be off", _number, 30.0, MAX_CLOCK_SKEW_BOUNDS, "seconds"),
    Option("max_body_bytes", "largest upstream body read", _integer, DEFAULT_MAX_BODY, MAX_BODY_BYTES_BOUNDS, "bytes"),
    Option(
        "fallback",
        "per module, the venues to try in order when the backend fails it, e.g. spot_ob=binance,okx;bias=okx",
        parse_fallback,
        {},
        attr="fallback.plan",
        group="fallback",
        check=fallback_problem,
        shown="off",
        metavar="PLAN",
    ),
    Option("binance_api", "Binance spot API", default=BINANCE_SPOT_API, attr="fallback.binance_api", group="fallback",
           check=_backend_problem, metavar="URL"),
    Option("binance_futures_api", "Binance USD-M futures API", default=BINANCE_FUTURES_API,
           attr="fallback.binance_futures_api", group="fallback", check=_backend_problem, metavar="URL"),
    Option("okx_api", "OKX API", default=OKX_API, attr="fallback.okx_api", group="fallback", check=_backend_problem,
           metavar="URL"),
    Option("bybit_api", "Bybit API", default=BYBIT_API, attr="fallback.bybit_api", group="fallback",
           check=_backend_problem, metavar="URL"),
    Option("venue_share", "part of each venue's rate limit this process uses (split it between processes)",
           _number, 0.5, VENUE_SHARE_BOUNDS, attr="fallback.venue_share", group="fallback"),
    Option("log_level", "log level", str.lower, "info", choices=("debug", "info", "warning", "error"), group="log"),
    Option("log_format", "log format", str.lower, "console", choices=("console", "json"), group="log"),
)
# fmt: on
OPTIONS_BY_NAME: dict[str, Option] = {opt.name: opt for opt in OPTIONS}
_SETTINGS_GROUPS = ("connection", "auth", "pipeline", "alert", "fallback")

#: `sniper gateway`'s own settings (group "gateway"; --backend, --nats and the NATS credentials are shared).
#: A table of their own: they are no `Settings` field. Their variables are SNIPER_GATEWAY_*, and where the
#: pipeline already has a flag name (--prefix: the subject prefix) the gateway's flag differs (--path-prefix).
# fmt: off
GATEWAY_OPTIONS: tuple[Option, ...] = (  # one option a line
    Option("gateway_host", "address to listen on, 0.0.0.0 for all", default="127.0.0.1", check=_host_problem,
           attr="host", group="gateway", flag="--host", metavar="HOST"),
    Option("gateway_port", "port to listen on", _integer, 8080, PORT_BOUNDS, note="0: any free port", attr="port",
           group="gateway", flag="--port", metavar="PORT"),
    Option("gateway_prefix", "public path prefix stripped before forwarding", default="/gpts",
           check=_gateway_prefix_problem, attr="prefix", group="gateway", flag="--path-prefix",
           metavar="PATH"),
    Option("gateway_allow", "forward only these path templates, comma-separated, e.g. /whales/alerts,/flows/{asset}",
           _names, None, check=_templates_problem, shown="the paths of the backend's OpenAPI document",
           attr="allow", group="gateway", flag="--allow", metavar="PATHS"),
    Option("gateway_trusted_proxies", "proxies whose X-Forwarded-* are believed, comma-separated addresses or "
           "networks", _networks, (), shown="none", attr="trusted_proxies", group="gateway", flag="--trusted-proxy",
           metavar="NETS"),
    Option("gateway_max_body", "largest request body forwarded", _integer, 1 << 20, GATEWAY_MAX_BODY_BOUNDS, "bytes",
           attr="max_body_bytes", group="gateway", flag="--gateway-max-body"),
    Option("gateway_connect_timeout", "time to connect to the backend", _number, 5.0, GATEWAY_TIMEOUT_BOUNDS,
           "seconds", attr="connect_timeout", group="gateway", flag="--connect-timeout"),
    Option("gateway_read_timeout", "time the backend may stay silent while answering", _number, 30.0,
           GATEWAY_TIMEOUT_BOUNDS, "seconds", attr="read_timeout", group="gateway", flag="--read-timeout"),
)
# fmt: on


def _defaults() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        values[opt.attr] = opt.follows(values) if opt.follows else opt.default
    return values


#: Each option's default by attribute ("interval", "request.depth"): the defaults of `Settings`.
DEFAULTS: dict[str, Any] = _defaults()
DEFAULT_MAX_CLOCK_SKEW: float = DEFAULTS["max_clock_skew"]
DEFAULT_MAX_BODY_BYTES: int = DEFAULTS["max_body_bytes"]  # 4 MiB, the upstream client's own default


def _nested(values: Mapping[str, Any], part: str) -> dict[str, Any]:
    """The ``part.x`` values as keywords: ``{"depth": 50}`` for "request"."""
    return {key.partition(".")[2]: value for key, value in values.items() if key.startswith(f"{part}.")}


@dataclass(frozen=True)
class AlertSettings:
    """Alerting: Alertmanager-style timings, Telegram, Alertmanager. The token is left out of ``repr``."""

    alert_for: float
    group_wait: float
    repeat: float
    telegram_token: str | None = field(default=None, repr=False)
    telegram_chats: tuple[str, ...] = ()
    telegram_api: str = "https://api.telegram.org"
    telegram_commands: bool = False
    telegram_admins: tuple[int, ...] = ()
    alertmanager: str | None = None

    def check(self) -> None:
        """ConfigError for a combination that cannot work."""
        if self.telegram_chats and not self.telegram_token:
            raise ConfigError("--telegram-chat / SNIPER_TELEGRAM_CHAT needs --telegram-token / SNIPER_TELEGRAM_TOKEN")
        if self.telegram_commands and not (self.telegram_token and self.telegram_admins):
            raise ConfigError(
                "--telegram-commands needs --telegram-token and --telegram-admins "
                "(who may command; nobody else is answered)"
            )


@dataclass(frozen=True)
class Settings:
    """Everything a sniper process needs to know to run the pipeline; defaults and checks from `OPTIONS`."""

    nats: str | None = DEFAULTS["nats"]
    nats_auth: NatsAuth = field(default_factory=lambda: NatsAuth(**_nested(DEFAULTS, "nats_auth")))
    backend: str | None = DEFAULTS["backend"]
    assets: tuple[str, ...] = DEFAULTS["assets"]
    interval: float = DEFAULTS["interval"]
    window: float = DEFAULTS["window"]
    off_hours_interval: float | None = DEFAULTS["off_hours_interval"]
    trading_hours: TradingHours = DEFAULTS["trading_hours"]
    prefix: str = DEFAULTS["prefix"]
    core: frozenset[str] = DEFAULTS["core"]
    actors: tuple[str, ...] = DEFAULTS["actors"]  # empty: all
    request: RequestSettings = field(default_factory=lambda: RequestSettings(**_nested(DEFAULTS, "request")))
    etf_proxy: str = DEFAULTS["etf_proxy"]
    #: FEATURE_<NAME> defaults per module (all on unless the environment says off).
    flags: Mapping[str, bool] = field(default_factory=lambda: {m: True for m in MODULES})
    metrics_port: int | None = DEFAULTS["metrics_port"]
    #: Where /metrics listens: loopback unless told otherwise (0.0.0.0 in a container).
    metrics_host: str = DEFAULTS["metrics_host"]
    quarantine: float = DEFAULTS["quarantine"]
    circuit_probes: int = DEFAULTS["circuit_probes"]
    stagger: bool = DEFAULTS["stagger"]
    feature_source: FlagSource = DEFAULTS["feature_source"]
    signal_stream: bool = DEFAULTS["signal_stream"]
    stream_max_age: float = DEFAULTS["stream_max_age"]
    stream_max_bytes: int = DEFAULTS["stream_max_bytes"]
    stream_per_subject: int = DEFAULTS["stream_per_subject"]
    stream_health: bool = DEFAULTS["stream_health"]
    #: Copies JetStream keeps of each bucket and stream this process creates (an existing one keeps its own).
    replicas: int = DEFAULTS["replicas"]
    discovery_interval: float = DEFAULTS["discovery_interval"]
    #: Largest difference between a peer's timestamp and ours that is believed (seconds).
    max_clock_skew: float = DEFAULTS["max_clock_skew"]
    #: Largest upstream response body read (bytes).
    max_body_bytes: int = DEFAULTS["max_body_bytes"]
    alert: AlertSettings = field(default_factory=lambda: AlertSettings(**_nested(DEFAULTS, "alert")))
    fallback: FallbackSettings = field(default_factory=lambda: FallbackSettings(**_nested(DEFAULTS, "fallback")))

    def __post_init__(self) -> None:
        for opt in OPTIONS:
            if opt.group in _SETTINGS_GROUPS:
                opt.validate(attrgetter(opt.attr)(self))
        self.nats_auth.check(self.nats)
        self.alert.check()
        window, off_hours = OPTIONS_BY_NAME["window"], OPTIONS_BY_NAME["off_hours_interval"]
        limit = f"{window.label} (at most the interval, {_show(self.interval)} s)"
        check_between(self.window, (WINDOW_MIN, self.interval), limit, "seconds")
        if self.off_hours_interval is not None and self.off_hours_interval < self.window:
            raise ConfigError(
                f"{off_hours.label} must be at least the window "
                f"({_show(self.window)} s), got {_show(self.off_hours_interval)}"
            )
        if self.actors:
            from .app import actor_names  # imported here: sniper.app imports this module

            wrong = set(self.actors) - set(actor_names())
            if wrong:
                raise ConfigError(f"--actors: unknown {sorted(wrong)}; choose from {list(actor_names())}")
        if set(self.flags) != set(MODULES):
            raise ConfigError(f"feature flags must cover exactly {list(MODULES)}")

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.prefix)


def feature_defaults(environ: Mapping[str, str]) -> dict[str, bool]:
    """FEATURE_<MODULE> for every module: FEATURE_ETF, FEATURE_WHALE, ... (default on)."""
    return {m: _env(environ, f"FEATURE_{m.upper()}", parse_switch, True) for m in MODULES}


def _env(environ: Mapping[str, str], name: str, parse: Callable[[str], T], default: T) -> T:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"environment variable {name}={raw!r}: {exc}") from None


def add_options(
    parser: argparse.ArgumentParser, group: str, *, suppress: bool = False, title: str | None = None
) -> None:
    """The flags of one group of `OPTIONS` (their defaults are None: `settings_from` fills them in).

    With `suppress`, an absent flag leaves no attribute (for parent parsers that
    accept the flags both before and after a sub-command).
    """
    where = parser.add_argument_group(title) if title else parser
    for opt in (*OPTIONS, *GATEWAY_OPTIONS):
        if opt.group == group:
            kwargs: dict[str, Any] = {"dest": opt.name, "help": opt.describe()}
            if suppress:
                kwargs["default"] = argparse.SUPPRESS
            if opt.const is not None:
                kwargs.update(action="store_const", const=opt.const)
            else:
                metavar = opt.metavar or (opt.unit.upper() if opt.unit else None)
                kwargs.update(type=opt.convert, choices=opt.choices or None, metavar=metavar)
            where.add_argument(opt.flag, **kwargs)


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags shared by `sniper run` and `sniper demo` (defaults come from the environment)."""
    add_options(parser, "pipeline", title="pipeline")
    add_options(parser, "alert", title="alerts")
    add_options(parser, "fallback", title="fallback to venues")


def alert_settings_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> AlertSettings:
    """The alert settings alone (``sniper alert test``): flags, then the environment, then defaults."""
    values = _values(args, os.environ if environ is None else environ, ("alert",))
    try:
        settings = AlertSettings(**_nested(values, "alert"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    settings.check()
    return settings


def add_nats_auth_arguments(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """--nats-user, --nats-password, --nats-creds (environment: SNIPER_NATS_USER, ..._PASSWORD, ..._CREDS)."""
    add_options(parser, "auth", suppress=suppress)


def _values(args: argparse.Namespace, env: Mapping[str, str], groups: Collection[str]) -> dict[str, Any]:
    """Each option of `groups` by attribute: the flag's value, else the variable's, else the default."""
    values: dict[str, Any] = {}
    for opt in (*OPTIONS, *GATEWAY_OPTIONS):
        if opt.group in groups:
            given = getattr(args, opt.name, None)
            default = opt.follows(values) if opt.follows else opt.default
            values[opt.attr] = given if given is not None else _env(env, opt.var, opt.parse, default)
    return values


def nats_auth_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> NatsAuth:
    """NATS credentials from --nats-user/--nats-password/--nats-creds, then SNIPER_NATS_USER/_PASSWORD/_CREDS."""
    values = _values(args, os.environ if environ is None else environ, ("auth",))
    return NatsAuth(**_nested(values, "nats_auth"))


def log_settings_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(level, format) from --log-level/--log-format, then SNIPER_LOG_LEVEL/SNIPER_LOG_FORMAT, then info/console."""
    values = _values(args, os.environ if environ is None else environ, ("log",))
    for opt in OPTIONS:
        if opt.group == "log":
            opt.validate(values[opt.attr])
    return values["log_level"], values["log_format"]


def settings_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None, **fixed: Any) -> Settings:
    """Build Settings from parsed flags, falling back to the environment, then defaults."""
    env = os.environ if environ is None else environ
    values = _values(args, env, _SETTINGS_GROUPS)
    kwargs: dict[str, Any] = {key: value for key, value in values.items() if "." not in key}
    kwargs["nats_auth"] = NatsAuth(**_nested(values, "nats_auth"))
    kwargs["request"] = RequestSettings(**_nested(values, "request"))
    kwargs["alert"] = AlertSettings(**_nested(values, "alert"))
    kwargs["fallback"] = FallbackSettings(**_nested(values, "fallback"))
    kwargs["flags"] = feature_defaults(env)
    kwargs.update(fixed)
    try:
        return Settings(**kwargs)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def gateway_config_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """`sniper gateway`'s configuration: its flags, then SNIPER_GATEWAY_* (and SNIPER_BACKEND, SNIPER_NATS)."""
    from .gateway.app import GatewayConfig

    values = _values(args, os.environ if environ is None else environ, ("connection", "auth", "gateway"))
    for opt in (*OPTIONS, *GATEWAY_OPTIONS):
        if opt.group in ("connection", "gateway"):
            opt.validate(values[opt.attr])
    if not values["backend"]:
        raise ConfigError(f"{OPTIONS_BY_NAME['backend'].label} is required for 'sniper gateway'")
    auth = NatsAuth(**_nested(values, "nats_auth"))
    auth.check(values["nats"])
    own = {opt.attr: values[opt.attr] for opt in GATEWAY_OPTIONS}
    return GatewayConfig(backend=values["backend"], nats=values["nats"], nats_auth=auth, **own)
