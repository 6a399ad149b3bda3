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
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from messages import Heartbeat, Message, Subjects, encode
from messages.codec import decoder_for
from messages.subjects import BucketName, token

from ._delivery import ASSET_PENDING, CONTROL_PENDING, CONTROL_RATE, Delivery, Sub, subs_for
from .bus import Bus, Envelope, Subscription
from .clock import Clock
from .errors import BusError, PublishError
from .flow import RateLimitedWarning
from .hooks import RuntimeHooks
from .kv import KeyValue
from .lease import Leadership, new_instance_id
from .logs import StructLogger, get_logger
from .micro import Service, replied

__all__ = [
    "ASSET_PENDING",
    "CONTROL_PENDING",
    "CONTROL_RATE",
    "Actor",
    "ActorState",
    "Context",
    "InvalidTransition",
    "Sub",
    "subs_for",
]


#: How long teardown waits for cancelled tasks before cancelling the ones still running again (seconds).
CANCEL_RETRY = 0.2


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


@dataclass(slots=True)
class Context:
    """What a process gives its actors: the bus, the clock, the subject builder."""

    bus: Bus
    clock: Clock
    subjects: Subjects = field(default_factory=Subjects)
    host: str = field(default_factory=socket.gethostname)
    #: Where the runtime reports refused, shed and unpublished messages and restarts (no-ops by default).
    hooks: RuntimeHooks = field(default_factory=RuntimeHooks)
    #: How far a message's own timestamp may be from this process's clock
    #: (`Actor.off_clock`); beyond it, a tick or a breaker state is refused.
    max_clock_skew: float = 30.0
    #: The process's NATS micro service: lists and counts every `Sub` declared with an endpoint (`runtime.micro`).
    service: Service | None = None
    #: Seconds a singleton's lease lasts unrenewed (`runtime.lease`); None: no leases, every singleton leads.
    lease_ttl: float | None = None
    #: This process, as a lease holder (``<host>-<pid>-<random>``).
    instance: str = field(default_factory=new_instance_id)


