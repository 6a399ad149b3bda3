"""Settings from flags, environment and defaults; trading hours; health backoff."""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, time
from operator import attrgetter
from typing import Any

import pytest

from actors.routing import RequestSettings
from actors.scheduler import JAKARTA, HealthPolicy, TradingHours
from messages import ConfigError
from messages.modules import DEFAULT_CORE
from runtime.clock import VirtualClock
from sniper.config import Settings, add_pipeline_arguments, settings_from


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sniper-test")
    p.add_argument("--nats")
    p.add_argument("--backend")
    add_pipeline_arguments(p)
    return p


def load(argv: list[str], environ: dict[str, str] | None = None, **fixed: Any) -> Settings:
    return settings_from(parser().parse_args(argv), environ or {}, **fixed)


def jakarta(hour: int, minute: int = 0, second: int = 0) -> float:
    """Wall time of hour:minute on 2026-01-01 in Asia/Jakarta."""
    return datetime(2026, 1, 1, hour, minute, second, tzinfo=JAKARTA).timestamp()


# (attribute, flag argv, flag value, env var, env text, env value, default)
PRECEDENCE = [
    (
        "nats",
        ["--nats", "nats://flag:4222"],
        "nats://flag:4222",
        "SNIPER_NATS",
        "nats://env:4222",
        "nats://env:4222",
        None,
    ),
    ("backend", ["--backend", "http://flag"], "http://flag", "SNIPER_BACKEND", "http://env", "http://env", None),
    ("assets", ["--assets", "btc, eth"], ("BTC", "ETH"), "SNIPER_ASSETS", "sol,xrp,sol", ("SOL", "XRP"), ("SOL",)),
    ("interval", ["--interval", "10"], 10.0, "SNIPER_INTERVAL", "20", 20.0, 5.0),
    ("window", ["--window", "2"], 2.0, "SNIPER_WINDOW", "1.5", 1.5, 3.0),
    ("off_hours_interval", ["--off-hours-interval", "60"], 60.0, "SNIPER_OFF_HOURS_INTERVAL", "120", 120.0, None),
    (
        "trading_hours",
        ["--trading-hours", "08:00-22:00"],
        TradingHours(time(8), time(22)),
        "SNIPER_TRADING_HOURS",
        "22:00-06:00",
        TradingHours(time(22), time(6)),
        TradingHours(time(0), None),
    ),
    ("prefix", ["--prefix", "flag.pfx"], "flag.pfx", "SNIPER_PREFIX", "env_pfx", "env_pfx", "sniper"),
    (
        "core",
        ["--core", "whale,etf"],
        frozenset({"whale", "etf"}),
        "SNIPER_CORE",
        "bias",
        frozenset({"bias"}),
        DEFAULT_CORE,
    ),
    ("actors", ["--actors", "scheduler"], ("scheduler",), "SNIPER_ACTORS", "assembler", ("assembler",), ()),
    ("request.exchange", ["--exchange", "okx"], "okx", "SNIPER_EXCHANGE", "bybit", "bybit", "binance"),
    ("request.depth", ["--depth", "20"], 20, "SNIPER_DEPTH", "100", 100, 50),
    ("request.timeframe", ["--timeframe", "4h"], "4h", "SNIPER_TIMEFRAME", "15m", "15m", "1h"),
    ("etf_proxy", ["--etf-proxy", "ETH"], "ETH", "SNIPER_ETF_PROXY", "ETH", "ETH", "BTC"),
]
PRECEDENCE_IDS = [row[0] for row in PRECEDENCE]


