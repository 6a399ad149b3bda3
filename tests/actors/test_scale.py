"""What keeps 1,000 assets in one process within the overhead target (issue 14), held in place.

Each test pins one change `bench/cycle_latency.py` measured: the scheduler's
stagger survives a late wake, an emitted window lets go of its closer, a
fetcher's remembered requests follow a route change, and the upstream
shortcuts (no error-envelope decode without a ``code`` key; one read of a
declared, uncompressed body) classify exactly as before.
"""

from __future__ import annotations

import pytest

from actors.assembler import SignalAssembler
from actors.fetchers import MODULES
from actors.upstream import Response, classify
from messages import DEFAULT_ROUTES, Degraded, ModuleData, ParamBinding, Route, RouteMap
from runtime import MemoryBus, Supervisor, VirtualClock
from runtime.testing import Recorder

from .. import samples
from ..harness import Harness
from .test_pipeline import World


class LateClock(VirtualClock):
    """Virtual time in which the loop is busy from `late_at` for `by` seconds: every timer due then fires at the end.

    As a real loop does after a long callback or a GC pause.
    """

    def __init__(self, late_at: float, by: float) -> None:
        super().__init__(autojump=True)
        self.late_at = late_at
        self.by = by
        self.fired = 0

    async def sleep(self, seconds: float) -> None:
        end = self.monotonic() + seconds
        if self.late_at <= end < self.late_at + self.by:
            self.fired += 1
            seconds = self.late_at + self.by - self.monotonic()
        await super().sleep(seconds)


@pytest.fixture
async def world(harness: Harness) -> World:
    return World(
        harness,
        data=await Recorder[ModuleData](harness.bus, harness.subjects.data_all(), ModuleData).start(),
        degraded=await Recorder[Degraded](harness.bus, harness.subjects.degraded_all(), Degraded).start(),
    )


class TestSchedule:
    async def test_a_late_cycle_does_not_shift_the_later_ones(self) -> None:
        """A tick 0.4 s late is late alone: the next one is due one interval after the late one was due.

        Before, each cycle was due an interval after the previous one actually started, so every
        stall shifted an asset for good, and assets that stalled together ticked together from then on.
        """
        clock = LateClock(late_at=10.0, by=0.4)
        bus = MemoryBus(clock=clock)
        harness = await Harness(clock, bus).record()
        try:
            async with harness.run(interval=5.0):
                await clock.sleep(21)
        finally:
            clock.stop_autojump()
        starts = [round(t.ts - clock.EPOCH, 3) for t in harness.ticks.messages]
        assert clock.fired and starts == [0.0, 5.0, 10.4, 15.0, 20.0]

    async def test_staggered_assets_keep_their_offsets(self, harness: Harness) -> None:
        """Four assets over a 4 s interval: each keeps its offset cycle after cycle."""
        async with harness.run(assets=("SOL", "BTC", "ETH", "XRP"), interval=4.0, window=2.0):
            await harness.clock.sleep(11.5)
        offsets = {round((t.ts - harness.clock.EPOCH) % 4.0, 6) for t in harness.ticks.messages}
        assert offsets == {0.0, 1.0, 2.0, 3.0} and len(harness.ticks.messages) == 12


class TestAssembler:
    async def test_an_emitted_window_lets_go_of_its_closer(self, world: World) -> None:
        """Every module answered: the signal is out and the window's closer ends now, not at the deadline."""
        assembler = SignalAssembler(modules=MODULES)
        async with Supervisor(world.ctx, [*world.fetchers(), assembler]):
            await world.tick(window=3.0)
            await world.clock.sleep(0.5)
            closers = [t for t in assembler._children if t.get_name().startswith("window:")]
            (sig,) = world.signals.messages
        assert sig.complete and closers == []


class TestFetcher:
    async def test_remembered_requests_follow_a_route_change(self, world: World) -> None:
        """The request built for SOL is reused tick after tick, and rebuilt when a route map moves the module."""
        world.backend.bodies["/api/v2/market/depth/binance/SOL-USDT"] = samples.ORDER_BOOK
        route = Route(
            module="spot_ob",
            path="/api/v2/market/depth/{venue}/{pair}",
            params=(
                ParamBinding(name="venue", location="path", role="exchange"),
                ParamBinding(name="pair", location="path", role="symbol", form="dash"),
            ),
        )
        async with Supervisor(world.ctx, world.fetchers("spot_ob")):
            await world.tick(cycle=0)
            await world.clock.sleep(1)
            await world.tick(cycle=1)
            await world.clock.sleep(1)
            await world.publish(
                world.ctx.subjects.routes(),
                RouteMap(ts=world.clock.now(), source="openapi", routes={**DEFAULT_ROUTES, "spot_ob": route}),
            )
            await world.clock.sleep(0.1)
            await world.tick(cycle=2)
            await world.clock.sleep(1)
        default = (samples.PATHS["spot_ob"], {"symbol": "SOLUSDT", "exchange": "binance", "depth": "50"})
        assert world.backend.calls == [default, default, ("/api/v2/market/depth/binance/SOL-USDT", {})]
        assert [m.cycle for m in world.data.messages] == [0, 1, 2]


class TestUpstreamShortcuts:
    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (b'{"levels": [[1, 2]]}', ("ok", "ok")),  # no "code" key: no envelope decode
            (b'{"code": "0", "data": []}', ("ok", "ok")),
            (b'{"code": "50011", "msg": "slow down"}', ("throttled", "rate_limited")),
            (b'{"\\u0063ode": "402", "msg": "pay"}', ("entitlement", "payment_required")),  # an escaped key
            (b'{"note": "\\"code\\" in a string", "code": "500"}', ("transient", "upstream_error")),
        ],
    )
    def test_a_200_is_classified_as_before(self, body: bytes, expected: tuple[str, str]) -> None:
        outcome = classify(Response(200, {}, body), now=0.0)
        assert (outcome.error_class, outcome.reason) == expected

    def test_error_statuses_still_read_their_detail(self) -> None:
        outcome = classify(Response(403, {}, b'{"detail": "upgrade your plan"}'), now=0.0)
        assert (outcome.reason, outcome.detail) == ("payment_required", "upgrade your plan")
