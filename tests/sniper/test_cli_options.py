"""The option table (`sniper.config.OPTIONS`) and the command line built from it.

Every flag, variable, default, range and help line of `sniper run` comes from
the table; these tests read the table, so a new option is tested as it is added.
"""

from __future__ import annotations

import argparse
import os
import re
from operator import attrgetter
from pathlib import Path

import pytest

from actors.circuit import CircuitPolicy
from actors.routing import RequestSettings
from marketsim._cli import build_parser as sim_parser
from messages import ConfigError
from runtime import logs
from sniper import cli, config
from sniper import demo as demo_module
from sniper.config import DEFAULTS, MODULES, OPTIONS, OPTIONS_BY_NAME, Option, Settings, either, log_settings_from

from .test_cli_bounds import one_line
from .test_config import load

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SETTINGS_OPTIONS = [pytest.param(opt, id=opt.name) for opt in OPTIONS if opt.group != "log"]
ALL_OPTIONS = [pytest.param(opt, id=opt.name) for opt in OPTIONS]
BOUNDED = [pytest.param(opt, id=opt.name) for opt in OPTIONS if opt.bounds is not None]
#: A private Python name in a message, such as "invalid _number value".
INTERNAL = re.compile(r"(?<![\w.-])_[A-Za-z]")


