"""A fake Prometheus Alertmanager: records ``POST /api/v2/alerts``, over loopback HTTP or in memory.

::

    async with FakeAlertmanager() as am:
        notifier = AlertmanagerNotifier(am.url, clock=SystemClock())
        ...
        am.posts[0].alerts[0]["labels"], am.alerts   # every alert posted, flattened

Like Alertmanager, a body that is not a list of alerts with non-empty
``labels`` (and RFC 3339 ``startsAt``/``endsAt`` when given) is 400 with a
JSON string; ``GET /-/healthy`` answers. Answers to the posts can be scripted
(`script`, `tests.fakes.Reply`): 5xx, 429, a slow answer, a dropped connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime.clock import Clock

from . import Answer, LoopbackFake, Script, answer_after

ALERTS_PATH = "/api/v2/alerts"


@dataclass(frozen=True, slots=True)
class AlertmanagerPost:
    """One ``POST /api/v2/alerts``: its body, arrival time (the fake's clock) and the answer's status."""

    body: Any
    at: float
    status: int | None = None

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return [a for a in self.body if isinstance(a, dict)] if isinstance(self.body, list) else []


def problems(body: Any) -> str | None:
    """Why Alertmanager would refuse `body` (None: it would take it)."""
    if not isinstance(body, list):
        return "body must be a list of alerts"
    for i, alert in enumerate(body):
        if not isinstance(alert, dict):
            return f"alert {i} is not an object"
        labels = alert.get("labels")
        if not isinstance(labels, dict) or not labels:
            return f"alert {i}: labels in body is required"
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            return f"alert {i}: labels must map strings to strings"
        for key in ("startsAt", "endsAt"):
            value = alert.get(key)
            if value is None:
                continue
            try:
                datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                return f"alert {i}: {key} is not an RFC 3339 date-time"
    return None


class FakeAlertmanager(LoopbackFake):
    """Records every post to ``/api/v2/alerts`` in `posts`."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self.script = Script()
        self.posts: list[AlertmanagerPost] = []

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every post answered 2xx, in order."""
        return [a for p in self.posts if p.status is not None and 200 <= p.status < 300 for a in p.alerts]

    async def handle(self, method: str, path: str, params: Mapping[str, Any] | Any) -> Answer:
        if path == "/-/healthy" and method == "GET":
            return Answer(200, "OK")
        if path != ALERTS_PATH:
            return Answer(404, "not found")
        if method != "POST":
            return Answer(405, "method not allowed")
        index = len(self.posts)
        self.posts.append(AlertmanagerPost(params, self.clock.monotonic()))
        self.changed.set()
        answer = Answer(0, drop=True)
        try:
            reply = self.script.next()
            if reply.status == 200 and reply.body is None and not reply.drop:
                why = problems(params)
                answer = await answer_after(self.clock, reply, None) if why is None else Answer(400, why)
            else:
                answer = await answer_after(self.clock, reply, "scripted")
        finally:
            post = self.posts[index]
            self.posts[index] = AlertmanagerPost(post.body, post.at, None if answer.drop else answer.status)
            self.changed.set()
        return answer
