"""Pipeline settings: one validated object, from flags with environment fallbacks.

Every flag of ``sniper run`` has an environment variable (``--assets`` is
``SNIPER_ASSETS``), so containers configure sniper without a command line.
Precedence: flag, then environment, then default. A value that makes no sense
raises `ConfigError` naming the flag or variable; nothing starts half-configured.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from actors.routing import RequestSettings
from actors.scheduler import DEFAULT_CORE, TradingHours
from messages import ConfigError, Subjects

T = TypeVar("T")

MODULES: tuple[str, ...] = ("whale", "etf", "heatmap", "spot_ob", "bias")
_ASSET = re.compile(r"^[A-Z0-9]{1,20}$")


@dataclass(frozen=True)
class Settings:
    """Everything a sniper process needs to know to run the pipeline."""

    nats: str | None = None
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
    quarantine: float = 3600.0
    circuit_probes: int = 1
    stagger: bool = True
    discovery_interval: float = 600.0

    def __post_init__(self) -> None:
        if self.backend is not None:
            parts = urlsplit(self.backend)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"--backend / SNIPER_BACKEND: {self.backend!r} is not an http(s) URL like http://127.0.0.1:8000"
                )
        if not self.assets:
            raise ConfigError("--assets / SNIPER_ASSETS: at least one asset is needed")
        for asset in self.assets:
            if not _ASSET.match(asset):
                raise ConfigError(f"--assets / SNIPER_ASSETS: {asset!r} is not an asset like SOL or BTC")
        if self.interval <= 0:
            raise ConfigError("--interval / SNIPER_INTERVAL must be positive")
        if not 0 < self.window <= self.interval:
            raise ConfigError(
                f"--window / SNIPER_WINDOW must be positive and at most the interval ({self.interval:g}s), "
                f"got {self.window:g}"
            )
        unknown = self.core - set(MODULES)
        if unknown:
            raise ConfigError(f"--core / SNIPER_CORE: unknown modules {sorted(unknown)}; known: {list(MODULES)}")
        try:
            Subjects(self.prefix)
        except ValueError as exc:
            raise ConfigError(f"--prefix / SNIPER_PREFIX: {exc}") from None
        if set(self.flags) != set(MODULES):
            raise ConfigError(f"feature flags must cover exactly {list(MODULES)}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError("--metrics-port / SNIPER_METRICS_PORT must be a TCP port (0 = any free port)")
        if self.circuit_probes < 1:
            raise ConfigError("--circuit-probes / SNIPER_CIRCUIT_PROBES must be at least 1")
        if self.quarantine <= 0:
            raise ConfigError("--quarantine / SNIPER_QUARANTINE must be positive")
        if self.etf_proxy not in ("BTC", "ETH"):
            raise ConfigError(f"--etf-proxy / SNIPER_ETF_PROXY must be BTC or ETH, got {self.etf_proxy!r}")

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.prefix)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be positive")
    return value


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
    g.add_argument("--interval", type=_positive, help="seconds between cycles (SNIPER_INTERVAL, default 5)")
    g.add_argument(
        "--window", type=_positive, help="assembly window in seconds (SNIPER_WINDOW, default 0.6 x interval, max 3)"
    )
    g.add_argument(
        "--off-hours-interval", type=_positive, help="interval outside trading hours (SNIPER_OFF_HOURS_INTERVAL)"
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
        "--no-stagger",
        dest="stagger",
        action="store_const",
        const=False,
        help="tick every asset at the same instant (SNIPER_STAGGER=off)",
    )
    g.add_argument(
        "--discovery-interval",
        type=_positive,
        help="seconds between route discoveries from /openapi.json (SNIPER_DISCOVERY_INTERVAL, default 600)",
    )
    g.add_argument(
        "--circuit-probes", type=int, help="calls let through a half-open breaker (SNIPER_CIRCUIT_PROBES, default 1)"
    )
    g.add_argument(
        "--quarantine", type=_positive, help="seconds a 402 quarantines a module (SNIPER_QUARANTINE, default 3600)"
    )


def settings_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None, **fixed: Any) -> Settings:
    """Build Settings from parsed flags, falling back to the environment, then defaults."""
    env = os.environ if environ is None else environ

    def pick(flag: str, var: str, parse: Callable[[str], T], default: T) -> T:
        value = getattr(args, flag, None)
        return value if value is not None else _env(env, var, parse, default)

    interval = pick("interval", "SNIPER_INTERVAL", _positive, 5.0)
    request = RequestSettings(
        exchange=pick("exchange", "SNIPER_EXCHANGE", str, "binance"),
        depth=pick("depth", "SNIPER_DEPTH", int, 50),
        timeframe=pick("timeframe", "SNIPER_TIMEFRAME", str, "1h"),
    )
    values: dict[str, Any] = dict(
        nats=pick("nats", "SNIPER_NATS", str, None),
        backend=pick("backend", "SNIPER_BACKEND", str, None),
        assets=pick("assets", "SNIPER_ASSETS", _assets, _DEFAULT_ASSETS),
        interval=interval,
        window=pick("window", "SNIPER_WINDOW", _positive, min(3.0, round(0.6 * interval, 3))),
        off_hours_interval=pick("off_hours_interval", "SNIPER_OFF_HOURS_INTERVAL", _positive, None),
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
        quarantine=pick("quarantine", "SNIPER_QUARANTINE", _positive, 3600.0),
        circuit_probes=pick("circuit_probes", "SNIPER_CIRCUIT_PROBES", int, 1),
        stagger=pick("stagger", "SNIPER_STAGGER", parse_switch, True),
        discovery_interval=pick("discovery_interval", "SNIPER_DISCOVERY_INTERVAL", _positive, 600.0),
    )
    values.update(fixed)
    try:
        return Settings(**values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
