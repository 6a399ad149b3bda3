"""The fallback chain of one module: venues tried in order when the backend fails it (issue 16).

Discovery makes sure the fetcher asks the backend where it serves a module;
when the backend truly lacks it, or is down, the same data is often public at
the venues (`actors.venues`). The chain is what a fetcher holds for that:

* **in order**, as ``--fallback spot_ob=binance,okx`` says; the first source
  with a payload answers, and the signal says so (``source``);
* **a flag per source** (``BINANCE``, ``OKX``, ``BYBIT`` in the flags bucket,
  on unless switched off), so an operator can take a venue out at runtime;
* **a breaker per source**: `FAILURES_TO_OPEN` failed calls in a row open it
  for `OPEN_FOR` seconds, doubling per reopen up to `OPEN_MAX`; then one call
  probes it. Only real calls that say the source is down count
  (`SOURCE_FAILURES`): a venue's own throttle hold or rate limit already keeps
  calls back, and a symbol it does not list is a fact about one asset;
* **the budget** is what is left of the tick's window: a source is skipped
  when none is left.

Every source failing gives the last failure, named by its source. The chain
never raises (a source's `fetch` never does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from messages import ModulePayload
from runtime.clock import Clock

from .upstream import Outcome
from .venues import VenueSource

#: What says a source is down or unusable from here (5xx, timeouts, resets; a geo-block; bodies we cannot read).
#: Not ``throttled`` (the source's own hold keeps calls back) nor ``endpoint_missing`` (one asset it lacks).
SOURCE_FAILURES = frozenset({"transient", "entitlement", "bad_payload"})
#: Failed calls in a row that open a source's breaker.
FAILURES_TO_OPEN = 3
#: Seconds a source's breaker stays open the first time; doubled per reopen, capped.
OPEN_FOR = 30.0
OPEN_MAX = 600.0


def venue_flag(venue: str) -> str:
    """The flag that switches a venue as a fallback source: ``binance`` -> ``BINANCE``."""
    return venue.upper()


@dataclass(slots=True)
class SourceBreaker:
    """Consecutive failures of one source, and until when (monotonic) it is skipped."""

    failures: int = 0
    opens: int = 0
    until: float = 0.0

    def allows(self, now: float) -> bool:
        return now >= self.until

    def record(self, outcome: Outcome, now: float) -> None:
        if outcome.ok:
            self.failures = self.opens = 0
            return
        if not outcome.called or outcome.error_class not in SOURCE_FAILURES:
            return  # held back by its own limits, or a fact about one asset (no such symbol): not the source down
        self.failures += 1
        if self.failures >= FAILURES_TO_OPEN:
            self.opens += 1
            self.until = now + min(OPEN_MAX, OPEN_FOR * 2 ** (self.opens - 1))
            self.failures = FAILURES_TO_OPEN - 1  # the probe after the open time decides alone


@dataclass(frozen=True, slots=True)
class Answer:
    """What the chain got: a payload from `source`, or the last failure (`source` the one that gave it)."""

    source: str
    payload: ModulePayload | None
    outcome: Outcome


class FallbackChain:
    """One module's venues, their flags and breakers."""

    def __init__(self, module: str, sources: Sequence[VenueSource]) -> None:
        self.module = module
        self.sources = tuple(sources)
        self.enabled = {source.name: True for source in self.sources}
        self.breakers = {source.name: SourceBreaker() for source in self.sources}

    @property
    def flags(self) -> frozenset[str]:
        """The flags of this chain's sources (keys of the flags bucket)."""
        return frozenset(venue_flag(source.name) for source in self.sources)

    def switch(self, flag: str, enabled: bool) -> bool:
        """Apply a flags-bucket value; True if `flag` was one of this chain's sources."""
        for name in self.enabled:
            if venue_flag(name) == flag:
                self.enabled[name] = enabled
                return True
        return False

    async def answer(self, asset: str, deadline: float, clock: Clock) -> Answer | None:
        """The first source's payload for `asset` before `deadline` (monotonic); None if no source was asked."""
        last: Answer | None = None
        for source in self.sources:
            now = clock.monotonic()
            budget = deadline - now
            if budget <= 0:
                break
            breaker = self.breakers[source.name]
            if not self.enabled[source.name] or not breaker.allows(now):
                continue
            payload, outcome = await source.fetch(self.module, asset, budget=budget)
            breaker.record(outcome, clock.monotonic())
            last = Answer(source.name, payload, outcome)
            if payload is not None:
                return last
        return last
