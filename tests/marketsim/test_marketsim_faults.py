"""Fault injection over HTTP and through the Python API."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import time

import aiohttp
import pytest

from marketsim import (
    EnvelopeFault,
    LatencyFault,
    MalformedFault,
    OversizeFault,
    StatusFault,
    TimeoutFault,
    parse_fault_spec,
)

WHALE = "/whales/alerts?symbol=SOL"
BIAS = "/institutional/bias?symbol=SOL-USDT-SWAP"


class TestStatusFaults:
    @pytest.mark.parametrize(
        ("status", "detail"),
        [
            (402, "Payment Required"),
            (404, "Not Found"),
            (418, "I'm a Teapot"),
            (500, "Internal Server Error"),
            (503, "Service Unavailable"),
            (599, "HTTP 599"),
        ],
    )
    async def test_status_and_default_detail(self, start, call, status, detail):
        """The module answers the configured status with a FastAPI-style detail."""
        srv = await start(faults={"whale": StatusFault(status=status)})
        reply = await call(srv, "GET", WHALE)
        assert (reply.status, reply.json()) == (status, {"detail": detail})
        assert "Retry-After" not in reply.headers

    @pytest.mark.parametrize(("retry_after", "header"), [(None, "1"), (0, "0"), (30, "30")])
    async def test_429_retry_after_seconds(self, start, call, retry_after, header):
        """429 always carries Retry-After in seconds (1 unless configured)."""
        srv = await start(faults={"whale": StatusFault(status=429, retry_after=retry_after)})
        reply = await call(srv, "GET", WHALE)
        assert (reply.status, reply.headers["Retry-After"]) == (429, header)

    async def test_retry_after_http_date(self, start, call):
        """Retry-After can be an HTTP-date about ``retry_after`` seconds ahead."""
        srv = await start(faults={"whale": StatusFault(status=503, retry_after=120, retry_after_format="http-date")})
        reply = await call(srv, "GET", WHALE)
        when = email.utils.parsedate_to_datetime(reply.headers["Retry-After"]).timestamp()
        assert reply.status == 503 and 100 < when - time.time() < 140

    async def test_custom_detail(self, start, call):
        """A configured detail replaces the status phrase."""
        srv = await start(faults={"bias": StatusFault(status=403, detail="plan does not include bias")})
        assert (await call(srv, "GET", BIAS)).json() == {"detail": "plan does not include bias"}

    async def test_fault_applies_before_validation(self, start, call):
        """A gateway fault answers even requests that would fail validation."""
        srv = await start(faults={"whale": StatusFault(status=500)})
        assert (await call(srv, "GET", "/whales/alerts?symbol=bad!")).status == 500


class TestDefaultFaults:
    async def test_etf_is_paywalled_by_default(self, start, call):
        """ETF flows answer 402 with the seed's production message."""
        srv = await start()
        reply = await call(srv, "GET", "/advanced/etf/flows?asset=BTC")
        assert reply.status == 402
        assert reply.json() == {"detail": "Payment Required: ETF flows need a paid plan"}

    @pytest.mark.parametrize("flavor", ["seed", "guessed", "v2"])
    async def test_no_default_faults(self, start, call, flavor):
        """``default_faults=False`` serves ETF data in every flavor."""
        srv = await start(default_faults=False, flavor=flavor)
        path = "/api/v2/flows/etf/ETH" if flavor == "v2" else "/advanced/etf/flows?asset=ETH"
        assert (await call(srv, "GET", path)).status == 200

    async def test_explicit_faults_replace_defaults(self, start, call):
        """Faults given for etf replace its default paywall."""
        srv = await start(faults={"etf": LatencyFault(ms=1)})
        assert (await call(srv, "GET", "/advanced/etf/flows?asset=BTC")).status == 200

    async def test_clear_faults_removes_paywall(self, start, call):
        """``clear_faults()`` makes every module healthy."""
        srv = await start()
        srv.sim.clear_faults()
        assert (await call(srv, "GET", "/advanced/etf/flows?asset=BTC")).status == 200