class TestPrecedence:
    @pytest.mark.parametrize(
        ("attr", "argv", "flag_value", "var", "text", "env_value", "default"), PRECEDENCE, ids=PRECEDENCE_IDS
    )
    def test_flag_beats_environment(
        self, attr: str, argv: list[str], flag_value: Any, var: str, text: str, env_value: Any, default: Any
    ) -> None:
        """A flag wins over its environment variable."""
        environ = {var: text}
        if attr == "etf_proxy":
            environ[var] = "BTC"
        assert attrgetter(attr)(load(argv, environ)) == flag_value

    @pytest.mark.parametrize(
        ("attr", "argv", "flag_value", "var", "text", "env_value", "default"), PRECEDENCE, ids=PRECEDENCE_IDS
    )
    def test_environment_beats_default(
        self, attr: str, argv: list[str], flag_value: Any, var: str, text: str, env_value: Any, default: Any
    ) -> None:
        """Without a flag, the environment variable wins over the default."""
        assert attrgetter(attr)(load([], {var: text})) == env_value

    @pytest.mark.parametrize(
        ("attr", "argv", "flag_value", "var", "text", "env_value", "default"), PRECEDENCE, ids=PRECEDENCE_IDS
    )
    def test_default_when_neither(
        self, attr: str, argv: list[str], flag_value: Any, var: str, text: str, env_value: Any, default: Any
    ) -> None:
        """With neither flag nor variable (or an empty variable), the default applies."""
        assert (attrgetter(attr)(load([], {})), attrgetter(attr)(load([], {var: ""}))) == (default, default)

    def test_defaults_equal_a_plain_settings(self) -> None:
        """No flags and an empty environment give exactly Settings()'s defaults."""
        assert load([], {}) == Settings()

    def test_fixed_values_override_everything(self) -> None:
        """Keyword values passed to settings_from beat flags and environment."""
        s = load(["--assets", "BTC"], {"SNIPER_ASSETS": "ETH"}, assets=("DOGE",))
        assert s.assets == ("DOGE",)

    def test_os_environ_is_the_default_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without environ=, settings_from reads os.environ."""
        monkeypatch.setenv("SNIPER_ASSETS", "ada")
        assert settings_from(parser().parse_args([])).assets == ("ADA",)

    def test_request_settings_are_assembled(self) -> None:
        """exchange, depth and timeframe end up in one RequestSettings."""
        s = load(["--depth", "10"], {"SNIPER_EXCHANGE": "okx"})
        assert s.request == RequestSettings(exchange="okx", depth=10, timeframe="1h")

    def test_subjects_follow_prefix(self) -> None:
        """Settings.subjects builds subjects under the configured prefix."""
        assert load(["--prefix", "lab.a"]).subjects.everything() == "lab.a.>"


class TestWindowDefault:
    @pytest.mark.parametrize(
        ("interval", "window"),
        [("1", 0.6), ("2", 1.2), ("4", 2.4), ("5", 3.0), ("10", 3.0), ("3600", 3.0), ("0.5", 0.3)],
    )
    @pytest.mark.parametrize("source", ["flag", "env"])
    def test_window_is_min_of_3_and_six_tenths_interval(self, interval: str, window: float, source: str) -> None:
        """Without --window the window is min(3, 0.6 x interval), whichever way the interval was given."""
        s = load(["--interval", interval]) if source == "flag" else load([], {"SNIPER_INTERVAL": interval})
        assert (s.interval, s.window) == (float(interval), window)

    def test_explicit_window_is_kept(self) -> None:
        """An explicit window is used as given."""
        assert load(["--interval", "10", "--window", "7"]).window == 7.0


class TestBadEnvironment:
    @pytest.mark.parametrize(
        ("var", "value"),
        [
            ("SNIPER_INTERVAL", "abc"),
            ("SNIPER_INTERVAL", "0"),
            ("SNIPER_INTERVAL", "-5"),
            ("SNIPER_INTERVAL", "nan"),
            ("SNIPER_WINDOW", "10"),
            ("SNIPER_WINDOW", "0"),
            ("SNIPER_WINDOW", "soon"),
            ("SNIPER_OFF_HOURS_INTERVAL", "-1"),
            ("SNIPER_ASSETS", "sol.x"),
            ("SNIPER_ASSETS", "sol,b*"),
            ("SNIPER_ASSETS", ","),
            ("SNIPER_CORE", "nope"),
            ("SNIPER_CORE", "whale,nope"),
            ("SNIPER_TRADING_HOURS", "25:00-01:00"),
            ("SNIPER_TRADING_HOURS", "always"),
            ("SNIPER_DEPTH", "deep"),
            ("SNIPER_PREFIX", "bad prefix"),
            ("SNIPER_ETF_PROXY", "XRP"),
        ],
    )
    def test_bad_value_names_the_variable(self, var: str, value: str) -> None:
        """A nonsensical environment value raises ConfigError whose message names the variable."""
        with pytest.raises(ConfigError, match=var):
            load([], {var: value})

    def test_window_larger_than_env_interval(self) -> None:
        """SNIPER_WINDOW above SNIPER_INTERVAL is refused, naming the window variable."""
        with pytest.raises(ConfigError, match="SNIPER_WINDOW"):
            load([], {"SNIPER_INTERVAL": "2", "SNIPER_WINDOW": "2.5"})

    def test_window_equal_to_interval_is_fine(self) -> None:
        """A window as long as the interval is allowed."""
        assert load([], {"SNIPER_INTERVAL": "2", "SNIPER_WINDOW": "2"}).window == 2.0

    def test_bad_value_is_ignored_when_a_flag_wins(self) -> None:
        """A broken variable does not matter when its flag is given."""
        assert load(["--interval", "7"], {"SNIPER_INTERVAL": "abc"}).interval == 7.0

    @pytest.mark.parametrize("prefix", ["bad prefix", "a..b", "a.*", "a.>", "", "$SYS"])
    def test_bad_prefix_is_a_config_error(self, prefix: str) -> None:
        """A prefix that cannot start subjects raises ConfigError (not a bare SubjectError)."""
        with pytest.raises(ConfigError):
            load(["--prefix", prefix])


class TestSettingsValidation:
    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"assets": ()}, "SNIPER_ASSETS"),
            ({"assets": ("sol",)}, "SNIPER_ASSETS"),
            ({"interval": 0.0}, "SNIPER_INTERVAL"),
            ({"interval": 2.0, "window": 3.0}, "SNIPER_WINDOW"),
            ({"window": -1.0}, "SNIPER_WINDOW"),
            ({"core": frozenset({"whale", "magic"})}, "SNIPER_CORE"),
        ],
    )
    def test_direct_construction_validates(self, kwargs: dict[str, Any], match: str) -> None:
        """Settings refuses nonsense itself, naming flag and variable."""
        with pytest.raises(ConfigError, match=match):
            Settings(**kwargs)


class TestTradingHours:
    @pytest.mark.parametrize(
        ("text", "start", "end", "canonical"),
        [
            ("08:00-22:00", time(8), time(22), "08:00-22:00"),
            ("8:30-9:45", time(8, 30), time(9, 45), "08:30-09:45"),
            ("  22:00 - 06:00 ", time(22), time(6), "22:00-06:00"),
            ("00:00-24:00", time(0), None, "00:00-24:00"),
            ("18:15-24:00", time(18, 15), None, "18:15-24:00"),
            ("23:59-00:00", time(23, 59), time(0), "23:59-00:00"),
        ],
    )
    def test_parse_and_str(self, text: str, start: time, end: time | None, canonical: str) -> None:
        """HH:MM-HH:MM parses (24:00 = end of day) and prints back zero-padded."""
        hours = TradingHours.parse(text)
        assert (hours.start, hours.end, str(hours)) == (start, end, canonical)

    @pytest.mark.parametrize("text", ["08:00-22:00", "22:00-06:00", "00:00-24:00", "09:05-17:30"])
    def test_str_round_trips(self, text: str) -> None:
        """parse(str(hours)) == hours."""
        assert TradingHours.parse(str(TradingHours.parse(text))) == TradingHours.parse(text)

    @pytest.mark.parametrize(
        "text",
        [
            "25:00-01:00",
            "24:00-08:00",
            "08:00-24:30",
            "08:60-09:00",
            "08:00-09:61",
            "8-22",
            "08:00",
            "",
            "0800-2200",
            "08:00-22:00:00",
            "a:bc-d:ef",
        ],
    )
    def test_bad_text_is_config_error(self, text: str) -> None:
        """Anything that is not HH:MM-HH:MM with real times raises ConfigError quoting the text."""
        with pytest.raises(ConfigError, match="trading hours"):
            TradingHours.parse(text)

    @pytest.mark.parametrize(
        ("window", "hour", "minute", "inside"),
        [
            ("08:00-22:00", 7, 59, False),
            ("08:00-22:00", 8, 0, True),
            ("08:00-22:00", 12, 0, True),
            ("08:00-22:00", 21, 59, True),
            ("08:00-22:00", 22, 0, False),
            ("22:00-06:00", 21, 59, False),
            ("22:00-06:00", 22, 0, True),
            ("22:00-06:00", 23, 59, True),
            ("22:00-06:00", 0, 0, True),
            ("22:00-06:00", 5, 59, True),
            ("22:00-06:00", 6, 0, False),
            ("22:00-06:00", 12, 0, False),
            ("00:00-24:00", 0, 0, True),
            ("00:00-24:00", 23, 59, True),
            ("18:00-24:00", 17, 59, False),
            ("18:00-24:00", 18, 0, True),
            ("18:00-24:00", 23, 59, True),
            ("18:00-24:00", 0, 0, False),
        ],
    )
    def test_contains_in_jakarta_time(self, window: str, hour: int, minute: int, inside: bool) -> None:
        """contains() judges the wall time as a Jakarta time of day, wrapping past midnight."""
        assert TradingHours.parse(window).contains(jakarta(hour, minute)) is inside

    @pytest.mark.parametrize(
        ("utc_hour", "inside"), [(0.0, False), (0.99, False), (1.0, True), (14.99, True), (15.0, False), (18.0, False)]
    )
    def test_jakarta_is_utc_plus_7(self, utc_hour: float, inside: bool) -> None:
        """08:00-22:00 Jakarta is 01:00-15:00 UTC (no DST)."""
        assert TradingHours.parse("08:00-22:00").contains(VirtualClock.EPOCH + utc_hour * 3600) is inside

    @pytest.mark.parametrize("month", [1, 4, 7, 10])
    def test_no_daylight_saving(self, month: int) -> None:
        """The same UTC hour is inside the window all year round."""
        wall = datetime(2026, month, 15, 1, 0, tzinfo=UTC).timestamp()
        assert (
            TradingHours.parse("08:00-09:00").contains(wall),
            TradingHours.parse("08:00-09:00").contains(wall - 1),
        ) == (
            True,
            False,
        )


class TestHealthPolicyDelay:
    @pytest.mark.parametrize("failures", [0, -1])
    @pytest.mark.parametrize("interval", [1.0, 5.0, 600.0])
    def test_no_failures_is_the_interval(self, failures: int, interval: float) -> None:
        """Without consecutive failures the delay is exactly the interval (no jitter)."""
        assert HealthPolicy().delay(interval, failures, random.Random(1)) == interval

    @pytest.mark.parametrize(
        ("failures", "expected"),
        [(1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0), (5, 160.0), (6, 300.0), (50, 300.0)],
    )
    def test_grows_by_factor_and_caps(self, failures: int, expected: float) -> None:
        """interval x factor^failures, capped at backoff_max."""
        policy = HealthPolicy(backoff_factor=2.0, backoff_max=300.0, jitter=0.0)
        assert policy.delay(5.0, failures, random.Random(0)) == expected

    @pytest.mark.parametrize(
        ("factor", "cap", "expected"), [(3.0, 1000.0, 45.0), (1.5, 1000.0, 11.25), (3.0, 30.0, 30.0)]
    )
    def test_factor_and_cap_are_configurable(self, factor: float, cap: float, expected: float) -> None:
        """backoff_factor and backoff_max come from the policy."""
        assert (
            HealthPolicy(backoff_factor=factor, backoff_max=cap, jitter=0.0).delay(5.0, 2, random.Random(0)) == expected
        )

    @pytest.mark.parametrize("seed", [0, 1, 42])
    @pytest.mark.parametrize(("failures", "base"), [(1, 10.0), (3, 40.0), (20, 300.0)])
    def test_jitter_bounds(self, seed: int, failures: int, base: float) -> None:
        """With jitter j, delays fall in [base(1-j), base(1+j)] and actually vary."""
        policy = HealthPolicy(jitter=0.2)
        rng = random.Random(seed)
        delays = [policy.delay(5.0, failures, rng) for _ in range(200)]
        assert (min(delays) >= base * 0.8, max(delays) <= base * 1.2, len(set(delays)) > 100) == (True, True, True)

    def test_seeded_rng_is_reproducible(self) -> None:
        """The same seed gives the same jittered schedule."""
        policy = HealthPolicy()
        runs = [[policy.delay(5.0, f, random.Random(7)) for f in range(1, 8)] for _ in range(2)]
        assert runs[0] == runs[1]

    @pytest.mark.parametrize(("interval", "failures"), [(5.0, 1), (300.0, 1), (600.0, 1), (900.0, 3)])
    def test_backoff_never_shortens_the_interval(self, interval: float, failures: int) -> None:
        """A hard failure never makes the next cycle come sooner than the normal interval."""
        policy = HealthPolicy(jitter=0.0)
        assert policy.delay(interval, failures, random.Random(0)) >= interval
