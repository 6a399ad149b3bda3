"""Bounds on every number `sniper run` takes, and one clear line (exit 2) for a bad or unreachable --nats/--backend.

The limits live in `sniper.config` (``*_BOUNDS``, ``WINDOW_MIN``); these tests
read them from there, so a changed bound changes what is tested, not the test.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from messages import ConfigError
from sniper import config
from sniper.config import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CLOCK_SKEW,
    NatsAuth,
    Settings,
    check_nats_url,
    settings_from,
)
from sniper.embedded import EmbeddedNats

from .test_config import load, parser  # the same parser the pipeline flags use

ROOT = Path(__file__).resolve().parents[2]
SNIPER = [sys.executable, "-m", "sniper"]


def text(value: float) -> str:
    return repr(value) if isinstance(value, float) and not value.is_integer() else str(int(value))


# (flag, variable, bounds, unit, extra argv that makes the bounds reachable)
RANGES: list[tuple[str, str, tuple[float, float], str, list[str]]] = [
    ("--interval", "SNIPER_INTERVAL", config.INTERVAL_BOUNDS, "seconds", ["--window", "0.05"]),
    (
        "--off-hours-interval",
        "SNIPER_OFF_HOURS_INTERVAL",
        config.INTERVAL_BOUNDS,
        "seconds",
        ["--interval", "1", "--window", "0.05"],
    ),
    ("--quarantine", "SNIPER_QUARANTINE", config.QUARANTINE_BOUNDS, "seconds", []),
    ("--discovery-interval", "SNIPER_DISCOVERY_INTERVAL", config.DISCOVERY_INTERVAL_BOUNDS, "seconds", []),
    ("--max-clock-skew", "SNIPER_MAX_CLOCK_SKEW", config.MAX_CLOCK_SKEW_BOUNDS, "seconds", []),
    ("--circuit-probes", "SNIPER_CIRCUIT_PROBES", config.CIRCUIT_PROBES_BOUNDS, "calls", []),
    ("--depth", "SNIPER_DEPTH", config.DEPTH_BOUNDS, "levels", []),
    ("--max-body-bytes", "SNIPER_MAX_BODY_BYTES", config.MAX_BODY_BYTES_BOUNDS, "bytes", []),
    ("--metrics-port", "SNIPER_METRICS_PORT", config.PORT_BOUNDS, "", []),
    ("--replicas", "SNIPER_REPLICAS", config.REPLICAS_BOUNDS, "replicas", []),
]
INTEGER_FLAGS = {"--circuit-probes", "--depth", "--max-body-bytes", "--metrics-port", "--replicas"}


def bad_values(flag: str, bounds: tuple[float, float]) -> list[str]:
    low, high = bounds
    if flag in INTEGER_FLAGS:
        return [str(int(low) - 1), str(int(high) + 1), "-5"]
    return ["inf", "-inf", "nan", "1e-9", "-5", "0", text(high * 2), text(low / 2)]


BAD = [
    pytest.param(flag, var, bounds, unit, extra, value, id=f"{flag}={value}")
    for flag, var, bounds, unit, extra in RANGES
    for value in bad_values(flag, bounds)
]
EDGES = [
    pytest.param(flag, var, bounds, extra, edge, id=f"{flag}={edge}")
    for flag, var, bounds, _, extra in RANGES
    for edge in bounds
]
NAME = {flag: flag.removeprefix("--").replace("-", "_") for flag, *_ in RANGES}
NAME["--depth"] = "request.depth"


def attr(settings: Settings, flag: str) -> Any:
    value: Any = settings
    for part in NAME[flag].split("."):
        value = getattr(value, part)
    return value


class TestNumericBounds:
    @pytest.mark.parametrize(("flag", "var", "bounds", "unit", "extra", "value"), BAD)
    @pytest.mark.parametrize("source", ["flag", "env"])
    def test_out_of_range_names_flag_variable_and_bounds(
        self, flag: str, var: str, bounds: tuple[float, float], unit: str, extra: list[str], value: str, source: str
    ) -> None:
        """Non-finite, tiny, negative or huge values are refused with the allowed range in the message."""
        low, high = (config._show(b) for b in bounds)
        argv, env = ([*extra, f"{flag}={value}"], {}) if source == "flag" else (extra, {var: value})
        with pytest.raises(ConfigError) as caught:
            load(argv, env)
        message = str(caught.value)
        assert f"{flag} / {var}" in message and f"between {low} and {high}" in message, message
        assert message.rstrip().endswith(f"got {config._show(float(value))}") and (unit in message), message

    @pytest.mark.parametrize(("flag", "var", "bounds", "extra", "edge"), EDGES)
    def test_bounds_are_inclusive(
        self, flag: str, var: str, bounds: tuple[float, float], extra: list[str], edge: float
    ) -> None:
        """Each bound itself is allowed."""
        value = str(int(edge)) if flag in INTEGER_FLAGS else repr(float(edge))
        argv = [*extra, flag, value]
        if flag == "--interval":  # the default window must fit a short interval
            argv = ["--window", "0.05", flag, value]
        assert attr(load(argv), flag) == edge

    def test_interval_message_is_the_documented_one(self) -> None:
        """The issue's example, word for word."""
        with pytest.raises(
            ConfigError, match=r"^--interval / SNIPER_INTERVAL must be between 0\.1 and 86400 seconds, got inf$"
        ):
            load(["--interval", "inf"])

    @pytest.mark.parametrize(
        ("argv", "env"),
        [
            (["--window", "0.01"], {}),
            (["--window", "nan"], {}),
            (["--window", "inf"], {}),
            (["--window", "-1"], {}),
            (["--interval", "2", "--window", "2.5"], {}),
            ([], {"SNIPER_INTERVAL": "1", "SNIPER_WINDOW": "1.5"}),
        ],
    )
    def test_window_is_between_its_minimum_and_the_interval(self, argv: list[str], env: dict[str, str]) -> None:
        """The window is at least WINDOW_MIN and at most the interval, and the message says both."""
        with pytest.raises(ConfigError, match=rf"--window / SNIPER_WINDOW .*between {config.WINDOW_MIN:g} and"):
            load(argv, env)

    def test_window_edges(self) -> None:
        """The window may equal its minimum or the interval."""
        assert load(["--interval", "2", "--window", str(config.WINDOW_MIN)]).window == config.WINDOW_MIN
        assert load(["--interval", "2", "--window", "2"]).window == 2.0

    def test_off_hours_interval_must_hold_a_window(self) -> None:
        """An off-hours interval shorter than the window would overlap cycles: refused."""
        with pytest.raises(ConfigError, match="--off-hours-interval / SNIPER_OFF_HOURS_INTERVAL must be at least"):
            load(["--interval", "10", "--window", "3", "--off-hours-interval", "2"])

    def test_settings_checks_its_own_values(self) -> None:
        """Settings built in code (not from flags) is held to the same bounds."""
        for kwargs in ({"interval": math.inf}, {"quarantine": math.nan}, {"max_body_bytes": 1}):
            with pytest.raises(ConfigError, match="must be between"):
                Settings(**kwargs)


