"""DiscoveryActor: keeps every fetcher pointed at routes the backend really serves.

When: at start, every `refresh_interval` (10 minutes by default), and on
demand when a fetcher's request comes back 404/422 (`not_found` with an HTTP
status). A flood of 404s costs one refresh: reports older than the latest
refresh are ignored (the map they came from is already replaced), and
on-demand refreshes are at least `min_gap` seconds apart.

What: `discover` reads ``/openapi.json`` (then ``/swagger.json``), binds each
module by meaning (actors.capabilities), and probes known paths for modules
the spec does not cover or when there is no spec. The result is a `RouteMap`
published on ``routes`` and stored in the ``routes`` key-value bucket: a
fetcher on any host, or a restarted process, starts from the last good map.
If discovery fails outright (backend unreachable), the last good map stays.

Several processes may run discovery; only the one holding the lease
(`runtime.lease`) discovers, with its term as the map's `fence`. The others
follow the published maps, so one that takes over goes on from the current
map (and its revision) instead of discovering again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from messages import Degraded, RouteMap, decode, encode
from messages._base import MAX_DETAIL, MAX_ITEMS, MAX_TERM
from messages.errors import DecodeError
from messages.routes import Route, RouteSource
from messages.subjects import ROUTES_BUCKET, ROUTES_KEY
from runtime.actor import CONTROL_PENDING, CONTROL_RATE, Actor, Sub, subs_for
from runtime.clock import Clock
from runtime.errors import BusError
from runtime.lease import Leadership

from .capabilities import Binding, match_spec, probe_aliases
from .openapi import Operation, SpecError, load_operations
from .routing import RequestSettings
from .upstream import UpstreamClient

SPEC_PATHS = ("/openapi.json", "/swagger.json")
_json = msgspec.json.Decoder()


@dataclass
class Discovery:
    """What one discovery run found (RouteMap plus diagnostics for `sniper discover`)."""

    spec_path: str | None
    spec_version: str | None
    spec_problem: str | None
    bindings: dict[str, Binding]


@dataclass
class _Spec:
    """What reading the backend's spec gave: its operations, or why not (one problem per path tried)."""

    path: str | None = None
    version: str | None = None
    operations: list[Operation] | None = None
    problems: list[str] = field(default_factory=list)
    #: Set when the backend did not answer at all (unreachable, timeout).
    down: str | None = None


async def discover(
    upstream: UpstreamClient,
    settings: RequestSettings,
    modules: Iterable[str],
    *,
    probe_asset: str = "SOL",
    etf_key: str = "BTC",
    budget: float = 5.0,
) -> Discovery:
    """One discovery run against the backend behind `upstream`."""
    modules = tuple(modules)
    spec = await _read_spec(upstream, budget)
    if spec.down is not None:
        unreached = {m: Binding(m, reason=spec.down) for m in modules}
        return Discovery(spec_path=None, spec_version=None, spec_problem=spec.down, bindings=unreached)
    bindings = _bind_spec(spec, modules, settings)
    for module in modules:
        if module not in bindings or bindings[module].route is None:
            key = etf_key if module == "etf" else probe_asset
            bindings[module] = await _probe(upstream, module, key, settings, bindings.get(module))
    return Discovery(
        spec_path=spec.path,
        spec_version=spec.version,
        spec_problem="; ".join(spec.problems) if spec.operations is None else None,
        bindings=bindings,
    )


async def _read_spec(upstream: UpstreamClient, budget: float) -> _Spec:
    """The first spec document the backend serves, with a problem noted for each path that failed.

    A backend that does not answer at all stops the run: it is down, not
    missing a spec, and probing known paths now would only pile up timeouts.
    """
    spec = _Spec()
    for path in SPEC_PATHS:
        outcome = await upstream.get("discovery", path, None, budget=budget)
        if outcome.reason in ("unreachable", "timeout"):
            spec.down = f"backend {outcome.reason}: {outcome.detail}"
            return spec
        if not outcome.ok:
            spec.problems.append(f"{path}: {outcome.reason}{f' {outcome.status}' if outcome.status else ''}")
            continue
        try:
            spec.version, spec.operations = load_operations(_json.decode(outcome.body))
            spec.path = path
            return spec
        except (msgspec.DecodeError, SpecError) as exc:
            spec.problems.append(f"{path}: {exc}")
        except Exception as exc:  # a shape nobody foresaw: report it, fall back to probing
            spec.problems.append(f"{path}: unreadable spec ({type(exc).__name__}: {exc})")
    return spec


