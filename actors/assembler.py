"""SignalAssembler: one signal per (asset, cycle) from whatever arrived in time.

The assembler never waits for a module that is not coming. For each
(asset, cycle) it opens a window when the tick (or the first report) arrives
and closes it at the deadline, or earlier once every expected module has
answered. Only a ticked window becomes a signal: reports whose tick never
came are dropped when their window closes. Each module's status in the signal is ``ok`` (data arrived),
``degraded`` (the fetcher said why not), ``disabled`` (a flag), or
``missing`` (nothing arrived: a dead fetcher host looks like this).

Windows are keyed by cycle, so a late report is counted and dropped: it can
never leak into the next cycle's signal. A tick for an already-closed cycle
that is *newer* than every tick seen for the asset means the scheduler
restarted and its count began again (it may run on another host): the
assembler starts a new epoch for that asset instead of calling it late.

Only what this process was configured for is kept: ticks and reports for
other assets or modules, ticks dated far from this clock, and reports that
would open more than `MAX_EARLY_WINDOWS` windows per asset ahead of their
tick are refused (counted as bad messages). So no flood, however forged, can
grow memory, metric labels or a signal beyond the configured assets and
modules.

Several processes may run an assembler: each builds every window, only the
one holding the lease (`runtime.lease`) publishes, with its term as the
signal's `fence`. The others watch the signals go out, so one that takes
over never publishes an (asset, epoch, cycle) its predecessor already did.
Ticks fenced below the newest scheduler term seen are refused (a deposed
scheduler's).

Deadlines: the tick carries the scheduler's deadline in wall time. If that
deadline is wildly off this process's clock (a replay of an old recording, or
skew between hosts), the window is measured from arrival instead, with the
same length, so replays and skewed hosts still produce full windows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from messages import REGISTRY, Degraded, ModuleData, ModuleStatus, Signal, Tick
from messages.cycle import ModuleStatusName
from runtime.actor import Actor, Sub, subs_for
from runtime.lease import Fencer, Leadership
from runtime.stream import MSG_ID, StreamSpec, StreamUnavailable

from .metrics import metrics_of
from .scoring import ScoringConfig, combine, sub_score

Report = ModuleData | Degraded

#: Windows a report may open per asset before its tick arrives (ticks normally come first).
MAX_EARLY_WINDOWS = 4


@dataclass(slots=True)
class _Window:
    asset: str
    cycle: int
    started: float
    closes_at: float  # monotonic
    expected: frozenset[str]
    reports: dict[str, Report] = field(default_factory=dict)
    ticked: bool = False
    moved: asyncio.Event = field(default_factory=asyncio.Event)  # wakes the closer when closes_at changes
    outages: int = 0  # the bus's outage count when the window opened
    epoch: int = 0  # the scheduler's, from the tick


class SignalAssembler(Actor):
    """Builds `Signal`s on ``signal.<ASSET>`` from module reports inside a time window."""

    name = "assembler"

    def __init__(
        self,
        *,
        modules: Iterable[str],
        assets: Iterable[str] | None = None,
        window: float = 3.0,
        scoring: ScoringConfig | None = None,
        stream: StreamSpec | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.modules = frozenset(modules)
        #: The durable stream signals are kept in (created on start; None: no stream).
        self.stream = stream
        #: The configured assets; None accepts any (tests, a catch-all assembler).
        self.assets = frozenset(assets) if assets is not None else None
        self.window = window
        self.scoring = scoring or ScoringConfig()
        self.late = 0
        self.signals = 0
        self.orphaned = 0  # windows that reports opened and no tick ever joined
        self.dropped_bus_down = 0  # signals not published because an outage overlapped their window
        self._open: dict[tuple[str, int], _Window] = {}
        self._closed_upto: dict[str, int] = {}
        self._last_tick: dict[str, float] = {}
        self._early: dict[str, int] = {}  # per asset: open windows still waiting for their tick
        self.withheld = 0  # signals built while another process held the lease: not published
        self._published: dict[str, tuple[int, int]] = {}  # per asset: the newest (epoch, cycle) seen published
        self._ticks = Fencer()
        self.leadership: Leadership = Leadership(self.name)

    def subscriptions(self) -> Iterable[Sub]:
        s = self.subjects
        return [
            *subs_for(s.ticks_for(self.assets), Tick, self.on_tick, accept=self.accept_tick),
            *subs_for(s.data_for(self.assets, self.modules), ModuleData, self.on_report, accept=self.accept_report),
            *subs_for(s.degraded_for(self.assets, self.modules), Degraded, self.on_report, accept=self.accept_report),
        ]

    async def run(self) -> None:
        # A standby reads the leader's signals (not to repeat them on a takeover); the leader does not.
        await self.leadership.hold(
            self, follow=subs_for(self.subjects.signals_for(self.assets), Signal, self.on_published)
        )

    # -- what is accepted -----------------------------------------------------------
    def _unknown_asset(self, asset: str) -> str | None:
        if self.assets is not None and asset not in self.assets:
            return f"unknown_asset: {asset} is not configured here"
        return None

    def accept_tick(self, tick: Tick) -> str | None:
        unknown = set(tick.modules) - self.modules
        if unknown:
            return f"unknown_module: {sorted(unknown)[:3]} not configured here"
        return (
            self._unknown_asset(tick.asset)
            or self.off_clock(tick.ts, "tick ts")
            or self._ticks.problem(tick.fence, "tick")
        )

    def accept_report(self, report: Report) -> str | None:
        if report.module not in self.modules:
            return f"unknown_module: {report.module} is not configured here"
        if (refusal := self._unknown_asset(report.asset)) is not None:
            return refusal
        if (report.asset, report.cycle) not in self._open and not self._is_closed(report.asset, report.cycle):
            early = self._early.get(report.asset, 0)
            if early >= MAX_EARLY_WINDOWS:
                return f"too_early: {early} windows of {report.asset} already wait for their tick"
        return None

    async def on_start(self) -> None:
        # A restart forgets open windows: their reports are gone with the old
        # subscriptions, and a half-filled signal would be worse than none.
        self._open.clear()
        self._early.clear()
        if self.stream is not None:
            try:
                await self.bus.ensure_stream(self.stream)
            except StreamUnavailable as exc:  # signals still flow live; late joiners wait for the next cycle
                self.log.warning("signal_stream_unavailable", stream=self.stream.name, error=str(exc))
            else:
                self.log.info("signal_stream_ready", stream=self.stream.name, subjects=",".join(self.stream.subjects))

    # -- arrivals ---------------------------------------------------------------
    async def on_tick(self, tick: Tick) -> None:
        newest = tick.ts > self._last_tick.get(tick.asset, float("-inf"))
        self._last_tick[tick.asset] = max(tick.ts, self._last_tick.get(tick.asset, tick.ts))
        if self._is_closed(tick.asset, tick.cycle):
            if not newest:
                self.late += 1
                return
            self.log.info("scheduler_epoch", asset=tick.asset, cycle=tick.cycle)
            self._closed_upto[tick.asset] = tick.cycle - 1
        length = max(0.0, tick.deadline - tick.ts)
        remaining = tick.deadline - self.clock.now()
        if remaining < -length or remaining > 2 * length + 1:
            remaining = length  # replay or clock skew: measure from arrival
        expected = frozenset(tick.modules) & self.modules if tick.modules else self.modules
        win = self._open.get((tick.asset, tick.cycle))
        if win is None:
            win = self._open_window(tick.asset, tick.cycle, tick.ts, remaining, expected)
        elif not win.ticked:  # reports came first; the tick fixes the window
            self._early[tick.asset] -= 1
            win.expected, win.started = expected, tick.ts
            win.closes_at = self.clock.monotonic() + max(0.0, remaining)
            win.moved.set()
        win.ticked = True
        win.epoch = tick.epoch
        await self._maybe_complete(win)

    async def on_report(self, report: Report) -> None:
        if isinstance(report, Degraded) and report.superseded:
            return  # the backend's verdict for the breakers; a fallback source's report stands for the module
        key = (report.asset, report.cycle)
        if self._is_closed(*key) and key not in self._open:
            self.late += 1
            metrics_of(self.ctx).late_reports.inc()
            self.log.debug("late_report", asset=report.asset, cycle=report.cycle, module=report.module)
            return
        win = self._open.get(key)
        if win is None:
            win = self._open_window(report.asset, report.cycle, report.ts, self.window, self.modules)
            self._early[report.asset] = self._early.get(report.asset, 0) + 1
        win.reports.setdefault(report.module, report)  # first answer wins; duplicates ignored
        await self._maybe_complete(win)

    async def on_published(self, signal: Signal) -> None:
        """Remember the newest cycle another assembler published per asset, not to repeat it on a takeover."""
        self.leadership.observe(signal.fence)
        if self.assets is not None and signal.asset not in self.assets:
            return
        if self.leadership.leading and signal.fence == self.leadership.term:
            return  # our own
        seen = (signal.epoch, signal.cycle)
        if seen > self._published.get(signal.asset, (-1, -1)):
            self._published[signal.asset] = seen

    # -- windows ------------------------------------------------------------------
    def _is_closed(self, asset: str, cycle: int) -> bool:
        return cycle <= self._closed_upto.get(asset, -1)

    def _open_window(self, asset: str, cycle: int, started: float, length: float, expected: frozenset[str]) -> _Window:
        win = _Window(asset, cycle, started, self.clock.monotonic() + max(0.0, length), expected)
        win.outages = self.bus.connection.outages
        self._open[(asset, cycle)] = win
        self.spawn(self._close_at_deadline(win), name=f"window:{asset}:{cycle}")
        return win

    async def _close_at_deadline(self, win: _Window) -> None:
        while self._open.get((win.asset, win.cycle)) is win:
            now = self.clock.monotonic()
            if now >= win.closes_at:
                await self._emit(win)
                return
            win.moved.clear()
            with contextlib.suppress(TimeoutError):  # sleep until the deadline, or until a tick moves it
                await self.clock.timeout(win.closes_at - now, win.moved.wait())

    async def _maybe_complete(self, win: _Window) -> None:
        # Only the leader closes a window early: a standby keeps it open to its deadline, so if it takes
        # over meanwhile (schedulers often win a moment before assemblers) that cycle still goes out.
        if win.ticked and win.expected <= win.reports.keys() and self.leadership.leading:
            await self._emit(win)

    async def _emit(self, win: _Window) -> None:
        if self._open.pop((win.asset, win.cycle), None) is None:
            return  # already emitted
        # Wake the window's closer so it ends now, not at the deadline: a window emitted early
        # (every module answered) must not keep its task, timer and reports alive for the
        # rest of the window (at 1,000 assets that was ~600 windows, lengthening every GC pass).
        win.moved.set()
        if not win.ticked:
            # Reports without a tick are no cycle: nobody started it, so no signal
            # (a flood of forged reports must not become a flood of junk signals).
            self._early[win.asset] -= 1
            self.orphaned += 1
            self.log.debug("orphan_window", asset=win.asset, cycle=win.cycle, reports=len(win.reports))
            return
        self._closed_upto[win.asset] = max(self._closed_upto.get(win.asset, -1), win.cycle)
        if not self.bus.connected or self.bus.connection.outages != win.outages:
            # The broker failed this cycle (its reports were lost with the link), not
            # the backend; and a signal held in the reconnect buffer would reach
            # bots late, as junk. The scheduler skips the cycle the same way.
            self.dropped_bus_down += 1
            self.log.warning("signal_dropped_bus_down", asset=win.asset, cycle=win.cycle)
            return
        if not self.leadership.leading or (win.epoch, win.cycle) <= self._published.get(win.asset, (-1, -1)):
            self.withheld += 1  # another assembler leads, or already published this cycle
            return
        signal = self.build(win)
        await self.publish(self.subjects.signal(win.asset), signal, headers={MSG_ID: signal.msg_id})
        self.signals += 1
        metrics = metrics_of(self.ctx)
        metrics.signals.labels(win.asset, signal.direction).inc()
        # Wall time on both ends (the tick's ts was checked against this clock on arrival); never negative.
        metrics.cycle_latency.labels(win.asset).observe(max(0.0, signal.ts - signal.started))

    def build(self, win: _Window) -> Signal:
        """The signal for a closed window (pure apart from the clock read)."""
        statuses: dict[str, ModuleStatus] = {}
        components: dict[str, float] = {}
        for module in sorted(win.expected | win.reports.keys()):
            report = win.reports.get(module)
            if report is None:
                statuses[module] = ModuleStatus(status="missing", reason="no report inside the window")
            elif isinstance(report, Degraded):
                status: ModuleStatusName = "disabled" if report.reason == "disabled" else "degraded"
                statuses[module] = ModuleStatus(status=status, reason=report.reason, source=report.source)
            else:
                try:
                    components[module] = round(sub_score(report.payload, self.scoring), 6)
                    statuses[module] = ModuleStatus(
                        status="ok", latency_ms=round(report.latency_ms, 3), source=report.source
                    )
                except (ValueError, IndexError, ZeroDivisionError, TypeError, OverflowError) as exc:
                    self.log.warning("unscorable_payload", module=module, asset=win.asset, error=repr(exc))
                    statuses[module] = ModuleStatus(status="degraded", reason="bad_payload")
        expected = frozenset(m for m, st in statuses.items() if st.status != "disabled")
        trust = {m: REGISTRY[m].venue_trust for m, st in statuses.items() if st.source != "backend" and m in REGISTRY}
        verdict = combine(components, expected, self.scoring, trust)
        return Signal(
            asset=win.asset,
            cycle=win.cycle,
            ts=self.clock.now(),
            started=win.started,
            direction=verdict.direction,  # type: ignore[arg-type]
            score=verdict.score,
            confidence=verdict.confidence,
            modules=statuses,
            etf_available=statuses.get("etf", ModuleStatus(status="missing")).status == "ok",
            components=components,
            complete=all(st.status != "missing" for st in statuses.values()),
            epoch=win.epoch,
            fence=self.leadership.fence,
        )
