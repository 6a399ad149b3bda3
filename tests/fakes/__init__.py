"""Fake HTTP services for tests: real HTTP on loopback, and the same logic in memory.

Each fake (`tests.fakes.telegram.FakeTelegram`, `tests.fakes.alertmanager.FakeAlertmanager`)
is a `LoopbackFake`: its behaviour lives in one ``handle(method, path, params)``
coroutine, served two ways:

* over real HTTP: ``async with Fake() as fake`` starts an aiohttp.web server on
  ``127.0.0.1`` port 0, and ``fake.url`` is its base URL (pass it as ``api=``/``url=``);
* in memory: ``fake.post`` is a ``post(url, json) -> (status, body)`` transport
  (`actors.telegram.JsonPost`) that calls the same ``handle`` without sockets,
  so a notifier's timing can be tested under a `VirtualClock` with autojump
  (real socket I/O and autojump do not mix: the clock jumps while a request is
  on the wire).

Answers are scripted per call with `Reply` (status, JSON body, a delay on the
fake's clock, or a dropped connection): `Script.push` queues answers for the
next calls, `Script.default` answers the rest. Every request is recorded with
its arrival time on the fake's clock (`clock.monotonic()`), and `changed` is
set on each one (for `runtime.testing.wait_until(..., changed=fake.changed)`).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiohttp import web

from runtime.clock import Clock, SystemClock


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer: `status` and JSON `body` (None: the fake's normal answer), after `delay`, or `drop`."""

    status: int = 200
    body: Any = None
    delay: float = 0.0  # seconds on the fake's clock before answering
    drop: bool = False  # close the connection without answering

    @classmethod
    def dropped(cls, *, delay: float = 0.0) -> Reply:
        """Close the connection without a response (the client sees ServerDisconnectedError)."""
        return cls(status=0, drop=True, delay=delay)

    def slow(self, seconds: float) -> Reply:
        """The same answer, `seconds` later."""
        return Reply(self.status, self.body, self.delay + seconds, self.drop)


class Script:
    """Answers for the next calls, in order (`push`); `default` for every call after them."""

    def __init__(self, default: Reply | None = None) -> None:
        self.queue: deque[Reply] = deque()
        self.default = default or Reply()

    def push(self, *replies: Reply) -> None:
        self.queue.extend(replies)

    def next(self) -> Reply:
        return self.queue.popleft() if self.queue else self.default


@dataclass(frozen=True, slots=True)
class Answer:
    """What `handle` decided: a status and a JSON-able body, or a dropped connection."""

    status: int
    body: Any = None
    drop: bool = False


class LoopbackFake:
    """Base of the fakes: one `handle`, served over loopback HTTP and as an in-memory `post` transport."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # -- what subclasses implement ----------------------------------------------------------------------
    async def handle(self, method: str, path: str, params: Mapping[str, Any] | Any) -> Answer:
        raise NotImplementedError

    # -- real HTTP ---------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:43121``."""
        if self._url is None:
            raise RuntimeError("the fake server is not started (use `async with`)")
        return self._url

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._http)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._url = f"http://127.0.0.1:{port}"
        return self._url

    async def close(self) -> None:
        """Stop serving (the port is then closed: clients get connection refused)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _http(self, request: web.Request) -> web.StreamResponse:
        params: Any = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    return web.json_response({"ok": False, "error_code": 400, "description": "bad JSON"}, status=400)
                if isinstance(body, dict):
                    params.update(body)
                else:
                    params = body
            else:  # application/x-www-form-urlencoded or multipart/form-data
                form = await request.post()
                params.update({k: v for k, v in form.items() if isinstance(v, str)})
        answer = await self.handle(request.method, request.path, params)
        if answer.drop:
            if request.transport is not None:
                request.transport.close()
            return web.Response()  # never written: the connection is gone
        return web.json_response(answer.body, status=answer.status)

    # -- in memory ---------------------------------------------------------------------------------------
    async def post(self, url: str, payload: Any) -> tuple[int, bytes]:
        """An in-memory `JsonPost`: the same `handle`, no sockets (a drop raises aiohttp's ServerDisconnectedError)."""
        parts = urlsplit(url)
        params: Any = dict(parse_qsl(parts.query))
        if isinstance(payload, Mapping):
            params.update(json.loads(json.dumps(payload)))  # what the wire would carry
        elif payload is not None:
            params = json.loads(json.dumps(payload))
        answer = await self.handle("POST", parts.path, params)
        if answer.drop:
            raise aiohttp.ServerDisconnectedError()
        return answer.status, json.dumps(answer.body).encode()


async def answer_after(clock: Clock, reply: Reply, normal: Any) -> Answer:
    """Wait `reply.delay` on `clock`, then the reply as an `Answer` (`normal` when it has no body)."""
    if reply.delay > 0:
        await clock.sleep(reply.delay)
    if reply.drop:
        return Answer(0, drop=True)
    return Answer(reply.status, normal if reply.body is None else reply.body)


__all__ = ["Answer", "LoopbackFake", "Reply", "Script", "answer_after"]
