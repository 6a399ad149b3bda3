"""The Alerter in virtual time: core down for `alert_for` -> one message; ETF 402 -> none; group, repeat, resolve."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from actors.alerter import Alerter, AlertPolicy
from messages import Health, ModuleStatus, Signal, decode
from messages.alerts import Alert, AlertLog, AlertReply, fingerprint
from messages.subjects import ALERTS_BUCKET
from runtime import Supervisor
from runtime.testing import Recorder

from ..harness import Harness

CORE = ("whale", "heatmap", "spot_ob")
POLICY = AlertPolicy(alert_for=60, group_wait=10, repeat=4 * 3600)


class Batches:
    """A notifier that keeps every batch it is handed."""

    name = "test"

    def __init__(self) -> None:
        self.batches: list[list[Alert]] = []

    async def notify(self, alerts: Sequence[Alert]) -> None:
        self.batches.append(list(alerts))

    def states(self) -> list[list[tuple[str, str, str]]]:
        return [[(a.name, a.labels.get("asset", "-"), a.state) for a in batch] for batch in self.batches]


class Feed:
    """Publishes what the scheduler and assembler would, one cycle every `interval` seconds."""

    def __init__(self, harness: Harness, interval: float = 5.0) -> None:
        self.harness = harness
        self.interval = interval
        self.cycle = 0

    async def cycle_of(
        self, states: dict[str, str], reason: str = "upstream_error", etf: str = "payment_required"
    ) -> None:
        now = self.harness.clock.now()
        for asset, state in states.items():
            core = {m: ModuleStatus(status="degraded", reason=reason) for m in CORE} if state == "hard_fail" else {
                m: ModuleStatus(status="ok", latency_ms=1.0) for m in CORE
            }  # fmt: skip
            modules = {**core, "etf": ModuleStatus(status="degraded", reason=etf)}
            signal = Signal(
                asset=asset,
                cycle=self.cycle,
                ts=now,
                started=now,
                direction="flat",
                score=0.0,
                confidence=0.0,
                modules=modules,
                etf_available=False,
            )
            await self.harness.forge(self.harness.subjects.signal(asset), signal)
            health = Health(asset=asset, cycle=self.cycle, ts=now, state=state, consecutive_failures=0, next_delay=5)  # type: ignore[arg-type]
            await self.harness.forge(self.harness.subjects.health(asset), health)
        self.cycle += 1

    async def run(self, seconds: float, states: dict[str, str], **kw: str) -> None:
        for _ in range(int(seconds / self.interval)):
            await self.cycle_of(states, **kw)
            await self.harness.clock.sleep(self.interval)


def alerter(assets: tuple[str, ...], notifier: Batches, policy: AlertPolicy = POLICY) -> Alerter:
    return Alerter(assets, core=CORE, policy=policy, notifiers=[notifier])


class TestWhenToTell:
    async def test_an_hour_of_etf_402_sends_nothing(self, harness: Harness) -> None:
        """Optional modules never alert: an hour of ETF payment_required with core fine gives 0 messages."""
        notes = Batches()
        async with Supervisor(harness.ctx, [alerter(("SOL",), notes)]):
            await Feed(harness).run(3600, {"SOL": "soft_fail"})
        assert notes.batches == []

    async def test_core_down_is_told_once_after_alert_for(self, harness: Harness) -> None:
        """Core down: nothing for the first minute, one message after alert_for + group_wait, no second one."""
        notes = Batches()
        feed = Feed(harness)
        async with Supervisor(harness.ctx, [alerter(("SOL",), notes)]):
            await feed.run(55, {"SOL": "hard_fail"})
            assert notes.batches == []
            await feed.run(600, {"SOL": "hard_fail"})
        assert notes.states() == [[("core_down", "SOL", "firing")]]

    async def test_one_bad_cycle_is_not_an_incident(self, harness: Harness) -> None:
        """Down for 30 s, then back: never fires, nothing sent."""
        notes = Batches()
        feed = Feed(harness)
        async with Supervisor(harness.ctx, [alerter(("SOL",), notes)]):
            await feed.run(30, {"SOL": "hard_fail"})
            await feed.run(300, {"SOL": "healthy"})
        assert notes.batches == []

    async def test_still_down_after_the_repeat_interval_is_told_again(self, harness: Harness) -> None:
        """An unresolved alert repeats once per repeat interval (4 h)."""
        notes = Batches()
        async with Supervisor(harness.ctx, [alerter(("SOL",), notes)]):
            await Feed(harness, interval=60).run(4 * 3600 + 600, {"SOL": "hard_fail"})
        assert notes.states() == [[("core_down", "SOL", "firing")]] * 2

    async def test_recovery_sends_one_resolved(self, harness: Harness) -> None:
        """When a core module is back, one resolved message follows the firing one."""
        notes = Batches()
        feed = Feed(harness)
        async with Supervisor(harness.ctx, [alerter(("SOL",), notes)]):
            await feed.run(120, {"SOL": "hard_fail"})
            await feed.run(120, {"SOL": "healthy"})
        assert notes.states() == [[("core_down", "SOL", "firing")], [("core_down", "SOL", "resolved")]]

    async def test_three_assets_down_together_are_one_message(self, harness: Harness) -> None:
        """Assets crossing alert_for within group_wait are grouped into one notification."""
        notes = Batches()
        assets = ("SOL", "BTC", "ETH")
        async with Supervisor(harness.ctx, [alerter(assets, notes)]):
            await Feed(harness).run(300, dict.fromkeys(assets, "hard_fail"))
        (batch,) = notes.batches
        assert sorted(a.labels["asset"] for a in batch) == sorted(assets)


class TestInhibition:
    async def test_backend_unreachable_is_one_backend_down(self, harness: Harness) -> None:
        """Every asset down with connection failures: one backend_down, no per-asset messages."""
        notes = Batches()
        assets = ("SOL", "BTC")
        async with Supervisor(harness.ctx, [alerter(assets, notes)]):
            await Feed(harness).run(300, dict.fromkeys(assets, "hard_fail"), reason="unreachable")
        assert notes.states() == [[("backend_down", "-", "firing")]]

    async def test_an_http_error_is_not_an_unreachable_backend(self, harness: Harness) -> None:
        """Every asset down with 5xx answers: the backend answers, so per-asset alerts go out."""
        notes = Batches()
        assets = ("SOL", "BTC")
        async with Supervisor(harness.ctx, [alerter(assets, notes)]):
            await Feed(harness).run(300, dict.fromkeys(assets, "hard_fail"), reason="upstream_error")
        assert sorted(s for batch in notes.states() for s in batch) == [
            ("core_down", "BTC", "firing"),
            ("core_down", "SOL", "firing"),
        ]


class TestNotificationLog:
    async def test_a_restart_mid_incident_neither_repeats_nor_forgets(self, harness: Harness) -> None:
        """Alerter restarted while SOL is down: no second firing message; the recovery is still told."""
        notes = Batches()
        feed = Feed(harness)
        async with Supervisor(harness.ctx, [alerter(("SOL",), notes)]):
            await feed.run(120, {"SOL": "hard_fail"})
        async with Supervisor(harness.ctx, [alerter(("SOL",), notes)]):
            await feed.run(120, {"SOL": "hard_fail"})
            await feed.run(60, {"SOL": "healthy"})
        assert notes.states() == [[("core_down", "SOL", "firing")], [("core_down", "SOL", "resolved")]]

    async def test_two_alerters_send_once(self, harness: Harness) -> None:
        """Two replicas on one bus and bucket: each notification is sent by exactly one of them."""
        first, second = Batches(), Batches()
        feed = Feed(harness)
        pair = [
            alerter(("SOL",), first),
            Alerter(("SOL",), core=CORE, policy=POLICY, notifiers=[second], name="alerter-2"),
        ]
        async with Supervisor(harness.ctx, pair):
            await feed.run(120, {"SOL": "hard_fail"})
            await feed.run(60, {"SOL": "healthy"})
        assert sorted(first.states() + second.states()) == [
            [("core_down", "SOL", "firing")],
            [("core_down", "SOL", "resolved")],
        ]

    async def test_the_log_holds_the_notification(self, harness: Harness) -> None:
        """The alerts bucket keeps the entry under the alert's fingerprint, with when it was told."""
        notes = Batches()
        async with Supervisor(harness.ctx, [alerter(("SOL",), notes)]):
            await Feed(harness).run(120, {"SOL": "hard_fail"})
        fp = fingerprint({"alertname": "core_down", "asset": "SOL"})
        entry = await (await harness.bus.key_value(harness.subjects.kv_bucket(ALERTS_BUCKET))).get(fp)
        assert entry is not None and entry.value is not None
        log = decode(entry.value, AlertLog)
        assert log.notified_at is not None and log.notifications == 1 and log.alert.labels["asset"] == "SOL"


