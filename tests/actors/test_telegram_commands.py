"""Telegram commands and the alert path through sniper run's wiring, in virtual time against the fake Bot API."""

from __future__ import annotations

import pytest

from actors.alerter import Alerter
from actors.flags import FlagKeeper
from actors.telegram import TelegramNotifier
from actors.telegram_commands import TelegramCommands, parse_duration
from messages import FlagChanged
from runtime import MemoryBus, VirtualClock
from runtime.testing import Recorder
from sniper.alerting import Notifiers
from sniper.config import AlertSettings

from .. import samples
from ..fakes.telegram import FakeTelegram
from ..harness import Harness

ADMIN = 42
CHAT = -100123
CORE_PATHS = [samples.PATHS[m] for m in ("whale", "heatmap", "spot_ob")]


def alerting(fake: FakeTelegram, **kw: object) -> AlertSettings:
    values: dict[str, object] = dict(
        alert_for=60.0,
        group_wait=10.0,
        repeat=4 * 3600.0,
        telegram_token=fake.token,
        telegram_chats=(str(CHAT),),
        telegram_commands=True,
        telegram_admins=(ADMIN,),
    )
    values.update(kw)
    return AlertSettings(**values)  # type: ignore[arg-type]


async def notifiers(harness: Harness, fake: FakeTelegram) -> Notifiers:
    telegram = TelegramNotifier(fake.token, str(CHAT), clock=harness.clock, transport=fake.post)
    await telegram.start()
    return Notifiers(all=[telegram], telegram=telegram)


def replies(fake: FakeTelegram, since: int = 0) -> list[str]:
    return [m.text for m in fake.messages[since:]]


class TestCommands:
    @pytest.fixture
    def fake(self, harness: Harness) -> FakeTelegram:
        return FakeTelegram(clock=harness.clock)

    async def test_flags_and_a_flag_change_audited_as_the_telegram_user(
        self, harness: Harness, fake: FakeTelegram
    ) -> None:
        """/flags lists; /flag ETF off switches it through cmd.flags, announced as telegram:<user id>."""
        changes = await Recorder[FlagChanged](harness.bus, harness.subjects.flags_changed(), FlagChanged).start()
        async with harness.run(alert=alerting(fake), notifiers=await notifiers(harness, fake)):
            fake.push_message("/flags", chat_id=CHAT, user_id=ADMIN)
            fake.push_message("/flag ETF off", chat_id=CHAT, user_id=ADMIN)
            await harness.clock.sleep(5)
            assert harness.actor("flags", FlagKeeper).flags["ETF"] is False
        first, second = replies(fake)
        assert first.startswith("Flags: ") and "ETF on" in first and "ETF off" in second
        assert [(c.flag, c.enabled, c.who) for c in changes.messages] == [("ETF", False, f"telegram:{ADMIN}")]

    async def test_strangers_are_ignored_without_a_word(self, harness: Harness, fake: FakeTelegram) -> None:
        """A command from an id not in --telegram-admins changes nothing and gets no answer."""
        async with harness.run(alert=alerting(fake), notifiers=await notifiers(harness, fake)):
            fake.push_message("/flag ETF off", chat_id=555, user_id=666)
            await harness.clock.sleep(5)
            assert harness.actor("flags", FlagKeeper).flags["ETF"] is True
            assert harness.actor("telegram", TelegramCommands).ignored == 1
        assert replies(fake) == []

    async def test_status_shows_the_last_signal(self, harness: Harness, fake: FakeTelegram) -> None:
        """/status answers with the asset's last cycle, direction and module statuses."""
        async with harness.run(alert=alerting(fake), notifiers=await notifiers(harness, fake)):
            await harness.clock.sleep(6)
            fake.push_message("/status", chat_id=CHAT, user_id=ADMIN)
            await harness.clock.sleep(2)
        (text,) = replies(fake)
        assert text.startswith("SOL cycle 1: LONG") and "etf ok" in text and "whale ok" in text

    async def test_mute_reaches_the_alerter(self, harness: Harness, fake: FakeTelegram) -> None:
        """/mute 1h mutes notifications for an hour; /unmute lifts it."""
        async with harness.run(alert=alerting(fake), notifiers=await notifiers(harness, fake)):
            fake.push_message("/mute 1h", chat_id=CHAT, user_id=ADMIN)
            await harness.clock.sleep(2)
            alerter = harness.actor("alerter", Alerter)
            assert alerter.muted_until == pytest.approx(harness.clock.now() + 3600, abs=5)
            fake.push_message("/unmute", chat_id=CHAT, user_id=ADMIN)
            await harness.clock.sleep(2)
            assert alerter.muted_until == 0
        assert replies(fake) == ["Muted for 1h.", "Unmuted."]

    async def test_unknown_commands_get_the_help(self, harness: Harness, fake: FakeTelegram) -> None:
        """Anything else from an admin is answered with the list of commands."""
        async with harness.run(alert=alerting(fake), notifiers=await notifiers(harness, fake)):
            fake.push_message("/launch rockets", chat_id=CHAT, user_id=ADMIN)
            await harness.clock.sleep(2)
        assert replies(fake) == ["Commands: /status [ASSET], /flags, /flag NAME on|off, /mute 1h, /unmute"]


