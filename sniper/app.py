"""Wiring: which actors a process runs, on which bus, against which backend.

`run_pipeline` is the one code path for `sniper run` and `sniper demo` (and
the end-to-end tests): open the bus (an embedded nats-server when no URL is
given), build the actors the settings ask for, supervise them until told to
stop, then shut everything down in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from actors.alerter import Alerter, AlertPolicy, Notifier
from actors.assembler import SignalAssembler
from actors.circuit import CircuitPolicy, CircuitSupervisor
from actors.discovery import DiscoveryActor
from actors.fetchers import FETCHERS
from actors.flags import FlagKeeper
from actors.metrics import Metrics
from actors.scheduler import HealthPolicy, Scheduler
from actors.status import StatusKeeper
from actors.telegram import TelegramNotifier
from actors.telegram_commands import TelegramCommands
from actors.upstream import AiohttpTransport, ErrorClass, Transport, UpstreamClient
from messages import ConfigError, ModuleStatus, Signal, decode
from messages.alerts import AlertName
from messages.control import CircuitStateName
from messages.cycle import Direction
from messages.modules import REASONS
from messages.service import SERVICE_DESCRIPTION
from messages.subjects import SIGNALS_STREAM, BucketName
from runtime import Actor, Bus, Clock, Context, NatsBus, Supervisor, SystemClock
from runtime.bus import Envelope
from runtime.errors import ActorFailedError
from runtime.logs import get_logger
from runtime.micro import Service
from runtime.nats_bus import redact_url
from runtime.stream import StreamSpec

from . import __version__
from .alerting import Notifiers, open_notifiers
from .config import MODULES, NatsAuth, Settings
from .embedded import EmbeddedNats
from .fallback import build_sources

log = get_logger("app")


def actor_names() -> tuple[str, ...]:
    """Names accepted by ``--actors``: scheduler, assembler, circuits, flags, status, alerter, discovery, fetchers."""
    return ("scheduler", "assembler", "circuits", "flags", "status", "alerter", "discovery", *MODULES)


def command_service(ctx: Context) -> Service:
    """The process's NATS micro service: its actors' commands (flags, circuit, status) as endpoints."""
    return Service(
        ctx.subjects.service_name(),
        __version__,
        clock=ctx.clock,
        description=SERVICE_DESCRIPTION,
        metadata={"prefix": ctx.subjects.prefix, "host": ctx.host},
    )


def build_actors(
    settings: Settings,
    upstream: UpstreamClient,
    *,
    policy: CircuitPolicy | None = None,
    rng: random.Random | None = None,
    notifiers: Sequence[Notifier] = (),
    telegram: TelegramNotifier | None = None,
) -> list[Actor]:
    """The actors this process runs, per ``settings.actors`` (all when empty).

    `notifiers` are where the alerter's notifications go (Telegram, Alertmanager); none: logged only.

    `policy` replaces the breaker thresholds the settings imply (the quarantine
    and probe count are the only ones an operator sets); `rng` seeds the
    jitter of breakers and backoff, so a replay or a test is reproducible.
    """
    wanted = set(settings.actors) or set(actor_names())
    unknown = wanted - set(actor_names())
    if unknown:
        raise ConfigError(f"--actors: unknown {sorted(unknown)}; choose from {list(actor_names())}")
    # Start order matters (the supervisor starts them one after another): the
    # control plane first, then discovery's first route map, then the fetchers
    # that use it, the assembler, and the scheduler, whose first tick needs
    # everyone subscribed.
    # Every actor keeps state only for the configured assets and modules: what
    # else arrives on the bus is refused and counted, never stored.
    actors: list[Actor] = []
    policy = policy or CircuitPolicy(quarantine=settings.quarantine, probes=settings.circuit_probes)
    flags = flag_defaults(settings)
    sources = build_sources(
        settings.fallback,
        upstream.transport,
        upstream.clock,
        depth=settings.request.depth,
        timeframe=settings.request.timeframe,
    )
    if "flags" in wanted:
        actors.append(FlagKeeper(flags, source=settings.feature_source))
    if "circuits" in wanted:
        actors.append(CircuitSupervisor(policy=policy, modules=MODULES, assets=settings.assets, rng=rng))
    if "status" in wanted:
        actors.append(StatusKeeper(assets=settings.assets, modules=MODULES, flags=flags, max_hold=policy.max_hold))
    if "discovery" in wanted:
        actors.append(
            DiscoveryActor(
                upstream,
                modules=MODULES,
                settings=settings.request,
                refresh_interval=settings.discovery_interval,
                probe_asset=settings.assets[0],
                assets=settings.assets,
            )
        )
    for module, cls in FETCHERS.items():
        if module in wanted:
            kwargs: dict[str, Any] = {"proxy_asset": settings.etf_proxy} if module == "etf" else {}
            actors.append(
                cls(
                    upstream,
                    settings=settings.request,
                    enabled=settings.flags[module],
                    assets=settings.assets,
                    max_hold=policy.max_hold,
                    fallback=sources.get(module, ()),
                    **kwargs,
                )
            )
    if "assembler" in wanted:
        actors.append(
            SignalAssembler(
                modules=MODULES, assets=settings.assets, window=settings.window, stream=signal_stream(settings)
            )
        )
    if "alerter" in wanted:
        alert = settings.alert
        actors.append(
            Alerter(
                settings.assets,
                core=settings.core,
                policy=AlertPolicy(alert_for=alert.alert_for, group_wait=alert.group_wait, repeat=alert.repeat),
                notifiers=notifiers,
            )
        )
        if settings.alert.telegram_commands and telegram is not None:
            actors.append(TelegramCommands(telegram, settings.alert.telegram_admins))
    if "scheduler" in wanted:
        actors.append(
            Scheduler(
                settings.assets,
                modules=MODULES,
                interval=settings.interval,
                window=settings.window,
                off_hours_interval=settings.off_hours_interval,
                trading_hours=settings.trading_hours,
                policy=HealthPolicy(core=settings.core),
                stagger=settings.stagger,
                rng=rng,
            )
        )
    return actors


def flag_defaults(settings: Settings) -> dict[str, bool]:
    """Every flag's default: one per module (``FEATURE_*``), and one per venue the fallback uses (on)."""
    return {**settings.flags, **{venue: True for venue in settings.fallback.venues}}