def _bind_spec(spec: _Spec, modules: tuple[str, ...], settings: RequestSettings) -> dict[str, Binding]:
    """The spec's bindings; a spec that cannot be bound counts as no spec (noted), so probing takes over."""
    if spec.operations is None:
        return {}
    try:
        return match_spec(spec.operations, modules, settings)
    except Exception as exc:
        spec.problems.append(f"{spec.path}: cannot bind ({type(exc).__name__}: {exc})")
        spec.operations, spec.version = None, None
        return {}


async def _probe(
    upstream: UpstreamClient, module: str, key: str, settings: RequestSettings, from_spec: Binding | None
) -> Binding:
    """Known paths for a module the spec does not serve; if none answers, both reasons are kept."""
    probed = await probe_aliases(upstream, module, key, settings)
    if probed.route is None and from_spec is not None:
        probed.reason = f"spec: {from_spec.reason}; {probed.reason}"
    return probed


def _fits(route: Route) -> str | None:
    """Why a route found in the backend's spec cannot go on the wire (a path or a term too long), or None."""
    try:
        msgspec.convert(msgspec.to_builtins(route), Route)
    except msgspec.ValidationError as exc:
        return f"the spec's route exceeds the wire limits: {exc}"[:MAX_DETAIL]
    return None


def route_map(found: Discovery, clock: Clock, revision: int, fence: int = 0) -> RouteMap:
    """The map to publish, bounded by construction: whatever the spec says, it decodes everywhere.

    Texts copied from the backend's spec (reasons, notes, the version) are cut
    to the wire limits; a route whose path or terms exceed them is unusable.
    """
    routes: dict[str, Route] = {}
    unusable: dict[str, str] = {}
    origin: dict[str, RouteSource] = {}
    for module, b in found.bindings.items():
        problem = b.reason if b.route is None else _fits(b.route)
        if b.route is None or problem is not None:
            unusable[module] = (problem or "")[:MAX_DETAIL]
            continue
        routes[module] = b.route
        origin[module] = b.origin
    return RouteMap(
        ts=clock.now(),
        source="openapi" if found.spec_version else "alias",
        routes=routes,
        unusable=unusable,
        origin=origin,
        notes={m: [n[:MAX_DETAIL] for n in b.notes[:MAX_ITEMS]] for m, b in found.bindings.items() if b.notes},
        spec_version=found.spec_version[:MAX_TERM] if found.spec_version else None,
        revision=revision,
        fence=fence,
    )


def same_routes(a: RouteMap | None, b: RouteMap) -> bool:
    return a is not None and a.routes == b.routes and a.unusable == b.unusable