class TestOnTheBus:
    async def test_other_bots_see_firing_and_resolved(self, harness: Harness) -> None:
        """alert.core_down carries the firing and the resolved event with labels, fingerprint and times."""
        alerts = await Recorder[Alert](harness.bus, harness.subjects.alert_all(), Alert).start()
        feed = Feed(harness)
        async with Supervisor(harness.ctx, [alerter(("SOL",), Batches())]):
            await feed.run(120, {"SOL": "hard_fail"})
            await feed.run(30, {"SOL": "healthy"})
        firing, resolved = alerts.messages
        assert (firing.state, resolved.state) == ("firing", "resolved")
        assert firing.fingerprint == resolved.fingerprint == fingerprint({"alertname": "core_down", "asset": "SOL"})
        assert resolved.ends_at is not None and resolved.ends_at > firing.starts_at

    @pytest.mark.parametrize("muted", [True, False])
    async def test_mute_silences_notifiers_not_the_bus(self, harness: Harness, muted: bool) -> None:
        """While muted nothing is handed to notifiers; the NATS alert goes out either way."""
        notes = Batches()
        alerts = await Recorder[Alert](harness.bus, harness.subjects.alert_all(), Alert).start()
        actor = alerter(("SOL",), notes)
        async with Supervisor(harness.ctx, [actor]):
            if muted:
                actor.mute(3600)
            await Feed(harness).run(300, {"SOL": "hard_fail"})
        assert len(alerts.messages) == 1 and (notes.batches == []) is muted


