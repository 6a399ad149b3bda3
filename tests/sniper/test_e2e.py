"""End to end: the real pipeline over a real nats-server against the reference backend.

Cycles are short (fractions of a second) so each scenario takes a few seconds
of real time; waiting is always on delivered messages, never on sleeps.
"""

from __future__ import annotations

import asyncio
import glob
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from marketsim import RunningServer, StatusFault, serve
from messages import Health, Signal, Subjects
from runtime import NatsBus
from runtime.testing import Recorder
from sniper.app import run_pipeline
from sniper.config import Settings
from sniper.embedded import EmbeddedNats
from sniper.recording import read_recording

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SNIPER = [sys.executable, "-m", "sniper"]


@dataclass
class Stack:
    nats: EmbeddedNats
    backend: RunningServer
    bus: NatsBus
    signals: Recorder[Signal]
    health: Recorder[Health]


@pytest.fixture
async def stack(nats_server: EmbeddedNats) -> AsyncIterator[Stack]:
    """Embedded NATS, the reference backend on loopback, and an observer bot subscribed over NATS."""
    async with serve(port=0, seed=5) as backend:
        bus = await NatsBus.connect(nats_server.url, name="observer-bot")
        subjects = Subjects()
        signals = await Recorder[Signal](bus, subjects.signal_all(), Signal).start()
        health = await Recorder[Health](bus, subjects.health_all(), Health).start()
        yield Stack(nats_server, backend, bus, signals, health)
        await bus.close()


def settings(stack: Stack, **kw) -> Settings:
    kw.setdefault("assets", ("SOL",))
    kw.setdefault("interval", 0.4)
    kw.setdefault("window", 0.3)
    return Settings(nats=stack.nats.url, backend=stack.backend.url, **kw)


def statuses(sig: Signal) -> dict[str, str]:
    return {m: (st.reason or st.status) for m, st in sig.modules.items()}


class TestPipelineEndToEnd:
    async def test_etf_402_keeps_signals_flowing(self, stack: Stack) -> None:
        """With the backend's default ETF 402, every cycle completes with only etf degraded, then quarantined."""
        async with run_pipeline(settings(stack)):
            await stack.signals.wait_count(4)
        reasons = [statuses(sig).pop("etf") for sig in stack.signals.messages[:4]]
        assert reasons[0] == "payment_required" and set(reasons[1:]) == {"circuit_open"}
        for sig in stack.signals.messages[:4]:
            assert {m: r for m, r in statuses(sig).items() if m != "etf"} == {
                m: "ok" for m in ("whale", "heatmap", "spot_ob", "bias", "funding")
            }
            assert sig.etf_available is False and sig.complete
        assert stack.backend.sim.counters()["etf"]["requests"] == 1
        assert {h.state for h in stack.health.messages} <= {"soft_fail"}

    async def test_heatmap_500_gives_signals_without_heatmap(self, stack: Stack) -> None:
        """A failing heatmap route leaves it out of the score; other modules still count."""
        stack.backend.sim.set_fault("heatmap", StatusFault(500))
        async with run_pipeline(settings(stack)):
            await stack.signals.wait_count(2)
        for sig in stack.signals.messages[:2]:
            assert statuses(sig)["heatmap"] == "upstream_error" and "heatmap" not in sig.components
            assert statuses(sig)["whale"] == "ok" and statuses(sig)["spot_ob"] == "ok"
            assert sig.confidence == pytest.approx(0.8 / 1.15)  # whale, spot_ob, bias, funding of all 1.15

    async def test_core_down_backs_off_and_recovery_resets(self, stack: Stack) -> None:
        """All core modules down: hard failures with growing delay; one success resets the count."""
        for module in ("whale", "heatmap", "spot_ob"):
            stack.backend.sim.set_fault(module, StatusFault(503))
        async with run_pipeline(settings(stack, interval=0.2, window=0.15)):
            await stack.health.wait_for(lambda hs: any(h.consecutive_failures >= 3 for h in hs), timeout=20)
            hard = [h for h in stack.health.messages if h.state == "hard_fail"]
            assert [h.consecutive_failures for h in hard[:3]] == [1, 2, 3]
            assert hard[0].next_delay < hard[1].next_delay < hard[2].next_delay
            stack.backend.sim.clear_fault("whale")
            await stack.health.wait_for(lambda hs: hs[-1].state != "hard_fail", timeout=20)
        recovered = stack.health.messages[-1]
        assert recovered.consecutive_failures == 0 and recovered.next_delay == pytest.approx(0.2)
        assert "whale" in recovered.ok

    async def test_three_assets_at_once(self, stack: Stack) -> None:
        """SOL, BTC and ETH each get their own cycles and signals."""
        async with run_pipeline(settings(stack, assets=("SOL", "BTC", "ETH"))):
            await stack.signals.wait_for(lambda ss: {s.asset for s in ss} == {"SOL", "BTC", "ETH"} and len(ss) >= 6)
        by_asset = {a: [s.cycle for s in stack.signals.messages if s.asset == a] for a in ("SOL", "BTC", "ETH")}
        assert all(cycles[:2] == [0, 1] for cycles in by_asset.values())

    async def test_actors_split_across_processes_share_one_bus(self, stack: Stack) -> None:
        """Scheduler+assembler in one 'host' and fetchers in another still produce signals."""
        fetchers = ("whale", "etf", "heatmap", "spot_ob", "bias")
        async with (
            run_pipeline(settings(stack, actors=fetchers)),
            run_pipeline(settings(stack, actors=("scheduler", "assembler"))),
        ):
            await stack.signals.wait_count(2)
        assert statuses(stack.signals.messages[0])["whale"] == "ok"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SNIPER, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}
    )


