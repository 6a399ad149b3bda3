"""Flow control at the inbound edge: a token bucket and a rate-limited warning.

Both exist for the same reason: what arrives on the bus is not under our
control, so neither the work it causes nor the log lines it produces may grow
with its rate. Time is whatever clock the caller passes (an actor's injected
clock), so both are testable in virtual time.
"""

from __future__ import annotations

from typing import Any

from .logs import StructLogger


class TokenBucket:
    """`rate` tokens per second, holding at most `rate` (a burst of one second's worth)."""

    __slots__ = ("_at", "_tokens", "rate")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self._tokens = rate
        self._at = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._tokens = min(self.rate, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class RateLimitedWarning:
    """At most `burst` lines per `period` seconds for one event; the rest summed up in one line after."""

    __slots__ = ("_count", "_log", "_since", "_suppressed", "burst", "event", "period")

    def __init__(self, log: StructLogger, event: str, *, burst: int = 10, period: float = 10.0) -> None:
        self._log = log
        self.event = event
        self.burst = burst
        self.period = period
        self._since = float("-inf")
        self._count = 0
        self._suppressed = 0

    def __call__(self, now: float, **fields: Any) -> None:
        if now - self._since >= self.period:
            if self._suppressed:
                seconds = round(now - self._since)
                self._log.warning(f"{self.event}_suppressed", count=self._suppressed, seconds=seconds)
            self._since, self._count, self._suppressed = now, 0, 0
        if self._count < self.burst:
            self._count += 1
            self._log.warning(self.event, **fields)
        else:
            self._suppressed += 1