class TestCommands:
    async def test_mute_by_command_holds_across_a_restart(self, harness: Harness) -> None:
        """`cmd.alerts` mute for an hour: both replicas stop notifying, and a restarted one still is muted."""
        notes = Batches()
        feed = Feed(harness)
        command = msgspec.json.encode({"action": "mute", "seconds": 3600})
        async with Supervisor(harness.ctx, [alerter(("SOL",), notes)]):
            env = await harness.bus.request(harness.subjects.command("alerts"), command, timeout=1)
            reply = decode(env.data, AlertReply)
            assert reply.ok and reply.muted_until == pytest.approx(harness.clock.now() + 3600)
        async with Supervisor(harness.ctx, [alerter(("SOL",), notes)]):
            await feed.run(300, {"SOL": "hard_fail"})
            env = await harness.bus.request(harness.subjects.command("alerts"), b'{"action": "list"}', timeout=1)
        assert notes.batches == []
        assert [a.labels["asset"] for a in decode(env.data, AlertReply).firing] == ["SOL"]

    @pytest.mark.parametrize("bad", [b'{"action": "mute", "seconds": -1}', b'{"action": "snooze"}', b"nope"])
    async def test_a_bad_command_is_answered_not_obeyed(self, harness: Harness, bad: bytes) -> None:
        """Bad commands get ok=false with the reason; nothing is muted."""
        actor = alerter(("SOL",), Batches())
        async with Supervisor(harness.ctx, [actor]):
            env = await harness.bus.request(harness.subjects.command("alerts"), bad, timeout=1)
        reply = decode(env.data, AlertReply)
        assert not reply.ok and reply.error and actor.muted_until == 0
