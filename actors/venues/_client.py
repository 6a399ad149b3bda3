"""What the venue clients share: rate limits and throttle holds, one classified GET, bounded payloads.

Why one file: Binance, OKX and Bybit differ in paths, shapes and error codes,
but they must be polite the same way and fail the same way. Each venue's
requests go through `VenueHttp`, which

* refuses to call during a throttle hold (after a 429, a Binance 418 ban, an
  OKX 50011 or a Bybit 403: no request before Retry-After has passed),
* books room in a `RateLimit` first (a share of the venue's documented limit;
  a caller that would wait longer than half its budget is refused instead),
* sends through `actors.upstream.UpstreamClient` on the process's pooled
  transport, so timeouts, resets, body caps and HTTP statuses are classified
  exactly as the backend's (one place turns transport errors into outcomes),
* then lets the venue read what only it knows (its error codes inside a 200).

Refusals made here are ``throttled``/``rate_limited`` outcomes with
``called=False`` and a ``retry_after``: a breaker must not read them as the
venue's answer. A venue answer becomes a payload through `finish`, which
applies the module spec's check, normalise and size cap as
`actors.fetcher.ModuleFetcher.read_payload` does, so a venue payload is as
bounded as a backend one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import msgspec

from actors import symbols
from actors.routing import RequestSettings
from actors.upstream import Outcome, Transport, UpstreamClient, bad_payload
from messages import MAX_MESSAGE_BYTES, ModulePayload
from messages.errors import SymbolError
from messages.modules import REGISTRY
from runtime.clock import Clock

T = TypeVar("T")

#: Fraction of each venue's documented limit one process uses by default: room for a second
#: process or an overlapping restart on the same IP, and for the venue counting arrivals, not sends.
DEFAULT_SHARE = 0.5
#: Longest a request waits for room in its rate limit, as a fraction of the fetch's budget.
MAX_WAIT_SHARE = 0.5
#: Same bound as `actors.fetcher.MAX_PAYLOAD_BYTES` (not imported: the fetcher will import this package).
MAX_PAYLOAD_BYTES = MAX_MESSAGE_BYTES - 4096
#: Bias: a latest long/short ratio this far (in log terms) from its window's mean scores tanh(1) = 0.76.
BIAS_SCALE = 0.15
#: Bias labels, as the reference backend draws them: |score| above this is bullish or bearish.
BIAS_LABEL_AT = 0.15

_payload_encoder = msgspec.json.Encoder()


class VenueDataError(ValueError):
    """A venue answer that arrived but cannot be used; the message is the outcome's detail."""


# -- rate limits -------------------------------------------------------------------------------------------


class Hold:
    """No request before `until` (monotonic): set after a venue said "too many"; shared by the limits it covers."""

    def __init__(self) -> None:
        self.until = -math.inf

    def left(self, now: float) -> float:
        return max(0.0, self.until - now)

    def extend(self, now: float, seconds: float) -> None:
        self.until = max(self.until, now + seconds)


class RateLimit:
    """At most `limit` units (requests, or Binance request weight) in any `window` seconds.

    A sliding window, not a token bucket: a bucket of capacity N refilling N
    per window lets 2N through within one window (the full bucket, then the
    refill), and venues count per window. Room is booked first come, first
    served: a caller that must wait gets a start after every earlier booking,
    so concurrent fetches queue instead of racing. Booked units count from
    their start time, which the caller then keeps (`VenueHttp` sleeps until it).
    """

    def __init__(self, name: str, limit: int, window: float, *, hold: Hold | None = None) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(f"rate limit {name}: need limit >= 1 and window > 0, not {limit} per {window}")
        self.name = name
        self.limit = limit
        self.window = window
        self.hold = hold or Hold()
        self._booked: deque[tuple[float, int]] = deque()  # (start, units), starts ascending
        self._units = 0  # sum of units in _booked

    def earliest(self, units: int, now: float) -> float:
        """The earliest start (monotonic) at which `units` more fit; inf if they never can."""
        if units > self.limit:
            return math.inf
        booked = self._booked
        while booked and booked[0][0] <= now - self.window:  # gone out of every window from now on
            self._units -= booked.popleft()[1]
        start = max(now, booked[-1][0]) if booked else now
        used = self._units
        for at, n in booked:
            if at <= start - self.window:  # outside the window that ends at `start`
                used -= n
            elif used + units <= self.limit:
                break
            else:  # wait until this booking has left the window (a microsecond past it: float sums round)
                used -= n
                start = at + self.window + 1e-6
        return start

    def reserve(self, units: int, now: float, *, max_wait: float) -> float | None:
        """Book `units`; the seconds to wait before sending (0: now), or None (nothing booked) if over `max_wait`."""
        start = self.earliest(units, now)
        if start - now > max_wait:
            return None
        self._booked.append((start, units))
        self._units += units
        return start - now


