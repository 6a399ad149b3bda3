"""The read-only status query: each asset's last signal and held breakers, every flag; nothing else is kept."""

from __future__ import annotations

import msgspec
import pytest

from actors.status import StatusKeeper
from messages import (
    CircuitState,
    FlagChanged,
    FlagCommand,
    ModuleStatus,
    Signal,
    StatusQuery,
    StatusReply,
    decode,
    encode,
)
from messages._base import MAX_STATUS_ASSETS
from messages.subjects import CIRCUITS_BUCKET, FLAGS_BUCKET

from .. import samples
from ..harness import Harness

ETF = samples.PATHS["etf"]
ASSETS = ("BTC", "SOL")


async def status(harness: Harness, query: bytes = b"{}") -> StatusReply:
    env = await harness.bus.request(harness.subjects.command("status"), query, timeout=1)
    return decode(env.data, StatusReply)


def last_signal(harness: Harness, asset: str) -> Signal:
    return [s for s in harness.signals.messages if s.asset == asset][-1]


class TestContent:
    async def test_each_asset_shows_its_last_signal_and_every_flag(self, harness: Harness) -> None:
        """After a few cycles: per asset the newest signal as published, no breaker, all flags on."""
        async with harness.run(assets=ASSETS):
            await harness.clock.sleep(16)
            reply = await status(harness)
            assert reply.ok and reply.ts == harness.clock.now() and reply.omitted == 0
            assert sorted(reply.assets) == list(ASSETS)
            for asset in ASSETS:
                shown = reply.assets[asset]
                assert shown.signal == last_signal(harness, asset) and shown.signal.cycle >= 2
                assert shown.circuits == []
            assert reply.flags == {flag: True for flag in harness.actor("status", StatusKeeper).defaults}

    async def test_one_asset_when_asked(self, harness: Harness) -> None:
        """`{"asset": "SOL"}` answers for SOL alone, with the flags."""
        async with harness.run(assets=ASSETS):
            await harness.clock.sleep(6)
            reply = await status(harness, encode(StatusQuery(asset="SOL")))
            assert list(reply.assets) == ["SOL"] and reply.assets["SOL"].signal == last_signal(harness, "SOL")
            assert "ETF" in reply.flags

    async def test_a_quarantine_holds_back_every_asset(self, harness: Harness) -> None:
        """ETF answering 402: the module-wide quarantine shows under each asset, with its cause."""
        harness.backend.fail(ETF, 402)
        async with harness.run(assets=ASSETS):
            await harness.clock.sleep(11)
            reply = await status(harness)
        for asset in ASSETS:
            (held,) = reply.assets[asset].circuits
            assert (held.module, held.scope, held.state, held.cause) == ("etf", "all", "quarantined", "entitlement")
            sig = reply.assets[asset].signal
            assert sig is not None and sig.modules["etf"].reason == "circuit_open"

    async def test_a_reset_clears_what_status_shows(self, harness: Harness) -> None:
        """After `circuit reset etf` the quarantine is gone from the status too."""
        harness.backend.fail(ETF, 402)
        async with harness.run():
            await harness.clock.sleep(6)
            assert (await status(harness)).assets["SOL"].circuits
            harness.backend.heal(ETF)
            reset = b'{"action": "reset", "module": "etf"}'
            await harness.bus.request(harness.subjects.command("circuit"), reset, timeout=1)
            await harness.clock.sleep(0.1)
            assert (await status(harness)).assets["SOL"].circuits == []

    async def test_a_flag_set_off_shows_off(self, harness: Harness) -> None:
        """A `cmd.flags` set reaches the status through the flags bucket."""
        async with harness.run():
            cmd = FlagCommand(flag="etf", enabled=False, why="plan expired", who="ops")
            await harness.bus.request(harness.subjects.command("flags"), encode(cmd), timeout=1)
            await harness.clock.sleep(0.1)
            assert (await status(harness)).flags["ETF"] is False

    async def test_breakers_are_read_from_the_bucket_at_start(self, harness: Harness) -> None:
        """A status keeper alone (`--actors status`) shows a quarantine another process stored."""
        now = harness.clock.now()
        held = CircuitState(
            module="etf", scope="all", state="quarantined", ts=now, until=now + 3600, cause="entitlement"
        )
        store = await harness.bus.key_value(harness.subjects.kv_bucket(CIRCUITS_BUCKET))
        await store.put("etf.all", encode(held))
        await store.put("etf.DOGE", encode(msgspec.structs.replace(held, scope="DOGE")))  # not configured: ignored
        async with harness.run(actors=("status",)):
            reply = await status(harness)
        assert reply.assets["SOL"].circuits == [held] and reply.assets["SOL"].signal is None

    async def test_more_assets_than_a_reply_holds_are_omitted_and_counted(self, harness: Harness) -> None:
        """With more configured assets than one reply carries, the rest are counted in `omitted`."""
        assets = tuple(f"A{n:03d}" for n in range(MAX_STATUS_ASSETS + 6))
        async with harness.run(assets=assets, actors=("status",)):
            reply = await status(harness)
            one = await status(harness, b'{"asset": "A069"}')
        assert (len(reply.assets), reply.omitted) == (MAX_STATUS_ASSETS, 6)
        assert list(one.assets) == ["A069"] and one.omitted == 0


