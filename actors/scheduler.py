"""Scheduler: starts a cycle per asset on an interval and judges its health.

Per asset, a loop publishes `Tick` (cycle number, deadline = now + window),
waits for that cycle's `Signal`, publishes a `Health` verdict, and sleeps
until the next cycle. The verdict follows the seed analysis:

* ``healthy``: every module answered.
* ``soft_fail``: something failed, but not every core module. Does not count:
  an ETF 402 must never mark the scheduler unhealthy.
* ``hard_fail``: every enabled core module (by default those the registry
  marks core: whale, heatmap, spot_ob) failed or was missing. Consecutive hard failures grow the delay to
  the next cycle (exponential with jitter, capped); the first cycle in which
  any module succeeds again resets it to the normal interval.

With several assets, cycle starts are staggered evenly over the interval
(asset i starts i * interval / n late) so the backend and this process see a
steady trickle instead of a burst of n x 5 requests at one instant.

A broker outage is not a backend failure. While the bus is disconnected no
tick is published (a tick nats-py held in its reconnect buffer would start a
cycle late, after the outage: it is dropped instead), the cycle in flight when
the link drops is abandoned unjudged (``cycle_skipped_bus_down``, no `Health`),
and the failure count and backoff stay as they were. When the bus is back,
every asset's next cycle starts within one interval, at its stagger offset,
even if a backoff sleep begun before the outage had longer to run.

Several processes may run a scheduler; one leads (`runtime.lease`), and its
term is the `fence` of every tick and health verdict. The others follow its
ticks and verdicts, so a scheduler that takes over keeps the epoch, goes on
counting each asset's cycles where the last leader stopped and keeps its
backoff (the failure count; the followed count is also this process's
``sniper_consecutive_failures``, so no process reports a stale one): (asset, epoch, cycle) stays
unique, and every asset's next cycle is due one interval after its last tick
(at once, spread over a tenth of the interval, when that has passed).

The interval may differ outside the trading-hours window, which is evaluated
in Asia/Jakarta (UTC+7, no DST); entering and leaving the window is logged as
``Active trading hours - Jakarta: ...``. All timing goes through the clock.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from messages import ConfigError, Health, Signal, Tick
from messages.modules import DEFAULT_CORE
from runtime.actor import Actor, Sub, subs_for
from runtime.lease import Fencer, Leadership

from .metrics import metrics_of

JAKARTA = ZoneInfo("Asia/Jakarta")
#: On a takeover, the assets whose next cycle is overdue start within this share of the interval.
CATCH_UP_SPREAD = 0.1
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class TradingHours:
    """A daily window in Jakarta time; ``start > end`` wraps past midnight."""

    start: time
    end: time | None  # None = 24:00

    @classmethod
    def parse(cls, text: str) -> TradingHours:
        m = _HOURS.match(text)
        if not m:
            raise ConfigError(f"trading hours {text!r}: expected HH:MM-HH:MM, e.g. 08:00-22:00")
        h1, m1, h2, m2 = map(int, m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
            raise ConfigError(f"trading hours {text!r}: not a time of day")
        return cls(time(h1, m1), None if h2 == 24 else time(h2, m2))

    def __str__(self) -> str:
        end = "24:00" if self.end is None else self.end.strftime("%H:%M")
        return f"{self.start.strftime('%H:%M')}-{end}"

    def contains(self, wall: float) -> bool:
        now = datetime.fromtimestamp(wall, UTC).astimezone(JAKARTA).time()
        if self.end is None:
            return now >= self.start
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """Which modules are core, and how hard failures back off."""

    core: frozenset[str] = DEFAULT_CORE
    backoff_factor: float = 2.0
    backoff_max: float = 300.0
    jitter: float = 0.2

    def delay(self, interval: float, failures: int, rng: random.Random) -> float:
        """Seconds to the next cycle: the interval, or a jittered exponential backoff.

        The base is capped at `backoff_max` (or at the interval when that is
        longer, off hours), then spread by +/- `jitter` so hosts that failed
        together do not retry in step, even at the cap. A failure never makes
        the next cycle come sooner than the interval.
        """
        if failures <= 0:
            return interval
        # The exponent is clamped: an 85-hour outage must not overflow a float and crash the scheduler.
        base = min(max(self.backoff_max, interval), interval * self.backoff_factor ** min(failures, 64))
        return max(interval, base * (1 + rng.uniform(-self.jitter, self.jitter)))


@dataclass(slots=True)
class _AssetHealth:
    consecutive_failures: int = 0
    waiting: tuple[int, asyncio.Future[Signal]] | None = None


class Scheduler(Actor):
    """Ticks every asset; publishes `Health` per cycle on ``health.<ASSET>``."""

    name = "scheduler"

    def __init__(
        self,
        assets: Iterable[str],
        *,
        modules: Iterable[str],
        interval: float = 5.0,
        window: float = 3.0,
        off_hours_interval: float | None = None,
        trading_hours: TradingHours | None = None,
        policy: HealthPolicy | None = None,
        grace: float = 0.5,
        stagger: bool = True,
        rng: random.Random | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.assets = tuple(dict.fromkeys(assets))
        if not self.assets:
            raise ConfigError("the scheduler needs at least one asset")
        if interval <= 0 or window <= 0:
            raise ConfigError("interval and window must be positive")
        self.modules = tuple(modules)
        self.interval = interval
        self.window = window
        self.off_hours_interval = off_hours_interval or interval
        self.trading_hours = trading_hours or TradingHours(time(0, 0), None)
        self.policy = policy or HealthPolicy()
        self.grace = grace
        self.stagger = stagger
        self.rng = rng or random.Random()
        self.health: dict[str, _AssetHealth] = {a: _AssetHealth() for a in self.assets}
        self._cycles: dict[str, int] = {a: 0 for a in self.assets}
        #: When this scheduler began numbering cycles from 0 (ms): set at the first start, kept across restarts
        #: of the actor (the cycle numbers go on), new with every process.
        self.epoch: int | None = None
        self._inside: bool | None = None
        self.cycles_skipped = 0  # cycles a broker outage overlapped: dropped, never judged
        self.leadership: Leadership = Leadership(self.name)
        self._ticks = Fencer()
        self._last_tick: dict[str, float] = {}  # monotonic, the leader's last tick per asset (followed as standby)

    def subscriptions(self) -> Iterable[Sub]:
        return subs_for(self.subjects.signals_for(self.assets), Signal, self.on_signal)

    def following(self) -> list[Sub]:
        """What a standby reads of the leading scheduler: its ticks and its verdicts."""
        return [
            *subs_for(self.subjects.ticks_for(self.assets), Tick, self.on_tick),
            *subs_for(self.subjects.health_for(self.assets), Health, self.on_health),
        ]

    async def run(self) -> None:
        await self.leadership.hold(self, self._lead, follow=self.following())

    async def _lead(self, term: int) -> None:
        """Tick every asset for as long as this process holds the lease (cancelled when it is lost)."""
        if self.epoch is None:
            self.epoch = int(self.clock.now() * 1000)
        self.log.info("scheduler_leading", term=term, epoch=self.epoch, followed=len(self._last_tick))
        self.current_interval()  # logs "Active trading hours - Jakarta: ..." once at start
        base = now = self.clock.monotonic()
        async with asyncio.TaskGroup() as loops:
            for i, asset in enumerate(self.assets):
                # Staggered starts spread N assets' requests over the interval instead
                # of bursting them at one instant (kinder to the backend, flatter latency).
                offset = i * self.interval / len(self.assets) if self.stagger else 0.0
                due = base + offset
                if (last := self._last_tick.get(asset)) is not None:  # taking over: go on from the last tick
                    due = last + self.interval if last + self.interval >= now else now + offset * CATCH_UP_SPREAD
                loops.create_task(self._cycle_loop(asset, offset, due), name=f"schedule:{asset}")

    async def on_tick(self, tick: Tick) -> None:
        """Follow the leading scheduler's ticks (ours included): its epoch, and where each asset's count is."""
        self.leadership.observe(tick.fence)
        if not self._ticks.admit(tick.fence) or tick.asset not in self.health:
            return
        if self.leadership.leading and tick.fence == self.leadership.term:
            return  # our own
        self.epoch = tick.epoch
        self._cycles[tick.asset] = max(self._cycles[tick.asset], tick.cycle + 1)
        self._last_tick[tick.asset] = self.clock.monotonic()

    async def on_signal(self, signal: Signal) -> None:
        state = self.health.get(signal.asset)
        if state and state.waiting and state.waiting[0] == signal.cycle and not state.waiting[1].done():
            state.waiting[1].set_result(signal)

    async def on_health(self, health: Health) -> None:
        """Follow the leading scheduler's verdicts: its failure counts (so a takeover keeps the backoff)."""
        self.leadership.observe(health.fence)
        state = self.health.get(health.asset)
        if state is None or (self.leadership.leading and health.fence == self.leadership.term):
            return  # not ours to follow, or our own
        if health.fence >= self._ticks.highest:
            state.consecutive_failures = health.consecutive_failures
            metrics_of(self.ctx).consecutive_failures.labels(health.asset).set(health.consecutive_failures)

    def current_interval(self) -> float:
        inside = self.trading_hours.contains(self.clock.now())
        if inside != self._inside:
            self._inside = inside
            local = datetime.fromtimestamp(self.clock.now(), UTC).astimezone(JAKARTA)
            self.log.info(
                f"{'Active' if inside else 'Outside'} trading hours - Jakarta: {self.trading_hours}",
                now=local.strftime("%Y-%m-%d %H:%M %Z"),
                interval=self.interval if inside else self.off_hours_interval,
            )
        return self.interval if inside else self.off_hours_interval

    async def _cycle_loop(self, asset: str, offset: float, due: float | None = None) -> None:
        """Cycle after cycle for one asset; `due` is when its first cycle is meant to start (monotonic).

        Each next cycle is due one delay after the previous one was *due*, not after it
        actually started: a cycle started late (the loop was busy for a moment) does not
        shift every later one, so assets keep their stagger offsets instead of drifting
        into clumps that tick together (at 1,000 assets, clumps of 10-30 assets had formed
        after a few stalls and stayed, each one a burst of requests and answers).
        """
        state = self.health[asset]
        link = self.bus.connection
        if due is not None:
            await self.clock.sleep_until(due)
        elif offset:
            await self.clock.sleep(offset)
        while True:
            if not self.bus.connected:
                await self._resume_after_outage(asset, offset)
                due = None  # after an outage: a new schedule from the resumption, at the asset's offset
                continue
            # From the check above to the tick's publish nothing awaits: a tick is
            # never held in the reconnect buffer and sent late, after an outage.
            started = self.clock.monotonic()
            if due is not None and 0.0 <= started - due < self.interval:
                started = due  # late by a little: keep the schedule (more than an interval late: start anew)
            cycle = self._cycles[asset]
            now = self.clock.now()
            future: asyncio.Future[Signal] = asyncio.get_running_loop().create_future()
            state.waiting = (cycle, future)
            outages = link.outages
            await self.publish(
                self.subjects.tick(asset),
                Tick(
                    asset=asset,
                    cycle=cycle,
                    ts=now,
                    deadline=now + self.window,
                    modules=self.modules,
                    epoch=self.epoch or 0,
                    fence=self.leadership.fence,
                ),
            )
            try:
                signal = await self.clock.timeout(self.window + self.grace, self._signal_unless_outage(future))
            except TimeoutError:
                signal = None
            state.waiting = None
            self._cycles[asset] = cycle + 1
            if signal is None and (not self.bus.connected or link.outages != outages):
                # The broker failed this cycle, not the backend: no verdict, no
                # Health, the failure count and the backoff stay as they were.
                self.cycles_skipped += 1
                self.log.warning("cycle_skipped_bus_down", asset=asset, cycle=cycle)
                await self._resume_after_outage(asset, offset)
                due = None
                continue
            health = self.assess(asset, cycle, signal)
            await self.publish(self.subjects.health(asset), health)
            due = started + health.next_delay
            await self._pause_until(due, offset)

    async def _signal_unless_outage(self, future: asyncio.Future[Signal]) -> Signal | None:
        """The cycle's signal; None as soon as the bus goes down (the cycle is lost, not failed)."""
        link = self.bus.connection
        while self.bus.connected:
            change = asyncio.ensure_future(link.next_change())
            try:
                await asyncio.wait((future, change), return_when=asyncio.FIRST_COMPLETED)
            finally:
                change.cancel()
            if future.done():
                return future.result()
        return None

    async def _pause_until(self, deadline: float, offset: float) -> None:
        """Sleep until the monotonic `deadline`, cut short by a reconnect if it is over an interval away.

        So a backoff sleep begun before an outage is not waited out after it:
        the asset's next cycle starts within one interval of the broker's
        return, at its stagger offset (assets do not all restart at once).
        An ordinary interval's sleep keeps its schedule.
        """
        if deadline - self.clock.monotonic() <= min(self.interval, self.off_hours_interval):
            # Shorter than any interval: no reconnect could cut it short (below), so a plain sleep
            # (at 1,000 assets, a thousand waiters on the link's event cost a cancellation each per cycle).
            await self.clock.sleep_until(deadline)
            return
        link = self.bus.connection
        while (left := deadline - self.clock.monotonic()) > 0:
            try:
                await self.clock.timeout(left, link.next_change())
            except TimeoutError:
                return
            if self.bus.connected and deadline - self.clock.monotonic() > self.current_interval():
                deadline = self.clock.monotonic() + offset

    async def _resume_after_outage(self, asset: str, offset: float) -> None:
        """Wait for the broker, then for this asset's stagger offset (< one interval)."""
        down_since = self.clock.monotonic()
        if not self.bus.connected:
            self.log.warning("cycles_paused_bus_down", asset=asset)
            await self.bus.wait_connected()
        await self._pause_until(self.clock.monotonic() + offset, offset)
        self.log.info("cycles_resumed", asset=asset, paused=round(self.clock.monotonic() - down_since, 3))

    def assess(self, asset: str, cycle: int, signal: Signal | None) -> Health:
        """Judge one finished cycle and update the asset's failure count."""
        state = self.health[asset]
        # Only the configured modules count (and fit a Health): a signal naming others is not ours to judge.
        statuses = {m: st.status for m, st in (signal.modules.items() if signal else ()) if m in self.modules}
        for module in self.modules:
            statuses.setdefault(module, "missing")
        failed = tuple(sorted(m for m, s in statuses.items() if s in ("degraded", "missing")))
        ok = tuple(sorted(m for m, s in statuses.items() if s == "ok"))
        core = [m for m in self.policy.core if statuses.get(m, "disabled") != "disabled"]
        hard = bool(core) and all(m in failed for m in core)
        metrics = metrics_of(self.ctx)
        if hard:
            state.consecutive_failures += 1
            verdict = "hard_fail"
            metrics.hard_fail.labels(asset).inc()
            self.log.warning(
                "scheduler_unhealthy",
                asset=asset,
                cycle=cycle,
                failures=state.consecutive_failures,
                failed=",".join(failed),
            )
        else:
            if ok:
                state.consecutive_failures = 0
            verdict = "soft_fail" if failed else "healthy"
            for module in failed:  # the seed's sniper_soft_fail{module}
                metrics.soft_fail.labels(module).inc()
        metrics.consecutive_failures.labels(asset).set(state.consecutive_failures)
        delay = self.policy.delay(self.current_interval(), state.consecutive_failures, self.rng)
        return Health(
            asset=asset,
            cycle=cycle,
            ts=self.clock.now(),
            state=verdict,  # type: ignore[arg-type]
            consecutive_failures=state.consecutive_failures,
            next_delay=round(delay, 6),
            failed=failed,
            ok=ok,
            fence=self.leadership.fence,
        )