@pytest.fixture(autouse=True)
def logged(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """No SNIPER_* variable from the shell; logging set-ups recorded, not done; no pipeline ever starts."""
    for var in list(os.environ):
        if var.startswith(("SNIPER_", "FEATURE_")):
            monkeypatch.delenv(var)
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(logs, "configure", lambda level, fmt: calls.append((level, fmt)))

    async def refuse(*args: object) -> int:
        raise AssertionError("a test command line was accepted and would start the pipeline")

    monkeypatch.setattr(demo_module, "run", refuse)
    monkeypatch.setattr(demo_module, "demo", refuse)
    return calls


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`sniper.cli.main` in this process: (exit status, stdout, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        assert isinstance(exc.code, int)
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def every_flag() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    for group in ("connection", "auth", "pipeline", "alert", "fallback", "log"):
        config.add_options(p, group)
    return p


def flat(text: str) -> str:
    """Help text without argparse's line wrapping."""
    return " ".join(text.split())


class TestOptionTable:
    @pytest.mark.parametrize("opt", ALL_OPTIONS)
    def test_one_flag_per_option_with_its_help(self, opt: Option) -> None:
        """Each option is one flag whose dest is the option's name and whose help is the table's."""
        (action,) = [a for a in every_flag()._actions if a.dest == opt.name]
        assert (action.option_strings, action.help) == ([opt.flag], opt.describe())

    @pytest.mark.parametrize("opt", ALL_OPTIONS)
    def test_variable_and_flag_follow_the_name(self, opt: Option) -> None:
        """off_hours_interval is --off-hours-interval and SNIPER_OFF_HOURS_INTERVAL (--no-stagger: a switch)."""
        assert opt.var == f"SNIPER_{opt.name.upper()}"
        assert opt.flag in (f"--{opt.name.replace('_', '-')}", f"--no-{opt.name.replace('_', '-')}")

    @pytest.mark.parametrize(
        ("name", "text"),
        [
            ("interval", "time between cycles (SNIPER_INTERVAL; default 5; 0.1 to 86400 seconds)"),
            ("window", "(SNIPER_WINDOW; default 0.6 x interval, at most 3; 0.05 s to the interval)"),
            ("core", "(SNIPER_CORE; default whale,heatmap,spot_ob)"),
            ("depth", "(SNIPER_DEPTH; default 50; 1 to 1000 levels)"),
            ("max_body_bytes", "(SNIPER_MAX_BODY_BYTES; default 4194304; 65536 to 67108864 bytes)"),
            ("metrics_port", "(SNIPER_METRICS_PORT; 0 to 65535; 0: any free port)"),
            ("stagger", "(SNIPER_STAGGER=off)"),
            ("actors", "(SNIPER_ACTORS; default all)"),
            ("log_level", "(SNIPER_LOG_LEVEL; default info)"),
        ],
    )
    def test_help_shows_variable_default_and_range(self, name: str, text: str) -> None:
        """The help line is generated: variable, default and range, as the table has them."""
        assert OPTIONS_BY_NAME[name].describe().endswith(text)

    @pytest.mark.parametrize("opt", SETTINGS_OPTIONS)
    def test_settings_defaults_are_the_table_defaults(self, opt: Option) -> None:
        """A plain Settings() holds each option's default from the table."""
        assert attrgetter(opt.attr)(Settings()) == DEFAULTS[opt.attr]
        assert opt.follows is not None or DEFAULTS[opt.attr] == opt.default

    def test_defaults_the_actors_also_have_are_theirs(self) -> None:
        """Request and circuit defaults are the actors' own values, not copies."""
        s, policy = Settings(), CircuitPolicy()
        assert (s.request, s.quarantine, s.circuit_probes) == (RequestSettings(), policy.quarantine, policy.probes)

    @pytest.mark.parametrize("opt", BOUNDED)
    def test_range_message_quotes_the_table(self, opt: Option) -> None:
        """Just above the upper bound: the documented message, built from label, bounds and unit."""
        assert opt.bounds is not None
        low, high = opt.bounds
        unit = f" {opt.unit}" if opt.unit else ""
        too_big = int(high) + 1
        expected = f"{opt.label} must be between {config._show(low)} and {config._show(high)}{unit}, got {too_big}"
        with pytest.raises(ConfigError) as caught:
            load([opt.flag, str(too_big)])
        assert str(caught.value) == expected

    @pytest.mark.parametrize("opt", ALL_OPTIONS)
    def test_every_variable_is_in_the_readme(self, opt: Option) -> None:
        """The README's list of environment variables names every option's."""
        assert f"`{opt.var}`" in README


class TestLogOptions:
    @pytest.mark.parametrize(
        ("argv", "expected"),
        [
            (["--log-level", "debug", "schema"], ("debug", "console")),
            (["schema", "--log-level", "debug"], ("debug", "console")),
            (["schema", "--log-format", "json"], ("info", "json")),
            (["run", "--log-level", "DEBUG", "--log-format", "JSON"], ("debug", "json")),
            (["flags", "list", "--log-level", "warning"], ("warning", "console")),
            (["circuit", "--log-level", "error", "list"], ("error", "console")),
            (["record", "--out", "-", "--log-format", "json"], ("info", "json")),
            (["--log-level", "error", "schema", "--log-level", "debug"], ("debug", "console")),
            (["schema"], ("info", "console")),
        ],
    )
    def test_before_or_after_the_command(self, argv: list[str], expected: tuple[str, str]) -> None:
        """--log-level/--log-format work on either side of the command; the later one wins."""
        assert log_settings_from(cli.build_parser().parse_args(argv), {}) == expected

    @pytest.mark.parametrize(
        ("argv", "env", "expected"),
        [
            ([], {"SNIPER_LOG_LEVEL": "warning"}, ("warning", "console")),
            ([], {"SNIPER_LOG_FORMAT": "JSON"}, ("info", "json")),
            ([], {"SNIPER_LOG_LEVEL": ""}, ("info", "console")),
            (["--log-level", "error"], {"SNIPER_LOG_LEVEL": "debug"}, ("error", "console")),
            (["--log-format", "console"], {"SNIPER_LOG_FORMAT": "json"}, ("info", "console")),
        ],
    )
    def test_environment_then_flag(self, argv: list[str], env: dict[str, str], expected: tuple[str, str]) -> None:
        """SNIPER_LOG_LEVEL/SNIPER_LOG_FORMAT apply without a flag; a flag wins."""
        for before in (True, False):
            args = cli.build_parser().parse_args([*argv, "schema"] if before else ["schema", *argv])
            assert log_settings_from(args, env) == expected

    @pytest.mark.parametrize(("var", "value"), [("SNIPER_LOG_LEVEL", "loud"), ("SNIPER_LOG_FORMAT", "xml")])
    def test_bad_variable_exits_2_with_one_line(
        self, var: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A variable that is not a level or format: exit 2, one line naming it and the choices."""
        monkeypatch.setenv(var, value)
        code, _, err = run_main(["schema"], capsys)
        assert code == 2 and var in one_line(err) and f"got {value!r}" in err

    def test_main_configures_logging_with_them(
        self, logged: list[tuple[str, str]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`sniper schema --log-level debug --log-format json` sets up logging with both."""
        code, out, _ = run_main(["schema", "--log-level", "debug", "--log-format", "json"], capsys)
        assert (code, logged, out.startswith("{")) == (0, [("debug", "json")], True)


class TestSimCommand:
    def test_help_names_sniper_sim(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`sniper sim --help` shows `usage: sniper sim`, not python -m marketsim."""
        code, out, _ = run_main(["sim", "--help"], capsys)
        assert code == 0 and out.startswith("usage: sniper sim "), out

    def test_errors_name_sniper_sim(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A bad `sniper sim` flag exits 2 naming `sniper sim`."""
        code, _, err = run_main(["sim", "--port", "http"], capsys)
        assert code == 2 and "sniper sim: error:" in err

    def test_marketsim_keeps_its_own_name(self) -> None:
        """`python -m marketsim` is still called that."""
        assert (sim_parser().prog, sim_parser("x").prog) == ("python -m marketsim", "x")


class TestCircuitReset:
    @pytest.mark.parametrize("module", ["nope", "", "whale,etf", "orderbook"])
    def test_unknown_module_exits_2_naming_the_known_ones(
        self, module: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`sniper circuit reset nope` exits 2 with one line listing every known module."""
        code, _, err = run_main(["circuit", "reset", module, "--nats", "nats://127.0.0.1:1"], capsys)
        line = one_line(err)
        assert code == 2 and f"unknown module {module!r}" in line, err
        assert all(m in line for m in MODULES), line

    @pytest.mark.parametrize("module", [*MODULES, "WHALE", " etf "])
    def test_known_module_is_accepted(self, module: str) -> None:
        """Every module in sniper.config.MODULES is accepted, in any case."""
        args = cli.build_parser().parse_args(["circuit", "reset", module])
        assert args.module == module.strip().lower()

    @pytest.mark.parametrize(
        ("argv", "names"),
        [
            (["circuit", "reset", "--help"], either(MODULES)),
            (["flags", "set", "--help"], either([m.upper() for m in MODULES])),
        ],
    )
    def test_help_lists_the_modules(self, argv: list[str], names: str, capsys: pytest.CaptureFixture[str]) -> None:
        """The positional's help is derived from MODULES."""
        code, out, _ = run_main(argv, capsys)
        assert code == 0 and names in flat(out), out


def bad_values(opt: Option) -> list[str]:
    """Values each option refuses, at parsing or in Settings."""
    numeric = {"_number": ["abc", "-1", "1e999", "nan", ""], "_integer": ["abc", "-1", "1.5", "1e999"]}
    lists = {"assets": ["b*", ","], "core": ["nope", "whale,nope"], "actors": ["nope"]}
    return numeric.get(opt.parse.__name__, lists.get(opt.name, []))


BAD_FLAGS = [
    pytest.param(["run", opt.flag, value], opt.flag, id=f"{opt.flag}={value}")
    for opt in OPTIONS
    if opt.group == "pipeline"
    for value in bad_values(opt)
] + [
    pytest.param(argv, flag, id=" ".join(argv))
    for argv, flag in [
        (["run", "--for", "abc"], "--for"),
        (["run", "--for", "-1"], "--for"),
        (["record", "--out", "-", "--for", "soon"], "--for"),
        (["replay", "x.jsonl", "--speed", "fast"], "--speed"),
        (["demo", "--seed", "x"], "--seed"),
        (["run", "--trading-hours", "always"], "--trading-hours"),
        (["run", "--etf-proxy", "XRP"], "--etf-proxy"),
        (["flags", "set", "ETF", "maybe"], "value"),
        (["circuit", "reset", "nope"], "MODULE"),
    ]
]


class TestErrorLines:
    def test_every_numeric_and_list_option_is_covered(self) -> None:
        """The parametrization below reaches each number and list option of the table."""
        covered = {p.values[1] for p in BAD_FLAGS}
        wanted = {o.flag for o in OPTIONS if o.group == "pipeline" and (o.bounds or o.name in ("assets", "core"))}
        assert wanted <= covered

    @pytest.mark.parametrize(("argv", "flag"), BAD_FLAGS)
    def test_one_line_naming_the_flag_and_no_internals(
        self, argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A refused value: exit 2, one line naming the flag, no private function name or repr in it."""
        code, _, err = run_main(argv, capsys)
        line = one_line(err)
        assert code == 2 and flag in line, err
        assert not INTERNAL.search(line) and "<function" not in line, line
        assert not re.search(r"invalid \S+ value", line), line  # argparse's wording for a failed type
