"""The ``funding`` module: perpetual swap funding rate, predicted rate and open-interest change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from marketsim import parse_fault_arg
from marketsim._payloads import FundingRate

FLAVORS = ["seed", "guessed", "v2"]
# path template, request for SOL, request with the wrong symbol form and its status
ROUTES = {
    "seed": ("/derivatives/funding-rate", "/derivatives/funding-rate?symbol=SOL-USDT-SWAP", "?symbol=SOL", 422),
    "guessed": ("/funding", "/funding?symbol=SOL", "?symbol=SOL-USDT-SWAP", 422),
    "v2": ("/api/v2/derivatives/funding/{instId}", "/api/v2/derivatives/funding/SOL-USDT-SWAP", "/SOL", 404),
}
# the one parameter each flavor documents: name, placement, example
PARAMS = {
    "seed": ("symbol", "query", "SOL-USDT-SWAP"),
    "guessed": ("symbol", "query", "SOL"),
    "v2": ("instId", "path", "SOL-USDT-SWAP"),
}
FIELDS = [
    "symbol",
    "funding_rate",
    "predicted_rate",
    "interval_hours",
    "next_funding_time",
    "open_interest_usd",
    "oi_change_pct",
]


def next_funding(now: float) -> float:
    """The first 00:00, 08:00 or 16:00 UTC strictly after ``now``."""
    moment = datetime.fromtimestamp(now, tz=UTC)
    boundary = moment.replace(hour=moment.hour - moment.hour % 8, minute=0, second=0, microsecond=0)
    return (boundary + timedelta(hours=8)).timestamp()


@pytest.mark.parametrize("flavor", FLAVORS)
class TestFunding:
    async def test_answers_fields_in_range(self, start, call, clock, flavor):
        """200 with every field, plausible ranges and the OKX swap symbol, over 20 five-minute buckets."""
        clock.advance(3 * 3600 + 17)
        srv = await start(flavor=flavor, seed=5, now=clock)
        for _ in range(20):
            reply = await call(srv, "GET", ROUTES[flavor][1])
            assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
            assert list(reply.json()) == FIELDS
            body = msgspec.convert(reply.json(), type=FundingRate, strict=True)
            assert body.symbol == "SOL-USDT-SWAP"
            assert -0.003 <= body.funding_rate <= 0.003 and -0.003 <= body.predicted_rate <= 0.003
            assert abs(body.predicted_rate - body.funding_rate) <= 0.0005
            assert body.interval_hours == 8.0 and isinstance(reply.json()["interval_hours"], float)
            assert body.next_funding_time == next_funding(clock())
            assert body.open_interest_usd > 0 and -20 <= body.oi_change_pct <= 20
            clock.advance(300)

    async def test_openapi_lists_the_route(self, start, call, flavor):
        """Every spec document lists the flavor's funding path, documented like the other modules."""
        srv = await start(flavor=flavor)
        path = ROUTES[flavor][0]
        name, where, example = PARAMS[flavor]
        for doc_path in ("/openapi.json", "/openapi.json?version=3.0", "/swagger.json"):
            doc = (await call(srv, "GET", doc_path)).json()
            op = doc["paths"][path]["get"]
            assert op["operationId"] == "getFundingRate" and op["summary"] and op["description"] and op["tags"]
            [param] = op["parameters"]
            assert (param["name"], param["in"], param["required"]) == (name, where, True)
            assert param.get("x-example", param.get("example")) == example
            assert "200" in op["responses"] and "422" in op["responses"] and "429" in op["responses"]
            assert list(doc["paths"])[-1] == path  # module order: ... bias, funding

    async def test_deterministic_per_seed_and_bucket(self, start, call, clock, flavor):
        """Same seed and 5-minute bucket: identical bodies; another seed or bucket: different ones."""
        first = await start(flavor=flavor, seed=5, now=clock)
        second = await start(flavor=flavor, seed=5, now=clock)
        other = await start(flavor=flavor, seed=6, now=clock)
        path = ROUTES[flavor][1]
        body = (await call(first, "GET", path)).raw
        assert (await call(second, "GET", path)).raw == body
        assert (await call(other, "GET", path)).raw != body
        clock.advance(299)
        assert (await call(first, "GET", path)).raw == body
        clock.advance(1)
        assert (await call(first, "GET", path)).raw != body

    async def test_status_fault_402(self, start, call, flavor):
        """A 402 fault on funding (CLI syntax) answers 402 and is counted under funding."""
        module, fault = parse_fault_arg("funding=status:402")
        srv = await start(flavor=flavor, faults={module: fault})
        reply = await call(srv, "GET", ROUTES[flavor][1])
        assert (reply.status, reply.json()) == (402, {"detail": "Payment Required"})
        assert srv.sim.counters()["funding"]["by_status"] == {"402": 1}
        srv.sim.clear_fault("funding")
        assert (await call(srv, "GET", ROUTES[flavor][1])).status == 200

    async def test_wrong_symbol_form_is_rejected(self, start, call, flavor):
        """The other symbol spelling is a 422 in a query and a 404 in a path."""
        srv = await start(flavor=flavor)
        path, _, wrong, status = ROUTES[flavor]
        reply = await call(srv, "GET", path.removesuffix("/{instId}") + wrong)
        assert reply.status == status and "SOL" in reply.json()["detail"]