def signal_stream(settings: Settings) -> StreamSpec | None:
    """The stream that keeps signals (and health, if asked) for late joiners, or None when switched off."""
    if not settings.signal_stream:
        return None
    subjects = settings.subjects
    captured = (subjects.signal_all(), *((subjects.health_all(),) if settings.stream_health else ()))
    return StreamSpec(
        name=subjects.stream(SIGNALS_STREAM),
        subjects=captured,
        max_age=settings.stream_max_age,
        max_bytes=settings.stream_max_bytes,
        max_msgs_per_subject=settings.stream_per_subject,
        replicas=settings.replicas,
    )


@dataclass
class Running:
    """A started pipeline: its bus, supervisor and upstream client."""

    bus: Bus
    supervisor: Supervisor
    upstream: UpstreamClient
    nats_url: str | None  # None when the caller brought its own bus
    ctx: Context
    metrics_url: str | None = None

    def actor(self, name: str) -> Actor:
        """The running actor called `name` (as in ``--actors``: a fetcher is named after its module)."""
        for actor in self.supervisor.actors.values():
            if name in (actor.name, getattr(actor, "module", None)):
                return actor
        raise KeyError(name)


#: A singleton's lease lasts at least this long unrenewed (renewals, a quarter of it, stay cheap).
MIN_LEASE_TTL = 1.0


def lease_ttl_for(settings: Settings) -> float:
    """How long a singleton's lease lasts unrenewed: one interval (at least `MIN_LEASE_TTL`).

    So a standby takes over at most ~1.25 intervals after the leader's last
    renewal (a ttl, then its next poll), within the two intervals promised.
    """
    return max(MIN_LEASE_TTL, settings.interval)


