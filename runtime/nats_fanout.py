"""One NATS subscription per subject per process, fanned out to every local handler.

Several actors in one process often listen to the same subject (five fetchers
and the assembler to ``tick.SOL``, five fetchers to ``routes``). With a NATS
subscription each, the broker sends every message once per subscription and
nats-py parses each copy: a flood on such a subject costs the process six
times over. Here the broker sends one copy; this module hands it to each
handler in turn, in the order they subscribed.

Handlers run one after another in the subscription's task, so they must be
quick (actor deliverers are: slow work is spawned). A handler's exception is
logged and does not stop the others.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nats.aio.msg import Msg

from .bus import Envelope, Handler, Subscription

log = logging.getLogger("sniper.bus.nats")


class Fanout:
    """The local handlers of one subject, and the single NATS subscription feeding them."""

    def __init__(self, subject: str, stats: Any) -> None:
        self.subject = subject
        self.handlers: list[Handler] = []
        self.nats_sub: Any = None
        self._stats = stats

    async def dispatch(self, msg: Msg) -> None:
        env = Envelope(msg.subject, msg.data, msg.reply or None, msg.headers or None)
        handlers = self.handlers
        if len(handlers) == 1:  # the common case: no copy of the list, no loop
            self._stats.delivered += 1
            await handlers[0](env)
            return
        for handler in tuple(handlers):
            self._stats.delivered += 1
            try:
                await handler(env)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one broken handler must not starve its siblings
                log.error("handler on %s raised %r", self.subject, exc)


class FanoutMember(Subscription):
    """One handler's share of a `Fanout`; the last one to leave ends the NATS subscription."""

    def __init__(self, fanouts: dict[str, Fanout], fanout: Fanout, handler: Handler) -> None:
        self.subject = fanout.subject
        self._fanouts = fanouts
        self._fanout = fanout
        self._handler = handler
        self._done = False

    async def unsubscribe(self) -> None:
        if self._done:
            return
        self._done = True
        fanout = self._fanout
        if self._handler in fanout.handlers:
            fanout.handlers.remove(self._handler)
        if fanout.handlers:
            return
        if self._fanouts.get(fanout.subject) is fanout:
            del self._fanouts[fanout.subject]
        if fanout.nats_sub is not None:
            try:
                await fanout.nats_sub.unsubscribe()
            except Exception as exc:  # connection already closed: nothing left to undo
                log.debug("unsubscribe %s: %r", fanout.subject, exc)