class TestNewSettings:
    def test_defaults(self) -> None:
        """max_clock_skew 30 s, max_body_bytes 4 MiB, metrics on loopback, one replica."""
        s = load([])
        assert (s.max_clock_skew, s.max_body_bytes, s.metrics_host) == (30.0, 4 * 1024 * 1024, "127.0.0.1")
        assert s.replicas == 1
        assert (DEFAULT_MAX_CLOCK_SKEW, DEFAULT_MAX_BODY_BYTES) == (30.0, 4_194_304)

    @pytest.mark.parametrize(
        ("attr_name", "flag", "var", "flag_value", "env_value", "expected_flag", "expected_env"),
        [
            ("max_clock_skew", "--max-clock-skew", "SNIPER_MAX_CLOCK_SKEW", "5", "120", 5.0, 120.0),
            ("max_body_bytes", "--max-body-bytes", "SNIPER_MAX_BODY_BYTES", "65536", "1048576", 65536, 1048576),
            ("metrics_host", "--metrics-host", "SNIPER_METRICS_HOST", "0.0.0.0", "::1", "0.0.0.0", "::1"),
            ("replicas", "--replicas", "SNIPER_REPLICAS", "3", "5", 3, 5),
        ],
    )
    def test_flag_then_environment(
        self,
        attr_name: str,
        flag: str,
        var: str,
        flag_value: str,
        env_value: str,
        expected_flag: Any,
        expected_env: Any,
    ) -> None:
        """Each new setting has a flag and a variable; the flag wins."""
        assert getattr(load([flag, flag_value], {var: env_value}), attr_name) == expected_flag
        assert getattr(load([], {var: env_value}), attr_name) == expected_env

    @pytest.mark.parametrize("host", ["", " ", "http://x", "a b", "user@host"])
    def test_bad_metrics_host(self, host: str) -> None:
        """A metrics host must be a host name or address."""
        with pytest.raises(ConfigError, match="--metrics-host / SNIPER_METRICS_HOST"):
            Settings(metrics_host=host)

    def test_documented_in_readme(self) -> None:
        """The README's list of environment variables names the new ones."""
        readme = (ROOT / "README.md").read_text()
        for var in ("SNIPER_MAX_CLOCK_SKEW", "SNIPER_MAX_BODY_BYTES", "SNIPER_METRICS_HOST", "SNIPER_NATS_USER"):
            assert f"`{var}`" in readme, var


