"""LiveState on the in-memory bus in virtual time: catch-up, validation, bounds, status refreshes, listeners."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from messages import (
    Alert,
    CircuitState,
    Health,
    ModuleStatus,
    Signal,
    StatusQuery,
    StatusReply,
    Subjects,
    decode,
    encode,
)
from messages.alerts import fingerprint
from messages.control import AssetStatus
from messages.subjects import SIGNALS_STREAM
from runtime import MemoryBus, VirtualClock
from runtime.bus import Envelope
from runtime.stream import StreamSpec
from sniper.gateway.live import CLOSED, LiveState

SUBJECTS = Subjects()
STREAM = StreamSpec(
    name=SUBJECTS.stream(SIGNALS_STREAM),
    subjects=(SUBJECTS.signal_all(),),
    max_age=86_400,
    max_bytes=1 << 20,
    max_msgs_per_subject=10,
)
EPOCH = VirtualClock.EPOCH


def signal(asset: str, cycle: int, ts: float, *, etf: str = "degraded", direction: str = "long") -> Signal:
    return Signal(
        asset=asset,
        cycle=cycle,
        ts=ts,
        started=ts - 1,
        direction=direction,  # type: ignore[arg-type]  # a Direction literal, chosen by the test
        score=0.42,
        confidence=0.87,
        etf_available=False,
        modules={
            "whale": ModuleStatus(status="ok", latency_ms=3.0),
            "etf": ModuleStatus(status=etf, reason="payment_required" if etf == "degraded" else None),  # type: ignore[arg-type]  # a status literal
        },
        epoch=1,
    )


QUARANTINE = CircuitState(
    module="etf", scope="all", state="quarantined", ts=EPOCH, until=EPOCH + 3600, cause="entitlement", detail="402"
)


@dataclass
class StatusKeeperStub:
    """Answers ``cmd.status`` with whatever the test set; records the queries."""

    reply: StatusReply = field(default_factory=lambda: StatusReply(ok=True, flags={"ETF": True, "WHALE": True}))
    queries: list[StatusQuery] = field(default_factory=list)

    async def __call__(self, bus: MemoryBus, env: Envelope) -> None:
        self.queries.append(decode(env.data, StatusQuery))
        await bus.respond(env, encode(self.reply))


@dataclass
class World:
    clock: VirtualClock
    bus: MemoryBus
    keeper: StatusKeeperStub

    async def publish(self, subject: str, data: bytes | Any) -> None:
        await self.bus.publish(subject, data if isinstance(data, bytes) else encode(data))
        await self.bus.flush()

    async def serve_status(self) -> None:
        async def on(env: Envelope) -> None:
            await self.keeper(self.bus, env)

        await self.bus.subscribe(SUBJECTS.command("status"), on)

    async def live(self, **options: Any) -> LiveState:
        state = LiveState(clock=self.clock, **options)
        await state.start(self.bus, SUBJECTS)
        self._started.append(state)
        return state

    _started: list[LiveState] = field(default_factory=list)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    clock = VirtualClock()
    bus = MemoryBus(clock=clock)
    w = World(clock, bus, StatusKeeperStub())
    yield w
    for state in w._started:
        await state.stop()
    await bus.close()


def drain(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


class TestCatchUp:
    async def test_the_stream_gives_each_assets_newest_signal_at_start(self, world: World) -> None:
        """Signals stored before start: the newest per asset, its age on the clock, flags and breakers from status."""
        await world.bus.ensure_stream(STREAM)
        for sig in (signal("SOL", 1, EPOCH - 20), signal("SOL", 2, EPOCH - 10), signal("BTC", 7, EPOCH - 4)):
            await world.publish(SUBJECTS.signal(sig.asset), sig)
        await world.serve_status()
        world.keeper.reply = StatusReply(
            ok=True,
            assets={"SOL": AssetStatus(circuits=[QUARANTINE]), "BTC": AssetStatus(circuits=[QUARANTINE])},
            flags={"WHALE": True, "ETF": False},
        )
        live = await world.live()
        snap = live.snapshot()
        assert live.source == "stream" and snap["source"] == "stream" and snap["stream"] == "sniper_signals"
        assert {a: e["cycle"] for a, e in snap["assets"].items()} == {"BTC": 7, "SOL": 2}
        assert snap["assets"]["SOL"]["age"] == 10 and snap["assets"]["BTC"]["age"] == 4
        assert snap["assets"]["SOL"]["modules"]["etf"] == {
            "status": "degraded",
            "reason": "payment_required",
            "latency_ms": None,
            "source": "backend",
        }
        assert snap["modules"] == ["etf", "whale"]
        assert snap["flags"] == {"ETF": False, "WHALE": True}
        assert [(b["module"], b["scope"], b["state"]) for b in snap["breakers"]] == [("etf", "all", "quarantined")]
        assert snap["status"] == {"at": EPOCH, "error": None}
        await world.clock.advance(3)
        assert live.snapshot()["assets"]["BTC"]["age"] == 7  # ages follow the injected clock

    async def test_the_stream_redelivers_nothing_twice(self, world: World) -> None:
        """The stream's replay of what `last_per_subject` read is not a change; a new signal is one."""
        await world.bus.ensure_stream(STREAM)
        await world.publish(SUBJECTS.signal("SOL"), signal("SOL", 1, EPOCH - 5))
        live = await world.live()
        changes = live.subscribe()
        await world.bus.flush()
        assert drain(changes) == [] and live.stats.signals == 1
        await world.publish(SUBJECTS.signal("SOL"), signal("SOL", 2, EPOCH))
        [change] = drain(changes)
        assert change["type"] == "signal" and change["asset"] == "SOL" and change["entry"]["cycle"] == 2
        assert change["ts"] == EPOCH and change["entry"]["age"] == 0

    async def test_without_the_stream_it_follows_live_and_says_so(
        self, world: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        """No stream: one warning naming it, a live subscription, and the next signal shows."""
        with caplog.at_level(logging.WARNING, logger="sniper"):
            live = await world.live()
        [line] = [r for r in caplog.records if r.getMessage() == "signal_stream_unavailable"]
        assert line.fields["stream"] == "sniper_signals"  # type: ignore[attr-defined]
        assert live.source == "live" and live.snapshot()["assets"] == {}
        await world.publish(SUBJECTS.signal("ETH"), signal("ETH", 3, EPOCH))
        assert list(live.snapshot()["assets"]) == ["ETH"]

    async def test_the_status_reply_catches_up_where_the_stream_is_missing(self, world: World) -> None:
        """A signal in the status reply counts (the newer one wins)."""
        await world.serve_status()
        world.keeper.reply = StatusReply(ok=True, assets={"SOL": AssetStatus(signal=signal("SOL", 9, EPOCH - 2))})
        live = await world.live()
        assert live.snapshot()["assets"]["SOL"]["cycle"] == 9


class TestChecks:
    async def test_what_is_not_a_valid_newer_signal_is_refused_and_counted(self, world: World) -> None:
        """Garbage, a signal on another asset's subject, one from the future: counted; an older one: stale."""
        live = await world.live()
        await world.publish(SUBJECTS.signal("SOL"), signal("SOL", 5, EPOCH))
        await world.publish(SUBJECTS.signal("SOL"), b'{"type": "signal", "asset": "SOL"}')
        await world.publish(SUBJECTS.signal("SOL"), b"\xff not json")
        await world.publish(SUBJECTS.signal("SOL"), signal("BTC", 1, EPOCH))
        await world.publish(SUBJECTS.signal("SOL"), signal("SOL", 6, EPOCH + 3600))
        await world.publish(SUBJECTS.signal("SOL"), signal("SOL", 4, EPOCH - 60))
        assert live.stats.bad_messages == 4 and live.stats.stale == 1
        assert {a: e["cycle"] for a, e in live.snapshot()["assets"].items()} == {"SOL": 5}

    async def test_only_the_first_max_assets_are_kept(self, world: World, caplog: pytest.LogCaptureFixture) -> None:
        """Past the cap a new asset is counted and logged once; known assets still update."""
        live = await world.live(max_assets=2)
        with caplog.at_level(logging.WARNING, logger="sniper"):
            for n, asset in enumerate(["SOL", "BTC", "ETH", "XRP", "SOL"]):
                await world.publish(SUBJECTS.signal(asset), signal(asset, n, EPOCH))
        assert sorted(live.signals) == ["BTC", "SOL"] and live.signals["SOL"].cycle == 4
        assert live.stats.dropped_assets == 2
        assert [r.getMessage() for r in caplog.records].count("live_assets_capped") == 1

    async def test_one_asset_asked_is_one_subject_and_one_status_query(self, world: World) -> None:
        """`assets=["sol"]`: BTC never shows, and cmd.status is asked for SOL."""
        await world.serve_status()
        live = await world.live(assets=["sol"])
        await world.publish(SUBJECTS.signal("BTC"), signal("BTC", 1, EPOCH))
        await world.publish(SUBJECTS.signal("SOL"), signal("SOL", 1, EPOCH))
        assert list(live.snapshot()["assets"]) == ["SOL"]
        assert world.keeper.queries == [StatusQuery(asset="SOL")]

    async def test_health_and_alerts_are_kept_bounded(self, world: World) -> None:
        """Health joins its asset's entry; alerts are kept by fingerprint, the newest `max_alerts`."""
        live = await world.live(max_alerts=2)
        await world.publish(SUBJECTS.signal("SOL"), signal("SOL", 1, EPOCH))
        health = Health(asset="SOL", cycle=1, ts=EPOCH, state="hard_fail", consecutive_failures=3, next_delay=20)
        await world.publish(SUBJECTS.health("SOL"), health)
        for n, asset in enumerate(["SOL", "BTC", "ETH"]):
            labels = {"alertname": "core_down", "asset": asset}
            alert = Alert(
                name="core_down",
                state="firing",
                labels=labels,
                fingerprint=fingerprint(labels),
                starts_at=EPOCH,
                ts=EPOCH + n,
            )
            await world.publish(SUBJECTS.alert("core_down"), alert)
        snap = live.snapshot()
        assert snap["assets"]["SOL"]["health"]["state"] == "hard_fail"
        assert [a["labels"]["asset"] for a in snap["alerts"]] == ["ETH", "BTC"]


class TestStatusRefresh:
    async def test_refreshed_after_a_signal_but_at_most_once_per_gap(self, world: World) -> None:
        """Ten signals in a burst cost one cmd.status request after the gap, not ten."""
        await world.serve_status()
        live = await world.live(min_gap=1.0, refresh=60.0)
        assert len(world.keeper.queries) == 1
        for cycle in range(10):
            await world.publish(SUBJECTS.signal("SOL"), signal("SOL", cycle, EPOCH))
        await world.clock.advance(0.5)
        assert len(world.keeper.queries) == 1
        world.keeper.reply = StatusReply(ok=True, assets={"SOL": AssetStatus(circuits=[QUARANTINE])}, flags={})
        changes = live.subscribe()
        await world.clock.advance(0.6)
        assert len(world.keeper.queries) == 2
        [change] = drain(changes)
        assert change["type"] == "status" and change["breakers"][0]["state"] == "quarantined"
        await world.clock.advance(10)
        assert len(world.keeper.queries) == 2  # nothing new: next periodic refresh at 60 s

    async def test_a_missing_status_keeper_is_reported_and_then_recovers(
        self, world: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        """No responder: the error is in the snapshot and logged once; the periodic refresh finds it later."""
        with caplog.at_level(logging.INFO, logger="sniper"):
            live = await world.live(refresh=5.0)
            await world.clock.advance(11)
            assert "no responders" in (live.snapshot()["status"]["error"] or "")
            assert [r.getMessage() for r in caplog.records].count("status_unavailable") == 1
            assert live.stats.status_failures == 3
            await world.serve_status()
            await world.clock.advance(5)
        snap = live.snapshot()
        assert snap["status"]["error"] is None and snap["flags"] == {"ETF": True, "WHALE": True}
        assert "status_available" in [r.getMessage() for r in caplog.records]


class TestListeners:
    async def test_a_slow_listener_gets_one_snapshot_instead_of_what_it_missed(self, world: World) -> None:
        """Queue of 2, five signals: the listener holds one full snapshot with every asset."""
        live = await world.live(queue_size=2)
        slow = live.subscribe()
        for n, asset in enumerate(["SOL", "BTC", "ETH", "XRP", "ADA"]):
            await world.publish(SUBJECTS.signal(asset), signal(asset, n, EPOCH))
        held = drain(slow)
        assert held[0]["type"] == "snapshot" and sorted(held[0]["assets"]) == ["ADA", "BTC", "ETH", "SOL", "XRP"]
        assert [c["type"] for c in held[1:]] == ["signal"] * (len(held) - 1) and len(held) <= 2
        assert live.stats.resyncs >= 1

    async def test_stop_closes_every_listener(self, world: World) -> None:
        """`stop`: each queue ends with CLOSED, nothing is delivered afterwards, and a late subscriber is closed."""
        live = await world.live()
        queue = live.subscribe()
        await live.stop()
        assert drain(queue) == [dict(CLOSED)] and live.listeners == 0
        assert drain(live.subscribe()) == [dict(CLOSED)]
        await world.publish(SUBJECTS.signal("SOL"), signal("SOL", 1, EPOCH))
        assert live.signals == {}

    async def test_a_lost_broker_is_a_change(self, world: World) -> None:
        """Disconnect and reconnect reach listeners as `connection` changes; the snapshot says so too."""
        await world.serve_status()
        live = await world.live()
        queue = live.subscribe()
        world.bus.disconnect()
        assert live.snapshot()["connected"] is False
        world.bus.reconnect()
        assert [(c["type"], c["connected"]) for c in drain(queue)] == [("connection", False), ("connection", True)]
        assert live.snapshot()["connected"] is True
