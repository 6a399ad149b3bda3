"""One upstream call per (module, key) across processes: the ``cache`` bucket as a claim and an answer.

Fetchers of one module in several processes share the ticks through a queue
group, so each (module, asset, cycle) is fetched once. A module keyed by a few
assets is different: every asset reads ETF flows of BTC or ETH, so two
processes handling SOL and AVAX in the same cycle would both ask for BTC, and
each would keep its own cache. So for a module with a cache lifetime
(`ModuleSpec.cache_ttl`), a fetcher asks the ``cache`` bucket first, under
``<module>.<key>`` (a `SharedFetch`):

1. an answer still fresh is used as it is: the cache holds across processes;
2. otherwise the fetcher claims the entry compare-and-set (``claimed``,
   lapsing when its budget ends), calls, and writes the answer back: fresh for
   the cache lifetime when it carries a payload; a failure is fresh for no
   time (it answers only those who waited for this call);
3. a fetcher that finds another process's live claim waits for that answer
   (reading the entry every `POLL` seconds, within its own budget) instead of
   calling too; if the claim lapses unanswered (its process died), it claims.

Single-flight inside a process stays where it was (`ModuleFetcher`): the
bucket is asked once per key however many assets wait. The bucket is
best-effort: when it cannot be reached, the fetcher calls on its own (a
duplicate call beats a missing module).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from messages import ModulePayload, SharedFetch, encode
from messages.codec import decoder_for
from messages.errors import DecodeError
from runtime.clock import Clock
from runtime.errors import BusError
from runtime.kv import KeyValue, KVConflict, KVEntry
from runtime.logs import get_logger

from .upstream import Outcome

log = get_logger("actors.shared_fetch")

#: Seconds between reads of an entry another process has claimed.
POLL = 0.05
_decoder = decoder_for(SharedFetch)

Call = Callable[[str, float], Awaitable[tuple[ModulePayload | None, Outcome]]]


@dataclass(frozen=True, slots=True)
class SharedCall:
    """The shared call of one fetcher: its module, the bucket, who it is, how long an answer stays fresh."""

    module: str
    bucket: KeyValue
    holder: str
    clock: Clock
    ttl: float

    async def call(self, key: str, budget: float, call: Call) -> tuple[ModulePayload | None, Outcome]:
        """The answer for `key`: fresh from the bucket, awaited from another process's call, or by `call` here."""
        entry_key = f"{self.module}.{key}"
        deadline = self.clock.monotonic() + budget
        while (left := deadline - self.clock.monotonic()) > 0:
            entry = await self.bucket.get(entry_key)
            found = self._read(entry, key)
            now = self.clock.now()
            if found is not None and found.state == "answered" and found.payload is not None and found.until > now:
                return _answer(found)
            if found is not None and found.state == "claimed" and found.until > now and found.holder != self.holder:
                answered = await self._await_answer(entry_key, key, found, deadline)
                if answered is not None:
                    return _answer(answered)
                continue  # the claim lapsed unanswered (or our budget is spent): look again
            revision = entry.revision if entry is not None and entry.value is not None else 0
            claim = SharedFetch(
                module=self.module, key=key, holder=self.holder, state="claimed", ts=now, until=now + left
            )
            try:
                await self.bucket.update(entry_key, encode(claim), last=revision)
            except KVConflict:
                continue  # another process claimed or answered first: read again
            return await self._call_and_answer(entry_key, key, left, call)
        return None, Outcome("transient", "timeout", detail="waited for another process's call; no answer in time")

    async def _call_and_answer(
        self, entry_key: str, key: str, budget: float, call: Call
    ) -> tuple[ModulePayload | None, Outcome]:
        payload, outcome = await call(key, budget)
        now = self.clock.now()
        answer = SharedFetch(
            module=self.module,
            key=key,
            holder=self.holder,
            state="answered",
            ts=now,
            until=now + (self.ttl if payload is not None else 0.0),
            payload=payload,
            latency_ms=min(outcome.latency_ms, 1e7),
            reason=None if payload is not None else outcome.reason,  # type: ignore[arg-type]
            detail=outcome.detail[:500],
            status=outcome.status,
            retry_after=outcome.retry_after,
        )
        try:
            await self.bucket.put(entry_key, encode(answer))
        except BusError as exc:  # the others wait until the claim lapses, then call themselves
            log.warning("shared_answer_not_stored", module=self.module, key=key, error=str(exc))
        return payload, outcome

    async def _await_answer(self, entry_key: str, key: str, claim: SharedFetch, deadline: float) -> SharedFetch | None:
        """The answer to `claim`; None once the claim lapsed or our budget is spent."""
        while self.clock.monotonic() < deadline and self.clock.now() < claim.until:
            await self.clock.sleep(min(POLL, max(0.0, deadline - self.clock.monotonic())))
            found = self._read(await self.bucket.get(entry_key), key)
            if found is not None and found.state == "answered" and found.ts >= claim.ts:
                return found
            if found is None or (found.state == "claimed" and found.ts != claim.ts):
                return None  # taken over, or gone: decide again
        return None

    def _read(self, entry: KVEntry | None, key: str) -> SharedFetch | None:
        """The entry, if it is one for this (module, key); anything else counts as absent (and is overwritten)."""
        if entry is None or entry.value is None:
            return None
        try:
            found = _decoder.decode(entry.value)
        except DecodeError as err:
            log.warning("bad_stored_fetch", module=self.module, key=key, reason=err.reason)
            return None
        return found if found.module == self.module and found.key == key else None


def _answer(found: SharedFetch) -> tuple[ModulePayload | None, Outcome]:
    """A stored answer as this process's own call would have returned it (a payload, or the failure)."""
    if found.payload is not None:
        return found.payload, Outcome("ok", "ok", status=found.status, latency_ms=found.latency_ms)
    return None, Outcome(
        "transient",  # the class only feeds the caller's request metrics, which count real calls (not this)
        found.reason or "bad_payload",
        status=found.status,
        detail=found.detail,
        retry_after=found.retry_after,
        latency_ms=found.latency_ms,
    )
