"""Telegram commands: operators ask and steer from the chat, through the same paths as the CLI.

Long-polls ``getUpdates`` and answers, for the ids in `admins` only (a user id
or a chat id; everyone else is ignored without a word, and counted):

    /status [ASSET]    last signal per asset, module statuses, held breakers  (cmd.status)
    /flags             every feature flag                                      (cmd.flags)
    /flag ETF off      switch a module (audited as ``telegram:<user id>``)     (cmd.flags)
    /mute 1h           silence alert notifications (30m, 2h, 1d, or seconds)   (cmd.alerts)
    /unmute                                                                    (cmd.alerts)

Nothing here changes state itself: each command is the request any operator
would send on the bus, so flags stay compare-and-set, audited and announced.
Telegram being slow or down costs this actor retries with backoff, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec

from messages import (
    CircuitState,
    FlagCommand,
    FlagReply,
    Signal,
    StatusQuery,
    StatusReply,
)
from messages.alerts import AlertCommand, AlertReply
from messages.errors import ContractError
from runtime.actor import Actor
from runtime.errors import BusError
from runtime.lease import Leadership

from .telegram import NETWORK_ERRORS, TelegramChat, TelegramNotifier, backoff_delay

#: Largest getUpdates answer read (bytes): a hundred messages fit easily.
MAX_UPDATES_BODY = 1 << 20
_DURATION = re.compile(r"^(\d{1,6})([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
HELP = "Commands: /status [ASSET], /flags, /flag NAME on|off, /mute 1h, /unmute"


class _User(msgspec.Struct):
    id: int


class _Chat(msgspec.Struct):
    id: int


class _Message(msgspec.Struct):
    chat: _Chat
    text: str = ""
    date: int = 0
    from_: _User | None = msgspec.field(default=None, name="from")
    message_thread_id: int | None = None


class _Update(msgspec.Struct):
    update_id: int
    message: _Message | None = None


class _Updates(msgspec.Struct):
    ok: bool
    result: list[_Update] = msgspec.field(default_factory=list)


_updates = msgspec.json.Decoder(_Updates)
#: What a failed long poll raises: no answer, or an answer that is not one.
POLL_ERRORS: tuple[type[BaseException], ...] = (*NETWORK_ERRORS, msgspec.DecodeError, ValueError)


def parse_duration(text: str) -> float:
    """``30m`` -> 1800; ``2h``, ``1d``, ``90`` (seconds); ValueError otherwise or beyond a week."""
    m = _DURATION.match(text.strip().lower())
    if m is None:
        raise ValueError(f"{text!r} is not a duration like 30m, 1h or 2d")
    seconds = int(m[1]) * _UNITS[m[2]]
    if not 0 < seconds <= 7 * 86400:
        raise ValueError("a mute lasts from 1 second to 7 days")
    return float(seconds)


class TelegramCommands(Actor):
    """Answers admins' commands in Telegram by asking the pipeline on the bus."""

    name = "telegram"

    def __init__(
        self,
        telegram: TelegramNotifier,
        admins: Iterable[int],
        *,
        poll_timeout: float = 25.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.telegram = telegram
        self.admins = frozenset(admins)
        self.poll_timeout = poll_timeout
        self.offset = 0
        self.ignored = 0  # updates from anyone not allowed
        self.answered = 0
        self._started_at = 0.0
        self.leadership: Leadership = Leadership(self.name)

    async def on_start(self) -> None:
        self._started_at = self.clock.now()

    async def run(self) -> None:
        # Telegram lets one poller per bot token (a second one gets 409): of several processes, the lease holder.
        await self.leadership.hold(self, self._poll_while_leading)

    async def _poll_while_leading(self, term: int) -> None:
        failures = 0
        while True:
            try:
                updates = await self._poll()
            except POLL_ERRORS as exc:
                failures += 1
                delay = backoff_delay(failures)
                self.log.warning("telegram_poll_failed", error=self.telegram.redact(repr(exc)), retry_in=delay)
                await self.clock.sleep(delay)
                continue
            failures = 0
            for update in updates:
                self.offset = max(self.offset, update.update_id + 1)
                if update.message is not None:
                    await self._on_message(update.message)

    async def _poll(self) -> list[_Update]:
        payload = {"offset": self.offset, "timeout": int(self.poll_timeout), "allowed_updates": ["message"]}
        status, body = await self.telegram.api_call("getUpdates", payload, timeout=self.poll_timeout + 10)
        if len(body) > MAX_UPDATES_BODY:
            raise ValueError(f"getUpdates answered {len(body)} bytes")
        answer = _updates.decode(body)
        if status != 200 or not answer.ok:
            raise ValueError(f"getUpdates answered HTTP {status}")
        return answer.result

    async def _on_message(self, message: _Message) -> None:
        user = message.from_.id if message.from_ is not None else None
        if user not in self.admins and message.chat.id not in self.admins:
            self.ignored += 1
            self.log.info("telegram_command_ignored", chat=message.chat.id, user=user)
            return
        if message.date and message.date < self._started_at - 300:
            return  # sent long before we started (a backlog Telegram kept): stale orders are not obeyed
        words = message.text.split()
        if not words or not words[0].startswith("/"):
            return
        command = words[0][1:].split("@", 1)[0].lower()
        try:
            text = await self._answer(command, words[1:], user)
        except (BusError, ContractError) as exc:
            text = f"The pipeline did not answer: {exc}"
        chat = TelegramChat(message.chat.id, message.message_thread_id)
        result = await self.telegram.send_message(chat, text[:4000], html=False)
        self.answered += 1
        self.log.info("telegram_command", command=command, user=user, sent=result.ok)

    async def _answer(self, command: str, args: list[str], user: int | None) -> str:
        subjects = self.subjects
        match command, args:
            case "status", [*rest] if len(rest) <= 1:
                query = StatusQuery(asset=rest[0].upper() if rest else None)
                status: StatusReply = await self.request(subjects.command("status"), query, StatusReply, timeout=5)
                return format_status(status)
            case "flags", []:
                flags: FlagReply = await self.request(subjects.command("flags"), FlagCommand(), FlagReply, timeout=5)
                return format_flags(flags)
            case "flag", [flag, value] if value.lower() in ("on", "off"):
                cmd = FlagCommand(flag=flag, enabled=value.lower() == "on", who=f"telegram:{user}", why="/flag")
                flags = await self.request(subjects.command("flags"), cmd, FlagReply, timeout=5)
                return format_flags(flags)
            case "mute", [duration]:
                try:
                    seconds = parse_duration(duration)
                except ValueError as exc:
                    return str(exc)
                reply: AlertReply = await self.request(
                    subjects.command("alerts"), AlertCommand(action="mute", seconds=seconds), AlertReply, timeout=5
                )
                return f"Muted for {duration}." if reply.ok else f"Not muted: {reply.error}"
            case "unmute", []:
                reply = await self.request(
                    subjects.command("alerts"), AlertCommand(action="unmute"), AlertReply, timeout=5
                )
                return "Unmuted." if reply.ok else f"Not unmuted: {reply.error}"
            case _:
                return HELP


def _signal_line(asset: str, signal: Signal | None) -> str:
    if signal is None:
        return f"{asset}: no signal yet"
    modules = ", ".join(
        f"{m} {st.status}{f' ({st.reason})' if st.reason else ''}" for m, st in sorted(signal.modules.items())
    )
    return (
        f"{asset} cycle {signal.cycle}: {signal.direction.upper()} score {signal.score:+.2f} "
        f"confidence {signal.confidence:.2f}\n  {modules}"
    )


def _breaker(state: CircuitState) -> str:
    return f"  breaker {state.module}/{state.scope} {state.state}{f' ({state.cause})' if state.cause else ''}"


def format_status(reply: StatusReply) -> str:
    if not reply.ok:
        return f"Status failed: {reply.error}"
    lines = []
    for asset, status in reply.assets.items():
        lines.append(_signal_line(asset, status.signal))
        lines.extend(_breaker(c) for c in status.circuits)
    if reply.omitted:
        lines.append(f"+{reply.omitted} more assets (/status ASSET)")
    return "\n".join(lines) or "No assets."


def format_flags(reply: FlagReply) -> str:
    if not reply.ok:
        return f"Flags: {reply.error}"
    return "Flags: " + ", ".join(f"{flag} {'on' if on else 'off'}" for flag, on in reply.flags.items())
