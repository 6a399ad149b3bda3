"""A hostile (or just generous) backend cannot silence or steer the pipeline.

The findings: a valid 2 MB whale body crashed fetch-whale five times (its
ModuleData was over NATS's 1 MB max_payload), and a valid 17 MB order book
(10^6 levels) left spot_ob `missing` even after the backend was healthy.

What holds now, tested here:

* the worst case of every module's `ModuleData`, with every string at its
  maximum length (in the characters JSON escapes longest) and every list at
  its cap, encodes far below 1 MiB: caps by construction, not by luck;
* fetchers trim lists to the caps after validating (a long valid list is
  trimmed, not rejected), and refuse strings over their maximum;
* over real HTTP on loopback, with marketsim's `oversize` fault, a real
  fetcher and a real nats-server: a body over the client's 4 MiB cap is
  `degraded(bad_payload)` with a ``too_large`` detail, a big body under the
  cap is an `ok` payload trimmed to the caps, the fetcher never crashes, and
  the next cycle after the fault is cleared is `ok`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from actors.fetcher import MAX_PAYLOAD_BYTES, BadPayload, ModuleFetcher
from actors.fetchers import FETCHERS, MODULES
from actors.routing import RequestSettings
from actors.upstream import DEFAULT_MAX_BODY, AiohttpTransport, MockTransport, Response, UpstreamClient
from marketsim import OversizeFault, RunningServer, serve
from messages import MAX_MESSAGE_BYTES, Degraded, ModuleData, ModulePayload, Tick, decode, encode
from messages.modules import (
    MAX_BOOK_LEVELS,
    MAX_ETF_ISSUERS,
    MAX_HEATMAP_LEVELS,
    MAX_WHALE_ALERTS,
    EtfFlows,
    LiquidationHeatmap,
    OrderBook,
    WhaleAlerts,
)
from messages.modules._kit import MAX_LABEL_CHARS, MAX_SHORT_CHARS, MAX_SYMBOL_CHARS, MAX_TX_CHARS
from runtime import ActorState, Context, NatsBus, Supervisor, SystemClock, VirtualClock
from runtime.testing import Recorder

from .. import samples

MIB = 1024 * 1024
#: "Well under" the broker's 1 MiB: the worst case must leave half of it free.
WORST_CASE_LIMIT = MIB // 2

# -- worst cases --------------------------------------------------------------------------------

#: The longest JSON text of a float within the payload bounds (24 characters), signed and not.
LONGEST_POSITIVE = 2.2250738585072014e-308
LONGEST_SIGNED = -2.2250738585072014e-308


def longest(chars: int) -> str:
    """A string of `chars` characters that JSON escapes longest: 6 bytes each (``\\u0000``)."""
    return "\x00" * chars


def longest_floats(start: float, toward: float, n: int) -> list[float]:
    """`n` distinct floats from `start` toward `toward`, in order, each 23 characters in JSON (the most)."""
    out: list[float] = []
    x = start
    while len(out) < n:
        x = math.nextafter(x, toward)
        if len(msgspec.json.encode(x)) == len(msgspec.json.encode(LONGEST_POSITIVE)):
            out.append(x)
    return out


def worst_case_bodies(lists: int = 1) -> dict[str, dict[str, Any]]:
    """Per module, the largest body a fetcher keeps: max-length strings, max counts (times `lists`)."""
    alert = {
        "id": longest(MAX_LABEL_CHARS),
        "ts": LONGEST_POSITIVE,
        "amount": LONGEST_POSITIVE,
        "amount_usd": LONGEST_POSITIVE,
        "from": longest(MAX_LABEL_CHARS),
        "to": longest(MAX_LABEL_CHARS),
        "direction": "exchange_outflow",
        "tx": longest(MAX_TX_CHARS),
    }
    # A book must be sorted and uncrossed, so its prices differ: every one still as long as a float gets.
    bids = longest_floats(1.2345678901234567e-300, 0.0, MAX_BOOK_LEVELS * lists)
    asks = longest_floats(2.2345678901234567e-300, 1.0, MAX_BOOK_LEVELS * lists)
    short_above = 1.2345678901234567e-300  # above the price, as a short cluster must be
    return {
        "whale": {
            "symbol": longest(MAX_SYMBOL_CHARS),
            "window": longest(MAX_SHORT_CHARS),
            "alerts": [alert] * MAX_WHALE_ALERTS * lists,
        },
        "etf": {
            "asset": "BTC",
            "as_of": longest(MAX_SHORT_CHARS),
            "net_flow_usd": LONGEST_SIGNED,
            "issuers": [{"ticker": longest(MAX_SHORT_CHARS), "flow_usd": LONGEST_SIGNED}] * MAX_ETF_ISSUERS * lists,
        },
        "heatmap": {
            "symbol": longest(MAX_SYMBOL_CHARS),
            "timeframe": longest(MAX_SHORT_CHARS),
            "price": LONGEST_POSITIVE,
            "levels": [{"price": short_above, "side": "short", "usd": LONGEST_POSITIVE}] * MAX_HEATMAP_LEVELS * lists,
        },
        "spot_ob": {
            "symbol": longest(MAX_SYMBOL_CHARS),
            "exchange": longest(MAX_SYMBOL_CHARS),
            "ts": LONGEST_POSITIVE,
            "bids": [[price, LONGEST_POSITIVE] for price in bids],
            "asks": [[price, LONGEST_POSITIVE] for price in asks],
        },
        "bias": {
            "symbol": longest(MAX_SYMBOL_CHARS),
            "bias": "bullish",
            "score": LONGEST_SIGNED,
            "long_short_ratio": LONGEST_POSITIVE,
            "funding_rate": LONGEST_SIGNED,
            "oi_change_pct": LONGEST_SIGNED,
        },
        "funding": {
            "symbol": longest(MAX_SYMBOL_CHARS),
            "funding_rate": LONGEST_SIGNED,
            "predicted_rate": LONGEST_SIGNED,
            "interval_hours": LONGEST_POSITIVE,
            "next_funding_time": LONGEST_POSITIVE,
            "open_interest_usd": LONGEST_POSITIVE,
            "oi_change_pct": LONGEST_SIGNED,
        },
    }


def worst_case_message(module: str) -> ModuleData:
    """The largest ModuleData of `module`: the worst-case payload (validated) in the largest envelope."""
    payload = msgspec.convert({**worst_case_bodies()[module], "module": module}, type=ModulePayload)  # validated
    return ModuleData(
        module=module,
        asset="A" * 20,
        cycle=2**53 - 1,  # the largest Cycle (integers JavaScript reads exactly)
        ts=1767225661.2345679,  # the envelope's numbers are bounded in messages._base; 17 digits each here
        latency_ms=9999.9999999999982,
        payload=payload,
    )


def reader(module: str, *, depth: int = 50) -> ModuleFetcher:
    """A fetcher of `module`, used for its payload reading (decode, check, trim) only."""
    upstream = UpstreamClient("http://unused", MockTransport(lambda url: Response(500, {}, b"")), clock=VirtualClock())
    return FETCHERS[module](upstream, settings=RequestSettings(depth=depth))


class TestWorstCaseSize:
    @pytest.mark.parametrize("module", MODULES)
    def test_worst_case_module_data_is_well_under_1_mib(self, module: str) -> None:
        """Max-length strings (6 bytes a character in JSON), 24-character floats and full lists stay under 512 KiB."""
        data = encode(worst_case_message(module))
        assert len(data) < WORST_CASE_LIMIT, f"{module}: worst case {len(data)} bytes"
        assert len(data) < MAX_PAYLOAD_BYTES < MAX_MESSAGE_BYTES
        assert decode(data, ModuleData) == worst_case_message(module)  # what the assembler would decode

    @pytest.mark.parametrize("module", MODULES)
    def test_the_worst_case_body_is_what_a_fetcher_keeps(self, module: str) -> None:
        """The worst-case body is accepted, and one with twice as many list items is trimmed back to it."""
        doubled = worst_case_bodies(lists=2)[module]
        fetcher = reader(module, depth=10**9)  # a misconfigured depth is clamped to MAX_BOOK_LEVELS
        kept = fetcher.read_payload(msgspec.json.encode(doubled))
        assert kept == worst_case_message(module).payload

    @pytest.mark.parametrize(
        ("field", "chars"),
        [("id", MAX_LABEL_CHARS), ("from", MAX_LABEL_CHARS), ("to", MAX_LABEL_CHARS), ("tx", MAX_TX_CHARS)],
    )
    def test_a_string_over_its_maximum_is_bad_payload(self, field: str, chars: int) -> None:
        """A string one character over its maximum (or 2 MB over it) makes the body bad_payload."""
        for length in (chars + 1, 2_000_000):
            alert = {**samples.WHALE["alerts"][0], field: "x" * length}  # type: ignore[dict-item]  # samples are plain JSON-like dicts
            body = msgspec.json.encode({**samples.WHALE, "alerts": [alert]})
            with pytest.raises(BadPayload, match=f"length <= {chars}"):
                reader("whale").read_payload(body)

    def test_the_last_guard_refuses_an_untrimmed_payload_over_the_broker_limit(self) -> None:
        """A fetcher that forgot to trim still never publishes over the limit: its payload is too_large."""

        upstream = UpstreamClient("http://b", MockTransport(lambda url: Response(500, {}, b"")), clock=VirtualClock())
        alerts = [{**samples.WHALE["alerts"][0], "id": f"wh-{i}"} for i in range(8000)]  # type: ignore[dict-item]  # samples are plain JSON-like dicts
        with pytest.raises(BadPayload, match=f"too_large: .* exceeds {MAX_PAYLOAD_BYTES} bytes"):
            untrimmed = FETCHERS["whale"](upstream)
            untrimmed.normalise = lambda payload: payload  # type: ignore[method-assign]  # a fetcher that forgot to trim
            untrimmed.read_payload(msgspec.json.encode({**samples.WHALE, "alerts": alerts}))


class TestTrimming:
    def test_whale_keeps_the_newest_alerts(self) -> None:
        """More than MAX_WHALE_ALERTS alerts: the newest are kept, in the backend's order."""
        alerts = [{**samples.WHALE["alerts"][0], "id": f"w{i}", "ts": float(i % 500)} for i in range(1000)]  # type: ignore[dict-item]  # samples are plain JSON-like dicts
        payload = reader("whale").read_payload(msgspec.json.encode({**samples.WHALE, "alerts": alerts}))
        assert isinstance(payload, WhaleAlerts) and len(payload.alerts) == MAX_WHALE_ALERTS
        assert sorted(a.ts for a in payload.alerts) == sorted([float(t) for t in range(400, 500)] * 2)
        assert [a.id for a in payload.alerts] == [f"w{i}" for i in range(1000) if i % 500 >= 400]

    def test_heatmap_keeps_the_clusters_nearest_the_price(self) -> None:
        """More than MAX_HEATMAP_LEVELS clusters: the nearest to the price are kept."""
        levels = [{"price": 180.0 + d, "side": "short", "usd": 1.0} for d in range(1, 501)]
        levels += [{"price": 180.0 - d / 10, "side": "long", "usd": 1.0} for d in range(1, 501)]
        payload = reader("heatmap").read_payload(msgspec.json.encode({**samples.HEATMAP, "levels": levels}))
        assert isinstance(payload, LiquidationHeatmap) and len(payload.levels) == MAX_HEATMAP_LEVELS
        kept = sorted(round(abs(lv.price - 180.0), 6) for lv in payload.levels)
        assert kept == sorted([float(d) for d in range(1, 19)] + [d / 10 for d in range(1, 183)])

    def test_etf_keeps_the_largest_flows_and_the_net(self) -> None:
        """More than MAX_ETF_ISSUERS issuers: the largest flows either way are kept; the net flow is untouched."""
        issuers = [{"ticker": f"T{i}", "flow_usd": float(i if i % 2 else -i)} for i in range(200)]
        payload = reader("etf").read_payload(msgspec.json.encode({**samples.ETF, "issuers": issuers}))
        assert isinstance(payload, EtfFlows) and len(payload.issuers) == MAX_ETF_ISSUERS
        assert {abs(i.flow_usd) for i in payload.issuers} == {float(i) for i in range(150, 200)}
        assert payload.net_flow_usd == samples.ETF["net_flow_usd"]

    @pytest.mark.parametrize(("depth", "kept"), [(5, 5), (50, 50), (10**6, MAX_BOOK_LEVELS), (0, 1)])
    def test_book_keeps_the_configured_depth(self, depth: int, kept: int) -> None:
        """A sorted book longer than the depth is trimmed to it per side (at most MAX_BOOK_LEVELS, at least 1)."""
        n = 3000
        book = {
            **samples.ORDER_BOOK,
            "bids": [[179.9 - i * 0.01, 1.0] for i in range(n)],
            "asks": [[180.1 + i * 0.01, 1.0] for i in range(n)],
        }
        payload = reader("spot_ob", depth=depth).read_payload(msgspec.json.encode(book))
        assert isinstance(payload, OrderBook) and (len(payload.bids), len(payload.asks)) == (kept, kept)
        assert payload.bids[0][0] == 179.9 and payload.asks[0][0] == 180.1

    def test_short_lists_are_left_alone(self) -> None:
        """A payload within its caps is passed on unchanged (the same object)."""
        fetcher = reader("whale")
        payload = fetcher._decoder.decode(msgspec.json.encode(samples.WHALE))
        assert fetcher.normalise(payload) is payload


