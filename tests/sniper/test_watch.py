"""`sniper watch --once` as a subprocess against a real pipeline, anonymous and as the read-only bot user."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from marketsim import serve
from messages import Signal, Subjects
from runtime import NatsBus
from runtime.testing import Recorder, wait_until
from sniper.app import run_pipeline
from sniper.config import NatsAuth, Settings
from sniper.embedded import EmbeddedNats
from sniper.gateway.live import LiveState
from sniper.watch import age

from .test_auth import ENV, PASSWORDS, Secured, violations

ROOT = Path(__file__).resolve().parents[2]
SNIPER = [sys.executable, "-m", "sniper"]
SUBJECTS = Subjects()
pytestmark = pytest.mark.nats


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SNIPER, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, **(env or {})}
    )


def rows(stdout: str) -> dict[str, list[str]]:
    """The table's rows by asset: the cells between rich's box characters."""
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if cells and re.fullmatch(r"[A-Z0-9]+", cells[0]) and cells[0] != "asset":
            found[cells[0]] = cells
    return found


def header(stdout: str) -> list[str]:
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if cells[:1] == ["asset"]:
            return cells
    raise AssertionError(f"no header in {stdout!r}")


async def ran(url: str, settings: Settings, observer: NatsBus) -> dict[str, Signal]:
    """Run the pipeline until each asset had cycle 1, then return the last signal of each (pipeline still up)."""
    signals = await Recorder[Signal](observer, SUBJECTS.signal_all(), Signal).start()
    await signals.wait_for(lambda msgs: {s.asset for s in msgs if s.cycle >= 1} == set(settings.assets))
    return {s.asset: s for s in sorted(signals.messages, key=lambda s: s.cycle)}


@pytest.fixture
async def backend_url() -> AsyncIterator[str]:
    async with serve(port=0, seed=5) as backend:
        yield backend.url


class TestOnce:
    async def test_the_table_shows_each_asset_its_direction_and_modules(
        self, nats_server: EmbeddedNats, backend_url: str
    ) -> None:
        """Against a running pipeline: one row per asset with its direction and every module's status; exit 0."""
        settings = Settings(nats=nats_server.url, backend=backend_url, assets=("SOL", "BTC"), interval=0.5, window=0.3)
        observer = await NatsBus.connect(nats_server.url, name="observer")
        try:
            async with run_pipeline(settings):
                last = await ran(nats_server.url, settings, observer)
                done = await asyncio.to_thread(cli, "watch", "--once", "--nats", nats_server.url)
        finally:
            await observer.close()
        assert done.returncode == 0, done.stderr
        head, table = header(done.stdout), rows(done.stdout)
        assert sorted(table) == ["BTC", "SOL"]
        modules = sorted(last["SOL"].modules)
        assert head[7 : 7 + len(modules)] == modules
        for asset, cells in table.items():
            assert cells[2] in ("LONG", "SHORT", "FLAT") and int(cells[1]) >= last[asset].cycle
            statuses = dict(zip(modules, cells[7 : 7 + len(modules)], strict=True))
            assert statuses["whale"] == "ok"
            assert re.fullmatch(r"degraded\((payment_required|circuit_open)\)", statuses["etf"])
            assert "etf quarantined" in cells[-1]  # the 402's module-wide breaker, from cmd.status
        assert re.search(r"^flags: BIAS=on ETF=on .*WHALE=on", done.stdout, re.M)

    async def test_one_asset(self, nats_server: EmbeddedNats, backend_url: str) -> None:
        """`--asset sol` shows SOL alone (read from the stream after the pipeline stopped: no status keeper)."""
        settings = Settings(nats=nats_server.url, backend=backend_url, assets=("SOL", "BTC"), interval=0.5, window=0.3)
        observer = await NatsBus.connect(nats_server.url, name="observer")
        try:
            async with run_pipeline(settings):
                await ran(nats_server.url, settings, observer)
        finally:
            await observer.close()
        done = await asyncio.to_thread(cli, "watch", "--once", "--asset", "sol", "--nats", nats_server.url)
        assert done.returncode == 0, done.stderr
        assert list(rows(done.stdout)) == ["SOL"]
        assert "status query failing" in done.stdout and "no responders" in done.stdout

    async def test_nothing_known_exits_1_with_one_line(self, nats_server: EmbeddedNats) -> None:
        """No stream, no status keeper: exit 1 and a line saying why nothing is known."""
        done = await asyncio.to_thread(cli, "watch", "--once", "--nats", nats_server.url)
        assert done.returncode == 1 and done.stdout == ""
        [line] = [x for x in done.stderr.splitlines() if x.startswith("sniper: watch:")]
        assert "no signal known" in line and "there is no stream sniper_signals" in line and "no responders" in line


class TestAsBot:
    async def test_the_bot_user_watches_without_a_permission_violation(self, backend_url: str) -> None:
        """Server from nats.conf, pipeline as `sniper`: `watch --once` as `bot` shows the table, nothing refused."""
        async with EmbeddedNats(config=ROOT / "nats.conf", env=ENV) as server:
            secured = Secured(server)
            settings = Settings(
                nats=secured.url(),
                nats_auth=NatsAuth("sniper", PASSWORDS["sniper"]),
                backend=backend_url,
                assets=("SOL",),
                interval=0.5,
                window=0.3,
            )
            bot = await secured.connect("bot")
            try:
                async with run_pipeline(settings):
                    await ran(secured.url(), settings, bot)
                    live = LiveState()
                    await live.start(bot, SUBJECTS)  # in process too, to read the bus's own count
                    seen = live.stats.signals
                    # one more signal, and the status refresh it brings: every read a watcher makes, made
                    await wait_until(lambda: live.stats.signals > seen and live.stats.status_requests >= 2, timeout=10)
                    await bot.flush()
                    snapshot = live.snapshot()
                    await live.stop()
                    done = await asyncio.to_thread(
                        cli,
                        "watch",
                        "--once",
                        "--nats",
                        secured.url(),
                        "--nats-user",
                        "bot",
                        env={"SNIPER_NATS_PASSWORD": PASSWORDS["bot"]},
                    )
            finally:
                await bot.close()
        assert violations(bot) == [] and bot.stats.permission_violations == 0
        assert snapshot["source"] == "stream" and snapshot["status"]["error"] is None and "ETF" in snapshot["flags"]
        assert done.returncode == 0, done.stderr
        assert list(rows(done.stdout)) == ["SOL"]
        assert "refused" not in done.stderr.lower() and "violation" not in done.stderr.lower()
        assert PASSWORDS["bot"] not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0s"), (59.9, "59s"), (65, "1m05s"), (3725, "1h02m"), (90000, "1d01h"), (-3, "0s")]
)
def test_ages_read_like_durations(seconds: float, shown: str) -> None:
    assert age(seconds) == shown
