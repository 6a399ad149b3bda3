"""TelegramNotifier: formatting, packing, 429s, parse errors, retries, rate limits, queue and deadline.

Timing is tested in virtual time: the notifier's transport is the fake Bot
API's in-memory `post` (the same request handling as its HTTP server, no
sockets), under a `VirtualClock` with autojump, so "retry_after=7" is checked
to the exact virtual second and an hour of rate limiting runs in
milliseconds. The wire format (JSON body, parse_mode, thread id, the 429 body,
a dropped connection, a closed port) is tested over real HTTP on loopback
against the fake server under the `SystemClock`, with short real waits.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from actors.alerter import Notifier
from actors.telegram import (
    MAX_MESSAGE_CHARS,
    SendResult,
    TelegramChat,
    TelegramNotifier,
    backoff_delay,
    format_alert,
    format_duration,
    pack,
    telegram_length,
    to_plain,
)
from messages.alerts import Alert, fingerprint
from runtime.clock import SystemClock, VirtualClock
from runtime.logs import JsonFormatter
from runtime.testing import wait_until
from tests.fakes import Reply
from tests.fakes.telegram import FakeTelegram, parse_html

EPOCH = VirtualClock.EPOCH
GROUP = "-100123"
PRIVATE = "4242"


def alert(
    asset: str = "SOL",
    *,
    state: str = "firing",
    starts_at: float = EPOCH,
    ends_at: float | None = None,
    summary: str | None = None,
    **labels: str,
) -> Alert:
    """A core_down alert for `asset` (extra labels as keywords)."""
    all_labels = {"alertname": "core_down", "asset": asset, **labels}
    return Alert(
        name="core_down",
        state=state,  # type: ignore[arg-type]
        labels=all_labels,
        fingerprint=fingerprint(all_labels),
        starts_at=starts_at,
        ends_at=ends_at,
        summary=f"{asset}: every core module is failing" if summary is None else summary,
        ts=ends_at or starts_at,
    )


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every captured record as the JSON line production would print (fields included)."""
    formatter = JsonFormatter()
    return [formatter.format(r) for r in caplog.records]


def events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


NotifierFactory = Callable[..., TelegramNotifier]


@pytest.fixture
def fake(vclock: VirtualClock) -> FakeTelegram:
    """The fake Bot API in memory, on the virtual clock."""
    return FakeTelegram(clock=vclock)


@pytest.fixture
async def make(fake: FakeTelegram, vclock: VirtualClock) -> AsyncIterator[NotifierFactory]:
    """Build notifiers on the in-memory fake (not started: call start()); all closed at teardown."""
    made: list[TelegramNotifier] = []

    def factory(chats: Any = PRIVATE, **options: Any) -> TelegramNotifier:
        notifier = TelegramNotifier(fake.token, chats, clock=vclock, transport=fake.post, **options)
        made.append(notifier)
        return notifier

    yield factory
    for notifier in made:
        await notifier.close()


async def started(notifier: TelegramNotifier) -> TelegramNotifier:
    await notifier.start()
    return notifier


async def messages(fake: FakeTelegram, n: int, notifier: TelegramNotifier | None = None) -> list[Any]:
    """Wait (real-time bounded; virtual time runs) until `n` sendMessage calls were answered and `notifier` is idle."""
    await wait_until(lambda: sum(r.status is not None for r in fake.messages) >= n, changed=fake.changed)
    if notifier is not None:
        await asyncio.wait_for(notifier.flush(), 10)  # it has taken in the answer (counters updated)
    return fake.messages


