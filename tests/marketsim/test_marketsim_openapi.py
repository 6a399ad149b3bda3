"""Generated OpenAPI 3.1, 3.0.3 and Swagger 2.0 documents."""

from __future__ import annotations

import re
from typing import Any

import pytest

FLAVORS = ["seed", "guessed", "v2"]
DOCS = ["3.1", "3.0", "swagger"]

# Expected module routes per flavor: path -> (operationId, {param: (in, required, example)}).
EXPECTED: dict[str, dict[str, tuple[str, dict[str, tuple[str, bool, Any]]]]] = {
    "seed": {
        "/whales/alerts": ("getWhaleAlerts", {"symbol": ("query", True, "SOL")}),
        "/advanced/etf/flows": ("getEtfFlows", {"asset": ("query", True, "BTC")}),
        "/liquidations/heatmap": (
            "getLiquidationHeatmap",
            {"symbol": ("query", True, "SOL-USDT-SWAP"), "timeframe": ("query", False, "1h")},
        ),
        "/spot/orderbook": (
            "getSpotOrderBook",
            {
                "symbol": ("query", True, "SOLUSDT"),
                "exchange": ("query", False, "binance"),
                "depth": ("query", False, 50),
            },
        ),
        "/institutional/bias": ("getInstitutionalBias", {"symbol": ("query", True, "SOL-USDT-SWAP")}),
        "/derivatives/funding-rate": ("getFundingRate", {"symbol": ("query", True, "SOL-USDT-SWAP")}),
    },
    "guessed": {
        "/advanced/whale/alerts": ("getWhaleAlerts", {"symbol": ("query", True, "SOL")}),
        "/advanced/etf/flows": ("getEtfFlows", {"asset": ("query", True, "BTC")}),
        "/advanced/liquidation/heatmap/{symbol}": (
            "getLiquidationHeatmap",
            {"symbol": ("path", True, "SOL"), "timeframe": ("query", False, "1h")},
        ),
        "/advanced/spot/orderbook/{symbol}": (
            "getSpotOrderBook",
            {"symbol": ("path", True, "SOL"), "exchange": ("query", False, "binance"), "depth": ("query", False, 50)},
        ),
        "/institutional/bias": ("getInstitutionalBias", {"symbol": ("query", True, "SOL-USDT-SWAP")}),
        "/funding": ("getFundingRate", {"symbol": ("query", True, "SOL")}),
    },
    "v2": {
        "/api/v2/onchain/whale-transfers": ("getWhaleAlerts", {"coin": ("query", True, "SOL")}),
        "/api/v2/flows/etf/{ccy}": ("getEtfFlows", {"ccy": ("path", True, "BTC")}),
        "/api/v2/derivatives/liquidation-map/{instId}": (
            "getLiquidationHeatmap",
            {"instId": ("path", True, "SOL-USDT-SWAP"), "interval": ("query", False, "1h")},
        ),
        "/api/v2/market/depth/{venue}/{pair}": (
            "getSpotOrderBook",
            {"venue": ("path", True, "binance"), "pair": ("path", True, "SOL-USDT"), "limit": ("query", False, 50)},
        ),
        "/api/v2/positioning/{instId}": ("getInstitutionalBias", {"instId": ("path", True, "SOL-USDT-SWAP")}),
        "/api/v2/derivatives/funding/{instId}": ("getFundingRate", {"instId": ("path", True, "SOL-USDT-SWAP")}),
    },
}

SEED_REQUESTS = {
    "whale": "/whales/alerts?symbol=SOL",
    "etf": "/advanced/etf/flows?asset=BTC",
    "heatmap": "/liquidations/heatmap?symbol=SOL-USDT-SWAP",
    "spot_ob": "/spot/orderbook?symbol=SOLUSDT",
    "bias": "/institutional/bias?symbol=SOL-USDT-SWAP",
    "funding": "/derivatives/funding-rate?symbol=SOL-USDT-SWAP",
}