class Actor:
    """Base class for every actor; subclass and override the hooks below."""

    #: Default name (subclasses set it; instances may override in __init__).
    name: str = "actor"
    #: Seconds between heartbeats; None disables them.
    heartbeat_interval: float | None = 5.0
    #: A singleton's lease (`runtime.lease`): set in __init__ by actors of which one process may act at a time.
    leadership: Leadership | None = None

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
        # A flood of junk must not become a flood of log lines.
        self._log_bad = RateLimitedWarning(self.log, "bad_message")

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

    async def bucket(self, name: BucketName) -> KeyValue:
        """This pipeline's key-value bucket `name`; BusError (KVUnavailable) if it cannot be reached.

        The bus keeps the handles, so actors need not: call it where needed.
        Only the contract's buckets (`messages.subjects.BucketName`): other
        bots read them, so an actor cannot invent one by a typo.
        """
        return await self.ctx.bus.key_value(self.subjects.kv_bucket(name))

    async def publish(self, subject: str, msg: Message, *, headers: dict[str, str] | None = None) -> bool:
        """Send `msg` (with NATS `headers`, e.g. a ``Nats-Msg-Id``); False if it could not be sent.

        A message larger than the broker allows, a full reconnect buffer or a
        closed connection is a fact about this message, not a reason to crash
        the actor and lose every message after it: logged and counted, never raised.
        """
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError(f"actor {self.name!r} is not started")
        data = encode(msg)
        try:
            await ctx.bus.publish(subject, data, headers=headers)
        except BusError as exc:
            self._publish_failed(subject, len(data), exc)
            return False
        return True

    def _publish_failed(self, subject: str, size: int, exc: BusError) -> None:
        reason = exc.reason if isinstance(exc, PublishError) else type(exc).__name__
        self.ctx.hooks.publish_failed(self.name, reason)
        self.log.warning("publish_failed", subject=subject, size=size, reason=reason, error=str(exc))

    async def request(self, subject: str, msg: Message, reply_type: Any, *, timeout: float = 2.0) -> Any:  # noqa: ASYNC109  # mirrors Bus.request: the timeout is the bus's, not a cancel scope
        """Request/reply with typed decoding of the answer (DecodeError on a bad one)."""
        env = await self.ctx.bus.request(subject, encode(msg), timeout=timeout)
        return decoder_for(reply_type).decode(env.data, subject=env.subject)

    async def reply(self, envelope: Envelope, msg: Message) -> bool:
        """Answer a request; like `publish`, a failure is logged and counted, not raised."""
        data = encode(msg)
        replied(msg)  # the request of an endpoint answered with a failure counts as its error ($SRV.STATS)
        try:
            await self.ctx.bus.respond(envelope, data)
        except BusError as exc:
            self._publish_failed(envelope.reply or "(no reply subject)", len(data), exc)
            return False
        return True

    def off_clock(self, ts: float, what: str = "timestamp") -> str | None:
        """Why `ts` cannot be trusted as "now" here (too far from this clock), or None.

        For `Sub.accept`: a forged tick dated 1e15 must not become the newest
        tick forever, nor a breaker state outrank every real one.
        """
        skew = ts - self.clock.now()
        if abs(skew) > self.ctx.max_clock_skew:
            return f"clock_skew: {what} is {skew:+.0f}s off this host's clock (limit {self.ctx.max_clock_skew:g}s)"
        return None

    def own(self, subscription: Subscription) -> Subscription:
        """Tie a subscription made in `on_start` (a KV watch, say) to this run: it ends with it."""
        self._owned.append(subscription)
        return subscription

    async def subscribe_while(self, specs: Iterable[Sub]) -> list[Subscription]:
        """Subscribe `specs` now, delivered like declared ones, until `unsubscribe_from` (or the run's end).

        For what an actor needs only part of the time: a standby singleton follows
        its leader's messages, which the leader itself need not read back.
        """
        made = []
        for spec in specs:
            sub = await self.bus.subscribe(spec.subject, self._deliverer(spec), queue=spec.queue, pending=spec.pending)
            made.append(self.own(sub))
        return made

    async def unsubscribe_from(self, subs: Iterable[Subscription]) -> None:
        """End subscriptions made by `subscribe_while`."""
        for sub in subs:
            if sub in self._owned:
                self._owned.remove(sub)
            await sub.unsubscribe()

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
        ctx.hooks.actor_started(self.name)
        self._set_lifecycle(ActorState.STARTING)
        crashed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stop_requested = asyncio.Event()
        self._crash, self._stop_requested = crashed, stop_requested
        self._started = asyncio.Event()
        subs: list[Subscription] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._subscribe(ctx.bus, subs)
            await self._run_on_start(stop_requested)
            self._go_live(tasks)
            await self._until_stopped_or_crashed(crashed, stop_requested)
        except _StoppedWhileStarting:
            pass
        except Exception as exc:  # failed to subscribe or to start
            self._crash_with(exc)
        finally:
            crash = await self._tear_down(crashed, subs, tasks)
        if crash is not None:
            raise crash
        try:
            if self.leadership is not None:
                await self.leadership.release(self)  # after its work stopped: the next holder takes over now
            await self.on_stop()
        finally:
            self._set_lifecycle(ActorState.STOPPED)

    async def _subscribe(self, bus: Bus, subs: list[Subscription]) -> None:
        """Subscribe before on_start, so nothing published while it runs is lost.

        Appends as it goes: when one subscription fails, teardown still undoes the others.
        """
        for spec in self.subscriptions():
            deliver = self._deliverer(spec)
            subs.append(await bus.subscribe(spec.subject, deliver, queue=spec.queue, pending=spec.pending))

    async def _run_on_start(self, stop_requested: asyncio.Event) -> None:
        """on_start in a task of its own, so `stop()` can cancel a stuck one: a clean stop, not a crash."""
        self._start_task = asyncio.get_running_loop().create_task(self.on_start(), name=f"{self.name}.on_start")
        try:
            await self._start_task
        except asyncio.CancelledError:
            if stop_requested.is_set():  # stopped while starting: a clean stop, not a crash
                raise _StoppedWhileStarting from None
            raise
        finally:
            self._start_task = None

    def _go_live(self, tasks: list[asyncio.Task[None]]) -> None:
        """RUNNING: release the deliveries held back during on_start, then start `run` and heartbeats."""
        loop = asyncio.get_running_loop()
        self._started_at = self.clock.monotonic()
        self._set_lifecycle(ActorState.RUNNING)
        self._started.set()
        self.ready.set()
        tasks.append(loop.create_task(self._guard(self.run()), name=f"{self.name}.run"))
        if self.heartbeat_interval:
            tasks.append(loop.create_task(self._guard(self._heartbeats()), name=f"{self.name}.heartbeat"))

    @staticmethod
    async def _until_stopped_or_crashed(crashed: asyncio.Future[None], stop_requested: asyncio.Event) -> None:
        """Returning from `run` is fine (handlers keep serving): only a stop or a crash ends the run."""
        stopper: asyncio.Future[Any] = asyncio.get_running_loop().create_task(stop_requested.wait())
        try:
            await asyncio.wait({crashed, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()

    async def _tear_down(
        self, crashed: asyncio.Future[None], subs: list[Subscription], tasks: list[asyncio.Task[None]]
    ) -> BaseException | None:
        """End the run, whatever ended it; return its crash, if any.

        Teardown order: no new deliveries first, then every task, including
        any a handler still managed to spawn while the first ones unwound.
        """
        subs.extend(self._owned)
        self._owned.clear()
        for sub in subs:
            await sub.unsubscribe()
        crash = crashed.exception() if crashed.done() else None
        self._set_lifecycle(ActorState.CRASHED if crash is not None else ActorState.STOPPING)
        await self._cancel_all(tasks)
        if not crashed.done():
            crashed.set_result(None)  # later errors from stragglers are not this run's crash
        return crash

    async def _cancel_all(self, tasks: Iterable[asyncio.Task[Any]]) -> None:
        """Cancel `tasks` and every child until all are done, also those that swallow a cancellation.

        Some library code catches CancelledError and goes on (nats-py's publish did): a task
        cancelled once may keep running. So every task still running after `CANCEL_RETRY`
        is cancelled again, and children spawned while unwinding join in. This actor's own
        cancellation (a supervisor's deadline) is never suppressed here.
        """
        pending: set[asyncio.Task[Any]] = set(tasks)
        stubborn = 0
        while pending or self._children:
            pending |= self._children
            self._children.clear()
            for task in pending:
                task.cancel()
            with contextlib.suppress(TimeoutError):
                await self.clock.timeout(CANCEL_RETRY, asyncio.wait(pending))
            done = {t for t in pending if t.done()}
            pending -= done
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: a child's late error is not this run's crash
            if pending and not stubborn:
                self.log.warning("tasks_ignored_cancellation", tasks=len(pending), first=next(iter(pending)).get_name())
            stubborn += bool(pending)

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
        """The bus's handler for `spec`, bound to this run's "started" event (a restart makes new ones)."""
        return Delivery(self, spec, self._started).deliver

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