class TestLatencyAndTimeout:
    async def test_latency_is_added(self, start, call):
        """A 50 ms latency fault delays a successful answer by at least 50 ms."""
        srv = await start(faults={"whale": LatencyFault(ms=50)})
        began = time.perf_counter()
        reply = await call(srv, "GET", WHALE)
        assert reply.status == 200 and time.perf_counter() - began >= 0.05

    async def test_latency_combines_with_status(self, start, call):
        """Latency and a status fault on one module both apply."""
        srv = await start(faults={"whale": [LatencyFault(ms=50), StatusFault(status=503)]})
        began = time.perf_counter()
        reply = await call(srv, "GET", WHALE)
        assert reply.status == 503 and time.perf_counter() - began >= 0.05

    async def test_timeout_makes_client_give_up(self, start, session):
        """A timeout fault never answers; the client's own timeout fires."""
        srv = await start(faults={"whale": TimeoutFault()})
        began = time.perf_counter()
        with pytest.raises(asyncio.TimeoutError):
            async with session.get(srv.url + WHALE, timeout=aiohttp.ClientTimeout(total=0.3)):
                pass
        assert 0.3 <= time.perf_counter() - began < 2
        await srv.close()
        counts = srv.sim.counters()["whale"]
        assert counts["requests"] == 1 and counts["by_status"] == {"timeout": 1}

    async def test_hung_request_does_not_block_shutdown(self, start, wait_until):
        """Closing the server releases a hung request at once."""
        srv = await start(faults={"whale": TimeoutFault()}, shutdown_timeout=30)
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        writer.write(f"GET {WHALE} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        await wait_until(lambda: srv.sim.counters()["whale"]["requests"] == 1)
        began = time.perf_counter()
        await srv.close()
        assert time.perf_counter() - began < 2
        await reader.read()  # the server closed the connection
        writer.close()
        assert srv.sim.counters()["whale"]["by_status"] == {"timeout": 1}


class TestBrokenBodies:
    async def test_truncated(self, start, call):
        """Truncated mode: HTTP 200, JSON content type, unparseable body."""
        srv = await start(faults={"bias": MalformedFault(mode="truncated")})
        reply = await call(srv, "GET", BIAS)
        assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
        assert reply.raw.startswith(b'{"symbol"')
        with pytest.raises(json.JSONDecodeError):
            reply.json()

    async def test_wrong_types(self, start, call):
        """wrong_types mode: valid JSON, same keys, numbers turned into strings."""
        srv = await start(faults={"bias": MalformedFault(mode="wrong_types")})
        body = (await call(srv, "GET", BIAS)).json()
        srv.sim.clear_faults()
        healthy = (await call(srv, "GET", BIAS)).json()
        assert set(body) == set(healthy)
        assert isinstance(body["score"], str) and float(body["score"]) == healthy["score"]

    async def test_wrong_types_nested(self, start, call):
        """Nested numbers (order book levels) become strings too."""
        srv = await start(faults={"spot_ob": MalformedFault(mode="wrong_types")})
        body = (await call(srv, "GET", "/spot/orderbook?symbol=SOLUSDT&depth=2")).json()
        assert all(isinstance(x, str) for level in body["bids"] for x in level)

    @pytest.mark.parametrize(("mode", "content_type"), [("empty", "application/json"), ("html", "text/html")])
    async def test_empty_and_html(self, start, call, mode, content_type):
        """Empty and HTML modes still answer 200."""
        srv = await start(faults={"bias": MalformedFault(mode=mode)})
        reply = await call(srv, "GET", BIAS)
        assert reply.status == 200 and reply.headers["Content-Type"].startswith(content_type)
        assert (reply.raw == b"") == (mode == "empty")

    async def test_malformed_keeps_validation_errors(self, start, call):
        """A malformed fault cannot corrupt what would be an error anyway."""
        srv = await start(faults={"bias": MalformedFault()})
        assert (await call(srv, "GET", "/institutional/bias?symbol=SOL")).status == 422

    @pytest.mark.parametrize(
        ("fault", "status", "body"),
        [
            (EnvelopeFault(), 200, {"code": "50011", "msg": "Too frequent", "data": None}),
            (EnvelopeFault(http_status=429), 429, {"code": "50011", "msg": "Too frequent", "data": None}),
            (
                EnvelopeFault(code="40001", msg="Invalid sign"),
                200,
                {"code": "40001", "msg": "Invalid sign", "data": None},
            ),
        ],
    )
    async def test_envelope(self, start, call, fault, status, body):
        """Envelope mode answers an OKX-style body with a string code."""
        srv = await start(faults={"whale": fault})
        reply = await call(srv, "GET", WHALE)
        assert (reply.status, reply.json()) == (status, body)


BOOK = "/spot/orderbook?symbol=SOLUSDT&exchange=binance&depth=50"
MODULE_PATHS = {
    "whale": WHALE,
    "etf": "/advanced/etf/flows?asset=BTC",
    "heatmap": "/liquidations/heatmap?symbol=SOL-USDT-SWAP&timeframe=1h",
    "spot_ob": BOOK,
    "bias": BIAS,
    "funding": "/derivatives/funding-rate?symbol=SOL-USDT-SWAP",
}
GROWN = {
    "whale": ["alerts"],
    "etf": ["issuers"],
    "heatmap": ["levels"],
    "spot_ob": ["bids", "asks"],
    "bias": [],
    "funding": [],
}


class TestOversize:
    """Valid bodies of any size, streamed: the real answer with its lists grown."""

    @pytest.mark.parametrize("module", sorted(MODULE_PATHS))
    async def test_size_grows_a_valid_body_that_starts_with_the_real_answer(self, start, call, clock, module):
        """``size`` gives about that many bytes of valid JSON whose lists begin with the healthy answer's items."""
        srv = await start(now=clock, default_faults=False)
        healthy = (await call(srv, "GET", MODULE_PATHS[module])).json()
        srv.sim.set_fault(module, OversizeFault(size=300_000))
        reply = await call(srv, "GET", MODULE_PATHS[module])
        assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
        assert "Content-Length" not in reply.headers and reply.headers["Transfer-Encoding"] == "chunked"
        assert 300_000 <= len(reply.raw) < 301_000
        body = reply.json()
        assert {k: v for k, v in body.items() if k not in GROWN[module]} == {
            k: v for k, v in healthy.items() if k not in GROWN[module]
        }
        for field in GROWN[module]:
            assert len(body[field]) > len(healthy[field]) and body[field][: len(healthy[field])] == healthy[field]

    async def test_book_levels_stay_sorted_beyond_the_real_top_of_book(self, start, call, clock):
        """``levels`` is the number of book levels over both sides; bids keep descending and asks ascending."""
        srv = await start(now=clock, faults={"spot_ob": OversizeFault(levels=20_001)})
        body = (await call(srv, "GET", BOOK)).json()
        bids, asks = [p for p, _ in body["bids"]], [p for p, _ in body["asks"]]
        assert (len(bids), len(asks)) == (10_001, 10_000)
        assert all(a > b for a, b in itertools.pairwise(bids)) and bids[-1] > 0
        assert all(a < b for a, b in itertools.pairwise(asks)) and bids[0] < asks[0]

    async def test_a_million_levels_is_about_17_mb(self, start, session):
        """The 10^6-level book of the finding: streamed in chunks, about 16-17 MB."""
        srv = await start(faults={"spot_ob": OversizeFault(levels=1_000_000)})
        size = 0
        async with session.get(srv.url + BOOK) as response:
            async for chunk in response.content.iter_chunked(1 << 20):
                size += len(chunk)
        assert 15_000_000 < size < 18_000_000

    async def test_whale_alerts_grow_older_as_transfers(self, start, call, clock):
        """Grown whale alerts are older than the real ones, newest first, and move no score (transfers)."""
        srv = await start(now=clock, faults={"whale": OversizeFault(size=2_000_000)})
        alerts = (await call(srv, "GET", WHALE)).json()["alerts"]
        srv.sim.clear_fault("whale")
        real = (await call(srv, "GET", WHALE)).json()["alerts"]
        grown = alerts[len(real) :]
        assert len(alerts) > 8_000 and alerts[: len(real)] == real
        assert all(a["direction"] == "transfer" for a in grown)
        assert all(a["ts"] >= b["ts"] for a, b in itertools.pairwise(alerts))

    async def test_a_client_that_stops_reading_aborts_the_stream(self, start, session, wait_until):
        """A client that hangs up mid-body ends the generation; the counters say so instead of 200."""
        srv = await start(faults={"spot_ob": OversizeFault(levels=10_000_000)})
        async with session.get(srv.url + BOOK) as response:
            await response.content.readexactly(1 << 20)
            response.close()
        await wait_until(lambda: bool(srv.sim.counters()["spot_ob"]["by_status"]))
        assert set(srv.sim.counters()["spot_ob"]["by_status"]) <= {"aborted", "cancelled"}

    def test_size_and_levels_are_exclusive(self):
        """An oversize fault takes size or levels, not both."""
        with pytest.raises(ValueError, match="not both"):
            OversizeFault(size=1, levels=1)


class TestRate:
    async def statuses(self, start, call, seed: int, rate: float, n: int = 40) -> list[int]:
        srv = await start(seed=seed, faults={"whale": StatusFault(status=503, rate=rate)})
        return [(await call(srv, "GET", WHALE)).status for _ in range(n)]

    @pytest.mark.parametrize("seed", [0, 1, 2])
    async def test_intermittent_and_reproducible(self, start, call, seed):
        """rate=0.5 mixes failures and successes, identically for one seed."""
        first = await self.statuses(start, call, seed, 0.5)
        assert {200, 503} == set(first)
        assert first == await self.statuses(start, call, seed, 0.5)

    @pytest.mark.parametrize(("rate", "expected"), [(0.0, {200}), (1.0, {503})])
    async def test_extremes(self, start, call, rate, expected):
        """rate 0 never fires, rate 1 always fires."""
        assert set(await self.statuses(start, call, 0, rate, n=10)) == expected


class TestPythonApi:
    @pytest.mark.parametrize(
        "fault",
        [
            StatusFault(status=200),
            StatusFault(status=600),
            LatencyFault(ms=-1),
            StatusFault(status=500, rate=1.5),
            MalformedFault(mode="bogus"),  # type: ignore[arg-type]  # an invalid mode is the point of the test
            "status:500",
            None,
        ],
    )
    def test_invalid_fault_changes_nothing(self, fault):
        """Invalid faults raise and leave the installed faults unchanged."""
        from marketsim import Simulator

        sim = Simulator()
        before = sim.faults()
        with pytest.raises((ValueError, TypeError)):
            sim.set_fault("etf", fault)
        assert sim.faults() == before

    def test_unknown_module(self):
        """An unknown module is a KeyError naming the valid modules."""
        from marketsim import Simulator

        with pytest.raises(KeyError, match="spot_ob"):
            Simulator().set_fault("orderbook", TimeoutFault())

    @pytest.mark.parametrize(
        ("spec", "fault"),
        [
            ("status:500", StatusFault(status=500)),
            ("status:429:retry_after=30", StatusFault(status=429, retry_after=30)),
            ("status:503:rate=0.25", StatusFault(status=503, rate=0.25)),
            ("latency:200", LatencyFault(ms=200)),
            ("timeout", TimeoutFault()),
            ("malformed", MalformedFault()),
            ("malformed:wrong_types", MalformedFault(mode="wrong_types")),
            ("envelope", EnvelopeFault()),
            ("envelope:50011:http_status=429", EnvelopeFault(http_status=429)),
            ("envelope:msg=Busy", EnvelopeFault(msg="Busy")),
            ("oversize", OversizeFault()),
            ("oversize:17000000", OversizeFault(size=17_000_000)),
            ("oversize:levels=1000000", OversizeFault(levels=1_000_000)),
            ("oversize:size=5000:rate=0.5", OversizeFault(size=5000, rate=0.5)),
        ],
    )
    def test_parse_fault_spec(self, spec, fault):
        """The CLI spec syntax maps onto the fault structs."""
        assert parse_fault_spec(spec) == fault

    @pytest.mark.parametrize(
        "spec",
        [
            "",
            "boom",
            "status",
            "status:abc",
            "status:200",
            "status:500:501",
            "latency:-5",
            "timeout:5",
            "malformed:bogus",
            "status:500:colour=red",
            "status:500:rate=2",
            "oversize:0",
            "oversize:levels=0",
            "oversize:1000:levels=10",
            "oversize:huge",
        ],
    )
    def test_parse_fault_spec_rejects(self, spec):
        """Bad specs raise ValueError with a reason."""
        with pytest.raises(ValueError, match="fault"):
            parse_fault_spec(spec)