class TestTelegramChat:
    """Chat targets parsed from settings."""

    @pytest.mark.parametrize(
        ("text", "chat_id", "thread_id"),
        [
            ("-100123", -100123, None),
            ("-100123:42", -100123, 42),
            ("4242", 4242, None),
            (" -1001234567890 ", -1001234567890, None),
            ("@sniper_alerts", "@sniper_alerts", None),
            ("@sniper_alerts:7", "@sniper_alerts", 7),
            (-100999, -100999, None),
        ],
    )
    def test_parse(self, text: str | int, chat_id: int | str, thread_id: int | None) -> None:
        """Ids, @names and an optional :topic parse into chat and thread."""
        assert TelegramChat.parse(text) == TelegramChat(chat_id, thread_id)

    @pytest.mark.parametrize(
        "text", ["", "abc", "-100x", "-100123:", "-100123:0", "-100123:-1", "@ab", "1:2:3", "12\n3", "-100 123"]
    )
    def test_bad_input_is_a_clear_value_error(self, text: str) -> None:
        """Anything else is a ValueError naming the input and the expected form."""
        with pytest.raises(ValueError, match=r"bad Telegram chat .*(expected|topic)"):
            TelegramChat.parse(text)

    def test_parse_many_and_groups(self) -> None:
        """A comma-separated list parses in order, without duplicates; negative ids and @names count as groups."""
        chats = TelegramChat.parse_many("-100123:42, 4242,@room,-100123:42")
        assert [str(c) for c in chats] == ["-100123:42", "4242", "@room"]
        assert [c.is_group for c in chats] == [True, False, True]
        with pytest.raises(ValueError, match="no Telegram chat"):
            TelegramChat.parse_many(" , ")


