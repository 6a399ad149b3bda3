"""What every module fetcher does, written once.

A fetcher is an actor for one module of the registry (`messages.modules`).
On each `Tick` it answers for (asset, cycle) before the tick's deadline with
exactly one message: `ModuleData` on success, or `Degraded` with a reason.
The module's `ModuleSpec` says what differs: the payload type, how the asset
maps to a request key (ETF flows are keyed by BTC/ETH), a cache lifetime, a
sanity check and the caps of the payload. `actors.fetchers.FETCHERS` holds one
class per module, made by `fetcher_for`.

Why the pieces:

* Each tick is handled in its own task (bounded by a semaphore), because a
  subscription's handler runs one message at a time and 100 assets must not
  queue behind one slow request.
* The HTTP budget is the time left until the tick's deadline minus a margin,
  enforced with the injected clock, so a slow backend yields ``timeout`` in
  time for the assembler instead of a late answer nobody uses.
* Requests for one key are single-flight and may be cached for `cache_ttl`
  (ETF flows are daily data shared by every asset), so N assets cost one call;
  for such a module the call and the cache are shared with the fetchers of
  every process through the ``cache`` bucket (`actors.shared_fetch`).
* The module's feature flag and circuit breakers are consulted first: a
  disabled module answers ``disabled`` and an open breaker ``circuit_open``,
  without an upstream call. The flag is watched in the ``flags`` bucket and
  the breakers come from the ``circuits`` bucket at start and from
  ``circuit.<module>`` events after (the CircuitSupervisor owns them).
* A payload that does not decode into the module's Struct is ``bad_payload``.
  Nothing an upstream does can raise out of here.
* Fetchers of one module in several processes share the ticks: they
  subscribe in one queue group (named after the fetcher), so NATS hands each
  tick to one of them and each (module, asset, cycle) costs one upstream call.
  Ticks, breaker states and route maps fenced below the newest term seen from
  their singleton are refused (a deposed leader's, `runtime.lease`).
* A payload that decodes is checked (`check`), then trimmed to the module's
  caps (`normalise`, declared in the module's file), so what is published stays
  small whatever the backend sends: a valid 10^6-level book is trimmed to the
  configured depth, a body larger than the client's cap never gets here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import msgspec

from messages import (
    MAX_MESSAGE_BYTES,
    CircuitState,
    Degraded,
    ModuleData,
    ModulePayload,
    ModuleSpec,
    Payload,
    RouteMap,
    Tick,
    decode,
)
from messages.errors import DecodeError
from messages.modules import DEFAULT_ROUTES
from messages.routes import Route
from messages.subjects import CACHE_BUCKET, CIRCUITS_BUCKET, FLAGS_BUCKET, ROUTES_BUCKET, ROUTES_KEY
from runtime.actor import CONTROL_PENDING, CONTROL_RATE, Actor, Sub, subs_for
from runtime.errors import BusError
from runtime.flow import RateLimitedWarning
from runtime.kv import KVEntry
from runtime.lease import Fencer

from .circuit import CircuitPolicy, CircuitView, circuit_problem
from .fallback import FallbackChain
from .flags import flag_name, read_flag
from .metrics import metrics_of
from .routing import RequestSettings, RouteError, build_request
from .shared_fetch import SharedCall
from .upstream import Outcome, UpstreamClient, bad_payload
from .venues import VenueSource

#: Largest encoded payload a fetcher publishes: the broker's limit less room for the ModuleData envelope.
#: The caps keep real payloads far below it (tests/actors/test_hostile_upstream.py); this is the last guard.
MAX_PAYLOAD_BYTES = MAX_MESSAGE_BYTES - 4096
_payload_encoder = msgspec.json.Encoder()
#: Requests remembered per fetcher (one per key: the configured assets, or their proxies).
_MAX_REQUESTS = 4096


class BadPayload(ValueError):
    """A body that arrived but cannot be used; the message is the Degraded detail."""


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a call is held back before it is made."""

    reason: str  # "disabled" | "circuit_open"
    detail: str = ""
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class _Result:
    payload: ModulePayload | None
    outcome: Outcome


