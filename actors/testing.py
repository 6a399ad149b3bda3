"""A fake market-data backend for sniper's upstream client, shipped with the package.

`FakeBackend` is the `MockTransport`-style seam of `actors.upstream`: tests
script per-path answers, faults and virtual latency without a socket. (The
runtime's own fakes, such as `Recorder`, are in `runtime.testing`.)
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .upstream import Response


class FakeBackend:
    """A scriptable backend for `MockTransport`: per-path responses, faults and virtual latency.

    ``FakeBackend(clock, {"/whales/alerts": body_dict, ...})`` answers 200 with
    the JSON body for a known path and 404 otherwise. `fail(path, status,
    ...)` makes a path answer an error; `latency[path]` adds clock time before
    answering. `calls` lists (path, query) of every request, for counting
    upstream economy.
    """

    def __init__(self, clock: Any, bodies: dict[str, Any] | None = None) -> None:
        self._response = Response
        self.clock = clock
        self.bodies: dict[str, Any] = dict(bodies or {})
        self.faults: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.latency: dict[str, float] = {}
        self.calls: list[tuple[str, dict[str, str]]] = []

    def fail(
        self, path: str, status: int, *, body: bytes = b'{"detail": "fault"}', headers: dict[str, str] | None = None
    ) -> None:
        self.faults[path] = (status, {k.lower(): v for k, v in (headers or {}).items()}, body)

    def heal(self, path: str | None = None) -> None:
        if path is None:
            self.faults.clear()
        else:
            self.faults.pop(path, None)

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.calls if p == path)

    async def __call__(self, url: str) -> Any:
        parts = urlsplit(url)
        self.calls.append((parts.path, dict(parse_qsl(parts.query))))
        delay = self.latency.get(parts.path, 0.0)
        if delay:
            await self.clock.sleep(delay)
        if parts.path in self.faults:
            status, headers, body = self.faults[parts.path]
            return self._response(status, headers, body)
        if parts.path not in self.bodies:
            return self._response(404, {}, b'{"detail": "Not Found"}')
        body = self.bodies[parts.path]
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self._response(200, {"content-type": "application/json"}, data)