@contextlib.asynccontextmanager
async def open_bus(
    nats_url: str | None, *, name: str, auth: NatsAuth | None = None, replicas: int = 1
) -> AsyncIterator[tuple[NatsBus, str]]:
    """Connect to `nats_url` (with `auth`), or start an embedded nats-server (loopback, no auth) when it is None.

    `replicas`: copies of each key-value bucket the bus creates (``--replicas``).
    """
    async with contextlib.AsyncExitStack() as stack:
        if nats_url is None:
            server = await stack.enter_async_context(EmbeddedNats())
            nats_url = server.url
        bus = await NatsBus.connect(nats_url, name=name, replicas=replicas, **(auth.options() if auth else {}))
        stack.push_async_callback(bus.close)
        yield bus, nats_url


@contextlib.asynccontextmanager
async def run_pipeline(
    settings: Settings,
    *,
    bus: Bus | None = None,
    transport: Transport | None = None,
    clock: Clock | None = None,
    policy: CircuitPolicy | None = None,
    rng: random.Random | None = None,
    notifiers: Notifiers | None = None,
    before_start: Callable[[Bus], Awaitable[object]] | None = None,
) -> AsyncIterator[Running]:
    """Start the pipeline described by `settings`; stop it on exit.

    The three seams are what a test or an embedding program swaps: `bus`
    (default: connect to ``settings.nats``, or an embedded nats-server; a bus
    passed in is not closed here), `transport` (default: aiohttp) and `clock`
    (default: the system clock). `policy` and `rng` go to `build_actors`.
    `before_start(bus)` runs once the bus is open and before any actor starts
    (the demo subscribes its printer there, so it sees cycle 0 too).
    """
    if settings.backend is None:
        raise ConfigError("--backend / SNIPER_BACKEND: the market-data backend URL is required")
    clock = clock or SystemClock()
    async with contextlib.AsyncExitStack() as stack:
        url: str | None = None
        if bus is None:
            nats, url = await stack.enter_async_context(
                open_bus(settings.nats, name="sniper", auth=settings.nats_auth, replicas=settings.replicas)
            )
            bus = nats
        upstream = UpstreamClient(
            settings.backend, transport or AiohttpTransport(), clock=clock, max_body=settings.max_body_bytes
        )
        stack.push_async_callback(upstream.close)
        metrics = Metrics()
        metrics.watch_bus(bus.stats)
        ctx = Context(
            bus=bus,
            clock=clock,
            subjects=settings.subjects,
            max_clock_skew=settings.max_clock_skew,
            hooks=metrics,
            lease_ttl=lease_ttl_for(settings),
        )
        ctx.service = service = command_service(ctx)
        stack.push_async_callback(service.stop)  # pushed first, so it runs after the supervisor stopped the actors
        metrics_url = None
        if settings.metrics_port is not None:
            from .metrics_server import serve_metrics

            metrics_url = await stack.enter_async_context(
                serve_metrics(metrics, settings.metrics_port, host=settings.metrics_host)
            )
        if before_start is not None:
            await before_start(bus)
        if notifiers is None:  # Telegram and Alertmanager as the settings say (started, stopped with the pipeline)
            notifiers = await stack.enter_async_context(open_notifiers(settings.alert, clock))
        actors = build_actors(
            settings, upstream, policy=policy, rng=rng, notifiers=notifiers.all, telegram=notifiers.telegram
        )
        metrics.declare(
            modules=MODULES,
            assets=settings.assets,
            reasons=REASONS,
            error_classes=get_args(ErrorClass),
            directions=get_args(Direction),
            states=get_args(CircuitStateName),
            buckets=get_args(BucketName),
            alertnames=get_args(AlertName),
            actors=[a.name for a in actors],
            roles=[a.name for a in actors if a.leadership is not None],
            version=__version__,
        )
        supervisor = Supervisor(ctx, actors)
        stack.push_async_callback(_stop_actors, supervisor)  # before start: a failed start stops what did start
        await supervisor.start()
        if service.endpoints:  # this process answers commands: discoverable on $SRV.PING/INFO/STATS
            await service.start(bus)
        log.info(
            "pipeline_started",
            nats=redact_url(url) if url else "(given)",
            backend=settings.backend,
            assets=",".join(settings.assets),
            metrics=metrics_url,
        )
        yield Running(bus, supervisor, upstream, url, ctx, metrics_url)