class TestBadQueries:
    @pytest.mark.parametrize(
        ("query", "error"),
        [
            (b"{not json", "bad query"),
            (b'{"asset": "sol"}', "bad query"),
            (b'{"asset": 5}', "bad query"),
            (b'{"nope": 1}', "bad query"),
            (b'{"type": "flag_command"}', "bad query"),
            (b'{"asset": "SOL", "v": 2}', "bad query"),
            (b'{"asset": "DOGE"}', "unknown asset 'DOGE'; configured: SOL"),
        ],
    )
    async def test_answered_ok_false_and_counted(self, harness: Harness, query: bytes, error: str) -> None:
        """A malformed or invalid query, or an asset not configured, gets ok=false with the reason."""
        async with harness.run(actors=("status",)):
            reply = await status(harness, query)
            keeper = harness.actor("status", StatusKeeper)
        assert not reply.ok and reply.error is not None and reply.error.startswith(error)
        assert reply.assets == {} and keeper.bad_messages == (error == "bad query")


class TestForgedInput:
    async def test_forgeries_for_what_is_not_configured_keep_no_state(self, harness: Harness) -> None:
        """Signals and breakers for other assets or modules, or dated off the clock, are refused and counted."""
        async with harness.run(actors=("status",)):
            keeper = harness.actor("status", StatusKeeper)
            now = harness.clock.now()
            sig = Signal(
                asset="SOL",
                cycle=1,
                ts=now,
                started=now - 3,
                direction="long",
                score=0.5,
                confidence=1.0,
                modules={},
                etf_available=True,
            )
            forged: list[tuple[str, msgspec.Struct]] = [
                (harness.subjects.signal("SOL"), msgspec.structs.replace(sig, asset="DOGE")),
                (harness.subjects.signal("DOGE"), msgspec.structs.replace(sig, asset="DOGE")),
                (
                    harness.subjects.signal("SOL"),
                    msgspec.structs.replace(sig, modules={"nope": ModuleStatus(status="ok")}),
                ),
                (harness.subjects.signal("SOL"), msgspec.structs.replace(sig, ts=now + 3600)),
                (
                    harness.subjects.circuit("etf"),
                    CircuitState(module="etf", scope="DOGE", state="open", ts=now, until=now + 30),
                ),
                (
                    harness.subjects.circuit("etf"),
                    CircuitState(module="nope", scope="all", state="open", ts=now, until=now + 30),
                ),
                (
                    harness.subjects.circuit("etf"),
                    CircuitState(module="etf", scope="all", state="open", ts=now, until=now + 10**8),
                ),
            ]
            for subject, msg in forged:
                await harness.forge(subject, msg)
            await harness.clock.sleep(0.1)
            reply = await status(harness)
        assert keeper.signals == {} and all(view.states == {} for view in keeper.circuits.values())
        assert keeper.bad_messages == len(forged) - 1  # signal.DOGE is not even subscribed to
        assert list(reply.assets) == ["SOL"] and reply.assets["SOL"].signal is None

    async def test_a_bad_flag_value_changes_nothing(self, harness: Harness) -> None:
        """After WHALE off, junk under WHALE or a key that is no flag leaves the status at off."""
        store = await harness.bus.key_value(harness.subjects.kv_bucket(FLAGS_BUCKET))
        async with harness.run(actors=("status",)):
            await store.put("WHALE", encode(FlagChanged(flag="WHALE", enabled=False, ts=harness.clock.now())))
            await harness.clock.sleep(0.1)
            await store.put("WHALE", b"junk")
            await store.put("NOPE", encode(FlagChanged(flag="NOPE", enabled=True, ts=harness.clock.now())))
            await harness.clock.sleep(0.1)
            flags = (await status(harness)).flags
        assert flags["WHALE"] is False and "NOPE" not in flags
