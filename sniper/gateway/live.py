"""LiveState: the pipeline as a read-only client sees it (the status page, `sniper watch`, the read endpoints).

What it follows, and how (everything a ``bot`` user may do, see nats.conf):

* **Signals**: the newest `Signal` of every asset, caught up at start from the
  durable stream ``<prefix>_signals`` (`Bus.last_per_subject`, then
  `Bus.follow_stream`: the newest per subject, then each new one). Without the
  stream (JetStream off, no such stream, no right to read it) one
  ``signal_stream_unavailable`` line is logged and a live subscription on
  ``signal.*`` takes its place: assets show up at their next cycle.
* **Breakers and flags**: from the read-only ``cmd.status`` query (a bot may not
  subscribe to ``circuit.*`` or ``flags.changed``): once at start, every
  `refresh` seconds (default 5 s, the default interval), and soon after each
  new signal, but never twice within `min_gap` (1 s). So a breaker or flag
  change shows within about a second of the next signal, at most one request a
  second whatever the number of assets (the status keeper takes 200 a second).
  The reply's signals count as signals too (a catch-up where the stream is missing).
* **Health** (``health.*``) of the assets known, and the **alerts** (``alert.*``)
  seen, the newest `max_alerts` by fingerprint.

Bounded and checked: every message goes through the typed decoders
(`messages.decode`); a signal must travel on its own asset's subject and not be
dated beyond `max_clock_skew` ahead of this clock; only the first `max_assets`
assets seen are kept (the rest are counted, `stats.dropped_assets`). An older
signal never replaces a newer one.

Changes: `subscribe()` hands out a bounded queue per listener of change events
(JSON-ready dicts with a ``type``: ``signal``, ``health``, ``status``,
``alert``, ``connection``; ``closed`` at `stop`). A listener that falls
`queue_size` events behind loses them and gets one full ``snapshot`` instead
(`stats.resyncs`). Time comes from the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import msgspec

from messages import (
    Alert,
    CircuitState,
    DecodeError,
    Health,
    Signal,
    StatusQuery,
    StatusReply,
    Subjects,
    decode,
    encode,
)
from messages.subjects import SIGNALS_STREAM
from runtime import Bus, Clock, SystemClock
from runtime.bus import Envelope, Subscription
from runtime.errors import BusError
from runtime.logs import get_logger
from runtime.stream import StreamUnavailable

log = get_logger("gateway.live")

#: Assets kept at most (the first seen win; the rest are counted and ignored).
MAX_ASSETS: Final = 1024
#: Alerts kept (by fingerprint, the newest).
MAX_ALERTS: Final = 50
#: Change events queued per listener before it is resynced with a snapshot.
QUEUE_SIZE: Final = 256
#: Seconds between two ``cmd.status`` refreshes when no signal comes.
REFRESH: Final = 5.0
#: Shortest gap between two ``cmd.status`` requests (seconds).
MIN_GAP: Final = 1.0
#: How long a ``cmd.status`` reply may take (seconds).
STATUS_TIMEOUT: Final = 2.0
#: A signal dated further ahead of this clock than this (seconds) is refused.
MAX_CLOCK_SKEW: Final = 30.0

#: The event a listener gets when the state stops: nothing follows it.
CLOSED: Final[Mapping[str, Any]] = {"type": "closed"}

Source = Literal["stream", "live"]
Change = dict[str, Any]


@dataclass(slots=True)
class LiveStats:
    """What the live state counted (shown in the snapshot)."""

    signals: int = 0  # signals taken (a newer one for an asset)
    bad_messages: int = 0  # undecodable, on the wrong subject, or dated in the future
    stale: int = 0  # older than the signal kept for the asset
    dropped_assets: int = 0  # signals of assets past `max_assets`
    status_requests: int = 0
    status_failures: int = 0
    resyncs: int = 0  # listeners that fell behind and got a snapshot instead


def _breakers(states: Collection[CircuitState]) -> list[CircuitState]:
    """One per (module, scope), the newest; module-wide (``all``) first within a module."""
    newest: dict[tuple[str, str], CircuitState] = {}
    for st in states:
        key = (st.module, st.scope)
        if key not in newest or st.ts >= newest[key].ts:
            newest[key] = st
    return sorted(newest.values(), key=lambda st: (st.module, st.scope != "all", st.scope))


class LiveState:
    """The last signal per asset, breakers not closed, flags, health and recent alerts, kept current.

    `assets` narrows it to those assets (one asset: one subject); None follows every asset.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        assets: Collection[str] | None = None,
        max_assets: int = MAX_ASSETS,
        max_alerts: int = MAX_ALERTS,
        queue_size: int = QUEUE_SIZE,
        refresh: float = REFRESH,
        min_gap: float = MIN_GAP,
        status_timeout: float = STATUS_TIMEOUT,
        max_clock_skew: float = MAX_CLOCK_SKEW,
    ) -> None:
        self.clock = clock or SystemClock()
        self.assets = frozenset(a.upper() for a in assets) if assets is not None else None
        self.max_assets = max_assets
        self.max_alerts = max_alerts
        self.queue_size = max(2, queue_size)
        self.refresh = refresh
        self.min_gap = min_gap
        self.status_timeout = status_timeout
        self.max_clock_skew = max_clock_skew
        self.stats = LiveStats()
        #: Where signals come from: the durable stream, or a live subscription (None before `start`).
        self.source: Source | None = None
        self.stream: str | None = None
        self.signals: dict[str, Signal] = {}
        self.health: dict[str, Health] = {}
        self.breakers: list[CircuitState] = []
        self.flags: dict[str, bool] = {}
        self.alerts: OrderedDict[str, Alert] = OrderedDict()
        #: When the last good ``cmd.status`` reply came (clock time), and why the last one failed.
        self.status_at: float | None = None
        self.status_error: str | None = None
        self._bus: Bus | None = None
        self._subjects = Subjects()
        self._subs: list[Subscription] = []
        self._listeners: set[asyncio.Queue[Change]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._unlisten: Callable[[], None] | None = None
        self._wake = asyncio.Event()
        self._status_lock = asyncio.Lock()
        self._last_request: float | None = None
        self._stopped = False

    # -- the read endpoints' view (sniper.gateway.gpts.SignalSource) -----------------
    def last_signals(self) -> Mapping[str, Signal]:
        """The newest signal of each asset."""
        return self.signals

    @property
    def connected(self) -> bool:
        """True while the bus reaches the broker."""
        return self._bus is not None and self._bus.connected

    # -- lifecycle ------------------------------------------------------------------
    async def start(self, bus: Bus, subjects: Subjects) -> None:
        """Subscribe, catch up (stream, then one ``cmd.status``), and keep refreshing until `stop`."""
        self._bus, self._subjects = bus, subjects
        one = next(iter(self.assets)) if self.assets is not None and len(self.assets) == 1 else None
        health = subjects.health(one) if one else subjects.health_all()
        self._subs.append(await bus.subscribe(health, self._on_health))
        self._subs.append(await bus.subscribe(subjects.alert_all(), self._on_alert))
        await self._follow_signals(bus, subjects, subjects.signal(one) if one else subjects.signal_all())
        self._unlisten = bus.connection.listen(self._on_connection)
        await self.refresh_status()
        self._tasks.append(asyncio.create_task(self._refresher(), name="live-status-refresh"))

    async def _follow_signals(self, bus: Bus, subjects: Subjects, subject: str) -> None:
        self.stream = subjects.stream(SIGNALS_STREAM)
        try:
            for env in await bus.last_per_subject(self.stream, subject):
                await self._on_signal(env)
            self._subs.append(await bus.follow_stream(self.stream, subject, self._on_signal))
            self.source = "stream"
        except StreamUnavailable as exc:  # no durability: what comes next is still shown
            log.warning("signal_stream_unavailable", stream=self.stream, error=str(exc), fallback=f"live {subject}")
            self._subs.append(await bus.subscribe(subject, self._on_signal))
            self.source = "live"

    async def stop(self) -> None:
        """Stop following; every listener gets `CLOSED`. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._unlisten is not None:
            self._unlisten()
        for sub in self._subs:
            with contextlib.suppress(BusError):
                await sub.unsubscribe()
        self._subs.clear()
        self._emit(dict(CLOSED))
        self._listeners.clear()

    # -- listeners --------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[Change]:
        """A queue of change events (bounded: a listener that falls behind gets one snapshot instead)."""
        queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=self.queue_size)
        if self._stopped:
            queue.put_nowait(dict(CLOSED))
        else:
            self._listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Change]) -> None:
        self._listeners.discard(queue)

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def _emit(self, change: Change) -> None:
        snapshot: Change | None = None
        for queue in list(self._listeners):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:  # fell behind: what it missed is in a snapshot
                while not queue.empty():
                    queue.get_nowait()
                if change.get("type") == "closed":
                    queue.put_nowait(change)
                    continue
                self.stats.resyncs += 1
                snapshot = snapshot or self.snapshot()
                queue.put_nowait(snapshot)

    # -- what arrives ---------------------------------------------------------------
    def _bad(self, what: str, subject: str, reason: str) -> None:
        self.stats.bad_messages += 1
        count = self.stats.bad_messages
        if count & (count - 1) == 0:  # the 1st, 2nd, 4th, 8th, ...: a flood costs a few lines
            log.warning("live_bad_message", kind=what, subject=subject[:120], reason=reason[:200], count=count)

    def _wanted(self, asset: str) -> bool:
        return self.assets is None or asset in self.assets

    async def _on_signal(self, env: Envelope) -> None:
        try:
            sig = decode(env.data, Signal, subject=env.subject)
        except DecodeError as err:
            self._bad("signal", env.subject, err.reason)
            return
        if env.subject != self._subjects.signal(sig.asset):
            self._bad("signal", env.subject, f"a signal for {sig.asset} on another subject")
            return
        self._take(sig)

    def _take(self, sig: Signal) -> bool:
        """Keep `sig` if it is the newest for its asset (and the asset fits); emits a ``signal`` change."""
        if not self._wanted(sig.asset):
            return False
        now = self.clock.now()
        if sig.ts > now + self.max_clock_skew:
            self._bad("signal", self._subjects.signal(sig.asset), f"dated {sig.ts - now:.0f} s ahead of this clock")
            return False
        current = self.signals.get(sig.asset)
        if current is None and len(self.signals) >= self.max_assets:
            self.stats.dropped_assets += 1
            if self.stats.dropped_assets == 1:
                log.warning("live_assets_capped", max_assets=self.max_assets, asset=sig.asset)
            return False
        if current is not None:
            if sig == current:  # the stream's redelivery of what was read at start
                return False
            if sig.ts < current.ts:
                self.stats.stale += 1
                return False
        self.signals[sig.asset] = sig
        self.stats.signals += 1
        self._wake.set()
        self._emit({"type": "signal", "ts": now, "asset": sig.asset, "entry": self._entry(sig.asset, now)})
        return True

    async def _on_health(self, env: Envelope) -> None:
        try:
            health = decode(env.data, Health, subject=env.subject)
        except DecodeError as err:
            self._bad("health", env.subject, err.reason)
            return
        if env.subject != self._subjects.health(health.asset):
            self._bad("health", env.subject, f"health of {health.asset} on another subject")
            return
        current = self.health.get(health.asset)
        known = health.asset in self.signals or (current is None and len(self.health) < self.max_assets)
        if not self._wanted(health.asset) or not known or (current is not None and health.ts < current.ts):
            return
        self.health[health.asset] = health
        self._emit({"type": "health", "ts": self.clock.now(), "asset": health.asset, "health": _health(health)})

    async def _on_alert(self, env: Envelope) -> None:
        try:
            alert = decode(env.data, Alert, subject=env.subject)
        except DecodeError as err:
            self._bad("alert", env.subject, err.reason)
            return
        if env.subject != self._subjects.alert(alert.name):
            self._bad("alert", env.subject, f"alert {alert.name} on another subject")
            return
        self.alerts[alert.fingerprint] = alert
        self.alerts.move_to_end(alert.fingerprint)
        while len(self.alerts) > self.max_alerts:
            self.alerts.popitem(last=False)
        self._emit({"type": "alert", "ts": self.clock.now(), "alert": msgspec.to_builtins(alert)})

    def _on_connection(self, connected: bool) -> None:
        self._emit({"type": "connection", "ts": self.clock.now(), "connected": connected})
        if connected:
            self._wake.set()  # breakers and flags may have moved meanwhile

    # -- breakers and flags: cmd.status ------------------------------------------------
    async def refresh_status(self) -> bool:
        """Ask ``cmd.status`` once; True if it answered. Emits a ``status`` change when something moved."""
        bus = self._bus
        if bus is None or bus.is_closed:
            return False
        async with self._status_lock:
            self._last_request = self.clock.monotonic()
            self.stats.status_requests += 1
            one = next(iter(self.assets)) if self.assets is not None and len(self.assets) == 1 else None
            subject = self._subjects.command("status")
            try:
                env = await bus.request(subject, encode(StatusQuery(asset=one)), timeout=self.status_timeout)
                reply = decode(env.data, StatusReply, subject=subject)
            except (BusError, DecodeError) as exc:
                return self._status_failed(str(exc))
            if not reply.ok:
                return self._status_failed(f"the status keeper refused: {reply.error}")
            for status in reply.assets.values():
                if status.signal is not None:
                    self._take(status.signal)
            breakers = _breakers([st for status in reply.assets.values() for st in status.circuits])
            flags = dict(sorted(reply.flags.items()))
            changed = breakers != self.breakers or flags != self.flags or self.status_error is not None
            if self.status_error is not None:
                log.info("status_available", subject=subject)
            self.breakers, self.flags, self.status_error = breakers, flags, None
            self.status_at = self.clock.now()
            if changed:
                self._emit_status()
            return True

    def _status_failed(self, error: str) -> bool:
        self.stats.status_failures += 1
        if error != self.status_error:
            log.warning("status_unavailable", error=error[:300], effect="breakers and flags as last known")
            self.status_error = error[:300]
            self._emit_status()
        return False

    def _emit_status(self) -> None:
        self._emit({"type": "status", "ts": self.clock.now(), **self._status_part()})

    async def _refresher(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await self.clock.timeout(self.refresh, self._wake.wait())
            self._wake.clear()
            if self._last_request is not None:
                gap = self._last_request + self.min_gap - self.clock.monotonic()
                if gap > 0:
                    await self.clock.sleep(gap)
            self._wake.clear()  # signals that came during the gap are covered by this request
            if self._bus is not None and self._bus.connected:
                try:
                    await self.refresh_status()
                except Exception:  # a bug here must not end the refreshes (the next one may work)
                    log.exception("status_refresh_failed")

    # -- the snapshot -----------------------------------------------------------------
    def _entry(self, asset: str, now: float) -> dict[str, Any]:
        sig = self.signals[asset]
        health = self.health.get(asset)
        return {
            "asset": sig.asset,
            "cycle": sig.cycle,
            "epoch": sig.epoch,
            "ts": sig.ts,
            "started": sig.started,
            "age": round(max(0.0, now - sig.ts), 3),
            "direction": sig.direction,
            "score": sig.score,
            "confidence": sig.confidence,
            "etf_available": sig.etf_available,
            "complete": sig.complete,
            "modules": {m: msgspec.to_builtins(st) for m, st in sorted(sig.modules.items())},
            "components": dict(sorted(sig.components.items())),
            "health": _health(health) if health is not None else None,
        }

    def _status_part(self) -> dict[str, Any]:
        return {
            "breakers": [msgspec.to_builtins(st) for st in self.breakers],
            "flags": dict(self.flags),
            "status": {"at": self.status_at, "error": self.status_error},
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything known, JSON-ready: ``{"type": "snapshot", "ts", "assets": {...}, "breakers", "flags", ...}``."""
        now = self.clock.now()
        modules = sorted({m for sig in self.signals.values() for m in sig.modules})
        return {
            "type": "snapshot",
            "ts": now,
            "connected": self.connected,
            "source": self.source,
            "stream": self.stream,
            "modules": modules,
            "assets": {asset: self._entry(asset, now) for asset in sorted(self.signals)},
            **self._status_part(),
            "alerts": [msgspec.to_builtins(a) for a in sorted(self.alerts.values(), key=lambda a: -a.ts)],
            "stats": asdict(self.stats),
        }


def _health(health: Health) -> dict[str, Any]:
    return {
        "state": health.state,
        "cycle": health.cycle,
        "ts": health.ts,
        "consecutive_failures": health.consecutive_failures,
        "failed": list(health.failed),
    }


def breakers_for(snapshot: Mapping[str, Any], asset: str) -> list[dict[str, Any]]:
    """The snapshot's breakers that hold `asset` back: module-wide ones and its own."""
    return [b for b in snapshot.get("breakers", []) if b.get("scope") in ("all", asset)]