def walk(node: Any):
    """Yield every dict inside a JSON document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


async def fetch_doc(call, srv, kind: str) -> dict[str, Any]:
    path = {"3.1": "/openapi.json", "3.0": "/openapi.json?version=3.0", "swagger": "/swagger.json"}[kind]
    reply = await call(srv, "GET", path)
    assert reply.status == 200
    doc: dict[str, Any] = reply.json()
    return doc


def flat_param(param: dict[str, Any]) -> dict[str, Any]:
    """Swagger 2 puts schema keywords inline; OpenAPI 3 nests them in ``schema``."""
    return {**param, **param.get("schema", {})}


class TestDocuments:
    @pytest.mark.parametrize("kind", DOCS)
    @pytest.mark.parametrize("flavor", FLAVORS)
    async def test_lists_exactly_the_flavor_routes(self, start, call, flavor, kind):
        """Paths, operationIds and parameters match the flavor's route table."""
        doc = await fetch_doc(call, await start(flavor=flavor), kind)
        assert set(doc["paths"]) == set(EXPECTED[flavor])
        for path, (operation_id, params) in EXPECTED[flavor].items():
            op = doc["paths"][path]["get"]
            assert op["operationId"] == operation_id
            assert op["summary"] and op["tags"] and op["description"]
            got = {p["name"]: (p["in"], p["required"]) for p in op["parameters"]}
            assert got == {name: (where, required) for name, (where, required, _) in params.items()}

    @pytest.mark.parametrize("kind", DOCS)
    @pytest.mark.parametrize("flavor", FLAVORS)
    async def test_symbol_params_have_pattern_and_example(self, start, call, flavor, kind):
        """Symbol parameters document a pattern and an example in the right form."""
        doc = await fetch_doc(call, await start(flavor=flavor), kind)
        example_key = "x-example" if kind == "swagger" else "example"
        for path, (_, params) in EXPECTED[flavor].items():
            for param in doc["paths"][path]["get"]["parameters"]:
                flat = flat_param(param)
                expected_example = params[param["name"]][2]
                if param["name"] in ("symbol", "coin", "instId", "pair", "asset", "ccy"):
                    assert flat[example_key] == expected_example
                    assert re.fullmatch(flat["pattern"], str(flat[example_key]))
                assert param["description"]

    @pytest.mark.parametrize("kind", DOCS)
    async def test_enums_defaults_and_bounds(self, start, call, kind):
        """Enumerated and bounded parameters carry enum, default, minimum and maximum."""
        doc = await fetch_doc(call, await start(), kind)
        heatmap = {p["name"]: flat_param(p) for p in doc["paths"]["/liquidations/heatmap"]["get"]["parameters"]}
        book = {p["name"]: flat_param(p) for p in doc["paths"]["/spot/orderbook"]["get"]["parameters"]}
        assert heatmap["timeframe"]["enum"] == ["15m", "1h", "4h", "12h", "24h"]
        assert heatmap["timeframe"]["default"] == "1h"
        assert book["exchange"]["enum"] == ["binance", "okx", "bybit", "coinbase"]
        assert (book["depth"]["type"], book["depth"]["minimum"], book["depth"]["maximum"]) == ("integer", 1, 500)
        assert book["depth"]["default"] == 50

    @pytest.mark.parametrize("kind", DOCS)
    @pytest.mark.parametrize("flavor", FLAVORS)
    async def test_every_ref_resolves(self, start, call, flavor, kind):
        """Every ``$ref`` points at an existing schema of the same document."""
        doc = await fetch_doc(call, await start(flavor=flavor), kind)
        refs = [node["$ref"] for node in walk(doc) if "$ref" in node]
        assert refs
        for ref in refs:
            target: Any = doc
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            assert target["type"] == "object"

    @pytest.mark.parametrize("kind", DOCS)
    async def test_error_responses(self, start, call, kind):
        """402 only on ETF, 404 where symbols sit in the path, 429 with Retry-After."""
        doc = await fetch_doc(call, await start(flavor="v2"), kind)
        codes = {path: set(item["get"]["responses"]) for path, item in doc["paths"].items()}
        assert codes["/api/v2/flows/etf/{ccy}"] == {"200", "402", "404", "422", "429"}
        assert codes["/api/v2/onchain/whale-transfers"] == {"200", "422", "429"}
        assert codes["/api/v2/positioning/{instId}"] == {"200", "404", "422", "429"}
        headers = doc["paths"]["/api/v2/positioning/{instId}"]["get"]["responses"]["429"]["headers"]
        assert "Retry-After" in headers

    @pytest.mark.parametrize("module", ["whale", "etf", "heatmap", "spot_ob", "bias", "funding"])
    async def test_schema_lists_payload_fields(self, start, call, module):
        """The 200 schema's required fields are exactly the body's keys."""
        srv = await start(default_faults=False)
        doc = await fetch_doc(call, srv, "3.1")
        path = SEED_REQUESTS[module]
        ref = doc["paths"][path.split("?")[0]]["get"]["responses"]["200"]["content"]["application/json"]["schema"][
            "$ref"
        ]
        schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
        body = (await call(srv, "GET", path)).json()
        assert set(schema["required"]) == set(schema["properties"]) == set(body)