class DiscoveryActor(Actor):
    """Publishes the backend's route map on ``routes`` and keeps it current."""

    name = "discovery"

    def __init__(
        self,
        upstream: UpstreamClient,
        *,
        modules: Iterable[str],
        settings: RequestSettings | None = None,
        refresh_interval: float = 600.0,
        min_gap: float = 10.0,
        probe_asset: str = "SOL",
        assets: Iterable[str] | None = None,
        initial_timeout: float = 15.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.upstream = upstream
        self.initial_timeout = initial_timeout
        self.modules = tuple(modules)
        self.settings = settings or RequestSettings()
        self.refresh_interval = refresh_interval
        self.min_gap = min_gap
        self.probe_asset = probe_asset
        #: The configured assets (None: any): only their 404s may trigger a rediscovery.
        self.assets = frozenset(assets) if assets is not None else None
        self.current: RouteMap | None = None
        self.runs = 0
        self._wake = asyncio.Event()
        self._last_demand = float("-inf")
        self._refreshed_at = float("-inf")
        self._latest_trigger = float("-inf")
        self.leadership: Leadership = Leadership(self.name)

    def subscriptions(self) -> Iterable[Sub]:
        return [
            *subs_for(
                self.subjects.degraded_for(self.assets, self.modules),
                Degraded,
                self.on_degraded,
                accept=self.accept_degraded,
            ),
        ]

    async def on_routes(self, routes: RouteMap) -> None:
        """A standby follows the leader's maps: a takeover goes on from the current one."""
        self.leadership.observe(routes.fence)
        if self.leadership.leading or routes.fence < self.leadership.term or routes.ts > self.clock.now() + 1:
            return
        if self.current is None or routes.ts >= self.current.ts:
            self.current = routes

    def accept_degraded(self, msg: Degraded) -> str | None:
        if msg.module not in self.modules:
            return f"unknown_module: {msg.module} is not configured here"
        return self.off_clock(msg.ts, "report ts")

    async def on_start(self) -> None:
        try:
            entry = await (await self.bucket(ROUTES_BUCKET)).get(ROUTES_KEY)
        except BusError as exc:
            self.log.warning("routes_store_unavailable", error=str(exc))
            entry = None
        if entry is not None and entry.value:
            try:
                self.current = decode(entry.value, RouteMap)
                self.log.info("routes_restored", revision=self.current.revision, source=self.current.source)
            except DecodeError as err:
                self.log.warning("bad_stored_routes", reason=err.reason)
        # The first discovery runs before the next actors start (the supervisor
        # starts children in order), bounded so a dead backend cannot stall start-up;
        # only by the leader (a standby has the stored map, and follows the leader's).
        try:
            if await self.clock.timeout(self.initial_timeout, self.leadership.try_lead(self)):
                await self.clock.timeout(self.initial_timeout, self.refresh())
        except TimeoutError:
            self.log.warning("initial_discovery_timed_out", seconds=self.initial_timeout)

    async def on_degraded(self, msg: Degraded) -> None:
        # Only a real HTTP answer says the route moved ("no route known" must not
        # loop), and only one newer than the last refresh: the rest of a flood
        # of 404s from the same moment was caused by the map just replaced.
        if msg.source != "backend":
            return  # a venue's 404 says nothing about the backend's routes
        if msg.reason == "not_found" and msg.status is not None and msg.ts >= self._refreshed_at:
            self._latest_trigger = max(self._latest_trigger, msg.ts)
            self.request_refresh(f"{msg.module} answered {msg.status}")

    def request_refresh(self, why: str) -> None:
        if not self._wake.is_set():
            self.log.info("rediscovery_requested", why=why)
        self._wake.set()

    async def run(self) -> None:
        leader = Sub(self.subjects.routes(), RouteMap, self.on_routes, pending=CONTROL_PENDING, max_rate=CONTROL_RATE)
        await self.leadership.hold(self, self._keep_current, follow=[leader])

    async def _keep_current(self, term: int) -> None:
        """While leading: discover now if no map is known yet, then on schedule and on demand."""
        if self.current is None and self.runs == 0:  # took over before any map was made or stored
            await self.refresh()
        while True:
            with contextlib.suppress(TimeoutError):  # timing out is the scheduled refresh
                await self.clock.timeout(self.refresh_interval, self._wake.wait())
            if self._wake.is_set():  # on demand: at most one per min_gap
                gap = self._last_demand + self.min_gap - self.clock.monotonic()
                if gap > 0:
                    await self.clock.sleep(gap)
                self._last_demand = self.clock.monotonic()
            self._wake.clear()
            await self.refresh()
            if self._latest_trigger < self._refreshed_at:
                self._wake.clear()  # 404s that arrived during the refresh came from the map it replaced

    async def refresh(self) -> RouteMap | None:
        """Run discovery once; publish and store the map, freshly dated.

        Unchanged routes are published again too (same revision, new time):
        fetchers follow the newest map, so a stale or forged map on the bus
        lasts until the next refresh at most.
        """
        self.runs += 1
        try:
            found = await discover(self.upstream, self.settings, self.modules, probe_asset=self.probe_asset)
        except Exception as exc:  # an unexpected spec shape must not kill discovery
            self.log.exception("discovery_failed", error=repr(exc))
            return None
        revision = (self.current.revision if self.current else 0) + 1
        new = route_map(found, self.clock, revision, self.leadership.fence)
        if not new.routes:
            # Nothing usable (backend down?): keep the last map, or the built-in routes.
            self.log.warning("discovery_found_nothing", problem=found.spec_problem, keeping=self.current is not None)
            return None
        if self.current is not None and same_routes(self.current, new):
            self.current = msgspec.structs.replace(self.current, ts=new.ts, fence=new.fence)
            await self.publish(self.subjects.routes(), self.current)
            self._refreshed_at = self.clock.now()
            return self.current
        self.current = new
        self.log.info(
            "routes_discovered",
            revision=revision,
            source=new.source,
            spec=found.spec_version,
            routes=",".join(f"{m}={r.path}" for m, r in new.routes.items()),
            unusable=",".join(new.unusable),
        )
        await self.publish(self.subjects.routes(), new)
        # 404s reported before this moment came from the replaced map: not a reason to rediscover.
        self._refreshed_at = self.clock.now()
        try:
            await (await self.bucket(ROUTES_BUCKET)).put(ROUTES_KEY, encode(new))
        except BusError as exc:
            self.log.warning("routes_not_persisted", revision=revision, error=str(exc))
        return new
