"""The Actor base: declared subscriptions, typed messages, an explicit lifecycle.

An actor is a small object that reacts to messages and publishes messages.
It never calls another actor directly, so actors can move to other hosts
without changes. What the base does for every actor, once:

* Subscriptions are declared with the message type they decode
  (`Sub(subject, Tick, self.on_tick)`); the base decodes with a cached typed
  decoder and hands the handler a typed, immutable message.
* An undecodable message is counted (`bad_messages`), logged with its subject
  and a preview, and dropped. It never reaches the handler and never kills the
  actor: bad input from one producer must not take down a consumer.
* A handler that raises is a bug in this actor: the actor *crashes* (its
  subscriptions are torn down) and its `Supervisor` decides about a restart.
  The exception stops at the supervisor; no other actor sees it.
* Time comes from ``self.clock`` only; heartbeats use it too.

Lifecycle (Nautilus Trader's habit of an explicit state machine)::

    NEW -> STARTING -> RUNNING -> STOPPING -> STOPPED
               \\          \\          \\
                +----------+----------+--> CRASHED -> STARTING (restart)
                                                  \\-> FAILED  (supervisor gave up)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from messages import Heartbeat, Message, Subjects, encode
from messages.codec import decoder_for
from messages.errors import DecodeError
from messages.subjects import token

from .bus import Bus, Envelope, Subscription
from .clock import Clock
from .kv import KeyValue
from .logs import StructLogger, get_logger
from .metrics import Metrics


class ActorState(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"
    FAILED = "failed"


_ALLOWED: dict[ActorState, frozenset[ActorState]] = {
    ActorState.NEW: frozenset({ActorState.STARTING}),
    ActorState.STARTING: frozenset({ActorState.RUNNING, ActorState.CRASHED, ActorState.STOPPING}),
    ActorState.RUNNING: frozenset({ActorState.STOPPING, ActorState.CRASHED}),
    ActorState.STOPPING: frozenset({ActorState.STOPPED, ActorState.CRASHED}),
    ActorState.CRASHED: frozenset({ActorState.STARTING, ActorState.FAILED, ActorState.STOPPED}),
    ActorState.STOPPED: frozenset({ActorState.STARTING}),
    ActorState.FAILED: frozenset(),
}


class _StoppedWhileStarting(Exception):
    """Internal: stop() interrupted on_start."""


class InvalidTransition(RuntimeError):
    """An actor was asked to move between states the lifecycle does not connect."""


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


@dataclass(slots=True)
class Context:
    """What a process gives its actors: the bus, the clock, the subject builder."""

    bus: Bus
    clock: Clock
    subjects: Subjects = field(default_factory=Subjects)
    host: str = field(default_factory=socket.gethostname)
    metrics: Metrics = field(default_factory=Metrics)


class Actor:
    """Base class for every actor; subclass and override the hooks below."""

    #: Default name (subclasses set it; instances may override in __init__).
    name: str = "actor"
    #: Seconds between heartbeats; None disables them.
    heartbeat_interval: float | None = 5.0

    def __init__(self, *, name: str | None = None) -> None:
        self.name = token(name or type(self).name, "actor name")
        self.state = ActorState.NEW
        self.handled = 0
        self.bad_messages = 0
        self.restarts = 0
        self.log: StructLogger = get_logger(f"actor.{self.name}")
        self._ctx: Context | None = None
        self._crash: asyncio.Future[None] | None = None
        self._stop_requested: asyncio.Event | None = None
        self._started_at = 0.0
        self._children: set[asyncio.Task[Any]] = set()
        self._owned: list[Subscription] = []
        self._started = asyncio.Event()
        self._start_task: asyncio.Task[None] | None = None
        self._state_changed = asyncio.Event()
        self.ready = asyncio.Event()

    # -- hooks for subclasses ------------------------------------------------
    def subscriptions(self) -> Iterable[Sub]:
        """The subscriptions this actor needs; read once per start."""
        return ()

    async def on_start(self) -> None:
        """Called after subscribing, before `run`; (re)build transient state here."""

    async def run(self) -> None:
        """The actor's own loop (timers, polling). Returning is fine: handlers keep serving."""

    async def on_stop(self) -> None:
        """Called on a clean stop, after the subscriptions are gone."""

    # -- what actors use -------------------------------------------------------
    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            raise RuntimeError(f"actor {self.name!r} is not started")
        return self._ctx

    @property
    def bus(self) -> Bus:
        return self.ctx.bus

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @property
    def subjects(self) -> Subjects:
        return self.ctx.subjects

    async def bucket(self, name: str) -> KeyValue:
        """This pipeline's key-value bucket `name`; BusError (KVUnavailable) if it cannot be reached.

        The bus keeps the handles, so actors need not: call it where needed.
        """
        return await self.ctx.bus.key_value(self.subjects.kv_bucket(name))

    async def publish(self, subject: str, msg: Message) -> None:
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError(f"actor {self.name!r} is not started")
        await ctx.bus.publish(subject, encode(msg))

    async def request(self, subject: str, msg: Message, reply_type: Any, *, timeout: float = 2.0) -> Any:  # noqa: ASYNC109  # mirrors Bus.request: the timeout is the bus's, not a cancel scope
        """Request/reply with typed decoding of the answer (DecodeError on a bad one)."""
        env = await self.ctx.bus.request(subject, encode(msg), timeout=timeout)
        return decoder_for(reply_type).decode(env.data, subject=env.subject)

    async def reply(self, envelope: Envelope, msg: Message) -> None:
        await self.ctx.bus.respond(envelope, encode(msg))

    def own(self, subscription: Subscription) -> Subscription:
        """Tie a subscription made in `on_start` (a KV watch, say) to this run: it ends with it."""
        self._owned.append(subscription)
        return subscription

    def spawn(self, aw: Awaitable[Any], *, name: str | None = None) -> asyncio.Task[Any]:
        """Run `aw` as a child task: an exception in it crashes this actor; a stop cancels it.

        For work a handler must not wait for (a subscription handles one
        message at a time): one HTTP call per tick, one timer per window.
        """
        task: asyncio.Task[Any] = asyncio.ensure_future(aw)
        task.set_name(name or f"{self.name}.child")
        if self.state not in (ActorState.STARTING, ActorState.RUNNING):
            task.cancel()  # a late handler during teardown: nothing may outlive the actor
            return task
        self._children.add(task)
        task.add_done_callback(self._child_done)
        return task

    def _child_done(self, task: asyncio.Task[Any]) -> None:
        self._children.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._crash_with(task.exception())  # type: ignore[arg-type]

    # -- lifecycle -------------------------------------------------------------
    def _set_lifecycle(self, new: ActorState) -> None:
        if new not in _ALLOWED[self.state]:
            raise InvalidTransition(f"actor {self.name!r}: {self.state.value} -> {new.value}")
        self.state = new
        self._state_changed.set()

    async def wait_for_state(self, *states: ActorState) -> ActorState:
        """Wait until the actor is in one of `states` (harnesses and tests; bound it yourself)."""
        while self.state not in states:
            self._state_changed.clear()
            await self._state_changed.wait()
        return self.state

    def mark_failed(self) -> None:
        """The supervisor gave up on this actor; it stays down."""
        self._set_lifecycle(ActorState.FAILED)
        self.ready.set()

    async def stop(self) -> None:
        """Ask a running (or still starting) actor to stop cleanly; `serve` returns once it has."""
        if self._stop_requested is not None:
            self._stop_requested.set()
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()  # a stuck on_start must not hold up shutdown

    async def serve(self, ctx: Context) -> None:
        """Run until `stop()` (returns) or a crash (raises the crash's exception)."""
        self._ctx = ctx
        self._set_lifecycle(ActorState.STARTING)
        loop = asyncio.get_running_loop()
        self._crash = loop.create_future()
        self._stop_requested = asyncio.Event()
        self._started = asyncio.Event()
        subs = []
        tasks: list[asyncio.Task[None]] = []
        try:
            for spec in self.subscriptions():
                subs.append(await ctx.bus.subscribe(spec.subject, self._deliverer(spec), queue=spec.queue))
            self._start_task = loop.create_task(self.on_start(), name=f"{self.name}.on_start")
            try:
                await self._start_task
            except asyncio.CancelledError:
                if self._stop_requested.is_set():  # stopped while starting: a clean stop, not a crash
                    raise _StoppedWhileStarting from None
                raise
            finally:
                self._start_task = None
            self._started_at = ctx.clock.monotonic()
            self._set_lifecycle(ActorState.RUNNING)
            self._started.set()
            self.ready.set()
            tasks.append(loop.create_task(self._guard(self.run()), name=f"{self.name}.run"))
            if self.heartbeat_interval:
                tasks.append(loop.create_task(self._guard(self._heartbeats()), name=f"{self.name}.heartbeat"))
            stopper: asyncio.Future[Any] = loop.create_task(self._stop_requested.wait())
            try:
                await asyncio.wait({self._crash, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
        except _StoppedWhileStarting:
            pass
        except Exception as exc:  # failed to subscribe or to start
            self._crash_with(exc)
        finally:
            # Teardown order: no new deliveries first, then every task, including
            # any a handler still managed to spawn while the first ones unwound.
            subs.extend(self._owned)
            self._owned.clear()
            for sub in subs:
                await sub.unsubscribe()
            crash = self._crash.exception() if self._crash.done() else None
            self._set_lifecycle(ActorState.CRASHED if crash is not None else ActorState.STOPPING)
            while tasks or self._children:
                tasks.extend(self._children)
                self._children.clear()
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(BaseException):
                        await task
                tasks = []
            if not self._crash.done():
                self._crash.set_result(None)  # later errors from stragglers are not this run's crash
        if crash is not None:
            raise crash
        try:
            await self.on_stop()
        finally:
            self._set_lifecycle(ActorState.STOPPED)

    # -- internals ---------------------------------------------------------------
    def _crash_with(self, exc: BaseException) -> None:
        if self._crash is not None and not self._crash.done():
            self.log.error("actor_crashed", error=repr(exc))
            self._crash.set_exception(exc)

    async def _guard(self, aw: Awaitable[None]) -> None:
        try:
            await aw
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._crash_with(exc)

    def _deliverer(self, spec: Sub) -> Callable[[Envelope], Awaitable[None]]:
        decoder = decoder_for(spec.type)
        handler = spec.handler
        started = self._started
        wants_envelope = len(inspect.signature(handler).parameters) >= 2

        async def deliver(env: Envelope) -> None:
            if not started.is_set():
                # Subscribed before on_start so nothing is lost, but handled only
                # after it, so handlers always see a fully started actor.
                await started.wait()
            try:
                msg = decoder.decode(env.data, subject=env.subject)
            except DecodeError as err:
                self.bad_messages += 1
                self.ctx.metrics.bad_messages.labels(self.name).inc()
                self.log.warning(
                    "bad_message", subject=env.subject, reason=err.reason, size=err.size, preview=err.preview
                )
                if spec.on_bad is not None:
                    try:
                        await spec.on_bad(err, env)
                    except Exception as exc:
                        self._crash_with(exc)
                return
            try:
                if wants_envelope:
                    await handler(msg, env)
                else:
                    await handler(msg)
                self.handled += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._crash_with(exc)

        return deliver

    async def _heartbeats(self) -> None:
        assert self.heartbeat_interval
        subject = self.subjects.heartbeat(self.name)
        while True:
            await self.publish(
                subject,
                Heartbeat(
                    actor=self.name,
                    ts=self.clock.now(),
                    state=self.state.value,
                    host=self.ctx.host,
                    uptime=self.clock.monotonic() - self._started_at,
                    handled=self.handled,
                    bad_messages=self.bad_messages,
                    restarts=self.restarts,
                ),
            )
            await self.clock.sleep(self.heartbeat_interval)
