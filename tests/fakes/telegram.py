"""A fake Telegram Bot API: ``sendMessage``, ``getMe`` and ``getUpdates``, over loopback HTTP or in memory.

::

    async with FakeTelegram() as fake:                       # real HTTP on 127.0.0.1, port 0
        notifier = TelegramNotifier(fake.token, "-100123:42", clock=SystemClock(), api=fake.url)
        fake.script.push(FakeTelegram.too_many(7), FakeTelegram.bad_entities())
        ...
        fake.messages[0].text, fake.messages[0].parse_mode, fake.messages[0].thread_id, fake.messages[0].at

    fake = FakeTelegram(clock=vclock)                        # no server: fake.post is the transport
    TelegramNotifier(fake.token, "-100123", clock=vclock, transport=fake.post)

Like the real API: ``/bot<token>/<method>`` with parameters as JSON, a form or
the query string; a wrong token is 401, an unknown method 404. ``sendMessage``
with ``parse_mode=HTML`` parses the entities (stricter than Telegram: any
``&`` must start a known entity) and answers 400 "can't parse entities" on a
bad tag, a bare ``<`` or an unclosed tag; a text over 4096 characters after
parsing is 400 "message is too long". Scripted answers (`script`) apply to
``sendMessage`` only. ``getUpdates`` returns queued updates (`push_update`,
`push_message`) from ``offset`` on, or waits up to ``timeout`` seconds (the
fake's clock) for one: a long poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.clock import Clock

from . import Answer, LoopbackFake, Reply, Script

#: Tags Telegram's HTML parse mode knows.
TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code", "pre"}
    | {"blockquote", "tg-emoji"}
)
MAX_TEXT = 4096
_PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)$")
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)(\s[^<>]*)?>")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d{1,7}|#x[0-9A-Fa-f]{1,6});")


class EntityError(ValueError):
    """The text is not valid Telegram HTML (the description follows "can't parse entities: ")."""


def parse_html(text: str) -> str:
    """The visible text of Telegram HTML; EntityError if Telegram (or stricter) would refuse it."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        offset = len(text[:i].encode())
        if ch == "<":
            m = _TAG.match(text, i)
            if m is None:
                raise EntityError(f"Unexpected end of name token at byte offset {offset}")
            closing, name = m[1] == "/", m[2].lower()
            if name not in TAGS:
                raise EntityError(f'Unsupported start tag "{name}" at byte offset {offset}')
            if closing:
                if not stack or stack[-1] != name:
                    expected = f'"</{stack[-1]}>"' if stack else "nothing"
                    raise EntityError(
                        f'Unmatched end tag at byte offset {offset}, expected {expected}, found "</{name}>"'
                    )
                stack.pop()
            else:
                stack.append(name)
            i = m.end()
        elif ch == "&":
            m = _ENTITY.match(text, i)
            if m is None:
                raise EntityError(f"Character entity expected at byte offset {offset}")
            out.append(html.unescape(m[0]))
            i = m.end()
        else:
            out.append(ch)
            i += 1
    if stack:
        raise EntityError(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True, slots=True)
class TelegramRequest:
    """One call as the fake saw it; `status` is what it answered (None: dropped, or still waiting)."""

    method: str
    params: Mapping[str, Any]
    at: float  # the fake's clock.monotonic() on arrival
    token: str
    status: int | None = None

    @property
    def chat_id(self) -> int | str | None:
        value = self.params.get("chat_id")
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            return int(value)
        return value if isinstance(value, int | str) else None

    @property
    def text(self) -> str:
        return str(self.params.get("text", ""))

    @property
    def parse_mode(self) -> str | None:
        value = self.params.get("parse_mode")
        return str(value) if value is not None else None

    @property
    def thread_id(self) -> int | None:
        value = self.params.get("message_thread_id")
        return int(value) if value is not None else None


