"""Admin HTTP API: faults, counters, flavor, spec, health."""

from __future__ import annotations

import pytest

WHALE = "/whales/alerts?symbol=SOL"
PAYWALL = {
    "kind": "status",
    "status": 402,
    "retry_after": None,
    "retry_after_format": "seconds",
    "detail": "Payment Required: ETF flows need a paid plan",
    "rate": 1.0,
}


class TestHealth:
    async def test_healthz(self, start, call):
        """/healthz answers ok and is not counted."""
        srv = await start()
        assert (await call(srv, "GET", "/healthz")).json() == {"ok": True}
        assert all(c["requests"] == 0 for c in srv.sim.counters().values())


class TestFaultsApi:
    async def test_initial_faults(self, start, call):
        """Every module is listed; only etf carries the default paywall."""
        srv = await start()
        assert (await call(srv, "GET", "/_admin/faults")).json() == {
            "whale": [],
            "etf": [PAYWALL],
            "heatmap": [],
            "spot_ob": [],
            "bias": [],
            "funding": [],
        }

    @pytest.mark.parametrize(
        ("body", "stored"),
        [
            ({"kind": "status", "status": 429, "retry_after": 30}, [("status", 429)]),
            ({"kind": "latency", "ms": 200}, [("latency", None)]),
            ({"kind": "timeout"}, [("timeout", None)]),
            ({"kind": "malformed", "mode": "truncated"}, [("malformed", None)]),
            ({"kind": "envelope"}, [("envelope", None)]),
            ({"kind": "oversize", "levels": 1000}, [("oversize", None)]),
            (
                [{"kind": "latency", "ms": 10}, {"kind": "status", "status": 500, "rate": 0.5}],
                [("latency", None), ("status", 500)],
            ),
            ([], []),
        ],
    )
    async def test_put_then_get(self, start, call, body, stored):
        """PUT replaces a module's faults; GET shows them with defaults filled in."""
        srv = await start()
        reply = await call(srv, "PUT", "/_admin/faults/heatmap", json=body)
        assert reply.status == 200
        listed = (await call(srv, "GET", "/_admin/faults")).json()["heatmap"]
        assert reply.json() == {"heatmap": listed}
        assert [(f["kind"], f.get("status")) for f in listed] == stored
        assert all(f["rate"] <= 1.0 for f in listed)

    @pytest.mark.parametrize(
        ("module", "body", "message"),
        [
            ("orderbook", {"kind": "timeout"}, "unknown module 'orderbook'"),
            ("etf", {"kind": "explode"}, "Invalid value 'explode'"),
            ("etf", {"kind": "status", "status": 429, "retry": 30}, "unknown field `retry`"),
            ("etf", {"kind": "status"}, "missing required field `status`"),
            ("etf", {"status": 500}, "missing required field `kind`"),
            ("etf", {"kind": "status", "status": 200}, ">= 400"),
            ("etf", {"kind": "status", "status": "500"}, "Expected `int`"),
            ("etf", {"kind": "latency", "ms": -1}, ">= 0"),
            ("etf", {"kind": "timeout", "rate": 1.5}, "<= 1.0"),
            ("etf", {"kind": "malformed", "mode": "garbled"}, "Invalid enum value 'garbled'"),
            ("etf", [{"kind": "timeout"}, {"kind": "nope"}], "Invalid value 'nope'"),
            ("etf", "timeout", "Expected `object | array`"),
        ],
    )
    async def test_invalid_put_changes_nothing(self, start, call, module, body, message):
        """Invalid requests are a 400 with a clear message and change nothing."""
        srv = await start()
        before = (await call(srv, "GET", "/_admin/faults")).json()
        reply = await call(srv, "PUT", f"/_admin/faults/{module}", json=body)
        assert reply.status == 400 and message in reply.json()["detail"]
        assert (await call(srv, "GET", "/_admin/faults")).json() == before

    @pytest.mark.parametrize("raw", [b"", b"{", b"not json"])
    async def test_unparseable_body(self, start, call, raw):
        """A body that is not JSON is a 400."""
        srv = await start()
        reply = await call(srv, "PUT", "/_admin/faults/etf", data=raw)
        assert reply.status == 400 and "invalid fault" in reply.json()["detail"]
        assert srv.sim.faults()["etf"]

    async def test_put_takes_effect(self, start, call):
        """A fault set over HTTP hits the next request."""
        srv = await start()
        await call(srv, "PUT", "/_admin/faults/whale", json={"kind": "status", "status": 429, "retry_after": 7})
        reply = await call(srv, "GET", WHALE)
        assert (reply.status, reply.headers["Retry-After"]) == (429, "7")

    async def test_delete_one_module(self, start, call):
        """DELETE on a module clears it alone."""
        srv = await start()
        await call(srv, "PUT", "/_admin/faults/whale", json={"kind": "timeout"})
        assert (await call(srv, "DELETE", "/_admin/faults/etf")).json() == {"etf": []}
        faults = (await call(srv, "GET", "/_admin/faults")).json()
        assert faults["etf"] == [] and faults["whale"][0]["kind"] == "timeout"
        assert (await call(srv, "GET", "/advanced/etf/flows?asset=BTC")).status == 200

    async def test_delete_unknown_module(self, start, call):
        """DELETE on an unknown module is a 400."""
        srv = await start()
        assert (await call(srv, "DELETE", "/_admin/faults/nope")).status == 400

    async def test_delete_all(self, start, call):
        """DELETE on the collection clears every module."""
        srv = await start()
        await call(srv, "PUT", "/_admin/faults/bias", json={"kind": "envelope"})
        reply = await call(srv, "DELETE", "/_admin/faults")
        assert reply.json() == {m: [] for m in ("whale", "etf", "heatmap", "spot_ob", "bias", "funding")}

    @pytest.mark.parametrize("method", ["POST", "PATCH"])
    async def test_wrong_method(self, start, call, method):
        """Unsupported methods on admin paths are a 405."""
        srv = await start()
        assert (await call(srv, method, "/_admin/faults", json={})).status == 405


