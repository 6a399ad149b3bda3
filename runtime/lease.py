"""Leases: exactly one process runs a singleton actor, and its late messages are fenced off.

Several processes may run the same singleton actors (scheduler, assembler,
...) on one bus, so any of them can die. Each actor of that kind holds a
`Leadership` for its role; the process whose lease entry is current acts,
the others stand by and keep their state warm.

The lease is one key (the role) of the ``leases`` key-value bucket holding a
`messages.Lease`: holder, term, when it was last renewed, its ttl. Every
write is a compare-and-set on the revision read, so two contenders cannot win
the same term:

* a free key, a released lease or one not renewed for `ttl` (on the reader's
  clock) is taken with ``term + 1``: the term is the fencing token (above any
  term of the role this process saw in a message, too: `observe`, so a
  deleted entry does not restart the count below what receivers know);
* the holder renews every ttl/4, keeping its term;
* a holder that could not renew for ttl/2 steps down on its own, before
  anyone may take over (so a partitioned leader stops acting before a new
  one starts, with ttl/2 of margin for clock skew between hosts);
* a clean stop releases the lease, so the next holder takes over at once
  (at the next poll, ttl/4) instead of after a ttl.

Stepping down in time is a courtesy; fencing is the guarantee: whatever a
singleton publishes carries its term (`fence`), and receivers drop a message
fenced below the highest term they have seen from that singleton (`Fencer`).

Without a lease ttl (`Context.lease_ttl` None, e.g. unit tests of one actor)
every holder leads at once with term 0, as before leases existed; so does a
process on a NATS server without JetStream (no bucket can exist there: the
pipeline degrades to one process, with a warning, instead of never acting).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from messages import LeaderChanged, Lease, encode
from messages.codec import decoder_for
from messages.errors import DecodeError
from messages.subjects import LEASES_BUCKET

from .errors import BusError
from .flow import RateLimitedWarning
from .kv import KeyValue, KVConflict, KVEntry
from .logs import get_logger

if TYPE_CHECKING:
    from ._delivery import Sub
    from .actor import Actor
    from .bus import Subscription

log = get_logger("runtime.lease")

#: The holder renews this often (a fraction of the ttl)...
RENEW_FRACTION = 0.25
#: ...and steps down when it has not renewed for this long (a fraction of the ttl).
STEP_DOWN_FRACTION = 0.5

_lease_decoder = decoder_for(Lease)


def new_instance_id() -> str:
    """``<host>-<pid>-<random>``: who holds a lease; unique per process, readable in a log."""
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname())[:64] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class Leadership:
    """One role's lease as this process sees it: `leading`, `term`, and the campaign that keeps it."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.leading = False
        self.term = 0
        self.elections = 0  # terms this process won
        self.seen = 0  # the highest term of this role seen in a message (`observe`)
        self._kv: KeyValue | None = None
        self._revision: int | None = None  # of our own entry, while we hold it
        self._renewed_at = 0.0  # monotonic, last successful write of our entry
        self._ttl: float | None = None
        self._unreachable = RateLimitedWarning(log, "lease_unreachable", burst=1, period=30.0)

    # -- what actors use ---------------------------------------------------------
    @property
    def fence(self) -> int:
        """The fencing token for what this process publishes now (its term; 0 without leases)."""
        return self.term

    def observe(self, fence: int) -> None:
        """A message of this role carried `fence`: a term someone held (the next one we take is higher)."""
        if fence > self.seen:
            self.seen = fence

    async def hold(
        self,
        actor: Actor,
        work: Callable[[int], Awaitable[Any]] | None = None,
        *,
        follow: Iterable[Sub] = (),
    ) -> None:
        """Campaign for the lease for as long as `actor` runs; run `work(term)` while leading.

        `work` is cancelled when the lease is lost and started again on the next
        win. `follow` are subscriptions a standby keeps to follow the leader
        (its ticks, its signals): made while not leading, ended on a win, so the
        leader never reads its own messages back. Without a lease ttl in the
        actor's context this process leads at once with term 0 (and follows
        nothing). Call it from the actor's `run`.
        """
        ttl = actor.ctx.lease_ttl
        if ttl is None:
            if not self.leading:
                self._lead(0)
            if work is not None:
                await work(0)
            return
        self._ttl = ttl
        specs = tuple(follow)
        task: asyncio.Task[Any] | None = None
        following: list[Subscription] = []
        try:
            while True:
                if self._ttl_renewal_due(actor, ttl):
                    await self._campaign(actor, ttl)
                if self.leading and following:
                    await actor.unsubscribe_from(following)
                    following = []
                elif not self.leading and specs and not following:
                    following = await actor.subscribe_while(specs)
                if self.leading and task is None and work is not None:
                    task = actor.spawn(work(self.term), name=f"{self.role}.lead")
                elif not self.leading and task is not None:
                    await _cancelled(task)
                    task = None
                await actor.clock.sleep(ttl * RENEW_FRACTION)
        finally:
            if task is not None:
                task.cancel()

    async def try_lead(self, actor: Actor) -> bool:
        """One campaign round now (e.g. in `on_start`, before work that only a leader does); whether we lead."""
        ttl = actor.ctx.lease_ttl
        if ttl is None:
            if not self.leading:
                self._lead(0)
        else:
            self._ttl = ttl
            await self._campaign(actor, ttl)
        return self.leading

    def _ttl_renewal_due(self, actor: Actor, ttl: float) -> bool:
        """False only right after a successful write (a `try_lead` just now): no second write at once."""
        return not self.leading or actor.clock.monotonic() - self._renewed_at >= ttl * RENEW_FRACTION / 2

    async def release(self, actor: Actor) -> None:
        """Hand the lease back (a clean stop), so another process takes over at once, not after a ttl."""
        kv, revision, ttl = self._kv, self._revision, self._ttl
        was = self.leading
        self._step_down(actor, "released")
        if not was or kv is None or revision is None or ttl is None:
            return
        record = Lease(
            role=self.role, holder=actor.ctx.instance, term=self.term, renewed=actor.clock.now(), ttl=ttl, released=True
        )
        with contextlib.suppress(BusError, TimeoutError):  # not released: the next holder waits out the ttl
            await actor.clock.timeout(ttl * STEP_DOWN_FRACTION, kv.update(self.role, encode(record), last=revision))

    # -- the campaign -------------------------------------------------------------
    async def _campaign(self, actor: Actor, ttl: float) -> None:
        """One round: read the entry, then renew ours, take a lapsed one, or stand by.

        A holder's round must end by ttl/2 after its last renewal: a bucket that
        does not answer (a partition, an election) then counts as unreachable in
        time to step down before anyone may take over.
        """
        limit = ttl
        if self.leading:
            limit = max(0.0, self._renewed_at + ttl * STEP_DOWN_FRACTION - actor.clock.monotonic())
        try:
            await actor.clock.timeout(limit, self._round(actor, ttl))
        except KVConflict:
            self._step_down(actor, "lost_race")  # someone wrote since we read: not ours (re-read next round)
        except (BusError, TimeoutError) as exc:
            if not actor.bus.keeps_state:
                if not self.leading:  # no JetStream at all: no lease can exist, so this process acts alone
                    log.warning("leading_without_lease", role=self.role, why=str(exc))
                    self._lead(0)
                return
            if self.leading and actor.clock.monotonic() - self._renewed_at >= ttl * STEP_DOWN_FRACTION:
                self._step_down(actor, f"lease_unreachable: {exc}")
            elif not self.leading:
                self._unreachable(actor.clock.monotonic(), role=self.role, error=str(exc), acting="nobody here")

    async def _round(self, actor: Actor, ttl: float) -> None:
        if self._kv is None:
            self._kv = await actor.bucket(LEASES_BUCKET)
        entry = await self._kv.get(self.role)
        await self._decide(actor, self._kv, entry, ttl)

    async def _decide(self, actor: Actor, kv: KeyValue, entry: KVEntry | None, ttl: float) -> None:
        me, now = actor.ctx.instance, actor.clock.now()
        current = self._read(entry)
        revision = entry.revision if entry is not None and entry.value is not None else 0
        if current is not None and current.holder == me:
            if self.leading and current.term == self.term:
                renewal = Lease(role=self.role, holder=me, term=self.term, renewed=now, ttl=ttl)
                await self._write(actor, kv, renewal, revision)
                return
            # Ours from an earlier run of this actor in this process (a restart): taken again, with a new term.
        elif current is not None and not current.released and now <= current.renewed + current.ttl:
            self._step_down(actor, f"held_by {current.holder}")
            return
        # Above every term this process knows of: the stored one, its own, and any it saw in messages
        # (a deleted or overwritten entry must not restart the count: receivers would fence us off).
        term = max(current.term if current is not None else 0, self.term, self.seen) + 1
        await self._write(actor, kv, Lease(role=self.role, holder=me, term=term, renewed=now, ttl=ttl), revision)
        self._lead(term)
        log.info("lease_won", role=self.role, term=term, previous=current.holder if current else "")
        actor.ctx.hooks.leader_changed(self.role, True, term)
        event = LeaderChanged(
            role=self.role,
            holder=me,
            term=term,
            ts=now,
            previous="" if current is None or current.released else current.holder,
            host=actor.ctx.host[:255],
        )
        await actor.publish(actor.subjects.leader(self.role), event)

    def _read(self, entry: KVEntry | None) -> Lease | None:
        """The stored lease; a deleted, undecodable or misfiled one counts as free (and is overwritten)."""
        if entry is None or entry.value is None:
            return None
        try:
            record = _lease_decoder.decode(entry.value)
        except DecodeError as err:
            log.warning("bad_stored_lease", role=self.role, reason=err.reason)
            return None
        return record if record.role == self.role else None

    async def _write(self, actor: Actor, kv: KeyValue, record: Lease, revision: int) -> None:
        self._revision = await kv.update(self.role, encode(record), last=revision)
        self._renewed_at = actor.clock.monotonic()

    def _lead(self, term: int) -> None:
        self.leading, self.term = True, term
        self.elections += 1

    def _step_down(self, actor: Actor, why: str) -> None:
        self._revision = None
        if not self.leading:
            return
        self.leading = False
        if why == "released":
            log.info("lease_released", role=self.role, term=self.term)
        else:
            log.warning("lease_lost", role=self.role, term=self.term, why=why)
        actor.ctx.hooks.leader_changed(self.role, False, self.term)


class Fencer:
    """Drops what a deposed singleton sends late: the highest fence seen wins.

    One per (receiver, singleton): a fetcher keeps one for ticks, another for
    breaker states. A fence of 0 means "no lease" and is accepted only while
    nothing higher has been seen.
    """

    __slots__ = ("highest", "stale")

    def __init__(self) -> None:
        self.highest = 0
        self.stale = 0

    def admit(self, fence: int) -> bool:
        """True if a message with `fence` is current (and remember it); False if a newer term spoke."""
        if fence < self.highest:
            self.stale += 1
            return False
        self.highest = fence
        return True

    def problem(self, fence: int, what: str) -> str | None:
        """An `accept`-style refusal for a stale message (None when current)."""
        if self.admit(fence):
            return None
        return f"stale_fence: {what} of term {fence}, term {self.highest} already spoke"


async def _cancelled(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