class TestDurations:
    @pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("1h", 3600), ("2d", 172800), ("90", 90)])
    def test_durations(self, text: str, seconds: float) -> None:
        """30m, 1h, 2d and plain seconds are understood."""
        assert parse_duration(text) == seconds

    @pytest.mark.parametrize("text", ["", "1w", "-5m", "8d", "0"])
    def test_bad_durations(self, text: str) -> None:
        """Anything else, or beyond a week, is a clear error."""
        with pytest.raises(ValueError, match=r"duration|7 days"):
            parse_duration(text)


class TestAlertPath:
    async def test_core_down_is_one_telegram_message_then_one_resolved(self, harness: Harness) -> None:
        """Whale, heatmap and spot_ob failing: one message after alert_for; healed: one resolved message."""
        fake = FakeTelegram(clock=harness.clock)
        for path in CORE_PATHS:
            harness.backend.fail(path, 503)
        settings = alerting(fake, telegram_commands=False, telegram_admins=())
        async with harness.run(alert=settings, notifiers=await notifiers(harness, fake)):
            await harness.clock.sleep(50)
            assert fake.messages == []
            await harness.clock.sleep(600)
            assert len(fake.delivered) == 1 and "core_down" in fake.messages[0].text
            harness.backend.heal()
            await harness.clock.sleep(900)
        texts = replies(fake)
        assert len(texts) == 2 and "resolved" in texts[1].lower()

    async def test_an_hour_of_etf_402_sends_nothing(self, harness: Harness) -> None:
        """The seed's rule end to end: ETF 402 for an hour, no Telegram message."""
        fake = FakeTelegram(clock=harness.clock)
        harness.backend.fail(samples.PATHS["etf"], 402)
        settings = alerting(fake, telegram_commands=False, telegram_admins=())
        async with harness.run(alert=settings, notifiers=await notifiers(harness, fake)):
            await harness.clock.sleep(3600)
        assert fake.messages == []

    async def test_a_dead_telegram_leaves_signals_alone(self, vclock: VirtualClock) -> None:
        """Core down for half an hour, Telegram answering 500 or fine: the same cycles, at the same times."""
        ticks = []
        for dead in (False, True):
            harness = await Harness(vclock, MemoryBus(clock=vclock)).record()
            fake = FakeTelegram(clock=vclock)
            if dead:
                fake.script.default = FakeTelegram.error(500)
            for path in CORE_PATHS:
                harness.backend.fail(path, 503)
            settings = alerting(fake, telegram_commands=False, telegram_admins=())
            start = vclock.now()
            async with harness.run(alert=settings, notifiers=await notifiers(harness, fake)):
                await vclock.sleep(1800)
            ticks.append([round(t.ts - start, 3) for t in harness.ticks.messages])
            await harness.bus.close()
            assert (fake.delivered == []) is dead
        assert ticks[0] == ticks[1] and len(ticks[0]) >= 10
