"""Alerts end to end over a real nats-server, the reference backend and fake Telegram/Alertmanager servers (HTTP)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from marketsim import StatusFault, serve
from messages import Alert, Subjects
from runtime import NatsBus
from runtime.testing import Recorder, wait_until
from sniper.app import run_pipeline
from sniper.config import AlertSettings, Settings
from sniper.embedded import EmbeddedNats

from ..fakes.alertmanager import FakeAlertmanager
from ..fakes.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]
SNIPER = [sys.executable, "-m", "sniper"]
pytestmark = pytest.mark.nats


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SNIPER, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, **(env or {})}
    )


class TestEndToEnd:
    async def test_core_down_reaches_telegram_and_alertmanager_once_then_resolves(
        self, nats_server: EmbeddedNats
    ) -> None:
        """Core modules failing at the backend: one Telegram message, then one resolved; other bots see both."""
        async with serve(port=0, seed=5) as backend, FakeTelegram() as telegram, FakeAlertmanager() as manager:
            for module in ("whale", "heatmap", "spot_ob"):
                backend.sim.set_fault(module, StatusFault(503))
            observer = await NatsBus.connect(nats_server.url, name="bot")
            alerts = await Recorder[Alert](observer, Subjects().alert_all(), Alert).start()
            alert = AlertSettings(
                alert_for=1.0,
                group_wait=0.5,
                repeat=3600.0,
                telegram_token=telegram.token,
                telegram_chats=("-100123:7",),
                telegram_api=telegram.url,
                alertmanager=manager.url,
            )
            settings = Settings(
                nats=nats_server.url, backend=backend.url, interval=0.3, window=0.2, alert=alert, assets=("SOL",)
            )
            async with run_pipeline(settings):
                await wait_until(lambda: telegram.delivered, timeout=30)
                for module in ("whale", "heatmap", "spot_ob"):
                    backend.sim.clear_fault(module)
                await wait_until(lambda: len(telegram.delivered) >= 2, timeout=30)
            await observer.close()
        first, second = telegram.delivered[:2]
        assert "core_down" in first.text and first.parse_mode == "HTML" and first.thread_id == 7
        assert "resolved" in second.text.lower()
        assert [(a.name, a.state) for a in alerts.messages] == [("core_down", "firing"), ("core_down", "resolved")]
        assert {a["labels"]["alertname"] for a in manager.alerts} == {"core_down"}
        assert any(a.get("endsAt") for a in manager.alerts)


class TestAlertTestCommand:
    async def test_a_test_message_is_sent_and_reported(self) -> None:
        """`sniper alert test` sends one message per chat and says so; exit 0."""
        async with FakeTelegram() as telegram:
            env = {"SNIPER_TELEGRAM_TOKEN": telegram.token, "SNIPER_TELEGRAM_API": telegram.url}
            done = await asyncio.to_thread(cli, "alert", "test", "--telegram-chat=-100123,-100456:9", env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.count(": sent: message") == 2
        assert [m.chat_id for m in telegram.delivered] == [-100123, -100456]
        assert telegram.token not in done.stdout + done.stderr

    async def test_a_refusal_is_reported_with_its_reason(self) -> None:
        """Telegram answering 429: FAILED with the retry_after, exit 1, the token never printed."""
        async with FakeTelegram() as telegram:
            telegram.script.default = FakeTelegram.too_many(7)
            env = {"SNIPER_TELEGRAM_TOKEN": telegram.token, "SNIPER_TELEGRAM_API": telegram.url}
            done = await asyncio.to_thread(cli, "alert", "test", "--telegram-chat=-100123", env=env)
        assert done.returncode == 1
        assert "FAILED" in done.stdout and "retry after 7 s" in done.stdout
        assert telegram.token not in done.stdout + done.stderr

    async def test_alertmanager_gets_a_test_alert(self) -> None:
        """With --alertmanager only, one test alert is posted there."""
        async with FakeAlertmanager() as manager:
            done = await asyncio.to_thread(cli, "alert", "test", "--alertmanager", manager.url)
        assert done.returncode == 0, done.stdout + done.stderr
        assert [a["labels"]["alertname"] for a in manager.alerts] == ["test"]

    def test_nothing_configured_says_so(self) -> None:
        """Without a sender: exit 1 and one line saying alerts are only logged and published."""
        done = cli("alert", "test", env={"SNIPER_TELEGRAM_TOKEN": "", "SNIPER_ALERTMANAGER": ""})
        assert done.returncode == 1 and "no sender configured" in done.stderr