#: A process told to stop (SIGTERM, SIGINT) exits within this many seconds, whatever it was doing:
#: the actors get `runtime.supervisor.STOP_DEADLINE`, the bus its drain; past this, a watchdog ends it.
EXIT_BOUND = 5.0
#: The exit status when the watchdog had to end the process (the orderly stop overran `EXIT_BOUND`).
EXIT_STOP_OVERRAN = 4
_WATCHDOG = False


def exit_within_bound() -> None:
    """Make this process (the `sniper` command, not a library user or a test) end hard if a stop overruns."""
    global _WATCHDOG
    _WATCHDOG = True


def _arm_exit_watchdog() -> None:
    """End the process with status 4 if the orderly stop has not finished within `EXIT_BOUND` (a daemon timer)."""

    def overran() -> None:
        sys.stderr.write(f"sniper: did not stop within {EXIT_BOUND:g} s; exiting hard\n")
        sys.stderr.flush()
        os._exit(EXIT_STOP_OVERRAN)

    watchdog = threading.Timer(EXIT_BOUND, overran)
    watchdog.daemon = True
    watchdog.start()


async def _stop_actors(supervisor: Supervisor) -> None:
    """Stop the actors (sources of work first, within the supervisor's deadline) and say so, with how long."""
    clock = supervisor.ctx.clock
    started = clock.monotonic()
    log.info("pipeline_stopping", actors=len(supervisor.actors))
    await supervisor.stop()
    log.info("pipeline_stopped", seconds=round(clock.monotonic() - started, 3))


async def wait_for_stop(seconds: float | None, *, supervisor: Supervisor | None = None) -> None:
    """Return after `seconds` (forever if None), or at SIGINT/SIGTERM, whichever is first.

    With a `supervisor`, also return when it gave up on an actor, raising
    ActorFailedError: the caller stops everything and the process exits 3.
    """
    stop = asyncio.Event()
    if supervisor is not None:
        gave_up = asyncio.ensure_future(supervisor.gave_up.wait())
        gave_up.add_done_callback(lambda _: stop.set())
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        if seconds is None:
            await stop.wait()
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
        if stop.is_set() and _WATCHDOG:
            _arm_exit_watchdog()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        if supervisor is not None:
            gave_up.cancel()
    if supervisor is not None and supervisor.failed:
        names = ", ".join(sorted(supervisor.failed))
        raise ActorFailedError(f"actor {names} exceeded its restart intensity; exiting so the service restarts")


def _status(st: ModuleStatus) -> str:
    shown = st.status if st.status == "ok" else f"{st.status}({st.reason})" if st.reason else st.status
    return shown if st.source == "backend" else f"{shown}@{st.source}"  # a venue answered (the fallback)


def format_signal(sig: Signal) -> str:
    """One human line per signal: asset, cycle, direction, score, confidence, module statuses."""
    modules = " ".join(f"{m}={_status(sig.modules[m])}" for m in sorted(sig.modules))
    return (
        f"{sig.asset:<5} cycle={sig.cycle:<4} {sig.direction.upper():<5} score={sig.score:+.3f} "
        f"confidence={sig.confidence:.2f} etf_available={str(sig.etf_available).lower()} {modules}"
    )


async def print_signals(bus: Bus, settings: Settings, out: Callable[[str], None]) -> Callable[[], int]:
    """Subscribe to every signal over NATS and print it; returns a counter."""
    count = 0

    async def on_signal(env: Envelope) -> None:
        nonlocal count
        count += 1
        out(format_signal(decode(env.data, Signal, subject=env.subject)))

    await bus.subscribe(settings.subjects.signal_all(), on_signal)
    return lambda: count