class TestCommandLine:
    def test_demo_prints_signals_and_cleans_up(self) -> None:
        """`sniper demo --for N` prints signal lines with module statuses, exits 0, leaves no temp store."""
        pattern = os.path.join(tempfile.gettempdir(), "sniper-nats-*")
        before = set(glob.glob(pattern))
        result = run_cli("demo", "--for", "3.5", "--interval", "1", "--assets", "SOL,BTC")
        assert result.returncode == 0, result.stderr
        lines = [ln for ln in result.stdout.splitlines() if "cycle=" in ln]
        assert len(lines) >= 4 and {ln.split()[0] for ln in lines} == {"SOL", "BTC"}
        assert all(
            ("etf=degraded(payment_required)" in ln or "etf=degraded(circuit_open)" in ln) and "whale=ok" in ln
            for ln in lines
        )
        assert sum("etf=degraded(payment_required)" in ln for ln in lines) == 1, "one 402, then the quarantine"
        assert set(glob.glob(pattern)) <= before

    def test_demo_stops_cleanly_on_sigint(self) -> None:
        """Ctrl-C (SIGINT) ends the demo with exit 0, its broker gone and its temporary store removed."""
        pattern = os.path.join(tempfile.gettempdir(), "sniper-nats-*")
        before = set(glob.glob(pattern))
        with subprocess.Popen(
            [*SNIPER, "demo", "--interval", "0.5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        ) as proc:
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    if "cycle=" in line:
                        break
                assert set(glob.glob(pattern)) - before, "the demo's embedded store exists while it runs"
                proc.send_signal(signal.SIGINT)
                proc.stdout.read()
                assert proc.wait(timeout=20) == 0
            finally:
                proc.kill()
        assert set(glob.glob(pattern)) <= before

    @pytest.mark.parametrize(
        "args, env, message",
        [
            (["run", "--nats", "nats://127.0.0.1:4222"], {}, "--backend / SNIPER_BACKEND"),
            (["run", "--backend", "http://x"], {"SNIPER_INTERVAL": "abc"}, "SNIPER_INTERVAL='abc'"),
            (["run", "--backend", "http://x", "--interval", "1", "--window", "2"], {}, "--window / SNIPER_WINDOW"),
            (["run", "--backend", "http://x"], {"SNIPER_ASSETS": "sol.>"}, "SNIPER_ASSETS"),
            (["run", "--backend", "http://x", "--actors", "nope"], {}, "--actors: unknown"),
            (
                ["run", "--backend", "localhost:8000"],
                {},
                "--backend / SNIPER_BACKEND: 'localhost:8000' is not an http(s) URL",
            ),
            (
                ["record", "--nats", "nats://127.0.0.1:1", "--out", "/no/such/dir/x.jsonl"],
                {},
                "--out /no/such/dir/x.jsonl",
            ),
        ],
    )
    def test_bad_configuration_exits_2_with_one_clear_line(
        self, args: list[str], env: dict[str, str], message: str
    ) -> None:
        """A bad flag or environment value exits 2 naming it, without a traceback."""
        result = run_cli(*args, env={"SNIPER_NATS": "", **env})
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr

    @pytest.mark.parametrize(
        "content, message",
        [
            (None, "No such file or directory"),
            (b'{"t": 1, "subject": "a.b", "raw_b64": "%%%"}\n', ":1: raw_b64 is not base64"),
            (b'{"t": 1, "subject": "a b", "msg": {}}\n', ":1: 'a b' is not a subject"),
            (b'{"t": 1, "subject": "a.b", "msg": {}}\nnot json\n', ":2: not a recording line"),
        ],
        ids=["missing", "bad-base64", "bad-subject", "bad-json"],
    )
    def test_bad_recordings_fail_before_publishing(self, tmp_path: Path, content: bytes | None, message: str) -> None:
        """`sniper replay` of a missing or broken file exits 1 with the file and line, publishing nothing."""
        path = tmp_path / "rec.jsonl"
        if content is not None:
            path.write_bytes(content)
        result = run_cli("replay", str(path), "--nats", "nats://127.0.0.1:1")
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
        assert "could not connect" not in result.stderr, "the file is checked before connecting"

    async def test_busy_metrics_port_is_one_line(self, stack: Stack) -> None:
        """A --metrics-port already in use exits 1 with one line."""
        import socket as sk

        with sk.socket() as busy:
            busy.bind(("0.0.0.0", 0))
            busy.listen()
            port = busy.getsockname()[1]
            proc = await asyncio.create_subprocess_exec(
                *SNIPER,
                "run",
                "--nats",
                stack.nats.url,
                "--backend",
                stack.backend.url,
                "--metrics-port",
                str(port),
                cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 1 and b"Traceback" not in err and b"address already in use" in err.lower()

    def test_unreachable_nats_exits_2_quickly(self) -> None:
        """An unreachable NATS URL exits 2 (fix the command line or the broker), naming the URL."""
        result = run_cli("run", "--nats", "nats://127.0.0.1:1", "--backend", "http://127.0.0.1:1", timeout=30)
        assert result.returncode == 2 and "could not connect to NATS at nats://127.0.0.1:1" in result.stderr

    def test_schema_prints_every_message(self) -> None:
        """`sniper schema` prints a JSON Schema covering the wire messages."""
        import json

        result = run_cli("schema")
        doc = json.loads(result.stdout)
        assert {"Signal", "Tick", "Degraded", "ModuleData"} <= set(doc["$defs"])

    async def test_run_against_existing_nats_and_backend(self, stack: Stack) -> None:
        """`sniper run --nats --backend --assets --interval --window` serves signals to another bot."""
        proc = await asyncio.create_subprocess_exec(
            *SNIPER,
            "run",
            "--nats",
            stack.nats.url,
            "--backend",
            stack.backend.url,
            "--assets",
            "ETH",
            "--interval",
            "0.5",
            "--window",
            "0.4",
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await stack.signals.wait_for(lambda ss: any(s.asset == "ETH" for s in ss), timeout=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0

    async def test_environment_mirrors_flags(self, stack: Stack) -> None:
        """`sniper run` configured only by SNIPER_* variables behaves like the flags."""
        env = {
            **os.environ,
            "SNIPER_NATS": stack.nats.url,
            "SNIPER_BACKEND": stack.backend.url,
            "SNIPER_ASSETS": "BTC",
            "SNIPER_INTERVAL": "0.5",
            "SNIPER_WINDOW": "0.4",
        }
        proc = await asyncio.create_subprocess_exec(
            *SNIPER, "run", cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            await stack.signals.wait_for(lambda ss: any(s.asset == "BTC" for s in ss), timeout=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0

    async def test_record_then_replay_round_trips(self, nats_server: EmbeddedNats, tmp_path: Path) -> None:
        """`sniper replay` of a recording, captured by `sniper record`, gives the same messages in order."""
        source = ROOT / "tests" / "recordings" / "etf_402.jsonl"
        out = tmp_path / "copy.jsonl"
        recorder = await asyncio.create_subprocess_exec(
            *SNIPER,
            "record",
            "--nats",
            nats_server.url,
            "--out",
            str(out),
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert recorder.stderr is not None
        while b"recording" not in await asyncio.wait_for(recorder.stderr.readline(), 20):
            pass
        replayer = await asyncio.create_subprocess_exec(
            *SNIPER,
            "replay",
            str(source),
            "--nats",
            nats_server.url,
            "--speed",
            "8",
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert await asyncio.wait_for(replayer.wait(), 30) == 0
        recorder.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(recorder.wait(), 20) == 0
        original = [(ln.subject, ln.data) for ln in read_recording(source)]
        copied = [(ln.subject, ln.data) for ln in read_recording(out)]
        assert copied == original


class TestOperatorCommands:
    async def test_metrics_endpoint_counts_soft_failures(self, stack: Stack) -> None:
        """`--metrics-port` serves Prometheus text with sniper_soft_fail_total{module="etf"}."""
        import aiohttp

        async with run_pipeline(settings(stack, metrics_port=0)) as running:
            await stack.health.wait_count(2)
            assert running.metrics_url is not None
            async with aiohttp.ClientSession() as http, http.get(running.metrics_url) as resp:
                text = await resp.text()
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        (line,) = [ln for ln in text.splitlines() if ln.startswith('sniper_soft_fail_total{module="etf"}')]
        assert float(line.split()[-1]) >= 2

    async def test_flags_and_circuit_cli_against_a_running_pipeline(self, stack: Stack) -> None:
        """`sniper flags set/list` and `sniper circuit list/reset` work over NATS against a live pipeline."""

        async def cli(*args: str) -> tuple[int, str, str]:
            proc = await asyncio.create_subprocess_exec(
                *SNIPER,
                *args,
                "--nats",
                stack.nats.url,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            return proc.returncode or 0, out.decode(), err.decode()

        async with run_pipeline(settings(stack)):
            await stack.signals.wait_count(2)
            code, out, _ = await cli("circuit", "list")
            assert code == 0 and any(ln.split()[:3] == ["etf", "all", "quarantined"] for ln in out.splitlines())
            code, out, _ = await cli("flags", "set", "ETF", "off", "--why", "no plan")
            assert code == 0 and "ETF      off" in out
            code, out, _ = await cli("flags", "list")
            assert code == 0 and "ETF      off" in out and "WHALE    on" in out
            seen = len(stack.signals.messages)
            await stack.signals.wait_count(seen + 2)
            assert statuses(stack.signals.messages[-1])["etf"] == "disabled"
            code, _, err = await cli("flags", "set", "NOPE", "on")
            assert code == 1 and "unknown flag 'NOPE'" in err
            code, out, _ = await cli("circuit", "reset", "etf")
            assert code == 0


class TestSimCommand:
    def test_sniper_sim_serves_the_reference_backend(self) -> None:
        """`sniper sim --port 0` starts the backend, prints its URL, serves /openapi.json and stops on SIGTERM."""
        import json
        import urllib.request

        with subprocess.Popen(
            [*SNIPER, "sim", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT
        ) as proc:
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                url = line.split("listening on ", 1)[1].split()[0]
                with urllib.request.urlopen(url + "/openapi.json", timeout=5) as resp:
                    assert json.load(resp)["openapi"].startswith("3.1")
                proc.send_signal(signal.SIGTERM)
                proc.stdout.read()
                assert proc.wait(timeout=10) == 0
            finally:
                proc.kill()