class TestFormatting:
    """Alerts as Telegram HTML: escaped, whole, within 4096 characters."""

    @pytest.mark.parametrize("hostile", ["<b>", "&", "</b><script>alert(1)</script>", "&amp;", "a > b", "<<&&>>"])
    def test_hostile_label_values_are_escaped(self, hostile: str) -> None:
        """A label value or summary with <, >, & shows literally and the HTML still parses."""
        text = format_alert(alert(asset=hostile, summary=f"why: {hostile}", host=hostile))
        visible = parse_html(text)  # the fake's parser is stricter than Telegram's
        assert f"asset={hostile}" in visible
        assert f"why: {hostile}" in visible
        assert "<script>" not in text and "<<" not in text

    def test_firing_shows_marker_name_labels_summary_and_since(self) -> None:
        """A firing alert: marker, name, labels (asset), summary and since when in UTC."""
        text = format_alert(alert("SOL", starts_at=EPOCH + 3723))
        assert text.splitlines() == [
            "🔥 <b>FIRING</b> <b>core_down</b>",
            "asset=SOL",
            "SOL: every core module is failing",
            "since 2026-01-01 01:02:03 UTC",
        ]

    def test_resolved_shows_resolved_and_duration(self) -> None:
        """A resolved alert says so and how long it fired."""
        text = format_alert(alert("ETH", state="resolved", starts_at=EPOCH, ends_at=EPOCH + 330))
        assert text.splitlines()[0] == "✅ <b>RESOLVED</b> <b>core_down</b>"
        assert text.splitlines()[-1] == "resolved after 5m 30s (at 2026-01-01 00:05:30 UTC)"

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [(0, "0s"), (45.9, "45s"), (330, "5m 30s"), (7500, "2h 05m"), (3 * 86400 + 4 * 3600, "3d 4h"), (-1, "?")],
    )
    def test_duration(self, seconds: float, text: str) -> None:
        """Durations read as people write them."""
        assert format_duration(seconds) == text

    @pytest.mark.parametrize("count", [1, 2, 30, 200])
    def test_packs_whole_alerts_and_counts_the_rest(self, count: int) -> None:
        """As many whole alerts as fit in 4096 characters, then '+N more'; no alert is cut."""
        alerts = [alert(f"A{i}", summary=f"asset {i} & friends <down>") for i in range(count)]
        text, more = pack(alerts)
        assert telegram_length(text) <= MAX_MESSAGE_CHARS
        parse_html(text)
        blocks = text.split("\n\n")
        if count > 1:
            assert blocks.pop(0) == f"<b>sniper</b>: {count} firing, 0 resolved"
        if more:
            assert blocks.pop() == f"+{more} more"
            assert text.endswith(f"+{more} more")
        assert blocks == [format_alert(a) for a in alerts[: len(blocks)]]
        assert len(blocks) + more == count
        assert (more > 0) == (count == 200)

    def test_a_huge_hostile_alert_is_clipped_before_escaping(self) -> None:
        """One alert larger than a message is clipped by value (never inside a tag or entity) and still parses."""
        text, more = pack([alert("SOL", summary="&" * 10_000, asset_note="<" * 1_000)])
        assert more == 0
        assert telegram_length(text) <= MAX_MESSAGE_CHARS
        visible = parse_html(text)
        assert visible.startswith("🔥 FIRING core_down") and "since 2026-01-01" in visible
        assert "…" in visible

    def test_plain_text_fallback_strips_tags_and_unescapes(self) -> None:
        """The plain-text form is what the HTML would have shown."""
        text = format_alert(alert(asset="<b>&"))
        assert to_plain(text) == parse_html(text)

    def test_backoff_doubles_up_to_the_cap(self) -> None:
        """1, 2, 4 ... seconds, capped at 60."""
        assert [backoff_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


class TestTelegramNotifier:
    """The queue and the sender, in virtual time against the fake's in-memory API."""

    async def test_notify_returns_at_once_and_sends_html_with_the_thread(
        self, fake: FakeTelegram, make: NotifierFactory, vclock: VirtualClock
    ) -> None:
        """notify() takes no time; each chat gets the message in HTML mode, a topic chat with its thread id."""
        notifier = await started(make(["-100123:42", "@sniper_alerts"]))
        before = vclock.monotonic()
        await notifier.notify([alert("SOL", asset_note="<b>&")])
        assert vclock.monotonic() == before
        first, second = await messages(fake, 2, notifier)
        assert (first.chat_id, first.thread_id, first.parse_mode) == (-100123, 42, "HTML")
        assert (second.chat_id, second.thread_id, second.parse_mode) == ("@sniper_alerts", None, "HTML")
        assert first.status == second.status == 200
        assert "asset_note=&lt;b&gt;&amp;" in first.text
        assert notifier.sent == 2 and notifier.plain_fallbacks == 0

    async def test_429_waits_exactly_retry_after_and_holds_every_send(
        self, fake: FakeTelegram, make: NotifierFactory
    ) -> None:
        """A 429 with retry_after=7: the retry comes exactly 7 s later, and no chat gets anything meanwhile."""
        notifier = await started(make([PRIVATE, GROUP]))
        fake.script.push(FakeTelegram.too_many(7))
        await notifier.notify([alert()])
        sent = await messages(fake, 3, notifier)
        assert [(r.chat_id, r.status) for r in sent] == [(4242, 429), (4242, 200), (-100123, 200)]
        t0 = sent[0].at
        assert [r.at - t0 for r in sent] == [0.0, pytest.approx(7.0, abs=1e-9), pytest.approx(7.0, abs=1e-9)]
        assert (notifier.throttled, notifier.retries, notifier.sent) == (1, 1, 2)

    async def test_parse_error_resends_once_as_plain_text(self, fake: FakeTelegram, make: NotifierFactory) -> None:
        """400 can't parse entities: the same content once more without parse_mode, tags stripped."""
        notifier = await started(make(GROUP))
        fake.script.push(FakeTelegram.bad_entities())
        await notifier.notify([alert("<b>&")])
        html_try, plain_try = await messages(fake, 2, notifier)
        assert (html_try.parse_mode, html_try.status) == ("HTML", 400)
        assert (plain_try.parse_mode, plain_try.status) == (None, 200)
        assert plain_try.text == to_plain(html_try.text) and "asset=<b>&" in plain_try.text
        assert plain_try.at - html_try.at == pytest.approx(1.0)  # the per-chat limit still holds
        assert (notifier.plain_fallbacks, notifier.sent) == (1, 1)

    async def test_parse_error_on_the_plain_resend_is_not_retried_again(
        self, fake: FakeTelegram, make: NotifierFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Only one plain-text resend: a second 400 drops the message with a log line."""
        notifier = await started(make(PRIVATE))
        fake.script.push(FakeTelegram.bad_entities(), FakeTelegram.bad_entities())
        with caplog.at_level(logging.INFO, logger="sniper"):
            await notifier.notify([alert()])
            await wait_until(lambda: notifier.dropped_rejected == 1)
        assert len(fake.messages) == 2
        assert (notifier.plain_fallbacks, notifier.sent) == (1, 0)
        assert "telegram_rejected" in events(caplog)

    @pytest.mark.parametrize(
        ("failure", "lost"),
        [
            pytest.param(FakeTelegram.error(502), 0.0, id="502"),
            pytest.param(FakeTelegram.error(500), 0.0, id="500"),
            pytest.param(Reply.dropped(), 0.0, id="connection-dropped"),
            pytest.param(FakeTelegram.error(503).slow(30), 15.0, id="slow-past-the-request-timeout"),
        ],
    )
    async def test_transient_failures_are_retried_with_backoff(
        self, fake: FakeTelegram, make: NotifierFactory, failure: Reply, lost: float
    ) -> None:
        """5xx, a dropped connection or a timeout (15 s lost), twice, then success: backoff 1 s, then 2 s."""
        notifier = await started(make(PRIVATE, request_timeout=15.0))
        fake.script.push(failure, failure)
        await notifier.notify([alert()])
        await wait_until(lambda: notifier.sent == 1)
        times = [r.at - fake.messages[0].at for r in fake.messages]
        assert times == pytest.approx([0.0, lost + 1.0, 2 * lost + 3.0])
        assert notifier.retries == 2
        assert fake.messages[-1].status == 200

    async def test_network_failure_retries_then_drops_with_a_log_line(
        self, fake: FakeTelegram, make: NotifierFactory, vclock: VirtualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Telegram unreachable: max_attempts tries 1, 2, 4 s apart, then one log line; notify never blocks."""
        notifier = await started(make(PRIVATE, max_attempts=4))
        fake.script.default = Reply.dropped()
        with caplog.at_level(logging.INFO, logger="sniper"):
            before = vclock.monotonic()
            await notifier.notify([alert()])
            assert vclock.monotonic() == before
            await wait_until(lambda: notifier.dropped_failed == 1)
        times = [r.at - fake.messages[0].at for r in fake.messages]
        assert times == pytest.approx([0.0, 1.0, 3.0, 7.0])
        (line,) = [r for r in caplog.records if r.getMessage() == "telegram_dropped"]
        assert line.levelno == logging.ERROR
        assert line.fields["attempts"] == 4  # type: ignore[attr-defined]
        assert "ServerDisconnectedError" in line.fields["error"]  # type: ignore[attr-defined]
        fake.script.default = Reply()  # Telegram is back: the sender is alive
        await notifier.notify([alert("BTC")])
        await wait_until(lambda: notifier.sent == 1)

    @pytest.mark.parametrize(
        "answer",
        [
            FakeTelegram.error(403, "Forbidden: bot was kicked from the supergroup chat"),
            FakeTelegram.error(400, "Bad Request: chat not found"),
            FakeTelegram.error(401, "Unauthorized"),
        ],
    )
    async def test_other_4xx_is_dropped_at_once(self, fake: FakeTelegram, make: NotifierFactory, answer: Reply) -> None:
        """A refusal that retrying never heals is dropped after one attempt, and counted."""
        notifier = await started(make(PRIVATE))
        fake.script.push(answer)
        await notifier.notify([alert()])
        await wait_until(lambda: notifier.dropped_rejected == 1)
        assert len(fake.messages) == 1 and notifier.retries == 0

    async def test_queue_full_drops_the_oldest(
        self, fake: FakeTelegram, make: NotifierFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With room for 3, five batches leave the newest three; each drop is logged and counted."""
        notifier = make(PRIVATE, queue_size=3)
        with caplog.at_level(logging.WARNING, logger="sniper"):
            for asset in "ABCDE":
                await notifier.notify([alert(asset)])
        assert notifier.dropped_full == 2 and notifier.pending == 3
        assert events(caplog).count("telegram_queue_full_dropped") == 2
        await notifier.start()
        sent = await messages(fake, 3, notifier)
        assert ["asset=C" in sent[0].text, "asset=D" in sent[1].text, "asset=E" in sent[2].text] == [True] * 3

    async def test_stale_messages_past_the_deadline_are_dropped(
        self, fake: FakeTelegram, make: NotifierFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """After a 2-minute 429, messages older than the 60 s deadline are dropped with a log line, not sent."""
        notifier = await started(make(PRIVATE, deadline=60.0))
        fake.script.push(FakeTelegram.too_many(120))
        with caplog.at_level(logging.WARNING, logger="sniper"):
            await notifier.notify([alert("A")])
            await notifier.notify([alert("B")])
            await wait_until(lambda: notifier.dropped_stale == 2)
        assert [r.status for r in fake.messages] == [429]
        assert events(caplog).count("telegram_stale_dropped") == 2
        await notifier.notify([alert("C")])  # a fresh one still goes out
        (_, fresh) = await messages(fake, 2, notifier)
        assert "asset=C" in fresh.text and fresh.at - fake.messages[0].at >= 120

    async def test_one_message_per_second_per_chat(self, fake: FakeTelegram, make: NotifierFactory) -> None:
        """Five batches for one private chat go out one second apart; another chat is not held up."""
        notifier = await started(make([PRIVATE, "5151"]))
        for asset in "ABCDE":
            await notifier.notify([alert(asset)])
        sent = await messages(fake, 10, notifier)
        for chat in (4242, 5151):
            times = [r.at for r in sent if r.chat_id == chat]
            assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([1.0] * 4)
        assert sent[0].at == sent[1].at  # both chats at once

    async def test_twenty_per_minute_per_group(self, fake: FakeTelegram, make: NotifierFactory) -> None:
        """25 messages to a group: never more than 20 in any 60 s, never closer than 1 s."""
        notifier = await started(make(GROUP, queue_size=50))
        for i in range(25):
            await notifier.notify([alert(f"A{i}")])
        sent = await messages(fake, 25, notifier)
        times = [r.at - sent[0].at for r in sent]
        assert times[:20] == pytest.approx([float(i) for i in range(20)])
        assert times[20] == pytest.approx(60.0)
        assert all(times[i + 20] - times[i] >= 60.0 - 1e-9 for i in range(5))
        assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(times))

    async def test_token_never_appears_in_logs(
        self, fake: FakeTelegram, vclock: VirtualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Errors that carry the URL (and so the token) are redacted in every log line and result."""
        calls = 0

        async def leaky(url: str, payload: Any) -> tuple[int, bytes]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise aiohttp.ClientConnectionError(f"Cannot connect to {url}")
            if calls == 2:
                body = {"ok": False, "error_code": 502, "description": f"Bad Gateway for {url}"}
                return 502, json.dumps(body).encode()
            return await fake.post(url, payload)

        notifier = TelegramNotifier(fake.token, PRIVATE, clock=vclock, transport=leaky)
        fake.script.push(FakeTelegram.error(403, f"Forbidden: {fake.token}"))
        try:
            with caplog.at_level(logging.DEBUG, logger="sniper"):
                await notifier.start()
                await notifier.notify([alert()])
                await wait_until(lambda: notifier.dropped_rejected == 1)
                result = await notifier.send_test("hello")
        finally:
            await notifier.close()
        lines = log_lines(caplog)
        assert len(lines) >= 3 and any("<token>" in line for line in lines)
        assert not [line for line in lines if fake.token in line]
        assert fake.token not in repr(notifier)
        assert result.ok and fake.token not in repr(result)

    async def test_send_test_sends_now_and_reports(
        self, fake: FakeTelegram, make: NotifierFactory, vclock: VirtualClock
    ) -> None:
        """send_test bypasses the queue (no start needed), escapes, and returns what happened without waiting."""
        notifier = make("-100123:9")
        ok = await notifier.send_test("<b>sniper</b> test & more")
        assert (ok.ok, ok.status, ok.chat) == (True, 200, TelegramChat(-100123, 9))
        assert isinstance(ok.message_id, int)
        assert parse_html(fake.messages[0].text) == "<b>sniper</b> test & more"
        fake.script.push(FakeTelegram.too_many(7))
        before = vclock.monotonic()
        throttled = await notifier.send_test("again")
        assert vclock.monotonic() == before
        assert throttled == SendResult(
            ok=False,
            status=429,
            description="Too Many Requests: retry after 7",
            retry_after=7.0,
            chat=TelegramChat(-100123, 9),
        )
        fake.script.push(Reply.dropped())
        down = await notifier.send_test("down", chat="4242")
        assert (down.ok, down.status, down.chat) == (False, None, TelegramChat(4242))
        assert "ServerDisconnectedError" in down.description

    async def test_close_drains_then_notify_after_close_is_harmless(
        self, fake: FakeTelegram, make: NotifierFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """close(drain=...) lets queued messages go first; notify() after close logs and returns."""
        notifier = await started(make(PRIVATE))
        for asset in "AB":
            await notifier.notify([alert(asset)])
        await notifier.close(drain=30.0)
        assert notifier.sent == 2 and notifier.pending == 0
        with caplog.at_level(logging.WARNING, logger="sniper"):
            await notifier.notify([alert("C")])
        assert "telegram_closed_dropped" in events(caplog)
        assert len(fake.messages) == 2

    def test_fits_the_alerters_notifier_protocol(self, vclock: VirtualClock) -> None:
        """A TelegramNotifier is a Notifier (mypy checks the assignment) named 'telegram'."""
        notifier: Notifier = TelegramNotifier("123:abc", PRIVATE, clock=vclock)
        assert notifier.name == "telegram"

    def test_bad_options_are_refused(self, vclock: VirtualClock) -> None:
        """A malformed token or no chat fails at wiring time, with the token not echoed."""
        with pytest.raises(ValueError, match="bad Telegram bot token") as err:
            TelegramNotifier("123:abc/../x", PRIVATE, clock=vclock)
        assert "abc" not in str(err.value)
        with pytest.raises(ValueError, match="no Telegram chat"):
            TelegramNotifier("123:abc", [], clock=vclock)


class TestTelegramOverHttp:
    """The wire format against the fake server on loopback (real HTTP, SystemClock, short real waits)."""

    async def test_wire_format(self) -> None:
        """JSON sendMessage with parse_mode=HTML, the thread id and escaped hostile values."""
        async with FakeTelegram() as fake:
            notifier = TelegramNotifier(fake.token, "-100123:42", clock=SystemClock(), api=fake.url)
            async with notifier:
                await notifier.notify([alert("SOL", asset_note="</b><i>&")])
                (request,) = await messages(fake, 1, notifier)
        assert request.params["chat_id"] == -100123 and request.params["message_thread_id"] == 42
        assert request.parse_mode == "HTML" and request.status == 200
        assert "asset_note=&lt;/b&gt;&lt;i&gt;&amp;" in request.text
        assert notifier.sent == 1

    async def test_429_body_retry_after_is_honoured(self) -> None:
        """retry_after=1 read from a real 429 body: the retry comes at least 1 s later."""
        async with FakeTelegram() as fake:
            fake.script.push(FakeTelegram.too_many(1))
            async with TelegramNotifier(fake.token, PRIVATE, clock=SystemClock(), api=fake.url) as notifier:
                await notifier.notify([alert()])
                first, second = await messages(fake, 2, notifier)
        assert (first.status, second.status) == (429, 200)
        assert 1.0 <= second.at - first.at < 3.0
        assert notifier.throttled == 1

    async def test_parse_error_fallback_over_the_wire(self) -> None:
        """A real 400 can't-parse-entities answer gets a plain-text resend."""
        async with FakeTelegram() as fake:
            fake.script.push(FakeTelegram.bad_entities())
            async with TelegramNotifier(
                fake.token, PRIVATE, clock=SystemClock(), api=fake.url, per_chat_interval=0.05
            ) as notifier:
                await notifier.notify([alert()])
                first, second = await messages(fake, 2, notifier)
        assert (first.parse_mode, second.parse_mode, second.status) == ("HTML", None, 200)
        assert "parse_mode" not in second.params

    async def test_dropped_connection_is_retried(self) -> None:
        """The server closing the connection without an answer is retried after the backoff."""
        async with FakeTelegram() as fake:
            fake.script.push(Reply.dropped())
            async with TelegramNotifier(
                fake.token, PRIVATE, clock=SystemClock(), api=fake.url, backoff_base=0.05, per_chat_interval=0.0
            ) as notifier:
                await notifier.notify([alert()])
                await wait_until(lambda: notifier.sent == 1)
        assert [r.status for r in fake.messages] == [None, 200]
        assert notifier.retries == 1

    async def test_closed_server_retries_then_drops_without_leaking_the_token(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Connection refused: a few retries, one drop line, notify() returns at once, no token in any log line."""
        fake = FakeTelegram()
        url = await fake.start()
        await fake.close()  # nothing listens there any more
        notifier = TelegramNotifier(
            fake.token, PRIVATE, clock=SystemClock(), api=url, backoff_base=0.01, max_attempts=3, per_chat_interval=0.0
        )
        with caplog.at_level(logging.DEBUG, logger="sniper"):
            async with notifier:
                await asyncio.wait_for(notifier.notify([alert()]), 0.5)
                await wait_until(lambda: notifier.dropped_failed == 1)
        assert notifier.retries == 2
        assert "telegram_dropped" in events(caplog)
        assert not [line for line in log_lines(caplog) if fake.token in line]

    async def test_borrowed_session_stays_open_and_send_test_works(self) -> None:
        """With the process's session, close() leaves it open; send_test goes over the wire."""
        async with FakeTelegram() as fake, aiohttp.ClientSession() as session:
            notifier = TelegramNotifier(
                fake.token, "@sniper_alerts:3", clock=SystemClock(), api=fake.url, session=session
            )
            result = await notifier.send_test("ping <3")
            await notifier.close()
            assert not session.closed
        assert result.ok and result.status == 200
        assert (fake.messages[0].chat_id, fake.messages[0].thread_id) == ("@sniper_alerts", 3)


class TestFakeTelegram:
    """The fake Bot API itself: auth, form bodies, entity checks, getMe and getUpdates."""

    async def test_form_body_wrong_token_and_unknown_method(self) -> None:
        """sendMessage as a form works; a wrong token is 401, an unknown method 404."""
        async with FakeTelegram() as fake, aiohttp.ClientSession() as http:
            form = {"chat_id": "-100123", "text": "hi", "message_thread_id": "5"}
            async with http.post(f"{fake.url}/bot{fake.token}/sendMessage", data=form) as resp:
                assert resp.status == 200 and (await resp.json())["result"]["text"] == "hi"
            async with http.post(f"{fake.url}/bot123:wrong/sendMessage", data=form) as resp:
                assert (resp.status, (await resp.json())["description"]) == (401, "Unauthorized")
            async with http.post(f"{fake.url}/bot{fake.token}/sendSticker", json={}) as resp:
                assert resp.status == 404
        assert (fake.messages[0].chat_id, fake.messages[0].thread_id) == (-100123, 5)

    @pytest.mark.parametrize(
        ("text", "description"),
        [
            ("<b>x", "Bad Request: can't parse entities: Can't find end tag"),
            ("a < b", "Bad Request: can't parse entities: Unexpected end of name token"),
            ("<foo>x</foo>", "Bad Request: can't parse entities: Unsupported start tag"),
            ("A & B", "Bad Request: can't parse entities: Character entity expected"),
            ("<b>x</i>", "Bad Request: can't parse entities: Unmatched end tag"),
            ("x" * 4097, "Bad Request: message is too long"),
            ("  ", "Bad Request: message text is empty"),
        ],
    )
    async def test_bad_html_and_long_text_are_refused(self, text: str, description: str) -> None:
        """What Telegram refuses, the fake refuses with the same kind of 400."""
        fake = FakeTelegram()
        status, body = await fake.post(
            f"http://t/bot{fake.token}/sendMessage", {"chat_id": 1, "text": text, "parse_mode": "HTML"}
        )
        assert status == 400 and json.loads(body)["description"].startswith(description)

    async def test_get_me(self) -> None:
        """getMe names the bot."""
        fake = FakeTelegram()
        status, body = await fake.post(f"http://t/bot{fake.token}/getMe", {})
        assert status == 200 and json.loads(body)["result"]["username"] == "sniper_test_bot"

    async def test_get_updates_long_poll(self, vclock: VirtualClock) -> None:
        """getUpdates returns queued updates, confirms with offset, and long-polls up to timeout."""
        fake = FakeTelegram(clock=vclock)
        url = f"http://t/bot{fake.token}/getUpdates"
        first = fake.push_message("/status", chat_id=-100123, thread_id=4)
        _, body = await fake.post(url, {"timeout": 30})
        (update,) = json.loads(body)["result"]
        assert update["update_id"] == first and update["message"]["text"] == "/status"
        start = vclock.monotonic()
        _, body = await fake.post(url, {"offset": first + 1, "timeout": 30})
        assert json.loads(body)["result"] == [] and vclock.monotonic() - start == pytest.approx(30.0)

        async def write_later() -> int:
            await vclock.sleep(5)
            return fake.push_message("/mute 60")

        writer = asyncio.ensure_future(write_later())
        start = vclock.monotonic()
        _, body = await fake.post(url, {"offset": first + 1, "timeout": 30})
        assert [u["update_id"] for u in json.loads(body)["result"]] == [await writer]
        assert vclock.monotonic() - start == pytest.approx(5.0)  # answered when the update came, not at 30 s

    async def test_get_updates_over_http(self) -> None:
        """Over real HTTP: a queued update is returned at once."""
        async with FakeTelegram() as fake, aiohttp.ClientSession() as http:
            fake.push_message("/alerts")
            async with http.post(f"{fake.url}/bot{fake.token}/getUpdates", json={"timeout": 5}) as resp:
                result = (await resp.json())["result"]
        assert [u["message"]["text"] for u in result] == ["/alerts"]
