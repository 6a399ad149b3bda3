"""The one pipeline harness: `sniper run`'s own wiring on the in-memory bus, in virtual time.

`Harness.run(**settings)` starts the pipeline through `sniper.app.run_pipeline`
(the code path of `sniper run` and `sniper demo`) with its three seams swapped:
a `MemoryBus`, a `MockTransport` over a scriptable `FakeBackend`, and a
`VirtualClock`. So a test exercises exactly the actors, start order and
defaults a deployed process has; only what `Settings` cannot express (a breaker
policy, a hand-written transport) is passed beside it. Unit tests of one actor
use `harness.ctx` with actors they build themselves.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar, overload

import msgspec

from actors.circuit import CircuitPolicy
from actors.metrics import Metrics, metrics_of
from actors.testing import FakeBackend
from actors.upstream import MockTransport, Transport, UpstreamClient
from messages import CircuitState, Health, Signal, Tick
from runtime import Actor, Context, MemoryBus, VirtualClock
from runtime.testing import Recorder
from sniper.alerting import Notifiers
from sniper.app import Running, actor_names, run_pipeline
from sniper.config import Settings

from . import samples

BACKEND = "http://backend.test"
#: Every actor but discovery: the FakeBackend has no OpenAPI document, so the default routes hold.
WITHOUT_DISCOVERY = tuple(name for name in actor_names() if name != "discovery")
A = TypeVar("A", bound=Actor)


class Harness:
    """A FakeBackend, an in-memory bus, a virtual clock and recorders of what the pipeline publishes."""

    def __init__(self, clock: VirtualClock, bus: MemoryBus) -> None:
        self.clock = clock
        self.bus = bus
        self.ctx = Context(bus=bus, clock=clock, host="test", hooks=Metrics())
        self.subjects = self.ctx.subjects
        self.backend = FakeBackend(clock, samples.BODIES)
        self.running: Running | None = None

    async def record(self) -> Harness:
        """Start the recorders (before the pipeline, so they see cycle 0)."""
        self.ticks = await Recorder[Tick](self.bus, self.subjects.tick_all(), Tick).start()
        self.signals = await Recorder[Signal](self.bus, self.subjects.signal_all(), Signal).start()
        self.health = await Recorder[Health](self.bus, self.subjects.health_all(), Health).start()
        self.circuits = await Recorder[CircuitState](self.bus, self.subjects.circuit_all(), CircuitState).start()
        return self

    @asynccontextmanager
    async def run(
        self,
        *,
        transport: Transport | None = None,
        policy: CircuitPolicy | None = None,
        seed: int = 1,
        notifiers: Notifiers | None = None,
        **settings: Any,
    ) -> AsyncIterator[Running]:
        """Run the pipeline `Settings(**settings)` describes (one asset, 5 s interval, no discovery by default).

        Alert notifications go to `notifiers` (default: none, never a real Telegram or Alertmanager).
        """
        settings.setdefault("backend", BACKEND)
        settings.setdefault("assets", ("SOL",))
        settings.setdefault("interval", 5.0)
        settings.setdefault("window", min(3.0, settings["interval"]))
        settings.setdefault("actors", WITHOUT_DISCOVERY)
        async with run_pipeline(
            Settings(**settings),
            bus=self.bus,
            transport=transport or MockTransport(self.backend),
            clock=self.clock,
            policy=policy,
            rng=random.Random(seed),
            notifiers=notifiers or Notifiers(),
        ) as running:
            self.running = running
            yield running

    @overload
    def actor(self, name: str) -> Actor: ...
    @overload
    def actor(self, name: str, cls: type[A]) -> A: ...
    def actor(self, name: str, cls: type[Actor] = Actor) -> Actor:
        """An actor of the last run, by its ``--actors`` name (a fetcher by its module).

        With `cls`, checked to be one and typed as one, so a test can read its state.
        """
        assert self.running is not None, "run the pipeline first"
        actor = self.running.actor(name)
        assert isinstance(actor, cls), f"{name} is a {type(actor).__name__}, not a {cls.__name__}"
        return actor

    def upstream(self) -> UpstreamClient:
        """A client of the FakeBackend, for unit tests that build their fetchers by hand."""
        return UpstreamClient(BACKEND, MockTransport(self.backend), clock=self.clock)

    @property
    def actors(self) -> list[Actor]:
        """Every actor of the last run, in start order."""
        assert self.running is not None, "run the pipeline first"
        return list(self.running.supervisor.actors.values())

    @property
    def metrics(self) -> Metrics:
        """The metrics of the last run (the Prometheus set `/metrics` would serve)."""
        assert self.running is not None, "run the pipeline first"
        return metrics_of(self.running.ctx)

    async def forge(self, subject: str, msg: msgspec.Struct) -> None:
        """Publish `msg` as any client on the bus could (a forger, a replay, another bot)."""
        await self.bus.publish(subject, msgspec.json.encode(msg))