@dataclass(slots=True)
class _Updates:
    items: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = 1
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class FakeTelegram(LoopbackFake):
    """The Bot API subset sniper uses. `requests` holds every call, `messages` the ``sendMessage`` ones."""

    def __init__(
        self,
        token: str = "123456789:AAHfake-Token_for-tests",
        *,
        clock: Clock | None = None,
        bot_username: str = "sniper_test_bot",
    ) -> None:
        super().__init__(clock=clock)
        self.token = token
        self.bot_username = bot_username
        self.script = Script()
        self.requests: list[TelegramRequest] = []
        self._updates = _Updates()
        self._message_ids = 0

    # -- canned answers for `script` ------------------------------------------------------------------------
    @staticmethod
    def too_many(retry_after: int) -> Reply:
        """429 with ``parameters.retry_after``, as Telegram sends it."""
        return Reply(
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {retry_after}",
                "parameters": {"retry_after": retry_after},
            },
        )

    @staticmethod
    def bad_entities(detail: str = 'Unsupported start tag "foo" at byte offset 0') -> Reply:
        return Reply(
            400, {"ok": False, "error_code": 400, "description": f"Bad Request: can't parse entities: {detail}"}
        )

    @staticmethod
    def error(status: int, description: str | None = None) -> Reply:
        """Any error answer: 5xx (``Internal Server Error``), 403 ``Forbidden: bot was kicked ...``, ..."""
        text = description or ("Internal Server Error" if status >= 500 else "Bad Request")
        return Reply(status, {"ok": False, "error_code": status, "description": text})

    # -- views ---------------------------------------------------------------------------------------------------
    @property
    def messages(self) -> list[TelegramRequest]:
        """Every ``sendMessage`` call, answered or not, in arrival order."""
        return [r for r in self.requests if r.method == "sendMessage"]

    @property
    def delivered(self) -> list[TelegramRequest]:
        """The ``sendMessage`` calls answered 200."""
        return [r for r in self.messages if r.status == 200]

    # -- updates (for getUpdates) ---------------------------------------------------------------------------------
    def push_update(self, update: Mapping[str, Any]) -> int:
        """Queue an update for ``getUpdates``; returns its ``update_id`` (assigned unless given)."""
        item = dict(update)
        item.setdefault("update_id", self._updates.next_id)
        self._updates.next_id = max(self._updates.next_id, int(item["update_id"])) + 1
        self._updates.items.append(item)
        arrived, self._updates.arrived = self._updates.arrived, asyncio.Event()
        arrived.set()
        return int(item["update_id"])

    def push_message(
        self, text: str, *, chat_id: int = -100123, user_id: int = 42, thread_id: int | None = None
    ) -> int:
        """Queue a text message update (someone wrote `text` in `chat_id`)."""
        message: dict[str, Any] = {
            "message_id": self._next_message_id(),
            "date": int(self.clock.now()),
            "chat": {"id": chat_id, "type": "supergroup" if chat_id < 0 else "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": "tester"},
            "text": text,
        }
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        return self.push_update({"message": message})

    def _next_message_id(self) -> int:
        self._message_ids += 1
        return self._message_ids

    # -- the API ---------------------------------------------------------------------------------------------------
    async def handle(self, method: str, path: str, params: Mapping[str, Any] | Any) -> Answer:
        m = _PATH.match(path)
        if m is None:
            return _error(404, "Not Found")
        params = params if isinstance(params, Mapping) else {}
        index = len(self.requests)
        self.requests.append(TelegramRequest(m["method"], dict(params), self.clock.monotonic(), m["token"]))
        self.changed.set()
        answer = Answer(0, drop=True)
        try:
            answer = await self._answer(m["token"], m["method"], params)
        finally:
            self.requests[index] = _answered(self.requests[index], None if answer.drop else answer.status)
            self.changed.set()
        return answer

    async def _answer(self, token: str, method: str, params: Mapping[str, Any]) -> Answer:
        if token != self.token:
            return _error(401, "Unauthorized")
        if method == "getMe":
            return _ok({"id": 123456789, "is_bot": True, "first_name": "sniper test", "username": self.bot_username})
        if method == "getUpdates":
            return await self._get_updates(params)
        if method != "sendMessage":
            return _error(404, "Not Found")
        return await self._send(params)

    async def _send(self, params: Mapping[str, Any]) -> Answer:
        reply = self.script.next()
        if reply.delay > 0:
            await self.clock.sleep(reply.delay)
        if reply.drop:
            return Answer(0, drop=True)
        if reply.body is not None:
            return Answer(reply.status, reply.body)
        if reply.status != 200:
            return _error(reply.status, "Internal Server Error" if reply.status >= 500 else "Bad Request")
        text = params.get("text")
        if params.get("chat_id") in (None, ""):
            return _error(400, "Bad Request: chat_id is empty")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        visible = text
        if str(params.get("parse_mode", "")).upper() == "HTML":
            try:
                visible = parse_html(text)
            except EntityError as exc:
                return _error(400, f"Bad Request: can't parse entities: {exc}")
        if utf16_len(visible) > MAX_TEXT:
            return _error(400, "Bad Request: message is too long")
        chat_id = params["chat_id"]
        result: dict[str, Any] = {
            "message_id": self._next_message_id(),
            "date": int(self.clock.now()),
            "chat": {"id": chat_id, "type": "supergroup" if str(chat_id).startswith("-") else "private"},
            "text": visible,
        }
        if params.get("message_thread_id") is not None:
            result["message_thread_id"] = params["message_thread_id"]
        return _ok(result)

    async def _get_updates(self, params: Mapping[str, Any]) -> Answer:
        try:
            offset = int(params.get("offset", 0))
            limit = min(100, max(1, int(params.get("limit", 100))))
            timeout = max(0.0, float(params.get("timeout", 0)))
        except (TypeError, ValueError):
            return _error(400, "Bad Request: wrong parameter")
        if offset > 0:  # confirms every update before it
            self._updates.items = [u for u in self._updates.items if u["update_id"] >= offset]
        deadline = self.clock.monotonic() + timeout
        while True:
            arrived = self._updates.arrived
            ready = [u for u in self._updates.items if u["update_id"] >= offset][:limit]
            left = deadline - self.clock.monotonic()
            if ready or left <= 0:
                return _ok(ready)
            with contextlib.suppress(TimeoutError):
                await self.clock.timeout(left, arrived.wait())


def _ok(result: Any) -> Answer:
    return Answer(200, {"ok": True, "result": result})


def _error(status: int, description: str) -> Answer:
    return Answer(status, {"ok": False, "error_code": status, "description": description})


def _answered(request: TelegramRequest, status: int | None) -> TelegramRequest:
    return TelegramRequest(request.method, request.params, request.at, request.token, status)
