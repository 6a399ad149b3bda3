"""Telegram, done right: alert notifications straight on the Bot API (aiohttp, no bot framework).

`TelegramNotifier` is a `actors.alerter.Notifier`: `notify` formats the batch
once per chat, puts it in a bounded queue and returns; one sender task per
notifier does the talking, every wait through the injected `Clock`. What it
knows about Telegram (NOTES.md, "Telegram"):

* **Formatting.** ``sendMessage`` with ``parse_mode=HTML``; every value put
  into the text is escaped (``<``, ``>``, ``&``). A message is at most 4096
  characters after entity parsing: we count the raw HTML in UTF-16 code units
  (never less than what Telegram counts), pack whole alerts, and end with
  ``+N more`` when some did not fit. No alert and no tag is ever cut in half
  (a cut tag is a "can't parse entities" and a lost alert).
* **Parse errors.** A 400 whose description says "can't parse entities" is
  answered by sending the same content once more as plain text (tags
  stripped, entities unescaped), counted in `plain_fallbacks`.
* **429.** The body's ``parameters.retry_after`` is waited exactly, then the
  same message is retried; meanwhile nothing is sent to any chat (as
  python-telegram-bot does). Alertmanager's own Telegram notifier ignores it.
* **Rate limits.** At most one message per second per chat, 20 per minute
  per group (a negative chat id, or an ``@name``: we cannot tell a public
  group from a channel, so both get the stricter limit), 30 per second
  overall; checked with the clock before every attempt.
* **Failures.** Network errors, timeouts and 5xx are retried with
  exponential backoff (1, 2, 4 ... seconds, capped at 60) up to
  `max_attempts` attempts, holding every send meanwhile (Telegram is down,
  not one chat); then the message is dropped with a log line. Another 4xx
  (bad token, bot kicked, chat not found) is dropped at once: retrying never
  heals it.
* **Backpressure.** The queue holds `queue_size` messages; a new one pushes
  the oldest out (logged, `dropped_full`). A message older than `deadline`
  seconds when its turn comes is dropped (logged, `dropped_stale`): Telegram
  being down for hours must not flood the chat afterwards.
* **Secrets.** The bot token is part of every URL; it is never logged: URLs
  are not logged, and every error text is passed through `redact`.

Lifecycle (what the wiring must call): ``await notifier.start()`` once (or
``async with TelegramNotifier(...) as notifier``), hand it to the Alerter,
and ``await notifier.close()`` on shutdown (``close(drain=5)`` first gives
queued messages up to 5 s to go out). `notify` before `start` only queues.
`send_test` (for ``sniper alert test``) sends one message at once, bypassing
the queue, and works without `start`.

The transport is a seam (`JsonPost`: ``post(url, json) -> (status, body)``):
`AiohttpPost` on one pooled session (yours via ``session=``, or its own) by
default; tests pass an in-memory one so that timing runs in virtual time.
The queue, the sender task, the lifecycle and the transport are shared with
`actors.alertmanager` (`actors._outbox`); `AiohttpPost`, `JsonPost`,
`NETWORK_ERRORS` and `backoff_delay` are still importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import math
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from messages.alerts import Alert
from runtime.clock import Clock
from runtime.logs import get_logger

from ._outbox import NETWORK_ERRORS as NETWORK_ERRORS
from ._outbox import AiohttpPost as AiohttpPost
from ._outbox import JsonPost as JsonPost
from ._outbox import Outbox
from ._outbox import backoff_delay as backoff_delay

#: Longest message text Telegram accepts (characters after entity parsing).
MAX_MESSAGE_CHARS = 4096


# -- chats ------------------------------------------------------------------------------------------
_CHAT = re.compile(r"^(?P<chat>-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})(?::(?P<thread>\d{1,12}))?(?!\n)$")


@dataclass(frozen=True, slots=True)
class TelegramChat:
    """Where messages go: a chat (numeric id or ``@channelname``) and maybe a forum topic (``message_thread_id``)."""

    chat_id: int | str
    thread_id: int | None = None

    @classmethod
    def parse(cls, text: str | int) -> TelegramChat:
        """``"-100123"``, ``"-100123:42"`` (topic 42), ``"@alerts"``, ``"@alerts:7"``, an int; else ValueError."""
        if isinstance(text, bool):
            raise ValueError(f"bad Telegram chat {text!r}: expected a chat id or @name")
        if isinstance(text, int):
            return cls(text)
        m = _CHAT.match(text.strip())
        if m is None:
            raise ValueError(
                f"bad Telegram chat {text!r}: expected a chat id (-100123) or @name (5-32 characters),"
                " optionally followed by :topic (-100123:42)"
            )
        chat = m["chat"]
        thread = int(m["thread"]) if m["thread"] is not None else None
        if thread == 0:
            raise ValueError(f"bad Telegram chat {text!r}: a topic id is a positive number")
        return cls(chat if chat.startswith("@") else int(chat), thread)

    @classmethod
    def parse_many(
        cls, chats: str | int | TelegramChat | Iterable[str | int | TelegramChat]
    ) -> tuple[TelegramChat, ...]:
        """One or more chats: a TelegramChat, an id, a comma-separated string, or an iterable of those."""
        items: Iterable[str | int | TelegramChat]
        if isinstance(chats, str):
            items = [part for part in chats.split(",") if part.strip()]
        elif isinstance(chats, int | TelegramChat):
            items = [chats]
        else:
            items = chats
        parsed = tuple(dict.fromkeys(c if isinstance(c, TelegramChat) else cls.parse(c) for c in items))
        if not parsed:
            raise ValueError("no Telegram chat given")
        return parsed

    @property
    def is_group(self) -> bool:
        """Groups, supergroups and channels have negative ids; an @name may be any of them (treated as a group)."""
        return isinstance(self.chat_id, str) or self.chat_id < 0

    def __str__(self) -> str:
        return f"{self.chat_id}" if self.thread_id is None else f"{self.chat_id}:{self.thread_id}"


# -- formatting ---------------------------------------------------------------------------------------
def escape(value: object) -> str:
    """`value` as text safe inside Telegram HTML: ``<``, ``>``, ``&`` become entities."""
    return html.escape(str(value), quote=False)


def telegram_length(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units): never less than ``len(text)``."""
    return len(text.encode("utf-16-le")) // 2