class TestDialects:
    async def test_openapi_31(self, start, call):
        """3.1 uses JSON Schema 2020-12: ``examples`` arrays, ``prefixItems``, numeric exclusive bounds."""
        doc = await fetch_doc(call, await start(), "3.1")
        assert doc["openapi"] == "3.1.0" and doc["info"]["title"] == "marketsim"
        nodes = list(walk(doc["components"]))
        assert any("prefixItems" in n for n in nodes)
        assert any(isinstance(n.get("examples"), list) for n in nodes)
        bounds = [n["exclusiveMinimum"] for n in nodes if "exclusiveMinimum" in n]
        assert bounds and all(type(b) is int for b in bounds)  # a number in 2020-12, not a flag

    async def test_openapi_30(self, start, call):
        """3.0.3 has ``example`` only, and no 2020-12 keywords."""
        doc = await fetch_doc(call, await start(), "3.0")
        assert doc["openapi"] == "3.0.3"
        for node in walk(doc):
            assert not {"examples", "prefixItems", "const", "$defs"} & set(node)
            assert not isinstance(node.get("type"), list)
            assert node.get("items") is not False

    async def test_swagger_20(self, start, call):
        """Swagger 2.0: basePath, definitions, inline typed parameters, x-example."""
        srv = await start()
        doc = await fetch_doc(call, srv, "swagger")
        assert doc["swagger"] == "2.0" and doc["basePath"] == "/"
        assert doc["host"] == srv.url.removeprefix("http://")
        assert "components" not in doc and "openapi" not in doc and doc["definitions"]
        for item in doc["paths"].values():
            for param in item["get"]["parameters"]:
                assert "schema" not in param and param["type"] in ("string", "integer") and "x-example" in param
            for response in item["get"]["responses"].values():
                assert response["schema"]["$ref"].startswith("#/definitions/")
        for node in walk(doc):
            assert not {"examples", "prefixItems", "nullable", "content"} & set(node)

    @pytest.mark.parametrize("version", ["2.0", "3.2", "latest"])
    async def test_unknown_version(self, start, call, version):
        """An unsupported ``version`` is a 422."""
        reply = await call(await start(), "GET", f"/openapi.json?version={version}")
        assert reply.status == 422 and "version" in reply.json()["detail"]

    @pytest.mark.parametrize("version", ["3.1.0", "3.0.3"])
    async def test_full_version_strings(self, start, call, version):
        """Full version strings are accepted too."""
        doc = (await call(await start(), "GET", f"/openapi.json?version={version}")).json()
        assert doc["openapi"] == version


class TestSpecSwitches:
    @pytest.mark.parametrize("kind", DOCS)
    async def test_flavor_switch_changes_spec(self, start, call, kind):
        """The documents always describe the current flavor."""
        srv = await start()
        assert set((await fetch_doc(call, srv, kind))["paths"]) == set(EXPECTED["seed"])
        reply = await call(srv, "PUT", "/_admin/flavor", json={"flavor": "v2"})
        assert reply.status == 200
        doc = await fetch_doc(call, srv, kind)
        assert set(doc["paths"]) == set(EXPECTED["v2"]) and doc["info"]["x-flavor"] == "v2"

    @pytest.mark.parametrize("path", ["/openapi.json", "/openapi.json?version=3.0", "/swagger.json"])
    async def test_disabled_at_start(self, start, call, path):
        """``spec=False`` hides every document behind a 404."""
        srv = await start(spec=False)
        reply = await call(srv, "GET", path)
        assert (reply.status, reply.json()) == (404, {"detail": "Not Found"})

    async def test_toggled_at_runtime(self, start, call):
        """The admin spec switch hides and restores the document."""
        srv = await start()
        assert (await call(srv, "PUT", "/_admin/spec", json={"enabled": False})).json() == {"enabled": False}
        assert (await call(srv, "GET", "/openapi.json")).status == 404
        assert (await call(srv, "GET", "/_admin/spec")).json() == {"enabled": False}
        await call(srv, "PUT", "/_admin/spec", json={"enabled": True})
        assert (await call(srv, "GET", "/openapi.json")).status == 200

    async def test_modules_still_served_without_spec(self, start, call):
        """Hiding the spec does not hide the module routes."""
        srv = await start(spec=False)
        assert (await call(srv, "GET", "/whales/alerts?symbol=SOL")).status == 200


