"""CircuitSupervisor: the one owner of circuit-breaker state, shared by every host.

Common breaker libraries know one kind of failure and keep probing a paid
endpoint forever. Here the error class decides (see actors.upstream):

* transient (5xx, timeouts, resets, bad payloads), per (module, asset): when
  the failure rate over a sliding window crosses a threshold, open for a
  jittered, exponentially growing time, then let `probes` calls through
  (half-open): success closes, failure reopens for longer;
* throttled (429/418), per module: open for exactly Retry-After (capped),
  then probe;
* entitlement (402, plan-caused 401/403), per module: quarantine, an hour by
  default, with no probe inside it; only a probe after it, a real off -> on
  transition of the module's flag (read from the ``flags`` bucket, not from
  an event anyone could publish) or ``sniper circuit reset MODULE`` lifts it.
  A success report cannot close a breaker that is open and not yet due: no
  call was let through, so such a report is not an answer to anything.

A reset clears more than the breakers this supervisor knows: it publishes a
module-wide "closed by reset" state that makes every fetcher drop every
breaker it holds for the module (one it got from a stale store, say), and it
overwrites every stored state of the module. Fetchers refuse breaker states
dated off their clock or held longer than the policy allows (`max_hold`).

The supervisor learns outcomes from the same ``data``/``degraded`` stream the
assembler reads, so fetchers report nothing extra. Every transition is
published as `CircuitState` on ``circuit.<module>`` and stored in the
``circuits`` key-value bucket, so a restarted process, or a fetcher on another
host, starts from the same state. Fetchers hold a `CircuitView` built from
both and make no upstream call while a breaker is open.

Several processes may run a supervisor: every one follows the outcomes and
keeps the breakers warm, only the one holding the lease (`runtime.lease`)
publishes, stores and answers ``cmd.circuit`` (no queue group: every
supervisor hears a command, the leader acts on it). Its term is each state's
`fence`; fetchers ignore states fenced below the newest term they have seen.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import msgspec

from messages import CircuitCommand, CircuitReply, CircuitState, Degraded, FlagChanged, ModuleData, decode, encode
from messages._base import MODULE_NAMES
from messages.control import CircuitCause
from messages.errors import DecodeError
from messages.service import endpoint_metadata, reply_error
from messages.subjects import CIRCUITS_BUCKET, FLAGS_BUCKET
from runtime.actor import CONTROL_PENDING, CONTROL_RATE, Actor, Sub, subs_for
from runtime.bus import Envelope
from runtime.errors import BusError
from runtime.kv import KVEntry
from runtime.lease import Leadership
from runtime.micro import Endpoint

from .flags import flag_module
from .metrics import metrics_of

TRANSIENT = frozenset({"upstream_error", "timeout", "unreachable", "bad_payload"})
ALL = "all"  # scope of a module-wide breaker
RESETS = frozenset({"reset", "flag_changed"})  # causes of a module-wide "everything closed"
#: Most breaker states one ``cmd.circuit`` list reply carries (about 300 bytes each: far below 1 MiB).
MAX_LISTED = 500


_DEFAULT_PROBE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    """Thresholds and durations; the defaults follow the seed (one-hour quarantine)."""

    window: float = 60.0  # seconds of outcomes considered for the failure rate
    min_calls: int = 5
    failure_rate: float = 0.5
    open_base: float = 30.0
    open_factor: float = 2.0
    open_max: float = 600.0
    jitter: float = 0.2
    probes: int = 1
    throttle_default: float = 30.0  # when a 429 has no Retry-After
    throttle_max: float = 600.0
    quarantine: float = 3600.0

    #: How long a half-open breaker waits for its probe's answer before offering a new probe.
    probe_timeout: float = _DEFAULT_PROBE_TIMEOUT

    @property
    def max_hold(self) -> float:
        """The longest any breaker may stay open or quarantined under this policy."""
        return max(self.quarantine, self.open_max * (1 + self.jitter), self.throttle_max)

    def open_time(self, opens: int, rng: random.Random) -> float:
        base = min(self.open_max, self.open_base * self.open_factor ** min(max(0, opens - 1), 64))
        return base * (1 + rng.uniform(-self.jitter, self.jitter))


@dataclass(slots=True)
class _Breaker:
    state: CircuitState
    outcomes: deque[tuple[float, bool]] = field(default_factory=deque)


def kv_key(module: str, scope: str) -> str:
    return f"{module}.{scope}"


def circuit_problem(
    state: CircuitState,
    *,
    now: float,
    skew: float,
    max_hold: float,
    modules: Collection[str] | None,
    assets: Collection[str] | None,
    live: bool,
) -> str | None:
    """Why a breaker state must not be believed, or None: the one check for events and stores alike.

    Refused: a module or asset not configured here; a hold longer than the
    policy allows; a state dated ahead of this clock (it would outrank every
    real one). A live event must also be current: one dated more than `skew`
    in the past, or an open state whose time is over, is a replay or a stale
    copy (a stored state may be old: the newest wins when events come).
    """
    if modules is not None and state.module not in modules:
        return f"unknown_module: a breaker for {state.module}, which is not configured here"
    if state.scope != ALL and assets is not None and state.scope not in assets:
        return f"unknown_asset: a breaker for {state.scope}, which is not configured here"
    if state.until is not None and state.until - state.ts > max_hold:
        return f"too_long: held {state.until - state.ts:.0f}s, the policy allows at most {max_hold:.0f}s"
    if state.ts > now + skew:
        return f"clock_skew: breaker dated {state.ts - now:+.0f}s ahead of this host's clock (limit {skew:g}s)"
    if live and state.ts < now - skew:
        return f"stale: breaker dated {now - state.ts:.0f}s ago (limit {skew:g}s)"
    if live and state.state in ("open", "quarantined") and state.until is not None and state.until <= now:
        return "stale: an open breaker whose time is already over"
    return None


class CircuitView:
    """A fetcher's local, read-mostly copy of its module's breakers."""

    def __init__(self, module: str, *, probe_timeout: float = _DEFAULT_PROBE_TIMEOUT) -> None:
        self.module = module
        self.probe_timeout = probe_timeout
        self.states: dict[str, CircuitState] = {}
        self._probes: dict[str, tuple[float, int, float]] = {}  # scope -> (state ts, probes used, last used at)

    def update(self, state: CircuitState) -> None:
        if state.scope == ALL and state.state == "closed" and state.cause in RESETS:
            # An operator's reset (or a flag switched on) clears every scope, known or not.
            self.states = {s: st for s, st in self.states.items() if st.ts > state.ts}
        current = self.states.get(state.scope)
        if current is None or state.ts >= current.ts:
            self.states[state.scope] = state

    def deny(self, asset: str, now: float) -> tuple[str, float | None] | None:
        """(detail, retry_after) if a breaker holds this call back, else None.

        Every scope is checked before a probe is counted, and a probe is
        counted only for a call that is let through: a call refused by the
        asset's breaker must not use up the module's half-open probe.
        """
        probing: list[tuple[str, CircuitState]] = []
        for scope in (ALL, asset):
            st = self.states.get(scope)
            if st is None or st.state == "closed":
                continue
            if st.state in ("open", "quarantined") and st.until is not None and now < st.until:
                return f"{st.state} ({st.cause}) until {st.until:.0f}: {st.detail}", st.until - now
            # half-open, or open past its end (the supervisor may be away): probes only.
            # A probe whose answer never came frees its slot after probe_timeout, here
            # as at the supervisor, so no state can pin a module shut forever.
            if self._probes_used(scope, st, now) >= st.probes:
                return f"{st.state}: probe in flight", None
            probing.append((scope, st))
        for scope, st in probing:
            self._probes[scope] = (st.ts, self._probes_used(scope, st, now) + 1, now)
        return None

    def _probes_used(self, scope: str, st: CircuitState, now: float) -> int:
        state_ts, used, last = self._probes.get(scope, (st.ts, 0, now))
        return used if state_ts == st.ts and now - last < self.probe_timeout else 0


class CircuitSupervisor(Actor):
    """Watches module outcomes, owns breaker state, answers ``cmd.circuit``."""

    name = "circuits"

    def __init__(
        self,
        *,
        policy: CircuitPolicy | None = None,
        modules: Iterable[str] | None = None,
        assets: Iterable[str] | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.policy = policy or CircuitPolicy()
        #: The configured modules and assets (None: any); nothing else gets a breaker.
        self.modules = frozenset(modules) if modules is not None else None
        self.assets = frozenset(assets) if assets is not None else None
        self.rng = rng or random.Random()
        self.breakers: dict[tuple[str, str], _Breaker] = {}
        self._flags: dict[str, bool] = {}
        self.leadership: Leadership = Leadership(self.name)

    def subscriptions(self) -> Iterable[Sub]:
        s = self.subjects
        return [
            *subs_for(s.data_for(self.assets, self.modules), ModuleData, self.on_outcome, accept=self.accept_outcome),
            *subs_for(s.degraded_for(self.assets, self.modules), Degraded, self.on_outcome, accept=self.accept_outcome),
            Sub(
                self.subjects.command("circuit"),
                CircuitCommand,
                self.on_command,
                on_bad=self.on_bad_command,
                pending=CONTROL_PENDING,
                max_rate=CONTROL_RATE,
                endpoint=Endpoint("circuit", endpoint_metadata("circuit"), failed=reply_error),
            ),
        ]

    async def run(self) -> None:
        leader = Sub(
            self.subjects.circuit_all(),
            CircuitState,
            self.on_leader_state,
            pending=CONTROL_PENDING,
            max_rate=CONTROL_RATE,
        )
        await self.leadership.hold(self, follow=[leader])

    def _known_module(self, module: str) -> bool:
        """A configured module (any subject-safe name when none are configured)."""
        if self.modules is not None:
            return module in self.modules
        try:
            MODULE_NAMES.check(module)
        except ValueError:
            return False
        return True

    def accept_outcome(self, msg: ModuleData | Degraded) -> str | None:
        if self.modules is not None and msg.module not in self.modules:
            return f"unknown_module: {msg.module} is not configured here"
        if self.assets is not None and msg.asset not in self.assets:
            return f"unknown_asset: {msg.asset} is not configured here"
        return self.off_clock(msg.ts, "report ts")

    async def on_start(self) -> None:
        self.breakers.clear()
        self._flags.clear()
        try:
            stored: Iterable[KVEntry] = (await (await self.bucket(CIRCUITS_BUCKET)).entries()).values()
            self.own(await (await self.bucket(FLAGS_BUCKET)).watch(self.on_flag_entry))
        except BusError as exc:  # state lives on in events; only the restart copy is missing
            self.log.warning("circuit_store_unavailable", error=str(exc))
            stored = ()
        for entry in stored:
            try:
                state = decode(entry.value or b"", CircuitState)
            except DecodeError as err:
                self.log.warning("bad_stored_circuit", key=entry.key, reason=err.reason)
                continue
            refusal = self._problem(state, live=False)
            if refusal is None and entry.key != kv_key(state.module, state.scope):
                refusal = f"stored under {entry.key!r}, not {kv_key(state.module, state.scope)!r}"
            if refusal is not None:
                self.log.warning("bad_stored_circuit", key=entry.key, reason=refusal)
                continue
            self.breakers[(state.module, state.scope)] = _Breaker(state)
            if state.state in ("open", "quarantined") and state.until is not None:
                self._arm(state)
            self._gauge(state)
        self.log.info("circuits_restored", count=len(self.breakers))

    def _problem(self, state: CircuitState, *, live: bool) -> str | None:
        """`circuit_problem` with this supervisor's clock, policy and configuration."""
        return circuit_problem(
            state,
            now=self.clock.now(),
            skew=self.ctx.max_clock_skew,
            max_hold=self.policy.max_hold,
            modules=self.modules,
            assets=self.assets,
            live=live,
        )

    # -- outcomes ---------------------------------------------------------------
    def _breaker(self, module: str, scope: str) -> _Breaker:
        key = (module, scope)
        if key not in self.breakers:
            self.breakers[key] = _Breaker(CircuitState(module=module, scope=scope, state="closed", ts=self.clock.now()))
        return self.breakers[key]

    async def on_outcome(self, msg: ModuleData | Degraded) -> None:
        if isinstance(msg, Degraded) and not msg.called:
            return  # no upstream call was made (disabled, circuit open, no route): nothing to learn
        if msg.source != "backend":
            return  # a venue's answer says nothing about the backend (each source has its own breaker)
        now = self.clock.now()
        module = self._breaker(msg.module, ALL)
        asset = self._breaker(msg.module, msg.asset)
        if isinstance(msg, ModuleData):
            await self._on_success(module, asset, now)
        elif msg.reason == "payment_required":
            await self._on_paywall(module, now, msg.detail)
        elif msg.reason == "rate_limited":
            await self._on_throttled(module, now, msg)
        elif msg.reason in TRANSIENT:
            await self._on_transient(module, asset, now, msg.reason)
        else:
            await self._on_verdict(module, asset, msg.reason)

    async def _on_success(self, module: _Breaker, asset: _Breaker, now: float) -> None:
        """A success closes what is not closed, unless a breaker is open and not yet due.

        Such a breaker let no call through, so this "success" answers nothing
        (a replay, a forgery) and must not close it.
        """
        for b in (module, asset):
            st = b.state
            if st.state in ("open", "quarantined") and st.until is not None and now < st.until:
                self.log.debug("success_while_open_ignored", module=st.module, scope=st.scope)
                return
        for b in (module, asset):
            if b.state.state != "closed":
                await self._move(b, "closed", cause="recovered", detail="a call succeeded")
        self._record(asset, now, ok=True)

    async def _on_paywall(self, module: _Breaker, now: float, detail: str) -> None:
        """An entitlement failure is the module's, not the asset's: quarantine it, without probes inside."""
        if module.state.state != "quarantined":
            await self._move(
                module,
                "quarantined",
                until=now + self.policy.quarantine,
                cause="entitlement",
                detail=detail or "payment required",
            )

    async def _on_throttled(self, module: _Breaker, now: float, msg: Degraded) -> None:
        """Throttling is per module too: open for exactly what Retry-After asks (capped)."""
        wait = min(
            self.policy.throttle_max,
            msg.retry_after if msg.retry_after is not None else self.policy.throttle_default,
        )
        await self._move(module, "open", until=now + wait, cause="throttled", detail=msg.detail or "rate limited")

    async def _on_transient(self, module: _Breaker, asset: _Breaker, now: float, reason: str) -> None:
        """A transient fault counts against the asset: a failed probe reopens, a high failure rate opens.

        It also proves a half-open module breaker's probe got past the paywall
        or the rate limit, so that one closes.
        """
        if module.state.state == "half_open":
            await self._move(module, "closed", cause="recovered", detail=f"probe answered {reason}")
        if asset.state.state == "half_open":
            await self._open(asset, now, f"probe failed: {reason}")
        elif asset.state.state == "closed":
            self._record(asset, now, ok=False)
            fails = sum(1 for _, ok in asset.outcomes if not ok)
            if len(asset.outcomes) >= self.policy.min_calls and fails / len(asset.outcomes) >= self.policy.failure_rate:
                await self._open(asset, now, f"{fails} of {len(asset.outcomes)} calls failed ({reason})")

    async def _on_verdict(self, module: _Breaker, asset: _Breaker, reason: str) -> None:
        """Any other real answer (not_found, say) is neither throttling, a paywall nor a transient fault.

        So a half-open breaker has its probe's verdict: the route is reachable.
        """
        for b in (module, asset):
            if b.state.state == "half_open":
                await self._move(b, "closed", cause="recovered", detail=f"probe answered {reason}")

    def _record(self, b: _Breaker, now: float, *, ok: bool) -> None:
        b.outcomes.append((now, ok))
        while b.outcomes and b.outcomes[0][0] < now - self.policy.window:
            b.outcomes.popleft()

    async def _open(self, b: _Breaker, now: float, detail: str) -> None:
        opens = b.state.opens + 1
        until = now + self.policy.open_time(opens, self.rng)
        await self._move(b, "open", until=until, cause="transient", detail=detail, opens=opens)

    # -- transitions ----------------------------------------------------------------
    async def _move(
        self,
        b: _Breaker,
        state: str,
        *,
        until: float | None = None,
        cause: CircuitCause | None = None,
        detail: str = "",
        opens: int | None = None,
    ) -> None:
        new = CircuitState(
            module=b.state.module,
            scope=b.state.scope,
            state=state,  # type: ignore[arg-type]
            ts=self.clock.now(),
            until=until,
            cause=cause,
            detail=detail[:200],
            opens=(0 if state == "closed" else b.state.opens) if opens is None else opens,
            probes=self.policy.probes,
            fence=self.leadership.fence,
        )
        b.state = new
        b.outcomes.clear()
        self.log.info(
            "circuit", module=new.module, scope=new.scope, state=state, cause=cause, until=until, detail=new.detail
        )
        metrics_of(self.ctx).circuit_transitions.labels(new.module, state).inc()
        self._gauge(new)
        if state in ("open", "quarantined"):
            self._arm(new)
        elif state == "half_open":
            self.spawn(self._reprobe_after(new), name=f"reprobe:{new.module}:{new.scope}")
        if not self.leadership.leading:
            return  # a standby keeps its breakers warm; the leader tells the fetchers
        await self.publish(self.subjects.circuit(new.module), new)
        try:
            await (await self.bucket(CIRCUITS_BUCKET)).put(kv_key(new.module, new.scope), encode(new))
        except BusError as exc:  # the event is out; only the restart copy is missing
            self.log.warning("circuit_not_persisted", module=new.module, scope=new.scope, error=str(exc))

    def _gauge(self, st: CircuitState) -> None:
        metrics_of(self.ctx).circuit_open.labels(st.module, st.scope).set(0 if st.state == "closed" else 1)

    def _arm(self, st: CircuitState) -> None:
        self.spawn(self._half_open_at(st), name=f"circuit:{st.module}:{st.scope}")

    async def _half_open_at(self, st: CircuitState) -> None:
        assert st.until is not None
        await self.clock.sleep(max(0.0, st.until - self.clock.now()))
        b = self.breakers.get((st.module, st.scope))
        if b is not None and b.state is st:  # nothing happened meanwhile
            await self._move(b, "half_open", cause=st.cause, detail=f"{st.state} time over; probing")

    async def _reprobe_after(self, st: CircuitState) -> None:
        """A probe whose answer never came (lost message, restarted fetcher) must not pin half-open."""
        await self.clock.sleep(self.policy.probe_timeout)
        b = self.breakers.get((st.module, st.scope))
        if b is not None and b.state is st:
            await self._move(b, "half_open", cause=st.cause, detail="no answer to the last probe; probing again")

    async def on_leader_state(self, state: CircuitState) -> None:
        """A standby follows the leader's breakers, so it takes over with the states the fetchers hold."""
        self.leadership.observe(state.fence)
        if self.leadership.leading or state.fence < self.leadership.term:
            return
        if self._problem(state, live=True) is not None:
            return
        if state.scope == ALL and state.state == "closed" and state.cause in ("reset", "flag_changed"):
            await self.reset(state.module, state.cause)  # a standby's reset publishes nothing
            return
        self.breakers[(state.module, state.scope)] = b = _Breaker(state)
        self._gauge(state)
        if state.state in ("open", "quarantined") and state.until is not None:
            self._arm(b.state)

    # -- operator commands ---------------------------------------------------------
    async def reset(self, module: str, cause: CircuitCause) -> list[CircuitState]:
        """Close every breaker of `module`: ours, and whatever any fetcher or the store holds."""
        changed = []
        for (mod, _), b in list(self.breakers.items()):  # handlers may add breakers while this awaits
            if mod == module and b.state.state != "closed":
                await self._move(b, "closed", cause=cause, detail=f"{cause} by operator")
                changed.append(b.state)
        marker = CircuitState(
            module=module,
            scope=ALL,
            state="closed",
            ts=self.clock.now(),
            cause=cause,
            detail=f"{cause}: all cleared",
            fence=self.leadership.fence,
        )
        self.breakers[(module, ALL)] = _Breaker(marker)
        if not self.leadership.leading:
            return changed
        await self.publish(self.subjects.circuit(module), marker)
        try:
            store = await self.bucket(CIRCUITS_BUCKET)
            stale = [key for key in await store.entries() if key.startswith(module + ".")]
            for key in {kv_key(module, ALL), *stale}:
                scope = key[len(module) + 1 :]
                await store.put(key, encode(msgspec.structs.replace(marker, scope=scope)))
        except BusError as exc:
            self.log.warning("circuit_not_persisted", module=module, scope="*", error=str(exc))
        return changed

    async def on_flag_entry(self, entry: KVEntry) -> None:
        """Lift a module's breakers on a real off -> on switch of its flag (the bucket is the truth)."""
        if entry.value is None:
            return
        try:
            change = decode(entry.value, FlagChanged)
        except DecodeError as err:
            self.log.warning("bad_stored_flag", flag=entry.key, reason=err.reason)
            return
        if change.flag != entry.key:  # ignored by every reader alike (the flag keeper counts it)
            return
        enabled = change.enabled
        was = self._flags.get(entry.key)
        self._flags[entry.key] = enabled
        module = flag_module(entry.key)
        if was is False and enabled and (self.modules is None or module in self.modules):
            await self.reset(module, "flag_changed")

    async def on_command(self, cmd: CircuitCommand, env: Envelope) -> None:
        if not self.leadership.leading:
            return  # every supervisor hears it (no queue group); the leader answers
        if cmd.action == "list":
            # Bounded by construction: the breakers that are not closed first, at most MAX_LISTED.
            states = sorted((b.state for b in self.breakers.values()), key=lambda s: (s.state == "closed", s.module))
            await self.reply(env, CircuitReply(ok=True, circuits=states[:MAX_LISTED]))
            return
        if not cmd.module:
            await self.reply(
                env, CircuitReply(ok=False, error='reset needs a module, e.g. {"action": "reset", "module": "etf"}')
            )
            return
        if not self._known_module(cmd.module):
            known = ", ".join(sorted(self.modules or ()))
            await self.reply(env, CircuitReply(ok=False, error=f"unknown module {cmd.module[:40]!r}; known: {known}"))
            return
        changed = await self.reset(cmd.module, "reset")
        await self.reply(env, CircuitReply(ok=True, circuits=changed))

    async def on_bad_command(self, err: DecodeError, env: Envelope) -> None:
        if not self.leadership.leading:
            return
        await self.reply(env, CircuitReply(ok=False, error=f"bad command: {err.reason}"))