class TestUrls:
    @pytest.mark.parametrize(
        "url",
        [
            "nats://127.0.0.1:4222",
            "nats://h:4222,nats://g:4222",
            "tls://nats.example.com:4222",
            "ws://h:8080",
            "127.0.0.1:4222",
            "nats://user:p%40ss@h:4222",
            "nats://h",
        ],
    )
    def test_good_nats_urls(self, url: str) -> None:
        check_nats_url(url)

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:4222",
            "nats://",
            "nats://h:abc",
            "nats://h:0",
            "nats://h:99999",
            "nats://h:4222,",
            "not a url",
            "nats://[::1",
            "nats://h:4222?x=1",
        ],
    )
    def test_malformed_nats_url_is_a_config_error(self, url: str) -> None:
        """A --nats that cannot be a NATS URL fails before any connection, naming the flag."""
        with pytest.raises(ConfigError, match=r"--nats / SNIPER_NATS: .* is not a NATS URL like nats://"):
            check_nats_url(url)

    def test_malformed_url_message_hides_the_password(self) -> None:
        with pytest.raises(ConfigError) as caught:
            check_nats_url("http://sniper:hunter2@h:4222")
        assert "hunter2" not in str(caught.value) and "sniper:***@h:4222" in str(caught.value)

    @pytest.mark.parametrize("url", ["ftp://h:8000", "http://", "http://h:abc", "http://h:0", "http://a b:8000"])
    def test_malformed_backend_is_a_config_error(self, url: str) -> None:
        with pytest.raises(ConfigError, match="--backend / SNIPER_BACKEND"):
            Settings(backend=url)