class TestDowngrade:
    @pytest.mark.parametrize(
        ("schema", "dialect", "expected"),
        [
            ({"type": ["string", "null"]}, "3.0", {"type": "string", "nullable": True}),
            ({"type": ["string", "null"]}, "2.0", {"type": "string", "x-nullable": True}),
            ({"type": ["integer", "string"]}, "3.0", {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
            ({"type": "null"}, "3.0", {"enum": [None], "nullable": True}),
            ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "3.0", {"type": "integer", "nullable": True}),
            ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "2.0", {"type": "integer", "x-nullable": True}),
            (
                {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
                "3.0",
                {"anyOf": [{"type": "integer"}, {"type": "string"}], "nullable": True},
            ),
            (
                {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                "2.0",
                {"x-anyOf": [{"type": "integer"}, {"type": "string"}]},
            ),
            (
                {"anyOf": [{"$ref": "#/components/schemas/X"}, {"type": "null"}]},
                "3.0",
                {"allOf": [{"$ref": "#/components/schemas/X"}], "nullable": True},
            ),
            ({"const": "1h"}, "3.0", {"enum": ["1h"]}),
            ({"type": "string", "examples": ["a", "b"]}, "3.0", {"type": "string", "example": "a"}),
            ({"type": "string", "contentEncoding": "base64"}, "2.0", {"type": "string", "format": "byte"}),
            (
                {"type": "array", "prefixItems": [{"type": "number"}, {"type": "string"}], "items": False},
                "3.0",
                {"type": "array", "items": {}},
            ),
            ({"type": "array", "items": False}, "3.0", {"type": "array", "items": {}, "maxItems": 0}),
            (
                {"type": "object", "properties": {"examples": {"$ref": "#/components/schemas/X"}}},
                "2.0",
                {"type": "object", "properties": {"examples": {"$ref": "#/definitions/X"}}},
            ),
            (
                {"type": "number", "exclusiveMinimum": 0},
                "3.0",
                {"type": "number", "exclusiveMinimum": True, "minimum": 0},
            ),
            (
                {"type": "number", "exclusiveMinimum": 0},
                "2.0",
                {"type": "number", "exclusiveMinimum": True, "minimum": 0},
            ),
            (
                {"type": "number", "exclusiveMaximum": 5, "maximum": 9},
                "3.0",
                {"type": "number", "exclusiveMaximum": True, "maximum": 5},
            ),
            ({"type": "integer", "exclusiveMinimum": 0, "minimum": 1}, "3.0", {"type": "integer", "minimum": 1}),
        ],
    )
    def test_rewrites(self, schema, dialect, expected):
        """2020-12 constructs become their OpenAPI 3.0 / Swagger 2 spelling."""
        from marketsim._openapi import _downgrade

        assert _downgrade(schema, dialect=dialect) == expected

    @pytest.mark.parametrize("kind", ["3.0", "swagger"])
    async def test_exclusive_bounds_are_flags(self, start, call, kind):
        """Positive-only fields keep their bound as ``minimum`` plus ``exclusiveMinimum: true``."""
        doc = await fetch_doc(call, await start(), kind)
        schemas = doc["components"]["schemas"] if kind == "3.0" else doc["definitions"]
        for name, field in [
            ("WhaleAlert", "amount"),
            ("InstitutionalBias", "long_short_ratio"),
            ("FundingRate", "interval_hours"),
            ("FundingRate", "open_interest_usd"),
        ]:
            prop = schemas[name]["properties"][field]
            assert (prop["minimum"], prop["exclusiveMinimum"]) == (0, True)
        for node in walk(doc):
            for key in ("exclusiveMinimum", "exclusiveMaximum"):
                assert node.get(key, True) is True
