"""Subscriptions: what an actor declares (`Sub`) and how each message reaches its handler.

Split out of runtime.actor for length; `Actor` is still the only user, and
everything here is re-exported from runtime.actor (import it from there).
A `Delivery` is the actor's own machinery for one subscription: it updates
the actor's counters, times each handler call for hooks that ask
(`RuntimeHooks.times_handlers`), and crashes the actor on a handler's
exception, as the actor's module docstring promises. A subscription declared with an
`Endpoint` also counts what the micro service's ``$SRV.STATS`` reports
(`runtime.micro`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from messages.codec import decoder_for
from messages.errors import DecodeError

from . import micro
from .bus import Envelope
from .flow import TokenBucket

if TYPE_CHECKING:
    from .actor import Actor

#: Queue bound and rate budget for control-plane subscriptions (route maps, breaker
#: states, commands): their real traffic is rare, and what a flood sheds is
#: republished (route maps), persisted (breakers) or retried (commands) anyway.
CONTROL_PENDING = 1024
CONTROL_RATE = 200.0

#: A subscription yields the event loop after this many deliveries in a row (fairness under bursts).
_YIELD_EVERY = 32


@dataclass(frozen=True, slots=True)
class Sub:
    """A declared subscription: subject, the message type (or union) it decodes, the handler.

    The handler takes ``(msg)`` or ``(msg, envelope)``; the envelope carries
    the subject and the reply subject for request/reply.
    """

    subject: str
    type: Any
    handler: Callable[..., Awaitable[None]]
    queue: str | None = None
    #: Called with (DecodeError, envelope) for undecodable input, after counting
    #: it: lets a command handler answer "bad command" instead of staying silent.
    on_bad: Callable[[DecodeError, Envelope], Awaitable[None]] | None = None
    #: What a well-formed message must also satisfy to be handled (a configured
    #: asset, a sane clock): returns why not, or None. A refusal is counted and
    #: logged like undecodable input, so nothing on the bus can steer state the
    #: actor was not configured to keep.
    accept: Callable[[Any], str | None] | None = None
    #: Messages that may wait for this handler before the bus drops (and counts) the rest;
    #: small for control-plane subjects, so a flood there cannot queue without bound.
    pending: int | None = None
    #: Messages per second handled at most (bursts up to the same number); the rest are shed
    #: before decoding and counted. For control-plane subjects, whose real traffic is rare:
    #: a flood there must not take the CPU the data plane needs.
    max_rate: float | None = None
    #: A request/reply subscription the process's micro service lists (`$SRV.INFO`) and
    #: counts (`$SRV.STATS`); this subscription stays the one that answers (`runtime.micro`).
    endpoint: micro.Endpoint | None = None


#: Queue bound of a subscription narrowed to one asset (a cycle brings a tick and
#: a report per module): a flood there queues kilobytes, not tens of megabytes.
ASSET_PENDING = 4096


def subs_for(subjects: Iterable[str], type: Any, handler: Callable[..., Awaitable[None]], **options: Any) -> list[Sub]:
    """One `Sub` per subject from a ``Subjects.*_for(assets)`` list.

    A subject narrowed to one asset gets the small `ASSET_PENDING` queue; a
    wildcard (many assets) keeps the bus's default.
    """
    return [
        Sub(subject, type, handler, pending=None if subject.endswith(".*") else ASSET_PENDING, **options)
        for subject in subjects
    ]


#: The reply-subject prefix of a message a JetStream consumer delivers (its ack subject).
JS_DELIVERY = "$JS.ACK."


class Delivery:
    """One subscription of one actor run: bytes from the bus in, a typed message to the handler out.

    Built per run (`Actor.serve`), because it waits on that run's "started"
    event and its rate budget starts on that run's clock. `deliver` is the
    bus's handler: `_deliver`, or for an endpoint `_answer`, which counts the
    request around it (so other subscriptions pay nothing for the counting).
    """

    __slots__ = (
        "_accept",
        "_actor",
        "_budget",
        "_ctx",
        "_decoder",
        "_early",
        "_early_limit",
        "_endpoint",
        "_handler",
        "_on_bad",
        "_started",
        "_streak",
        "_wants_envelope",
        "deliver",
    )

    def __init__(self, actor: Actor, spec: Sub, started: asyncio.Event) -> None:
        self._actor = actor
        self._ctx = actor.ctx  # one per run, like this Delivery; read per message for its hooks
        self._decoder = decoder_for(spec.type)
        self._handler = spec.handler
        self._accept = spec.accept
        self._on_bad = spec.on_bad
        self._started = started
        self._wants_envelope = len(inspect.signature(spec.handler).parameters) >= 2
        self._streak = 0
        self._budget = TokenBucket(spec.max_rate, actor.clock.monotonic()) if spec.max_rate is not None else None
        self._early = 0  # deliveries waiting for on_start to finish, bounded like the subscription's queue
        self._early_limit = spec.pending or ASSET_PENDING
        service = actor.ctx.service
        self._endpoint = (
            service.endpoint(spec.endpoint, spec.subject, spec.queue)
            if spec.endpoint is not None and service is not None
            else None
        )
        self.deliver: Callable[[Envelope], Awaitable[None]] = self._deliver if self._endpoint is None else self._answer

    async def _answer(self, env: Envelope) -> None:
        """An endpoint's request: counted, timed, and the one errors and replies are charged to meanwhile."""
        if not self._started.is_set():
            self._hold(env)  # counted when it is delivered after on_start
            return
        record = self._endpoint
        assert record is not None
        clock = self._actor.clock
        token = record.begin()
        started = clock.monotonic()
        try:
            await self._deliver(env)
        finally:
            record.end(token, clock.monotonic() - started)

    async def _deliver(self, env: Envelope) -> None:
        """Shed, yield, decode and vet before the actor's handler sees anything (a plain subscription's `deliver`).

        The order matters: shedding comes before decoding, so a flood costs no
        decoding; refused input never reaches the handler; only the handler's
        own exception crashes the actor.
        """
        if not self._started.is_set():
            self._hold(env)
            return
        actor = self._actor
        if self._budget is not None and not self._budget.take(actor.clock.monotonic()):
            actor.ctx.hooks.message_shed(actor.name)
            micro.request_failed(f"shed: over the rate budget of {self._budget.rate:g}/s")
            return
        self._streak += 1
        if self._streak >= _YIELD_EVERY:
            # nats-py runs a subscription's queued messages back to back without
            # yielding: a burst on one subject (a flood of junk, say) would hold
            # the loop until it is drained, and ticks on other subjects would wait.
            self._streak = 0
            await asyncio.sleep(0)  # clock-ok: a yield to the loop, not a wait
        try:
            msg = self._decode(env)
        except DecodeError as err:
            await self._refuse(err, env)
            return
        hooks = self._ctx.hooks  # read per message: a process may install its metrics after start
        # The clock is read only for hooks that time handlers, and then for one of the actor's calls in
        # their `handler_sample` (sniper's metrics: 8): a sample gives the distribution at a fraction of the cost.
        timed = hooks.times_handlers and actor.handled % hooks.handler_sample == 0
        try:
            started = self._ctx.clock.monotonic() if timed else 0.0
            if self._wants_envelope:
                await self._handler(msg, env)
            else:
                await self._handler(msg)
            if timed:
                hooks.handler_finished(actor.name, self._ctx.clock.monotonic() - started)
            actor.handled += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            micro.request_failed(f"handler failed: {exc!r}")
            actor._crash_with(exc)

    def _hold(self, env: Envelope) -> None:
        """Keep a message that arrived before on_start finished, in a task of its own.

        Subscribed before on_start so nothing is lost, but handled only after
        it, so handlers always see a fully started actor. A task, not a wait
        here: the bus may be handing the same message to other actors after
        this one (one subscription per subject). Bounded like the queue.
        """
        actor = self._actor
        if self._early >= self._early_limit:
            actor.ctx.hooks.message_shed(actor.name)
            return
        self._early += 1
        actor.spawn(self._after_start(env), name=f"{actor.name}.early")

    async def _after_start(self, env: Envelope) -> None:
        try:
            await self._started.wait()
        finally:
            self._early -= 1
        await self.deliver(env)

    def _decode(self, env: Envelope) -> Any:
        """The typed message, or DecodeError: a refusal by `Sub.accept` counts as bad input too."""
        if env.reply is not None and env.reply.startswith(JS_DELIVERY):
            # A stream's consumer delivering here: anyone allowed to create a consumer chooses its
            # deliver subject, so stored messages could be replayed onto a live subject. Never live input.
            raise DecodeError(
                "replayed by a JetStream consumer, not published live", subject=env.subject, data=env.data
            )
        msg = self._decoder.decode(env.data, subject=env.subject)
        refusal = self._accept(msg) if self._accept is not None else None
        if refusal is not None:
            raise DecodeError(refusal, subject=env.subject, data=env.data)
        return msg

    async def _refuse(self, err: DecodeError, env: Envelope) -> None:
        """Bad input is the producer's fault: counted and logged (rate-limited), never a crash here.

        Only `Sub.on_bad` raising is this actor's bug, so only that crashes it.
        """
        actor = self._actor
        actor.bad_messages += 1
        actor.ctx.hooks.message_refused(actor.name)
        micro.request_failed(f"bad request: {err.reason}")
        actor._log_bad(
            actor.clock.monotonic(), subject=env.subject, reason=err.reason, size=err.size, preview=err.preview
        )
        if self._on_bad is not None:
            try:
                await self._on_bad(err, env)
            except Exception as exc:
                actor._crash_with(exc)
