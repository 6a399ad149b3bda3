"""The Supervisor: runs actors in one process and restarts the ones that crash.

OTP's rules, in asyncio:

* one-for-one: a crashed actor is restarted alone; the others keep running;
* jittered exponential backoff between restarts, so a crash loop does not
  spin the CPU or hammer an upstream, and many hosts do not restart in step;
* restart intensity: more than `max_restarts` restarts within `period`
  seconds means the fault is not transient; the supervisor gives up on that
  actor, marks it FAILED, publishes `ActorGaveUp` and sets `gave_up`. The
  process escalates like OTP: `sniper run` stops and exits with status 3, so
  its service manager restarts it (a half-dead process is worse than none);
* every restart is published as `ActorRestarted` on ``actor.<name>``.

All waiting goes through the context's clock, so a test can check a whole
backoff schedule and the intensity limit in virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from messages import ActorGaveUp, ActorRestarted, Message, encode
from messages._base import MAX_ERROR

from .actor import Actor, ActorState, Context
from .clock import Clock
from .errors import SetupError, StartupError
from .logs import get_logger

log = get_logger("supervisor")


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How hard to try: backoff shape and the OTP restart intensity."""

    max_restarts: int = 5
    period: float = 60.0
    backoff_initial: float = 0.5
    backoff_factor: float = 2.0
    backoff_max: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.period <= 0:
            raise SetupError("restart policy needs max_restarts >= 0 and period > 0")
        if self.backoff_initial < 0 or self.backoff_factor < 1 or self.backoff_max < self.backoff_initial:
            raise SetupError("restart backoff needs 0 <= initial <= max and factor >= 1")
        if not 0 <= self.jitter < 1:
            raise SetupError("restart jitter must be in [0, 1)")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Delay before restart number `attempt` (1-based) within the current period."""
        base = min(self.backoff_max, self.backoff_initial * self.backoff_factor ** min(attempt - 1, 64))
        return base * (1 + rng.uniform(-self.jitter, self.jitter))


#: Longest a supervisor's stop takes (seconds), whatever its actors were doing. With the bus's
#: drain (`runtime.nats_bus.DRAIN_TIMEOUT`) and the notifiers' it keeps `sniper run` under 5 s.
STOP_DEADLINE = 3.0
#: How long a hard cancel waits before cancelling a stubborn task again (seconds of the clock).
_CANCEL_RETRY = 0.2


#: How many times a hard cancel is repeated before the task is given up on.
_CANCEL_ATTEMPTS = 5


async def _cancel_until_done(task: asyncio.Task[None], clock: Clock) -> bool:
    """Cancel `task` until it is done (a swallowed cancellation is repeated); False if it never ends."""
    for _ in range(_CANCEL_ATTEMPTS):
        if task.done():
            return True
        task.cancel()
        with contextlib.suppress(TimeoutError):
            await clock.timeout(_CANCEL_RETRY, asyncio.wait({task}))
    return task.done()


class Supervisor:
    """Runs a set of actors; use ``async with Supervisor(ctx, actors):`` or start/stop."""

    def __init__(
        self,
        ctx: Context,
        actors: Iterable[Actor] = (),
        *,
        policy: RestartPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.ctx = ctx
        self.policy = policy or RestartPolicy()
        self.actors: dict[str, Actor] = {}
        self.failed: dict[str, BaseException] = {}
        self._rng = rng or random.Random()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._wake: dict[str, asyncio.Event] = {}
        #: Set once any actor exceeded its restart intensity (after ActorGaveUp is published).
        self.gave_up = asyncio.Event()
        for actor in actors:
            self.add(actor)

    def add(self, actor: Actor) -> None:
        if actor.name in self.actors:
            raise SetupError(f"two actors named {actor.name!r} in one supervisor")
        self.actors[actor.name] = actor
        if self._tasks:  # already running: start it now
            self._spawn(actor)

    async def start(self, *, ready_timeout: float = 30.0) -> None:
        """Start the actors in order, each RUNNING (subscribed, on_start done) or FAILED before the next.

        OTP starts children in order for the same reason: a later child may
        rely on an earlier one (fetchers on discovery's first route map, the
        scheduler's first tick on every fetcher being subscribed).
        """
        for actor in self.actors.values():
            if actor.name not in self._tasks:
                self._spawn(actor)
                try:
                    await self.ctx.clock.timeout(ready_timeout, actor.ready.wait())
                except TimeoutError:
                    raise StartupError(
                        f"actor {actor.name!r} did not start within {ready_timeout:g}s (state {actor.state.value})"
                    ) from None

    def _spawn(self, actor: Actor) -> None:
        self._wake[actor.name] = asyncio.Event()
        self._tasks[actor.name] = asyncio.get_running_loop().create_task(
            self._supervise(actor), name=f"supervise:{actor.name}"
        )

    async def stop(self, *, deadline: float = STOP_DEADLINE) -> None:
        """Stop every actor, sources of work first, all within `deadline` seconds of the clock.

        Actors stop in the reverse of their start order: the scheduler (which
        makes the work) before the fetchers and the assembler (which do it), so
        no tick goes out to a fetcher that is already gone. Each actor gets what
        is left of the deadline to stop cleanly; past it, its task is cancelled
        (again and again if something inside swallows the cancellation).
        """
        self._stopping = True
        clock = self.ctx.clock
        ends = clock.monotonic() + deadline
        for name, actor in reversed(self.actors.items()):
            await actor.stop()
            wake = self._wake.get(name)  # absent for actors a failed start never reached
            if wake is not None:
                wake.set()  # cut a restart backoff short
            task = self._tasks.get(name)
            if task is None or task.done():
                continue
            try:
                await clock.timeout(max(0.0, ends - clock.monotonic()), asyncio.shield(task))
            except TimeoutError:
                log.warning("actor_stop_deadline", actor=name, deadline=deadline)
                if not await _cancel_until_done(task, clock):
                    log.error("actor_abandoned", actor=name, reason="still running after repeated cancellation")
            except Exception:  # the actor's crash was already logged and announced by its supervision
                pass
        # Only what has ended: an abandoned task must not hold the stop (and the process) forever.
        await asyncio.gather(*(t for t in self._tasks.values() if t.done()), return_exceptions=True)

    async def wait(self) -> None:
        """Wait until every supervised actor has stopped or failed."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the one-for-one loop ------------------------------------------------
    async def _supervise(self, actor: Actor) -> None:
        clock = self.ctx.clock
        recent: deque[float] = deque()
        while not self._stopping:
            try:
                await actor.serve(self.ctx)
                return  # clean stop
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]  # the event's wire limit
            now = clock.monotonic()
            recent.append(now)
            while recent and recent[0] < now - self.policy.period:
                recent.popleft()
            if len(recent) > self.policy.max_restarts:
                actor.mark_failed()
                self.failed[actor.name] = RuntimeError(error)
                log.error("actor_gave_up", actor=actor.name, restarts=len(recent) - 1, error=error)
                await self._announce(
                    actor,
                    ActorGaveUp(
                        actor=actor.name,
                        ts=clock.now(),
                        restarts=len(recent) - 1,
                        period=self.policy.period,
                        error=error,
                    ),
                )
                self.gave_up.set()
                return
            attempt = len(recent)
            delay = self.policy.delay(attempt, self._rng)
            actor.restarts += 1
            self.ctx.hooks.actor_restarted(actor.name)
            log.warning("actor_restarting", actor=actor.name, attempt=attempt, delay=round(delay, 3), error=error)
            await self._announce(
                actor,
                ActorRestarted(actor=actor.name, ts=clock.now(), attempt=attempt, delay=delay, error=error),
            )
            wake = self._wake[actor.name]
            with contextlib.suppress(TimeoutError):
                await clock.timeout(delay, wake.wait())
        if actor.state is ActorState.CRASHED:
            actor._set_lifecycle(ActorState.STOPPED)

    async def _announce(self, actor: Actor, msg: Message) -> None:
        """Publish a supervision event; a broken bus must not break supervision."""
        try:
            await self.ctx.bus.publish(self.ctx.subjects.actor_event(actor.name), encode(msg))
        except Exception as exc:
            log.warning("supervision_event_lost", actor=actor.name, error=repr(exc))
