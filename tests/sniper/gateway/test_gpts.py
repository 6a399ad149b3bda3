"""GPT Actions behind the gateway: a valid OpenAPI document for the prefix, and sniper's read endpoints."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import pytest
from openapi_spec_validator import validate

from marketsim import serve
from messages import Signal, Subjects
from runtime import NatsBus, SystemClock
from runtime.testing import Recorder, wait_until
from sniper.app import run_pipeline
from sniper.config import Settings
from sniper.embedded import EmbeddedNats
from sniper.gateway.app import GatewayConfig, create_app
from sniper.gateway.gpts import operation_id
from sniper.gateway.live import LiveState
from sniper.gateway.service import add_openapi_route, run_gateway, sniper_routes

from .test_proxy import running

SUBJECTS = Subjects()
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json(content_type=None)


class TestOperationIds:
    @pytest.mark.parametrize(
        ("method", "path", "expected"),
        [
            ("get", "/institutional/bias", "get_institutional_bias"),
            ("get", "/spot/orderbook/{symbol}", "get_spot_orderbook_by_symbol"),
            ("post", "/", "post"),
        ],
    )
    def test_derived_from_method_and_path(self, method: str, path: str, expected: str) -> None:
        """An operation without an operationId gets one made of its method and path."""
        assert operation_id(method, path) == expected


class TestDocumentWithoutNats:
    async def test_the_document_is_valid_and_holds_only_allowed_paths(self) -> None:
        """Against the reference backend: OpenAPI 3.1 valid, servers at the prefix, no admin route, ids everywhere."""
        async with serve(port=0, seed=5) as backend:
            config = GatewayConfig(backend=backend.url, port=0)
            app = await create_app(config, extra=[add_openapi_route(with_sniper=False)])
            async with running(app) as url:
                status, doc = await get(f"{url}/gpts/openapi.json")
        assert status == 200
        validate(doc)
        assert doc["servers"] == [{"url": f"{url}/gpts", "description": "sniper's /gpts gateway"}]
        assert doc["paths"] and not any(p.startswith(("/_admin", "/sniper")) for p in doc["paths"])
        ops = [op for item in doc["paths"].values() for m, op in item.items() if m in METHODS]
        assert ops and all(op.get("operationId") and op.get("summary") for op in ops)
        assert len({op["operationId"] for op in ops}) == len(ops)


@dataclass
class Live:
    url: str
    last: dict[str, Signal]


@pytest.fixture
async def live_gateway(nats_server: EmbeddedNats) -> AsyncIterator[Live]:
    """A pipeline over real NATS for SOL and BTC, and a gateway with live state in front of the same backend."""
    async with serve(port=0, seed=5) as backend:
        observer = await NatsBus.connect(nats_server.url, name="observer")
        signals = await Recorder[Signal](observer, SUBJECTS.signal_all(), Signal).start()
        settings = Settings(nats=nats_server.url, backend=backend.url, assets=("SOL", "BTC"), interval=0.3, window=0.2)
        async with run_pipeline(settings):
            await signals.wait_for(lambda msgs: {s.asset for s in msgs} == {"SOL", "BTC"})
        gateway_bus = await NatsBus.connect(nats_server.url, name="gateway")
        live = LiveState(clock=SystemClock())
        await live.start(gateway_bus, SUBJECTS)
        last = {s.asset: s for s in sorted(signals.messages, key=lambda s: s.cycle)}
        await wait_until(lambda: dict(live.last_signals()) == last, timeout=10)
        config = GatewayConfig(backend=backend.url, port=0, nats=nats_server.url)
        extra = [*sniper_routes(live, SystemClock().now), add_openapi_route(with_sniper=True)]
        app = await create_app(config, extra=extra)
        async with running(app) as url:
            yield Live(url, last)
        await live.stop()
        await gateway_bus.close()
        await observer.close()


@pytest.mark.nats
class TestReadEndpoints:
    async def test_all_signals(self, live_gateway: Live) -> None:
        """/gpts/sniper/signals is the last signal of every asset, as bots received it."""
        status, body = await get(f"{live_gateway.url}/gpts/sniper/signals")
        assert status == 200
        assert {a: msgspec.convert(s, Signal) for a, s in body.items()} == live_gateway.last

    @pytest.mark.parametrize(("asset", "status"), [("SOL", 200), ("btc", 200), ("XRP", 404)])
    async def test_one_asset(self, live_gateway: Live, asset: str, status: int) -> None:
        """/gpts/sniper/signals/{asset}: the asset's last signal (any case), or 404 with a reason."""
        got, body = await get(f"{live_gateway.url}/gpts/sniper/signals/{asset}")
        assert got == status
        if status == 200:
            assert msgspec.convert(body, Signal) == live_gateway.last[asset.upper()]
        else:
            assert "no signal" in body["error"]

    async def test_health(self, live_gateway: Live) -> None:
        """/gpts/sniper/health: NATS up, both assets known with their age and cycle."""
        status, body = await get(f"{live_gateway.url}/gpts/sniper/health")
        assert status == 200 and body["nats"] is True and body["status"] in ("ok", "stale")
        assert {a: v["cycle"] for a, v in body["assets"].items()} == {a: s.cycle for a, s in live_gateway.last.items()}

    async def test_sniper_gateway_with_nats_serves_them(self, live_gateway: Live, nats_server: EmbeddedNats) -> None:
        """run_gateway (what `sniper gateway --nats` runs) serves the read endpoints and the status page."""
        backend = live_gateway.url  # the live fixture's gateway, itself documented: a backend like any other
        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        config = GatewayConfig(backend=backend, port=0, nats=nats_server.url, allow=("/gpts/openapi.json",))
        task = asyncio.ensure_future(run_gateway(config, duration=30, ready=started.set_result))
        try:
            url = await asyncio.wait_for(started, 10)
            status, body = await get(f"{url}/gpts/sniper/health")
            assert status == 200 and body["nats"] is True
            async with aiohttp.ClientSession() as http, http.get(f"{url}/") as page:
                assert page.status == 200 and "text/html" in page.headers["Content-Type"]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def test_the_document_describes_them_and_stays_valid(self, live_gateway: Live) -> None:
        """With NATS the document adds the three read endpoints with the Signal schema, and still validates."""
        status, doc = await get(f"{live_gateway.url}/gpts/openapi.json")
        assert status == 200
        validate(doc)
        assert {"/sniper/signals", "/sniper/signals/{asset}", "/sniper/health"} <= set(doc["paths"])
        assert "Signal" in doc["components"]["schemas"] and "ModuleStatus" in doc["components"]["schemas"]