_TAG = re.compile(r"<[^<>]*>")


def to_plain(text_html: str) -> str:
    """The HTML text as plain text: tags stripped, entities unescaped (the parse-error fallback)."""
    return html.unescape(_TAG.sub("", text_html))


def _utc(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return escape(ts)


def format_duration(seconds: float) -> str:
    """``45s``, ``5m 30s``, ``2h 05m``, ``3d 4h``: how long an alert fired."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {s:02d}s"
    return f"{s}s"


def _clip(value: str, budget: int) -> str:
    """`value` escaped, cut (before escaping, so never inside an entity) to at most `budget` characters."""
    out: list[str] = []
    used = 0
    for ch in value:
        piece = escape(ch)
        if used + telegram_length(piece) > budget - 1:
            out.append("…")
            break
        out.append(piece)
        used += telegram_length(piece)
    return "".join(out)


def format_alert(alert: Alert, *, limit: int = MAX_MESSAGE_CHARS - 256) -> str:
    """One alert as a Telegram HTML block of at most `limit` characters (values escaped; long ones clipped).

    Firing: ``🔥 FIRING core_down``, the labels, the summary, ``since <UTC>``.
    Resolved: ``✅ RESOLVED core_down``, the labels, the summary, how long it fired.
    """
    firing = alert.state == "firing"
    head = f"{'🔥' if firing else '✅'} <b>{'FIRING' if firing else 'RESOLVED'}</b> <b>{_clip(alert.name, 64)}</b>"
    if firing:
        when = f"since {_utc(alert.starts_at)}"
    else:
        ended = alert.ends_at if alert.ends_at is not None else alert.ts
        when = f"resolved after {format_duration(ended - alert.starts_at)} (at {_utc(ended)})"
    labels = [(k, v) for k, v in sorted(alert.labels.items()) if k != "alertname"]

    def build(label_budget: int | None, summary_budget: int | None) -> str:
        lines = [head]
        if labels:
            pairs = [
                f"{escape(k)}={escape(v)}" if label_budget is None else f"{_clip(k, 32)}={_clip(v, label_budget)}"
                for k, v in labels
            ]
            lines.append(" ".join(pairs))
        if alert.summary:
            lines.append(escape(alert.summary) if summary_budget is None else _clip(alert.summary, summary_budget))
        lines.append(when)
        return "\n".join(lines)

    text = build(None, None)
    if telegram_length(text) <= limit:
        return text
    # Hostile or huge values: clip every value (before escaping), then give the summary what is left.
    short = build(24, 0 if alert.summary else None)
    summary_budget = max(0, limit - telegram_length(short) - 1)
    text = build(24, summary_budget) if alert.summary else short
    if telegram_length(text) <= limit:
        return text
    return "\n".join([head, when])  # cannot happen with sane limits; still whole and well-formed


def pack(alerts: Sequence[Alert], *, limit: int = MAX_MESSAGE_CHARS) -> tuple[str, int]:
    """The message text for a batch: as many whole alerts as fit in `limit`, then ``+N more``; returns (text, N)."""
    firing = sum(1 for a in alerts if a.state == "firing")
    header = f"<b>sniper</b>: {firing} firing, {len(alerts) - firing} resolved" if len(alerts) > 1 else ""
    block_limit = max(64, limit - telegram_length(header) - 64)
    text = header
    for i, alert in enumerate(alerts):
        block = format_alert(alert, limit=block_limit)
        candidate = f"{text}\n\n{block}" if text else block
        left = len(alerts) - i - 1
        reserve = telegram_length(f"\n\n+{left} more") if left else 0
        if telegram_length(candidate) + reserve > limit:
            more = len(alerts) - i
            return (f"{text}\n\n+{more} more" if text else f"+{more} more"), more
        text = candidate
    return text, 0


# -- results -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendResult:
    """What one ``sendMessage`` call came to. `status` None: no answer (network error, timeout)."""

    ok: bool
    status: int | None = None
    description: str = ""
    retry_after: float | None = None
    message_id: int | None = None
    chat: TelegramChat | None = None

    @property
    def parse_error(self) -> bool:
        return self.status == 400 and "can't parse entities" in self.description.lower()

    @property
    def transient(self) -> bool:
        """No answer or a 5xx: worth retrying later."""
        return self.status is None or self.status >= 500


@dataclass(slots=True, eq=False)
class _Outgoing:
    chat: TelegramChat
    text: str  # HTML
    enqueued_at: float  # monotonic
    more: int = 0
    plain: bool = False
    attempts: int = 0  # failed transient attempts so far


@dataclass(slots=True)
class _Window:
    """Send times of one chat (or all chats) still inside the longest window we enforce."""

    times: deque[float] = field(default_factory=deque)

    def ready_at(self, count: int, period: float) -> float:
        """Earliest time one more send keeps at most `count` sends in any `period` seconds."""
        if count <= 0 or len(self.times) < count:
            return -math.inf
        return self.times[-count] + period

    def add(self, now: float, keep: float) -> None:
        self.times.append(now)
        while self.times and self.times[0] <= now - keep:
            self.times.popleft()


# -- the notifier ------------------------------------------------------------------------------------------
class TelegramNotifier(Outbox[_Outgoing]):
    """Sends alert batches to one or more Telegram chats, queued, rate-limited and retried (see the module doc).

    Counters (plain ints, for the wiring to export): `sent`, `dropped_full`,
    `dropped_stale`, `dropped_failed` (retries exhausted), `dropped_rejected`
    (a 4xx other than 429 and parse errors), `retries` (every re-attempt: 429,
    5xx, network), `throttled` (429s), `plain_fallbacks`.
    """

    kind = "telegram"
    mask = "<token>"

    def __init__(
        self,
        token: str,
        chats: str | int | TelegramChat | Iterable[str | int | TelegramChat],
        *,
        clock: Clock,
        api: str = "https://api.telegram.org",
        session: aiohttp.ClientSession | None = None,
        transport: JsonPost | None = None,
        queue_size: int = 100,
        deadline: float = 3600.0,
        max_attempts: int = 8,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        request_timeout: float = 15.0,
        per_chat_interval: float = 1.0,
        group_per_minute: int = 20,
        overall_per_second: int = 30,
        disable_notification: bool = False,
        name: str = "telegram",
    ) -> None:
        token = token.strip()
        if not token or any(c.isspace() or c in "/?#%" for c in token):
            raise ValueError("bad Telegram bot token: expected something like 123456:ABC-DEF (from @BotFather)")
        if queue_size < 1 or max_attempts < 1 or deadline <= 0:
            raise ValueError("queue_size and max_attempts must be >= 1 and deadline > 0")
        super().__init__(
            name=name,
            clock=clock,
            log=get_logger("telegram", notifier=name),
            secrets=(token, quote(token, safe=""), quote(token)),
            session=session,
            transport=transport,
            queue_size=queue_size,
            deadline=deadline,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            request_timeout=request_timeout,
        )
        self.chats = TelegramChat.parse_many(chats)
        self.api = api.rstrip("/")
        self.per_chat_interval = per_chat_interval
        self.group_per_minute = group_per_minute
        self.overall_per_second = overall_per_second
        self.disable_notification = disable_notification
        self._token = token
        self.throttled = 0
        self.plain_fallbacks = 0
        self._hold_until = -math.inf
        self._per_chat: dict[int | str, float] = {}
        self._groups: dict[int | str, _Window] = {}
        self._overall = _Window()

    def __repr__(self) -> str:  # never the token
        return f"TelegramNotifier(name={self.name!r}, chats={[str(c) for c in self.chats]}, api={self.api!r})"

    def counters(self) -> dict[str, int]:
        """Every counter by name (for metrics)."""
        return {
            "sent": self.sent,
            "dropped_full": self.dropped_full,
            "dropped_stale": self.dropped_stale,
            "dropped_failed": self.dropped_failed,
            "dropped_rejected": self.dropped_rejected,
            "retries": self.retries,
            "throttled": self.throttled,
            "plain_fallbacks": self.plain_fallbacks,
        }

    # -- Notifier ------------------------------------------------------------------------------------------
    async def notify(self, alerts: Sequence[Alert]) -> None:
        """Queue one message per chat for this batch and return at once (never raises)."""
        try:
            if not alerts:
                return
            if self._closed:
                self.log.warning("telegram_closed_dropped", alerts=len(alerts))
                return
            text, more = pack(alerts)
            if more:
                self.log.warning("telegram_batch_truncated", alerts=len(alerts), more=more)
            now = self.clock.monotonic()
            for chat in self.chats:
                msg = _Outgoing(chat, text, now, more=more)
                for old in self._enqueue(msg):
                    self.log.warning(
                        "telegram_queue_full_dropped",
                        chat=str(old.chat),
                        age=round(msg.enqueued_at - old.enqueued_at, 3),
                    )
        except Exception as exc:  # a formatting bug must not reach the alerter
            self.log.error("telegram_notify_failed", error=self.redact(repr(exc)))

    # -- sending -----------------------------------------------------------------------------------------
    async def send_test(self, text: str, *, chat: TelegramChat | str | int | None = None) -> SendResult:
        """Send `text` (escaped, HTML mode) to `chat` (default: the first) now, bypassing the queue; never raises.

        No retry and no wait: a 429 comes back with its `retry_after`. For
        ``sniper alert test``; call it once per chat in `chats` to test them all.
        """
        try:
            target = self.chats[0] if chat is None else chat
            target = target if isinstance(target, TelegramChat) else TelegramChat.parse(target)
            self._note_send(target, self.clock.monotonic())
            return await self.send_message(target, escape(text), html=True)
        except Exception as exc:
            return SendResult(ok=False, description=self.redact(repr(exc)))

    async def api_call(self, method: str, payload: dict[str, Any], *, timeout: float) -> tuple[int, bytes]:  # noqa: ASYNC109  # the Bot API's own long-poll timeout plus ours
        """One Bot API call (``getUpdates`` for the command poller) on this notifier's token and transport.

        Raises the transport's network errors and TimeoutError; the caller decides how to back off.
        """
        return await self.clock.timeout(timeout, self._post(f"{self.api}/bot{self._token}/{method}", payload))

    async def send_message(self, chat: TelegramChat, text: str, *, html: bool = True) -> SendResult:
        """One ``sendMessage`` call as a `SendResult` (no queue, no rate limit, no retry); never raises."""
        payload: dict[str, Any] = {"chat_id": chat.chat_id, "text": text, "link_preview_options": {"is_disabled": True}}
        if html:
            payload["parse_mode"] = "HTML"
        if chat.thread_id is not None:
            payload["message_thread_id"] = chat.thread_id
        if self.disable_notification:
            payload["disable_notification"] = True
        url = f"{self.api}/bot{self._token}/sendMessage"
        try:
            status, body = await self.clock.timeout(self.request_timeout, self._post(url, payload))
        except asyncio.CancelledError:
            raise
        except NETWORK_ERRORS as exc:
            detail = str(exc) or type(exc).__name__
            return SendResult(ok=False, description=self.redact(f"{type(exc).__name__}: {detail}"), chat=chat)
        except Exception as exc:  # a transport bug is still data
            return SendResult(ok=False, description=self.redact(repr(exc)), chat=chat)
        return self._result(chat, status, body)

    def _result(self, chat: TelegramChat, status: int, body: bytes) -> SendResult:
        try:
            answer = json.loads(body) if body else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            return SendResult(ok=False, status=status, description=f"HTTP {status}, no Bot API answer", chat=chat)
        ok = status == 200 and answer.get("ok") is True
        description = self.redact(str(answer.get("description") or ("" if ok else f"HTTP {status}")))[:500]
        params = answer.get("parameters")
        retry_after = params.get("retry_after") if isinstance(params, dict) else None
        if isinstance(retry_after, bool) or not isinstance(retry_after, int | float) or not 0 <= retry_after < 1e7:
            retry_after = None
        result = answer.get("result")
        message_id = result.get("message_id") if isinstance(result, dict) else None
        return SendResult(
            ok=ok,
            status=status,
            description=description,
            retry_after=float(retry_after) if retry_after is not None else None,
            message_id=message_id if isinstance(message_id, int) and not isinstance(message_id, bool) else None,
            chat=chat,
        )

    # -- rate limits ----------------------------------------------------------------------------------------
    def _ready_at(self, chat: TelegramChat) -> float:
        """Earliest monotonic time a message to `chat` may go out (429 hold, backoff, rate limits)."""
        t = max(self._hold_until, self._per_chat.get(chat.chat_id, -math.inf) + self.per_chat_interval)
        if chat.is_group and chat.chat_id in self._groups:
            t = max(t, self._groups[chat.chat_id].ready_at(self.group_per_minute, 60.0))
        return max(t, self._overall.ready_at(self.overall_per_second, 1.0))

    def _note_send(self, chat: TelegramChat, now: float) -> None:
        self._per_chat[chat.chat_id] = now
        if chat.is_group:
            self._groups.setdefault(chat.chat_id, _Window()).add(now, 60.0)
        self._overall.add(now, 1.0)

    # -- the sender task ------------------------------------------------------------------------------------
    def _about(self, msg: _Outgoing) -> dict[str, Any]:
        """A failed send is logged with its chat."""
        return {"chat": str(msg.chat)}

    async def _next(self) -> _Outgoing:
        """The oldest queued message whose chat may be sent to now (per-chat order kept); waits for one."""
        while True:
            now = self.clock.monotonic()
            wake: float | None = None
            for i, msg in enumerate(self._queue):
                ready = self._ready_at(msg.chat)
                if ready <= now:
                    del self._queue[i]
                    return msg
                wake = ready if wake is None else min(wake, ready)
            if not self._queue:
                self._idle.set()
            self._wakeup.clear()
            if wake is None:
                await self._wakeup.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await self.clock.timeout(wake - now, self._wakeup.wait())

    def _stale(self, msg: _Outgoing, now: float) -> bool:
        age = now - msg.enqueued_at
        if age <= self.deadline:
            return False
        self.dropped_stale += 1
        self.log.warning("telegram_stale_dropped", chat=str(msg.chat), age=round(age, 3), deadline=self.deadline)
        return True

    async def _deliver(self, msg: _Outgoing) -> None:
        """Send `msg` until it is sent or dropped: waits, 429 holds, backoff, plain-text fallback."""
        while True:
            now = self.clock.monotonic()
            if self._stale(msg, now):
                return
            ready = self._ready_at(msg.chat)
            if ready > now:
                await self.clock.sleep_until(ready)
                continue
            self._note_send(msg.chat, now)
            text = to_plain(msg.text) if msg.plain else msg.text
            result = await self.send_message(msg.chat, text, html=not msg.plain)
            if result.ok:
                self.sent += 1
                self.log.info("telegram_sent", chat=str(msg.chat), plain=msg.plain, more=msg.more)
                return
            if result.status == 429:
                self.throttled += 1
                self.retries += 1
                msg.attempts += 1 if result.retry_after is None else 0
                wait = (
                    result.retry_after
                    if result.retry_after is not None
                    else backoff_delay(msg.attempts, base=self.backoff_base, cap=self.backoff_cap)
                )
                self._hold_until = max(self._hold_until, self.clock.monotonic() + wait)
                self.log.warning("telegram_throttled", chat=str(msg.chat), retry_after=wait)
                continue
            if result.parse_error and not msg.plain:
                msg.plain = True
                self.plain_fallbacks += 1
                self.log.warning("telegram_plain_fallback", chat=str(msg.chat), description=result.description)
                continue
            if result.transient:
                msg.attempts += 1
                if msg.attempts >= self.max_attempts:
                    self.dropped_failed += 1
                    self.log.error(
                        "telegram_dropped",
                        chat=str(msg.chat),
                        attempts=msg.attempts,
                        status=result.status,
                        error=result.description,
                    )
                    return
                wait = backoff_delay(msg.attempts, base=self.backoff_base, cap=self.backoff_cap)
                self.retries += 1
                self._hold_until = max(self._hold_until, self.clock.monotonic() + wait)
                self.log.warning(
                    "telegram_retry",
                    chat=str(msg.chat),
                    attempt=msg.attempts,
                    delay=wait,
                    status=result.status,
                    error=result.description,
                )
                continue
            self.dropped_rejected += 1
            self.log.error(
                "telegram_rejected", chat=str(msg.chat), status=result.status, description=result.description
            )
            return