class TestCounters:
    async def test_counts_per_module_status_and_route(self, start, call):
        """Requests are counted per module, status and route, faults included."""
        srv = await start()
        for path in (WHALE, WHALE, "/whales/alerts", "/advanced/etf/flows?asset=BTC", "/openapi.json", "/nope"):
            await call(srv, "GET", path)
        counters = (await call(srv, "GET", "/_admin/counters")).json()
        assert counters["whale"] == {
            "requests": 3,
            "by_status": {"200": 2, "422": 1},
            "by_route": {"/whales/alerts": 3},
        }
        assert counters["etf"] == {"requests": 1, "by_status": {"402": 1}, "by_route": {"/advanced/etf/flows": 1}}
        assert counters["heatmap"]["requests"] == counters["spot_ob"]["requests"] == 0
        assert counters["openapi"]["by_route"] == {"/openapi.json": 1}
        assert counters["unmatched"] == {"requests": 1, "by_status": {"404": 1}}
        assert counters == srv.sim.counters()

    async def test_route_templates_are_keys(self, start, call):
        """Per-route counts use the route template, not the concrete path."""
        srv = await start(flavor="v2")
        await call(srv, "GET", "/api/v2/positioning/SOL-USDT-SWAP")
        await call(srv, "GET", "/api/v2/positioning/BTC-USDT-SWAP")
        assert srv.sim.counters()["bias"]["by_route"] == {"/api/v2/positioning/{instId}": 2}

    @pytest.mark.parametrize("via", ["http", "python"])
    async def test_reset(self, start, call, via):
        """Counters reset to zero over HTTP or in Python."""
        srv = await start()
        await call(srv, "GET", WHALE)
        if via == "http":
            reply = await call(srv, "DELETE", "/_admin/counters")
            assert reply.json()["whale"]["requests"] == 0
        else:
            srv.sim.reset_counters()
        assert srv.sim.counters()["whale"] == {"requests": 0, "by_status": {}, "by_route": {}}

    async def test_admin_calls_are_not_counted(self, start, call):
        """Admin traffic does not pollute module counters."""
        srv = await start()
        await call(srv, "GET", "/_admin/faults")
        await call(srv, "GET", "/_admin/counters")
        assert all(c["requests"] == 0 for c in srv.sim.counters().values())


class TestFlavorApi:
    async def test_get(self, start, call):
        """GET reports the current flavor and the choices."""
        srv = await start(flavor="guessed")
        assert (await call(srv, "GET", "/_admin/flavor")).json() == {
            "flavor": "guessed",
            "flavors": ["seed", "guessed", "v2"],
        }

    @pytest.mark.parametrize("flavor", ["seed", "guessed", "v2"])
    async def test_put(self, start, call, flavor):
        """PUT switches to any flavor."""
        srv = await start()
        assert (await call(srv, "PUT", "/_admin/flavor", json={"flavor": flavor})).json()["flavor"] == flavor
        assert srv.sim.flavor == flavor

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"flavor": "v3"}, "Invalid enum value 'v3'"),
            ({}, "missing required field `flavor`"),
            ({"flavor": "v2", "x": 1}, "unknown field `x`"),
            ({"flavor": 2}, "Expected `str`"),
        ],
    )
    async def test_invalid_put(self, start, call, body, message):
        """Invalid flavor bodies are a 400 and keep the flavor."""
        srv = await start()
        reply = await call(srv, "PUT", "/_admin/flavor", json=body)
        assert reply.status == 400 and message in reply.json()["detail"]
        assert srv.sim.flavor == "seed"

    def test_python_api_rejects_unknown_flavor(self):
        """``set_flavor`` raises ValueError for unknown names."""
        from marketsim import Simulator

        sim = Simulator()
        with pytest.raises(ValueError, match="guessed"):
            sim.set_flavor("v3")
        assert sim.flavor == "seed"

    @pytest.mark.parametrize("body", [{"enabled": "no"}, {}, {"enabled": False, "x": 1}])
    async def test_invalid_spec_put(self, start, call, body):
        """Invalid spec switch bodies are a 400 and keep the spec on."""
        srv = await start()
        assert (await call(srv, "PUT", "/_admin/spec", json=body)).status == 400
        assert srv.sim.spec_enabled