# -- over real HTTP and a real nats-server -------------------------------------------------------


@dataclass
class Rig:
    """marketsim with a fault on one module, one real fetcher of it, recorders of what it publishes."""

    srv: RunningServer
    bus: NatsBus
    ctx: Context
    fetcher: ModuleFetcher
    data: Recorder[ModuleData]
    degraded: Recorder[Degraded]

    async def tick(self, cycle: int) -> None:
        now = self.ctx.clock.now()
        tick = Tick(asset="SOL", cycle=cycle, ts=now, deadline=now + 10, modules=(self.fetcher.module,))
        await self.bus.publish(self.ctx.subjects.tick("SOL"), encode(tick))

    def alive(self) -> bool:
        return self.fetcher.state is ActorState.RUNNING and self.fetcher.restarts == 0


@contextlib.asynccontextmanager
async def rig(bus: NatsBus, module: str, fault: OversizeFault) -> AsyncIterator[Rig]:
    clock = SystemClock()
    ctx = Context(bus=bus, clock=clock)
    async with serve(port=0, default_faults=False, faults={module: fault}) as srv:
        upstream = UpstreamClient(srv.url, AiohttpTransport(), clock=clock)
        fetcher = FETCHERS[module](upstream)
        data = await Recorder[ModuleData](bus, ctx.subjects.data_all(), ModuleData).start()
        degraded = await Recorder[Degraded](bus, ctx.subjects.degraded_all(), Degraded).start()
        try:
            async with Supervisor(ctx, [fetcher]):
                yield Rig(srv, bus, ctx, fetcher, data, degraded)
        finally:
            await upstream.close()


