"""Command line parsing and a real ``python -m marketsim`` process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from marketsim import EnvelopeFault, LatencyFault, OversizeFault, Simulator, StatusFault, TimeoutFault
from marketsim._cli import CliOptions, parse_args

ROOT = Path(__file__).resolve().parents[2]


class TestParseArgs:
    def test_defaults(self):
        """No flags: 127.0.0.1:8000, seed 0, seed flavor, spec on, default faults."""
        assert parse_args([]) == CliOptions()

    @pytest.mark.parametrize(
        ("argv", "field", "value"),
        [
            (["--host", "0.0.0.0"], "host", "0.0.0.0"),
            (["--port", "0"], "port", 0),
            (["--port", "65535"], "port", 65535),
            (["--seed", "42"], "seed", 42),
            (["--flavor", "v2"], "flavor", "v2"),
            (["--flavor", "guessed"], "flavor", "guessed"),
            (["--no-spec"], "spec", False),
            (["--no-default-faults"], "default_faults", False),
            (["--access-log"], "access_log", True),
        ],
    )
    def test_flags(self, argv, field, value):
        """Each flag sets its option."""
        assert getattr(parse_args(argv), field) == value

    def test_faults_combine_per_module(self):
        """Repeated --fault flags accumulate per module, in order."""
        options = parse_args(
            [
                "--fault",
                "whale=latency:200",
                "--fault",
                "whale=status:429:retry_after=30",
                "--fault",
                "bias=envelope",
                "--fault",
                "etf=timeout",
                "--fault",
                "spot_ob=oversize:levels=1000000",
            ]
        )
        assert options.faults == {
            "whale": [LatencyFault(ms=200), StatusFault(status=429, retry_after=30)],
            "bias": [EnvelopeFault()],
            "etf": [TimeoutFault()],
            "spot_ob": [OversizeFault(levels=1_000_000)],
        }

    def test_options_build_a_simulator(self):
        """``simulator_kwargs()`` feeds Simulator; CLI faults replace defaults."""
        options = parse_args(["--seed", "9", "--flavor", "v2", "--fault", "etf=status:503"])
        sim = Simulator(**options.simulator_kwargs())
        assert (sim.seed, sim.flavor) == (9, "v2")
        assert sim.faults()["etf"] == [StatusFault(status=503)]

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--flavor", "v9"], "invalid choice: 'v9'"),
            (["--port", "70000"], "must be 0..65535"),
            (["--port", "http"], "not an integer"),
            (["--seed", "x"], "invalid int value"),
            (["--fault", "etf"], "expected MODULE=SPEC"),
            (["--fault", "orderbook=timeout"], "unknown module 'orderbook'"),
            (["--fault", "etf=status:200"], ">= 400"),
            (["--fault", "etf=latency:-1"], ">= 0"),
            (["--fault", "whale=timeout:5"], "unexpected value '5'"),
            (["--fault", "whale=boom"], "Invalid value 'boom'"),
            (["--bogus"], "unrecognized arguments"),
        ],
    )
    def test_errors_exit_2(self, capsys, argv, message):
        """Bad flags exit with status 2 and say what is wrong."""
        with pytest.raises(SystemExit) as info:
            parse_args(argv)
        assert info.value.code == 2
        assert message in capsys.readouterr().err


class TestProcess:
    async def test_serves_on_port_0_and_stops_on_sigterm(self, session):
        """``python -m marketsim --port 0`` prints its URL, serves, exits 0 on SIGTERM."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "marketsim",
            "--port",
            "0",
            "--flavor",
            "v2",
            "--no-default-faults",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
            match = re.search(r"listening on (http://127\.0\.0\.1:(\d+))", line)
            assert match and int(match.group(2)) > 0, line
            url = match.group(1)
            async with session.get(url + "/healthz") as response:
                assert await response.json() == {"ok": True}
            async with session.get(url + "/api/v2/flows/etf/BTC") as response:
                assert response.status == 200
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 10)
        assert code == 0

    async def test_bad_flag_exits_2(self):
        """A bad flag fails fast with exit status 2 and a usage message."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "marketsim",
            "--fault",
            "etf=nope",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 2 and b"invalid fault" in err