def share_of(documented: int, share: float) -> int:
    """Our part of a documented limit: at least one unit, never more than the whole."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], not {share}")
    return max(1, math.floor(documented * share))


# -- one classified GET ------------------------------------------------------------------------------------

Reclassify = Callable[[Outcome], Outcome]


def refused(detail: str, retry_after: float) -> Outcome:
    """A call we did not make because a limit or a hold says not now."""
    return Outcome("throttled", "rate_limited", detail=detail, retry_after=max(0.0, retry_after), called=False)


class VenueHttp:
    """One venue host: `UpstreamClient` behind rate limits and holds, plus the venue's own reading of answers."""

    def __init__(self, base_url: str, transport: Transport, *, clock: Clock, reclassify: Reclassify) -> None:
        self.upstream = UpstreamClient(base_url, transport, clock=clock)
        self.clock = clock
        self.reclassify = reclassify

    async def get(
        self, module: str, path: str, query: Mapping[str, str], *, limit: RateLimit, deadline: float, units: int = 1
    ) -> Outcome:
        """One polite GET, finished by `deadline` (monotonic); never raises for what the venue does."""
        now = self.clock.monotonic()
        if (held := limit.hold.left(now)) > 0:
            return refused(f"{limit.name}: holding off after a throttle answer", held)
        wait = limit.reserve(units, now, max_wait=(deadline - now) * MAX_WAIT_SHARE)
        if wait is None:
            retry = limit.earliest(units, now) - now
            return refused(f"{limit.name}: client-side limit of {limit.limit} per {limit.window:g}s reached", retry)
        if wait > 0:
            await self.clock.sleep(wait)
            now = self.clock.monotonic()
            if (held := limit.hold.left(now)) > 0:
                return refused(f"{limit.name}: holding off after a throttle answer", held)
        outcome = await self.upstream.get(module, path, query, budget=deadline - now)
        outcome = self.reclassify(outcome)
        if outcome.error_class == "throttled":
            # No Retry-After (OKX, Bybit's codes): wait out the venue's counting window.
            seconds = outcome.retry_after or limit.window
            limit.hold.extend(self.clock.monotonic(), seconds)
            outcome = dataclasses.replace(outcome, retry_after=seconds)
        return outcome


# -- reading answers ---------------------------------------------------------------------------------------


def decode(body: bytes, shape: type[T], what: str) -> T:
    """`body` as `shape`, or VenueDataError saying what did not fit."""
    try:
        return msgspec.json.decode(body, type=shape)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise VenueDataError(f"{what} does not match the venue's documented shape: {exc}") from None


def number(value: object, what: str, *, signed: bool = False, positive: bool = False) -> float:
    """A venue's decimal string (or JSON number) as a finite float: negative only if `signed`, 0 not if `positive`."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise VenueDataError(f"{what}: {value!r} is not a number")
    try:
        x = float(value)
    except ValueError:
        raise VenueDataError(f"{what}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise VenueDataError(f"{what}: {value!r} is not finite")
    if (x < 0 and not signed) or (x == 0 and positive):
        raise VenueDataError(f"{what}: {value!r} is out of range")
    return x


def millis(value: object, what: str) -> float:
    """A venue's epoch milliseconds as epoch seconds (what the payloads carry)."""
    return number(value, what) / 1000.0


def book_side(rows: Sequence[Sequence[object]], what: str, *, descending: bool) -> list[tuple[float, float]]:
    """``[[price, size, ...], ...]`` as ``(price, size)`` floats, sorted as ccxt does (bids down, asks up)."""
    levels = []
    for row in rows:
        if len(row) < 2:
            raise VenueDataError(f"{what}: level {list(row)!r} has no price and size")
        levels.append((number(row[0], f"{what} price", positive=True), number(row[1], f"{what} size")))
    levels.sort(key=lambda level: level[0], reverse=descending)
    return levels