OVER_THE_CAP = [
    pytest.param("spot_ob", OversizeFault(levels=1_000_000), id="spot_ob-17MB-1e6-levels"),
    *[pytest.param(m, OversizeFault(size=5_000_000), id=f"{m}-5MB") for m in MODULES],
]


@pytest.mark.nats
class TestOverRealHttp:
    @pytest.mark.parametrize(("module", "fault"), OVER_THE_CAP)
    async def test_body_over_the_cap_is_too_large_then_the_next_cycle_is_ok(
        self, nats_bus: NatsBus, module: str, fault: OversizeFault
    ) -> None:
        """Over the 4 MiB cap (the 17 MB book of the finding, 5 MB of anything): degraded(bad_payload, too_large).

        The fetcher stays RUNNING with no restart, and once the backend is
        healthy the very next cycle is ok.
        """
        async with rig(nats_bus, module, fault) as r:
            await r.tick(0)
            (bad,) = await r.degraded.wait_count(1)
            assert r.alive()
            r.srv.sim.clear_fault(module)
            await r.tick(1)
            (good,) = await r.data.wait_count(1)
            assert r.alive()
        assert (bad.module, bad.cycle, bad.reason, bad.status) == (module, 0, "bad_payload", 200)
        assert bad.detail == f"too_large: body exceeds {DEFAULT_MAX_BODY} bytes"
        assert (good.module, good.cycle) == (module, 1)
        assert [d.cycle for d in r.degraded.messages] == [0]

    @pytest.mark.parametrize("module", MODULES)
    async def test_big_body_under_the_cap_is_ok_and_trimmed(self, nats_bus: NatsBus, module: str) -> None:
        """A 2 MB valid body fits the 4 MiB cap, so it is an ok payload (not too_large), trimmed to the caps.

        This is the whale finding: 2 MB of valid alerts now gives the newest
        200 in a small ModuleData, published over a real nats-server.
        """
        async with rig(nats_bus, module, OversizeFault(size=2_000_000)) as r:
            await r.tick(0)
            (msg,) = await r.data.wait_count(1)
            wire = r.data.envelopes[0].data
            assert r.alive()
            real = r.srv.sim.build("whale", {"base": "SOL"})  # the alerts of a healthy answer, at this time
        assert r.degraded.messages == [] and len(wire) < 100_000
        counts = {f: len(v) for f, v in msgspec.to_builtins(msg.payload).items() if isinstance(v, list | tuple)}
        expected = {
            "whale": {"alerts": MAX_WHALE_ALERTS},
            "etf": {"issuers": MAX_ETF_ISSUERS},
            "heatmap": {"levels": MAX_HEATMAP_LEVELS},
            "spot_ob": {"bids": 50, "asks": 50},
            "bias": {},
            "funding": {},
        }[module]
        assert counts == expected
        if module == "whale":  # the real alerts are the newest: all of them survive the trim
            assert isinstance(msg.payload, WhaleAlerts)
            assert {a["id"] for a in msgspec.to_builtins(real)["alerts"]} <= {a.id for a in msg.payload.alerts}