class ModuleFetcher(Actor):
    """The fetcher of one module; `fetcher_for(spec)` makes the class, with the spec's facts as class attributes."""

    spec: ClassVar[ModuleSpec]
    module: ClassVar[str]
    payload_type: ClassVar[type[Payload]]
    #: Seconds a successful answer for one key is reused (0: every tick asks).
    cache_ttl: ClassVar[float]
    heartbeat_interval = 10.0

    def __init__(
        self,
        upstream: UpstreamClient,
        *,
        settings: RequestSettings | None = None,
        enabled: bool = True,
        route: Route | None = None,
        margin: float = 0.05,
        max_concurrency: int = 64,
        assets: Iterable[str] | None = None,
        max_hold: float = CircuitPolicy().max_hold,
        proxy_asset: str | None = None,
        fallback: Sequence[VenueSource] = (),
        name: str | None = None,
    ) -> None:
        super().__init__(name=name or f"fetch-{self.module.replace('_', '-')}")
        keyed_by = self.spec.keyed_by
        if proxy_asset is not None and (keyed_by is None or proxy_asset not in keyed_by):
            allowed = f"one of {sorted(keyed_by)}" if keyed_by else "unset (it is keyed by the traded asset)"
            raise ValueError(f"{self.module} proxy asset must be {allowed}, not {proxy_asset!r}")
        #: The key assets outside `spec.keyed_by` read (ETF: BTC by default).
        self.proxy_asset = proxy_asset or self.spec.proxy
        self.upstream = upstream
        self.settings = settings or RequestSettings()
        self.flag = flag_name(self.module)
        self.enabled_default = enabled
        self.enabled = enabled
        self.circuit = CircuitView(self.module)
        #: The configured assets (None: any): ticks for others are refused, so caches stay bounded.
        self.assets = frozenset(assets) if assets is not None else None
        #: Longest a breaker state may hold calls back (the policy's); longer ones are forged or stale.
        self.max_hold = max_hold
        self.route: Route | None = route or DEFAULT_ROUTES.get(self.module)
        self.margin = margin
        self.max_concurrency = max_concurrency
        # Typed as the union ModuleData carries: every payload_type is one of its members.
        self._decoder: msgspec.json.Decoder[ModulePayload] = msgspec.json.Decoder(self.payload_type)
        self._inflight: dict[str, asyncio.Future[_Result]] = {}
        self._cache: dict[str, tuple[float, _Result]] = {}
        # The request for each key under the current route: filling a route (symbol forms, quoting)
        # is pure, and at 1,000 assets it was ~5 % of the process's CPU when redone on every tick.
        self._requests: dict[str, tuple[str, dict[str, str]]] = {}
        self._requests_for: tuple[Route, RequestSettings] | None = None
        self._slots = asyncio.Semaphore(max_concurrency)
        self._routes_ts = 0.0
        self._fences = {"tick": Fencer(), "breaker state": Fencer(), "route map": Fencer()}
        self._shared_read = self._watching = False  # the shared state read, the flag watch made (on_start, run)
        self._cache_unreachable = RateLimitedWarning(self.log, "shared_cache_unavailable", burst=1, period=60.0)
        #: The venues to try when the backend fails this module (`actors.fallback`; none: the backend only).
        self.fallback = FallbackChain(self.module, fallback) if fallback else None

    # -- per-module hooks ------------------------------------------------------
    def key_for(self, asset: str) -> str:
        """The upstream key for a traded asset (itself, or the proxy for modules keyed by a few assets)."""
        return self.spec.key_for(asset, self.proxy_asset)

    def check(self, payload: Payload) -> str | None:
        """A reason the payload is unusable despite decoding, or None."""
        return self.spec.check(payload)

    def normalise(self, payload: ModulePayload) -> ModulePayload:
        """The payload trimmed to this module's caps (its file in `messages.modules`); after `check`."""
        return self.spec.normalise(payload, self.settings.depth)  # type: ignore[no-any-return]  # the spec's own payload

    # -- actor wiring -------------------------------------------------------------
    def subscriptions(self) -> Iterable[Sub]:
        return [
            # One queue group per module across processes: each tick reaches one of its fetchers.
            *subs_for(
                self.subjects.ticks_for(self.assets), Tick, self.on_tick, accept=self.accept_tick, queue=self.name
            ),
            Sub(
                self.subjects.routes(),
                RouteMap,
                self.on_routes,
                accept=self.accept_routes,
                pending=CONTROL_PENDING,
                max_rate=CONTROL_RATE,
            ),
            Sub(
                self.subjects.circuit(self.module),
                CircuitState,
                self.on_circuit,
                accept=self.accept_circuit,
                pending=CONTROL_PENDING,
                max_rate=CONTROL_RATE,
            ),
        ]

    def accept_tick(self, tick: Tick) -> str | None:
        if self.assets is not None and tick.asset not in self.assets:
            return f"unknown_asset: {tick.asset} is not configured here"
        return self.off_clock(tick.ts, "tick ts") or self._fences["tick"].problem(tick.fence, "tick")

    def accept_routes(self, routes: RouteMap) -> str | None:
        # Maps are ordered by their time: one dated ahead would win over every real
        # one. Old ones are fine (the store, a late event): the newest still wins.
        if routes.ts > self.clock.now() and (refusal := self.off_clock(routes.ts, "route map ts")):
            return refusal
        return self._fences["route map"].problem(routes.fence, "route map")

    def accept_circuit(self, state: CircuitState, *, live: bool = True) -> str | None:
        refusal = circuit_problem(
            state,
            now=self.clock.now(),
            skew=self.ctx.max_clock_skew,
            max_hold=self.max_hold,
            modules=(self.module,),
            assets=self.assets,
            live=live,
        )
        if refusal is not None or not live:  # stored states outlive their writer's term: each key is current
            return refusal
        return self._fences["breaker state"].problem(state.fence, "breaker state")

    async def on_start(self) -> None:
        """Start from the shared state: breakers, flag, last route map (each best-effort).

        Without the key-value store (JetStream down, or electing in a cluster) the
        fetcher still runs, on its environment default, the built-in routes and
        live events, and `run` tries the store again until it answers (a fetcher
        restarted meanwhile would otherwise miss a quarantine decided long ago).
        """
        self._inflight.clear()
        self._watching = False
        self._shared_read = await self._read_shared_state()

    async def run(self) -> None:
        delay = 1.0
        while not self._shared_read:
            await self.clock.sleep(delay)
            delay = min(2 * delay, 30.0)
            self._shared_read = await self._read_shared_state()

    async def _read_shared_state(self) -> bool:
        """Stored breakers, the flag watch, the stored route map; False (logged) if the store cannot be reached."""
        try:
            circuits = await self.bucket(CIRCUITS_BUCKET)
            for key, entry in (await circuits.entries()).items():
                if key.startswith(self.module + "."):
                    try:
                        state = decode(entry.value or b"", CircuitState)
                    except DecodeError as err:
                        self.log.warning("bad_stored_circuit", key=key, reason=err.reason)
                        continue
                    refusal = self.accept_circuit(state, live=False)
                    if refusal is None:
                        self.circuit.update(state)
                    else:
                        self.log.warning("bad_stored_circuit", key=key, reason=refusal)
            if not self._watching:
                flags = await self.bucket(FLAGS_BUCKET)
                self.own(await flags.watch(self.on_flag_entry))
                self._watching = True
            stored = await (await self.bucket(ROUTES_BUCKET)).get(ROUTES_KEY)
        except BusError as exc:
            self.log.warning("shared_state_unavailable", error=str(exc))
            return False
        if stored is not None and stored.value:
            try:
                await self.on_routes(decode(stored.value, RouteMap))
            except DecodeError as err:
                self.log.warning("bad_stored_routes", reason=err.reason)
        return True

    async def on_circuit(self, state: CircuitState) -> None:
        self.circuit.update(state)

    async def on_flag_entry(self, entry: KVEntry) -> None:
        """This module's flag, or one of its fallback sources' (``BINANCE``, ...); a deleted one is its default."""
        sources = self.fallback.flags if self.fallback is not None else frozenset()
        if entry.key != self.flag and entry.key not in sources:
            return
        change = read_flag(entry, (self.flag, *sources))
        if isinstance(change, str):  # the flag keeper counts it; every reader ignores it alike
            self.log.warning("bad_stored_flag", flag=entry.key, reason=change)
            return
        if self.fallback is not None and entry.key in sources:
            self.fallback.switch(entry.key, True if change is None else change.enabled)
            return
        if change is None:
            self.enabled = self.enabled_default
            return
        if change.enabled != self.enabled:
            self.log.info("flag_applied", flag=self.flag, enabled=change.enabled, who=change.who, why=change.why)
        self.enabled = change.enabled

    def admit(self, asset: str) -> Denial | None:
        """Whether this module may call upstream for `asset` now."""
        if not self.enabled:
            return Denial("disabled", f"FEATURE_{self.flag}=off")
        held = self.circuit.deny(asset, self.clock.now())
        if held is not None:
            return Denial("circuit_open", held[0], retry_after=held[1])
        return None

    async def on_routes(self, routes: RouteMap) -> None:
        """Discovery found (or lost) our route; later ticks use the new one."""
        # Ordered by discovery time, not revision: a discovery process restarted
        # without the shared store counts revisions from 1 again.
        if routes.ts < self._routes_ts:
            return  # an older map arriving late
        self._routes_ts = routes.ts
        new = routes.routes.get(self.module)
        if new != self.route:
            self.log.info("route_changed", module=self.module, path=new.path if new else None, source=routes.source)
            self.route = new
            self._cache.clear()

    async def on_tick(self, tick: Tick) -> None:
        if tick.modules and self.module not in tick.modules:
            return
        self.spawn(self._answer(tick), name=f"{self.name}:{tick.asset}:{tick.cycle}")

    # -- one answer per (asset, cycle) -------------------------------------------
    async def _answer(self, tick: Tick) -> None:
        async with self._slots:
            msg = await self._fetch_for(tick)
            if isinstance(msg, Degraded) and self.fallback is not None and msg.reason != "disabled":
                fallen = await self._fall_back(tick)
                if fallen is not None:  # the backend's verdict still goes out, for the breakers and discovery
                    await self._report(tick, msgspec.structs.replace(msg, superseded=True))
                    msg = fallen
        await self._report(tick, msg)

    async def _report(self, tick: Tick, msg: ModuleData | Degraded) -> None:
        if isinstance(msg, ModuleData):
            subject = self.subjects.data(self.module, tick.asset)
        else:
            subject = self.subjects.degraded(self.module, tick.asset)
            if not msg.superseded:
                metrics_of(self.ctx).degraded.labels(self.module, msg.reason).inc()
        await self.publish(subject, msg)

    async def _fall_back(self, tick: Tick) -> ModuleData | Degraded | None:
        """The venues' answer for a tick the backend failed; None when no venue was asked (flags, breakers, time)."""
        assert self.fallback is not None
        deadline = self.clock.monotonic() + tick.deadline - self.clock.now() - self.margin
        answer = await self.fallback.answer(tick.asset, deadline, self.clock)
        if answer is None:
            return None
        metrics_of(self.ctx).fallback.labels(self.module, answer.source, answer.outcome.error_class).inc()
        o = answer.outcome
        if answer.payload is not None:
            return ModuleData(
                module=self.module,
                asset=tick.asset,
                cycle=tick.cycle,
                ts=self.clock.now(),
                latency_ms=min(o.latency_ms, 1e7),
                payload=answer.payload,
                source=answer.source,  # type: ignore[arg-type]
            )
        degraded = self._degraded(tick, o.reason, o.detail, status=o.status, retry_after=o.retry_after, called=o.called)
        return msgspec.structs.replace(degraded, source=answer.source)

    async def _fetch_for(self, tick: Tick) -> ModuleData | Degraded:
        key = self.key_for(tick.asset)
        budget = tick.deadline - self.clock.now() - self.margin
        if budget <= 0:  # checked before the breakers, so no probe is spent on a call never made
            return self._degraded(tick, "timeout", "tick arrived after its deadline", called=False)
        denial = self.admit(tick.asset)
        if denial is not None:
            return self._degraded(tick, denial.reason, denial.detail, retry_after=denial.retry_after, called=False)
        result = await self._single_flight(key, budget)
        if result.payload is None:
            o = result.outcome
            return self._degraded(tick, o.reason, o.detail, status=o.status, retry_after=o.retry_after, called=o.called)
        return ModuleData(
            module=self.module,
            asset=tick.asset,
            cycle=tick.cycle,
            ts=self.clock.now(),
            latency_ms=result.outcome.latency_ms,
            payload=result.payload,
        )

    async def _single_flight(self, key: str, budget: float) -> _Result:
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self.clock.monotonic():
            return cached[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Result] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await (self._shared_call(key, budget) if self.cache_ttl > 0 else self._call(key, budget))
            future.set_result(result)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved; the waiting callers re-raise it
            raise
        finally:
            del self._inflight[key]
        if result.payload is not None and self.cache_ttl > 0:
            self._cache[key] = (self.clock.monotonic() + self.cache_ttl, result)
        return result

    async def _shared_call(self, key: str, budget: float) -> _Result:
        """A cached module's call, shared with the fetchers of every process (`actors.shared_fetch`)."""
        deadline = self.clock.monotonic() + budget
        try:
            shared = SharedCall(
                self.module, await self.bucket(CACHE_BUCKET), self.ctx.instance, self.clock, self.cache_ttl
            )
            payload, outcome = await shared.call(key, budget, self._call_for_shared)
        except BusError as exc:  # no shared cache: this process calls on its own
            self._cache_unreachable(self.clock.monotonic(), module=self.module, error=str(exc))
            return await self._call(key, max(0.0, deadline - self.clock.monotonic()))
        return _Result(payload, outcome)

    async def _call_for_shared(self, key: str, budget: float) -> tuple[ModulePayload | None, Outcome]:
        result = await self._call(key, budget)
        return result.payload, result.outcome

    async def _call(self, key: str, budget: float) -> _Result:
        if self.route is None:
            return _Result(
                None, Outcome("endpoint_missing", "not_found", detail="no route known for this module", called=False)
            )
        try:
            path, query = self._request_for(self.route, key)
        except RouteError as exc:
            return _Result(None, Outcome("endpoint_missing", "not_found", detail=str(exc), called=False))
        outcome = await self.upstream.get(self.module, path, query, budget=budget)
        metrics = metrics_of(self.ctx)
        metrics.upstream_requests.labels(self.module, outcome.error_class).inc()
        metrics.upstream_latency.labels(self.module).observe(outcome.latency_ms / 1000)
        if not outcome.ok:
            return _Result(None, outcome)
        try:
            payload = self.read_payload(outcome.body)
        except BadPayload as exc:
            return _Result(None, bad_payload(str(exc), status=outcome.status, latency_ms=outcome.latency_ms))
        return _Result(payload, outcome)

    def _request_for(self, route: Route, key: str) -> tuple[str, dict[str, str]]:
        """`build_request` for `key`, remembered while route and settings stay the same (RouteError is not)."""
        made_for = self._requests_for
        if made_for is None or made_for[0] is not route or made_for[1] is not self.settings:
            self._requests.clear()  # a new route or new settings
            self._requests_for = (route, self.settings)
        elif len(self._requests) >= _MAX_REQUESTS:  # keys beyond any configured set (assets=None)
            self._requests.clear()
        request = self._requests.get(key)
        if request is None:
            request = self._requests[key] = build_request(route, key, self.settings)
        return request

    def read_payload(self, body: bytes) -> ModulePayload:
        """Decode, check and trim one backend body, or raise `BadPayload` saying why not."""
        try:
            payload = self._decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BadPayload(f"payload does not match {self.payload_type.__name__}: {exc}") from None
        problem = self.check(payload)
        if problem:
            raise BadPayload(problem)
        payload = self.normalise(payload)
        size = len(_payload_encoder.encode(payload))
        if size > MAX_PAYLOAD_BYTES:  # the caps make this unreachable; a wrong cap must not crash a publish
            raise BadPayload(f"too_large: {size}-byte {self.module} payload exceeds {MAX_PAYLOAD_BYTES} bytes")
        return payload

    def _degraded(
        self,
        tick: Tick,
        reason: str,
        detail: str = "",
        *,
        status: int | None = None,
        retry_after: float | None = None,
        called: bool = True,
    ) -> Degraded:
        return Degraded(
            module=self.module,
            asset=tick.asset,
            cycle=tick.cycle,
            ts=self.clock.now(),
            reason=reason,  # type: ignore[arg-type]
            detail=detail[:300],
            status=status,
            retry_after=retry_after,
            called=called,
        )


def fetcher_for(spec: ModuleSpec) -> type[ModuleFetcher]:
    """The fetcher class of one module (``fetch-<module>``), e.g. ``FundingFetcher`` for ``funding``."""
    title = "".join(part.title() for part in spec.name.split("_"))
    attributes = {
        "__doc__": f"Fetches {spec.summary} ({'a core' if spec.core else 'an optional'} module).",
        "__module__": __name__,
        "spec": spec,
        "module": spec.name,
        "payload_type": spec.payload,
        "cache_ttl": spec.cache_ttl,
    }
    return type(f"{title}Fetcher", (ModuleFetcher,), attributes)