def positioning(symbol: str, ratios: Sequence[float]) -> dict[str, Any]:
    """`InstitutionalBias` fields from a venue's long/short *account* ratios, oldest first.

    The account ratio of every trader on a venue sits persistently above 1
    (most accounts are long), so its level says little; its move does. The
    score compares the latest ratio with the geometric mean of the window:
    tanh(ln(latest / mean) / `BIAS_SCALE`), positive when accounts are more
    long than they have been (the reference backend's sign: a higher ratio,
    a higher score). It measures the crowd, not institutions. `funding_rate`
    and `oi_change_pct` keep the Struct's defaults (0.0: not measured here;
    the funding module carries funding, and scoring reads only `score`).
    """
    if not ratios:
        raise VenueDataError("no long/short ratio in the answer")
    latest = ratios[-1]
    mean = math.exp(statistics.fmean(math.log(r) for r in ratios))
    score = math.tanh(math.log(latest / mean) / BIAS_SCALE)
    label = "bullish" if score > BIAS_LABEL_AT else "bearish" if score < -BIAS_LABEL_AT else "neutral"
    return {"symbol": symbol, "bias": label, "score": round(score, 6), "long_short_ratio": latest}


def finish(module: str, fields: Mapping[str, Any], depth: int) -> ModulePayload:
    """The module's payload from mapped venue fields: validated, checked, trimmed and size-capped like a backend's."""
    spec = REGISTRY[module]
    try:
        payload: ModulePayload = msgspec.convert(fields, spec.payload)
    except msgspec.ValidationError as exc:
        raise VenueDataError(f"payload does not match {spec.payload.__name__}: {exc}") from None
    if problem := spec.check(payload):
        raise VenueDataError(problem)
    payload = spec.normalise(payload, depth)
    size = len(_payload_encoder.encode(payload))
    if size > MAX_PAYLOAD_BYTES:  # the caps make this unreachable; a wrong cap must not crash a publish
        raise VenueDataError(f"too_large: {size}-byte {module} payload exceeds {MAX_PAYLOAD_BYTES} bytes")
    return payload


@functools.lru_cache(maxsize=4096)
def market(asset: str, venue: str, quote: str, kind: str = "spot") -> str:
    """The venue's spelling of the asset's spot or perpetual market, via `actors.symbols` (SymbolError if none)."""
    inst = symbols.instrument(asset, quote, kind)
    return symbols.format(inst, venue)


# -- the base of every venue source ------------------------------------------------------------------------


class BaseVenue:
    """`fetch` for one venue: dispatch to the module's mapping, turn every failure into an Outcome."""

    name: ClassVar[str]
    #: The modules this venue can serve.
    modules: ClassVar[frozenset[str]]

    def __init__(self, *, clock: Clock, depth: int, quote: str, share: float) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        share_of(1, share)  # validates the share
        self.clock = clock
        self.depth = depth
        self.quote = quote
        self.share = share
        #: Every rate limit of this venue, by name (tests and metrics read them).
        self.limits: dict[str, RateLimit] = {}

    async def fetch(self, module: str, asset: str, *, budget: float) -> tuple[ModulePayload | None, Outcome]:
        """The module's payload for `asset` within `budget` seconds, or None and why; never raises."""
        started = self.clock.monotonic()
        payload: ModulePayload | None = None
        try:
            if module not in self.modules:
                outcome = Outcome("endpoint_missing", "not_found", detail=f"serves no {module}", called=False)
            elif budget <= 0:
                outcome = Outcome("transient", "timeout", detail="no budget left", called=False)
            else:
                payload, outcome = await self._fetch(module, asset, started + budget)
        except SymbolError as exc:
            outcome = Outcome("endpoint_missing", "not_found", detail=str(exc), called=False)
        except VenueDataError as exc:
            outcome = bad_payload(str(exc), status=200)
        except Exception as exc:  # a mapping bug must not take a fetcher down: failures are data
            outcome = bad_payload(f"unexpected {type(exc).__name__}: {exc}", status=200)
        latency = (self.clock.monotonic() - started) * 1000
        if payload is None and outcome.ok:
            outcome = bad_payload("no payload", status=outcome.status)
        detail = outcome.detail if outcome.ok else f"{self.name}: {outcome.detail}"[:300]
        return payload, dataclasses.replace(outcome, detail=detail, body=b"", latency_ms=latency)

    async def _fetch(self, module: str, asset: str, deadline: float) -> tuple[ModulePayload | None, Outcome]:
        raise NotImplementedError  # pragma: no cover - each venue implements it


#: Depth of the order book when the configuration says nothing (the fetchers' default).
DEFAULT_DEPTH = RequestSettings().depth
#: Quote currency when the configuration says nothing.
DEFAULT_QUOTE = RequestSettings().quote