class TestNatsAuthSettings:
    def test_flags_then_environment(self) -> None:
        """--nats-user/--nats-password win over SNIPER_NATS_USER/SNIPER_NATS_PASSWORD."""
        p = parser()
        config.add_nats_auth_arguments(p)
        env = {"SNIPER_NATS_USER": "env-user", "SNIPER_NATS_PASSWORD": "env-pw"}
        s = settings_from(p.parse_args(["--nats-user", "flag-user", "--nats-password", "flag-pw"]), env)
        assert s.nats_auth == NatsAuth("flag-user", "flag-pw")
        assert settings_from(p.parse_args([]), env).nats_auth == NatsAuth("env-user", "env-pw")
        assert settings_from(p.parse_args([]), {}).nats_auth.options() == {}

    def test_password_is_not_in_repr(self) -> None:
        s = Settings(nats_auth=NatsAuth("sniper", "hunter2"))
        assert "hunter2" not in repr(s) and "hunter2" not in repr(s.nats_auth)

    @pytest.mark.parametrize(
        ("auth", "url", "message"),
        [
            (NatsAuth(password="pw"), None, "needs --nats-user"),
            (NatsAuth(user="u", creds="/etc/hostname"), None, "not both"),
            (NatsAuth(user="u", password="p"), "nats://a:b@h:4222", "already carries credentials"),
            (NatsAuth(creds="/no/such/file.creds"), None, "not a readable file"),
        ],
    )
    def test_contradictory_credentials(self, auth: NatsAuth, url: str | None, message: str) -> None:
        with pytest.raises(ConfigError, match=message) as caught:
            auth.check(url)
        assert "p@" not in str(caught.value) and ":b@" not in str(caught.value)

    def test_creds_file_needs_nkeys(self, tmp_path: Path) -> None:
        """Without the nkeys package a creds file is a configuration error, not a traceback at connect."""
        import importlib.util

        if importlib.util.find_spec("nkeys") is not None:
            pytest.skip("nkeys is installed here")
        creds = tmp_path / "user.creds"
        creds.write_text("-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n")
        with pytest.raises(ConfigError, match="needs the 'nkeys' package"):
            NatsAuth(creds=str(creds)).check("nats://h:4222")
        assert NatsAuth(creds=str(creds)).options() == {"creds": str(creds)}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SNIPER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "SNIPER_NATS": "", **(env or {})},
    )


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.slow
class TestCommandLine:
    @pytest.mark.parametrize(
        ("args", "env", "message"),
        [
            (["--interval", "inf"], {}, "--interval / SNIPER_INTERVAL must be between 0.1 and 86400 seconds, got inf"),
            ([], {"SNIPER_INTERVAL": "1e-9"}, "between 0.1 and 86400 seconds, got 1e-09"),
            (["--interval", "90000"], {}, "got 90000"),
            (["--window", "nan"], {}, "--window / SNIPER_WINDOW"),
            (["--off-hours-interval", "-1"], {}, "--off-hours-interval / SNIPER_OFF_HOURS_INTERVAL"),
            (["--quarantine", "inf"], {}, "--quarantine / SNIPER_QUARANTINE"),
            (["--discovery-interval", "1e-9"], {}, "--discovery-interval / SNIPER_DISCOVERY_INTERVAL"),
            (["--max-clock-skew", "0"], {}, "--max-clock-skew / SNIPER_MAX_CLOCK_SKEW must be between 1 and 3600"),
            (["--max-body-bytes", "1"], {}, "must be between 65536 and 67108864 bytes"),
            (["--nats", "http://127.0.0.1:4222"], {}, "--nats / SNIPER_NATS: 'http://127.0.0.1:4222' is not a NATS"),
            (["--nats", "nats://h:4222"], {"SNIPER_BACKEND": "ftp://x"}, "--backend / SNIPER_BACKEND: 'ftp://x'"),
        ],
    )
    def test_bad_values_exit_2_with_one_line(self, args: list[str], env: dict[str, str], message: str) -> None:
        """A bad number or URL in `sniper run` exits 2 with one line quoting the bounds, before connecting."""
        env = {"SNIPER_BACKEND": "http://127.0.0.1:1", **env}
        result = run_cli("run", *args, env=env)
        assert result.returncode == 2 and message in one_line(result.stderr), result.stderr

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["run", "--for", "inf"], "positive, finite number of seconds"),
            (["run", "--for", "nan"], "positive, finite number of seconds"),
            (["replay", "x.jsonl", "--speed", "inf"], "positive, finite factor"),
        ],
    )
    def test_non_finite_durations_are_usage_errors(self, args: list[str], message: str) -> None:
        """--for and --speed refuse inf and nan: exit 2 with one line."""
        result = run_cli(*args, env={"SNIPER_BACKEND": "http://127.0.0.1:1"})
        assert result.returncode == 2 and message in one_line(result.stderr), result.stderr

    async def test_unreachable_nats_exits_2_within_the_deadline(self) -> None:
        """A closed --nats port: exit 2, one line naming the URL (password redacted), within the 5 s deadline."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        proc = await asyncio.create_subprocess_exec(
            *SNIPER,
            "run",
            "--nats",
            "nats://sniper:hunter2@127.0.0.1:1",
            "--backend",
            "http://127.0.0.1:1",
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        elapsed = loop.time() - started
        line = one_line(err.decode())
        assert proc.returncode == 2 and elapsed < 5.0 + 4.0, (proc.returncode, elapsed)
        assert line.startswith("sniper: could not connect to NATS at nats://sniper:***@127.0.0.1:1 within 5s")
        assert "hunter2" not in err.decode()

    @pytest.mark.nats
    async def test_unreachable_backend_exits_2_before_any_actor_starts(self, nats_server: EmbeddedNats) -> None:
        """NATS fine, nothing listening at --backend: exit 2 with one line naming the backend."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        proc = await asyncio.create_subprocess_exec(
            *SNIPER,
            "run",
            "--nats",
            nats_server.url,
            "--backend",
            "http://127.0.0.1:1",
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        lines = [ln for ln in err.decode().splitlines() if ln.startswith("sniper:")]
        assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in err.decode(), err.decode()
        assert lines[0].startswith("sniper: configuration error: --backend / SNIPER_BACKEND: nothing answers at")
        assert loop.time() - started < 5.0 + 4.0

    @pytest.mark.parametrize("command", [["flags", "list"], ["circuit", "list"], ["record", "--out", "-"]])
    def test_other_commands_exit_2_too(self, command: list[str]) -> None:
        """flags, circuit and record against a closed port also exit 2 with one line."""
        result = run_cli(
            *command, "--nats", "nats://127.0.0.1:1", "--nats-user", "op", env={"SNIPER_NATS_PASSWORD": "hunter2"}
        )
        assert result.returncode == 2 and "could not connect to NATS at nats://127.0.0.1:1" in one_line(result.stderr)
        assert "hunter2" not in result.stderr
