"""Capability discovery: specs in three versions, matching by meaning, fallback, rediscovery, economy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from actors.capabilities import ALIASES, Binding, bind_operation, match_spec, role_of, symbol_form, words
from actors.discovery import DiscoveryActor, discover
from actors.fetchers import MODULES
from actors.openapi import Operation, SpecError, SpecParam, load_operations
from actors.routing import RequestSettings, build_request
from actors.upstream import AiohttpTransport, MockTransport, Response, UpstreamClient
from marketsim import FLAVOR_NAMES, Simulator, serve
from messages import RouteMap, Signal, decode
from runtime import Context, MemoryBus, NatsBus, Supervisor, SystemClock, VirtualClock
from runtime.testing import Recorder

from .. import samples

SETTINGS = RequestSettings()
VERSIONS = ["3.1", "3.0", "2.0"]


def spec_of(sim: Simulator, version: str) -> dict[str, Any]:
    return sim.swagger() if version == "2.0" else sim.openapi(version)


def request_for(route, module: str) -> tuple[str, dict[str, str]]:
    return build_request(route, "BTC" if module == "etf" else "SOL", SETTINGS)


def shape(ops: Iterable[Operation]) -> set[tuple[str, tuple[tuple[str, str, bool], ...]]]:
    """Each operation's path and (name, location, required) of its parameters."""
    return {(o.path, tuple((p.name, p.location, p.required) for p in o.params)) for o in ops}


def route_path(binding: Binding) -> str | None:
    """The bound route's path; None when nothing was bound."""
    return binding.route.path if binding.route is not None else None


def op(path: str, *params: SpecParam, operation_id: str = "", summary: str = "", tags=()) -> Operation:
    return Operation(
        method="GET", path=path, operation_id=operation_id, summary=summary, tags=tuple(tags), params=params
    )


def q(name: str, **kw) -> SpecParam:
    kw.setdefault("location", "query")
    kw.setdefault("required", True)
    return SpecParam(name=name, **kw)


class TestSpecLoading:
    @pytest.mark.parametrize("flavor", FLAVOR_NAMES)
    @pytest.mark.parametrize("version", VERSIONS)
    def test_every_version_gives_the_same_operations(self, flavor: str, version: str) -> None:
        """OpenAPI 3.1, 3.0 and Swagger 2.0 of one backend normalise to the same paths and parameters."""
        sim = Simulator(flavor=flavor)
        got_version, ops = load_operations(spec_of(sim, version))
        _, reference = load_operations(sim.openapi("3.1"))
        assert got_version.startswith(version[0])
        assert shape(ops) == shape(reference) and len(ops) == len(MODULES)

    def test_refs_base_path_and_fastapi_optional_are_resolved(self) -> None:
        """Local $refs, a server path prefix and FastAPI's anyOf-null optionals are read through."""
        doc = {
            "openapi": "3.1.0",
            "servers": [{"url": "https://api.example.com/v9"}],
            "paths": {
                "/book": {
                    "parameters": [{"$ref": "#/components/parameters/Sym"}],
                    "get": {
                        "parameters": [
                            {
                                "name": "depth",
                                "in": "query",
                                "schema": {"anyOf": [{"type": "integer", "maximum": 100}, {"type": "null"}]},
                            }
                        ]
                    },
                }
            },
            "components": {
                "parameters": {
                    "Sym": {
                        "name": "symbol",
                        "in": "query",
                        "required": True,
                        "schema": {"$ref": "#/components/schemas/S"},
                    }
                },
                "schemas": {"S": {"type": "string", "examples": ["SOLUSDT"]}},
            },
        }
        _, (operation,) = load_operations(doc)
        assert operation.path == "/v9/book"
        sym, depth = operation.params
        assert (sym.name, sym.examples, sym.required) == ("symbol", ("SOLUSDT",), True)
        assert (depth.type, depth.maximum, depth.required) == ("integer", 100, False)

    def test_swagger_base_path_and_x_example(self) -> None:
        """Swagger 2.0 basePath prefixes paths and x-example counts as an example."""
        doc = {
            "swagger": "2.0",
            "basePath": "/api",
            "paths": {
                "/t": {
                    "get": {
                        "parameters": [
                            {"name": "pair", "in": "query", "type": "string", "x-example": "SOL-USDT", "required": True}
                        ]
                    }
                }
            },
        }
        _, (operation,) = load_operations(doc)
        assert operation.path == "/api/t" and operation.params[0].examples == ("SOL-USDT",)

    @pytest.mark.parametrize(
        "doc, message",
        [
            ([], "not a JSON object"),
            ({"info": {}}, "neither an 'openapi' nor a 'swagger'"),
            ({"openapi": "4.0.0", "paths": {}}, "unsupported OpenAPI version"),
            ({"openapi": "3.1.0"}, "no 'paths'"),
            ({"openapi": "3.1.0", "paths": {"/a": {"get": {"parameters": [{"$ref": "#/nowhere"}]}}}}, "points nowhere"),
            (
                {"openapi": "3.1.0", "paths": {"/a": {"get": {"parameters": [{"$ref": "http://x/y"}]}}}},
                "only local references",
            ),
            (
                {
                    "openapi": "3.1.0",
                    "components": {"parameters": {"A": {"$ref": "#/components/parameters/A"}}},
                    "paths": {"/a": {"get": {"parameters": [{"$ref": "#/components/parameters/A"}]}}},
                },
                "cannot resolve",
            ),
            ({"openapi": "3.1.0", "paths": {"/a": {"get": {"parameters": [{"in": "query"}]}}}}, "without name"),
        ],
    )
    def test_unusable_documents_raise_spec_error(self, doc: Any, message: str) -> None:
        """A document that cannot be read raises SpecError with the reason (cycles included)."""
        with pytest.raises(SpecError, match=message):
            load_operations(doc)


class TestMatchingByMeaning:
    @pytest.mark.parametrize(
        "text, expected",
        [
            ("getOrderBook", {"orderbook"}),
            ("/spot/order-book", {"orderbook"}),
            ("/liquidations/heatmap", {"liquidation", "heatmap"}),
            ("/api/v2/onchain/whale-transfers", {"whale", "transfer"}),
        ],
    )
    def test_words_fold_case_plurals_and_joined_pairs(self, text: str, expected: set[str]) -> None:
        """camelCase, dashes and plurals all reduce to the same words."""
        assert expected <= words(text)

    def test_spot_book_beats_futures_book(self) -> None:
        """For spot_ob, a spot order book wins over a futures one with the same parameters."""
        sym = q("symbol", examples=("SOLUSDT",))
        ops = [op("/futures/orderbook", sym), op("/spot/orderbook", sym)]
        assert route_path(match_spec(ops, ["spot_ob"], SETTINGS)["spot_ob"]) == "/spot/orderbook"

    def test_operations_without_ids_match_by_path_and_summary(self) -> None:
        """No operationIds: path words and summaries still find every module."""
        ops = [
            op("/a/whales", q("coin", examples=("SOL",))),
            op("/b/flows", q("asset", examples=("BTC",)), summary="Spot ETF net flows"),
            op("/c/liq-map", q("instId", examples=("SOL-USDT-SWAP",)), summary="Liquidation heat clusters"),
            op("/d/depth", q("pair", examples=("SOL_USDT",)), summary="Spot depth snapshot"),
            op("/e/sentiment", q("ticker", examples=("SOL-USDT-SWAP",))),
            op("/f/perp-rates", q("instrument", examples=("SOL-USDT-SWAP",)), summary="Perpetual swap funding"),
        ]
        found = match_spec(ops, MODULES, SETTINGS)
        assert {m: route_path(b) for m, b in found.items()} == {
            "whale": "/a/whales",
            "etf": "/b/flows",
            "heatmap": "/c/liq-map",
            "spot_ob": "/d/depth",
            "bias": "/e/sentiment",
            "funding": "/f/perp-rates",
        }
        assert request_for(found["spot_ob"].route, "spot_ob") == ("/d/depth", {"pair": "SOL_USDT"})
        assert request_for(found["funding"].route, "funding") == ("/f/perp-rates", {"instrument": "SOL-USDT-SWAP"})

    @pytest.mark.parametrize(
        "name, description, role",
        [
            ("instId", "", "symbol"),
            ("inst_id", "", "symbol"),
            ("pair", "", "symbol"),
            ("ccy", "", "symbol"),
            ("ticker", "", "symbol"),
            ("tf", "", "timeframe"),
            ("interval", "", "timeframe"),
            ("period", "", "timeframe"),
            ("sz", "", "depth"),
            ("limit", "", "depth"),
            ("venue", "", "exchange"),
            ("ex", "", "exchange"),
            ("q", "The trading pair to quote", "symbol"),
            ("x", "candle interval", "timeframe"),
            ("foo", "", None),
        ],
    )
    def test_parameter_roles_from_names_and_descriptions(self, name: str, description: str, role: str | None) -> None:
        """Roles come from the many names APIs use, or from the description."""
        assert role_of(q(name, description=description)) == role

    @pytest.mark.parametrize(
        "param, form, how",
        [
            (q("s", examples=("SOL-USDT-SWAP",)), "okx_swap", "example"),
            (q("s", examples=("SOLUSDT",)), "concat", "example"),
            (q("s", examples=("sol_usdt",)), "underscore", "example"),
            (q("s", pattern="^[A-Z]+-USDT$"), "dash", "pattern"),
            (q("s", pattern="^[A-Z]{2,10}USDT$"), "concat", "pattern"),
            (q("s", enum=("BTC", "ETH")), "base", "example"),
            (q("s", description="Instrument, e.g. BTC-USDT-SWAP"), "okx_swap", "description"),
            (q("s"), "okx_swap", "guess"),
        ],
    )
    def test_symbol_form_from_examples_patterns_enums_descriptions(self, param: SpecParam, form: str, how: str) -> None:
        """The symbol spelling is read from examples, patterns, enums or descriptions, guessing only last."""
        got_form, _, got_how = symbol_form(param, "heatmap")
        assert got_form == form and how in got_how

    def test_lowercase_examples_give_lowercase_symbols(self) -> None:
        """An API that shows `solusdt` gets `solusdt`."""
        b = bind_operation(op("/spot/orderbook", q("symbol", examples=("solusdt",))), "spot_ob", SETTINGS)
        assert request_for(b.route, "spot_ob")[1] == {"symbol": "solusdt"}

    def test_enum_without_our_timeframe_uses_the_closest_and_says_so(self) -> None:
        """A timeframe enum spelled differently is matched; one lacking it falls back to its default with a note."""
        spelled = bind_operation(
            op("/liquidation/heatmap", q("symbol", examples=("SOL",)), q("tf", enum=("1H", "4H"))), "heatmap", SETTINGS
        )
        assert request_for(spelled.route, "heatmap")[1]["tf"] == "1H"
        lacking = bind_operation(
            op("/liquidation/heatmap", q("symbol", examples=("SOL",)), q("tf", enum=("4h", "1d"), default="4h")),
            "heatmap",
            SETTINGS,
        )
        assert request_for(lacking.route, "heatmap")[1]["tf"] == "4h" and "not offered" in lacking.notes[0]

    def test_depth_is_clamped_to_the_schema(self) -> None:
        """Our depth beyond the schema's maximum is clamped, with a note."""
        b = bind_operation(
            op("/spot/depth", q("symbol", examples=("SOLUSDT",)), q("limit", maximum=20)), "spot_ob", SETTINGS
        )
        assert request_for(b.route, "spot_ob")[1]["limit"] == "20" and "outside" in b.notes[0]

    def test_required_unknown_parameter_uses_default_or_example(self) -> None:
        """A required parameter with no role is sent with its default (or example)."""
        b = bind_operation(
            op("/whale/alerts", q("symbol", examples=("SOL",)), q("chain", default="solana")), "whale", SETTINGS
        )
        assert request_for(b.route, "whale")[1] == {"symbol": "SOL", "chain": "solana"}

    @pytest.mark.parametrize(
        "operation, reason",
        [
            (
                op("/whale/alerts", q("symbol", examples=("SOL",)), q("apiKey")),
                "required query parameter 'apiKey' has no known role",
            ),
            (
                op("/whale/alerts", q("symbol", examples=("SOL",)), q("X-Plan", location="header")),
                "required header parameter",
            ),
            (op("/whale/alerts", q("foo", required=False)), "no parameter takes the asset"),
        ],
    )
    def test_unusable_routes_say_why(self, operation: Operation, reason: str) -> None:
        """A route that cannot be filled is reported unusable with the reason."""
        binding = bind_operation(operation, "whale", SETTINGS)
        assert binding.route is None and reason in binding.reason

    def test_no_matching_operation_is_reported(self) -> None:
        """A spec without the module says so."""
        assert "no operation" in match_spec([op("/time")], ["bias"], SETTINGS)["bias"].reason


@pytest.fixture(params=FLAVOR_NAMES)
async def backend(request) -> AsyncIterator[Any]:
    async with serve(port=0, flavor=request.param, seed=1) as srv:
        yield srv


async def get(url: str, path: str, query: dict[str, str]) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(url + path, params=query) as resp:
        return resp.status


class TestDiscoverAgainstTheBackend:
    @pytest.mark.parametrize("version", VERSIONS)
    async def test_spec_gives_working_routes_with_one_request(self, version: str) -> None:
        """For each flavor and spec version, every discovered route answers on the first try."""
        for flavor in FLAVOR_NAMES:
            sim = Simulator(flavor=flavor)
            _, ops = load_operations(spec_of(sim, version))
            found = match_spec(ops, MODULES, SETTINGS)
            async with serve(port=0, flavor=flavor) as srv:
                for module, binding in found.items():
                    assert binding.route is not None, (flavor, module, binding.reason)
                    status = await get(srv.url, *request_for(binding.route, module))
                    assert status == (402 if module == "etf" else 200), (flavor, version, module, status)

    async def test_discover_reads_openapi_json(self, backend) -> None:
        """discover() reads /openapi.json once and binds every module (all six)."""
        upstream = UpstreamClient(backend.url, AiohttpTransport(), clock=SystemClock())
        found = await discover(upstream, SETTINGS, MODULES)
        await upstream.close()
        assert found.spec_version == "3.1.0" and set(found.bindings) == set(MODULES)
        assert all(b.route for b in found.bindings.values())
        assert upstream.stats.requests == {"discovery": 1}

    async def test_without_spec_known_paths_are_probed(self, backend) -> None:
        """No spec: known paths are probed in order; each module ends with a route that answers."""
        backend.sim.set_spec(False)
        upstream = UpstreamClient(backend.url, AiohttpTransport(), clock=SystemClock())
        found = await discover(upstream, SETTINGS, MODULES)
        await upstream.close()
        assert found.spec_version is None and "404" in (found.spec_problem or "")
        for module, binding in found.bindings.items():
            assert binding.route is not None, binding.reason
            assert await get(backend.url, *request_for(binding.route, module)) in (200, 402)
            assert upstream.stats.requests[module] <= len(ALIASES[module])

    @pytest.mark.parametrize(
        ("gap", "path", "body"),
        [
            ("bias", "/institutional/bias", samples.BIAS),
            # The bias operation mentions funding: funding is still probed, never bound to bias's route.
            ("funding", "/derivatives/funding-rate", samples.FUNDING),
        ],
    )
    async def test_spec_gaps_fall_back_to_probing(self, gap: str, path: str, body: dict[str, object]) -> None:
        """A module the spec lacks is probed; the others come from the spec without probes."""
        spec = Simulator().openapi("3.1")
        spec["paths"] = {p: v for p, v in spec["paths"].items() if gap not in p}

        async def handler(url: str) -> Response:
            asked = "/" + url.split("//", 1)[1].split("/", 1)[1].split("?")[0]
            if asked == "/openapi.json":
                return Response(200, {}, json.dumps(spec).encode())
            if asked == path:
                return Response(200, {}, json.dumps(body).encode())
            return Response(404, {}, b"")

        upstream = UpstreamClient("http://b", MockTransport(handler), clock=SystemClock())
        found = await discover(upstream, SETTINGS, MODULES)
        assert route_path(found.bindings[gap]) == path
        assert route_path(found.bindings["bias"]) == "/institutional/bias"
        assert upstream.stats.requests == {"discovery": 1, gap: 1}

    @pytest.mark.parametrize(
        "mangle",
        [
            lambda d: d["paths"]["/institutional/bias"]["get"].__setitem__("parameters", 5),
            lambda d: d.__setitem__("servers", {}),
            lambda d: d["paths"]["/spot/orderbook"]["get"]["parameters"][2]["schema"].__setitem__("maximum", "lots"),
        ],
        ids=["parameters-not-a-list", "servers-not-a-list", "maximum-not-a-number"],
    )
    async def test_malformed_spec_falls_back_instead_of_failing(self, mangle) -> None:
        """A spec that is valid JSON but mis-shaped is reported, and discovery still ends with working routes."""
        sim = Simulator()
        spec = sim.openapi("3.1")
        mangle(spec)
        handler = SimHandler(sim, spec=spec)
        found = await discover(
            UpstreamClient("http://b", MockTransport(handler), clock=SystemClock()), SETTINGS, MODULES
        )
        assert all(b.route is not None for b in found.bindings.values()), {
            m: b.reason for m, b in found.bindings.items()
        }

    async def test_nothing_answers_gives_reasons(self) -> None:
        """With no spec and no known path answering, each module is unusable with what was tried."""
        upstream = UpstreamClient("http://b", MockTransport(lambda url: Response(404, {}, b"")), clock=SystemClock())
        found = await discover(upstream, SETTINGS, ["bias"])
        assert found.bindings["bias"].route is None
        assert "/institutional/bias: not_found 404" in found.bindings["bias"].reason


class SimHandler:
    """A MockTransport handler answering like `sim` (spec and module routes), without sockets.

    `spec` replaces the document served on /openapi.json (to serve a mangled one);
    `counts` is the number of requests per path.
    """

    def __init__(self, sim: Simulator, *, spec: dict[str, Any] | None = None) -> None:
        self.sim = sim
        self.spec = spec
        self.counts: dict[str, int] = {}

    async def __call__(self, url: str) -> Response:
        sim, spec, counts = self.sim, self.spec, self.counts
        path = "/" + url.split("//", 1)[1].split("/", 1)[1].split("?")[0]
        counts[path] = counts.get(path, 0) + 1
        if path == "/openapi.json":
            doc = spec if spec is not None else sim.openapi("3.1")
            return Response(200, {}, json.dumps(doc).encode()) if sim.spec_enabled else Response(404, {}, b"")
        if path == "/swagger.json":
            return Response(404, {}, b"")
        hit = sim.resolve(path)
        if hit is None:
            return Response(404, {}, b'{"detail": "Not Found"}')
        body = {
            "whale": samples.WHALE,
            "etf": samples.ETF,
            "heatmap": samples.HEATMAP,
            "spot_ob": samples.ORDER_BOOK,
            "bias": samples.BIAS,
            "funding": samples.FUNDING,
        }[hit[0].module]
        return Response(200, {}, json.dumps(body).encode())


class TestDiscoveryActor:
    async def test_refreshes_on_schedule_and_bumps_the_revision_on_changes_only(
        self, vclock: VirtualClock, memory_bus: MemoryBus
    ) -> None:
        """Discovery runs at start and every interval, republishing the map newly dated; a change bumps the revision."""
        sim = Simulator()
        handler = SimHandler(sim)
        ctx = Context(bus=memory_bus, clock=vclock)
        upstream = UpstreamClient("http://b", MockTransport(handler), clock=vclock)
        maps = await Recorder[RouteMap](memory_bus, ctx.subjects.routes(), RouteMap).start()
        actor = DiscoveryActor(upstream, modules=MODULES, refresh_interval=600)
        async with Supervisor(ctx, [actor]):
            await vclock.sleep(1800)
            sim.set_flavor("v2")
            await vclock.sleep(601)
        assert actor.runs == 5 and [m.revision for m in maps.messages] == [1, 1, 1, 2, 2]
        assert [m.ts for m in maps.messages] == sorted({m.ts for m in maps.messages})  # each one newer
        assert maps.messages[3].routes["spot_ob"].path == "/api/v2/market/depth/{venue}/{pair}"
        assert maps.messages[3].routes["funding"].path == "/api/v2/derivatives/funding/{instId}"
        stored = await (await memory_bus.key_value("sniper_routes")).get("current")
        assert stored is not None and stored.value is not None
        assert decode(stored.value, RouteMap) == maps.messages[3]  # stored when it changed

    async def test_a_flood_of_404s_costs_one_refresh(self, vclock: VirtualClock, memory_bus: MemoryBus) -> None:
        """Many not_found reports at once trigger a single rediscovery; 'no route' reports trigger none."""
        from messages import Degraded, encode

        sim = Simulator()
        handler = SimHandler(sim)
        ctx = Context(bus=memory_bus, clock=vclock)
        actor = DiscoveryActor(
            UpstreamClient("http://b", MockTransport(handler), clock=vclock), modules=MODULES, min_gap=10
        )
        async with Supervisor(ctx, [actor]):
            await vclock.sleep(5)
            for i in range(50):
                d = Degraded(
                    module=MODULES[i % len(MODULES)],
                    asset="SOL",
                    cycle=i,
                    ts=vclock.now(),
                    reason="not_found",
                    status=404,
                )
                await memory_bus.publish(ctx.subjects.degraded(d.module, "SOL"), encode(d))
            no_route = Degraded(
                module="bias", asset="SOL", cycle=99, ts=vclock.now() + 1, reason="not_found", detail="no route"
            )
            await memory_bus.publish(ctx.subjects.degraded("bias", "SOL"), encode(no_route))
            await vclock.sleep(60)
        assert actor.runs == 2 and handler.counts["/openapi.json"] == 2

    async def test_404s_during_a_slow_refresh_cost_no_second_refresh(
        self, vclock: VirtualClock, memory_bus: MemoryBus
    ) -> None:
        """404s caused by the old map while a slow refresh is under way do not queue another refresh."""
        from messages import Degraded, encode

        sim = Simulator()
        inner = SimHandler(sim)

        async def slow_spec(url: str) -> Response:
            if url.endswith("/openapi.json"):
                await vclock.sleep(2)
            return await inner(url)

        ctx = Context(bus=memory_bus, clock=vclock)
        actor = DiscoveryActor(
            UpstreamClient("http://b", MockTransport(slow_spec), clock=vclock), modules=MODULES, min_gap=0
        )
        async with Supervisor(ctx, [actor]):
            await vclock.sleep(30)
            for i in range(20):  # a burst spread over the refresh it triggers
                d = Degraded(
                    module=MODULES[i % len(MODULES)],
                    asset="SOL",
                    cycle=i,
                    ts=vclock.now(),
                    reason="not_found",
                    status=404,
                )
                await memory_bus.publish(ctx.subjects.degraded(d.module, "SOL"), encode(d))
                await vclock.sleep(0.1)
            await vclock.sleep(60)
        assert actor.runs == 2

    async def test_fetchers_order_maps_by_time_not_revision(self) -> None:
        """A newer map with a lower revision (a discovery restarted without the store) still applies."""
        from actors.fetchers import FETCHERS
        from messages import ParamBinding, Route

        clock = VirtualClock()
        bus = MemoryBus(clock=clock)
        fetcher = FETCHERS["bias"](
            UpstreamClient("http://b", MockTransport(lambda u: Response(404, {}, b"")), clock=clock)
        )

        def route(path: str) -> Route:
            return Route(
                module="bias", path=path, params=(ParamBinding(name="symbol", role="symbol", form="okx_swap"),)
            )

        async with Supervisor(Context(bus=bus, clock=clock), [fetcher]):
            for ts, revision, path in ((10.0, 7, "/old"), (20.0, 1, "/new"), (15.0, 9, "/stale")):
                await fetcher.on_routes(
                    RouteMap(ts=ts, source="openapi", routes={"bias": route(path)}, revision=revision)
                )
        assert fetcher.route is not None and fetcher.route.path == "/new"
        await bus.close()

    async def test_restart_starts_from_the_stored_map(self, vclock: VirtualClock, memory_bus: MemoryBus) -> None:
        """A fetcher started later takes the stored map even when the backend is down."""
        from actors.fetchers import FETCHERS

        sim = Simulator(flavor="v2")
        ctx = Context(bus=memory_bus, clock=vclock)
        up = UpstreamClient("http://b", MockTransport(SimHandler(sim)), clock=vclock)
        async with Supervisor(ctx, [DiscoveryActor(up, modules=MODULES)]):
            await vclock.sleep(1)
        fetcher = FETCHERS["bias"](up)
        async with Supervisor(ctx, [fetcher]):
            assert fetcher.route is not None and fetcher.route.path == "/api/v2/positioning/{instId}"


class TestOverRealNats:
    async def test_routes_survive_a_restart_even_with_the_backend_down(self, nats_server) -> None:
        """A map discovered by one process is restored from JetStream KV by a new one.

        The new process starts while the backend is unreachable.
        """
        from actors.fetchers import FETCHERS

        clock = SystemClock()
        async with serve(port=0, flavor="v2") as srv:
            bus = await NatsBus.connect(nats_server.url, name="first-host")
            up = UpstreamClient(srv.url, AiohttpTransport(), clock=clock)
            async with Supervisor(Context(bus=bus, clock=clock), [DiscoveryActor(up, modules=MODULES)]):
                pass  # the first discovery runs during start-up
            await up.close()
            await bus.close()
        bus2 = await NatsBus.connect(nats_server.url, name="second-host")
        dead = UpstreamClient("http://127.0.0.1:1", AiohttpTransport(), clock=clock)
        discovery, fetcher = DiscoveryActor(dead, modules=MODULES), FETCHERS["spot_ob"](dead)
        try:
            async with Supervisor(Context(bus=bus2, clock=clock), [discovery, fetcher]):
                assert discovery.current is not None and discovery.current.source == "openapi"
                assert fetcher.route is not None and fetcher.route.path == "/api/v2/market/depth/{venue}/{pair}"
        finally:
            await dead.close()
            await bus2.close()


class TestUpstreamEconomyOverNats:
    async def test_one_request_per_fetch_and_one_failed_request_per_module_on_a_flavor_switch(
        self, nats_server
    ) -> None:
        """After discovery each fetch is one request; switching the backend's naming costs ≤1 failure per module."""
        from messages import ModuleData
        from sniper.app import run_pipeline
        from sniper.config import Settings

        async with serve(port=0, flavor="guessed", seed=2, default_faults=False) as srv:
            bus = await NatsBus.connect(nats_server.url, name="observer")
            signals = await Recorder[Signal](bus, "sniper.signal.*", Signal).start()
            data = await Recorder[ModuleData](bus, "sniper.data.*.*", ModuleData).start()
            settings = Settings(nats=nats_server.url, backend=srv.url, assets=("SOL",), interval=0.5, window=0.4)
            async with run_pipeline(settings):
                await signals.wait_count(6)
                # Right after a complete signal nothing is in flight: compare what the
                # backend saw with what the fetchers published.
                sent = {m: v["requests"] for m, v in srv.sim.counters().items() if m in MODULES}
                fetched = {m: sum(1 for d in data.messages if d.module == m) for m in MODULES}
                srv.sim.set_flavor("v2")
                switch_at = len(signals.messages)
                await signals.wait_count(switch_at + 6)
            await bus.close()
        assert all(st.status == "ok" for s in signals.messages[:switch_at] for st in s.modules.values())
        for module in ("whale", "heatmap", "spot_ob", "bias", "funding"):
            assert sent[module] == fetched[module] >= 6, (module, sent, fetched)
        assert sent["etf"] == 1 and fetched["etf"] >= 6  # daily data: one request serves every cycle (cached)
        recovered = signals.messages[switch_at:]
        for module in MODULES:
            failed = [s.modules[module] for s in recovered if s.modules[module].status != "ok"]
            assert len(failed) <= 1, (module, failed)
        assert all(st.status == "ok" for st in recovered[-1].modules.values())
        assert all(v["by_status"].get("404", 0) <= 1 for m, v in srv.sim.counters().items() if m in MODULES)


class TestRediscoveryAcrossFlavors:
    @pytest.mark.parametrize("start, switch_to", [(a, b) for a in FLAVOR_NAMES for b in FLAVOR_NAMES if a != b])
    async def test_flavor_switch_recovers_within_one_rediscovery(
        self, vclock: VirtualClock, memory_bus: MemoryBus, start: str, switch_to: str
    ) -> None:
        """Any naming switch at runtime: one rediscovery, at most one failed request per module, then all ok."""
        from actors.assembler import SignalAssembler
        from actors.fetchers import FETCHERS
        from actors.scheduler import Scheduler

        sim = Simulator(flavor=start)
        handler = SimHandler(sim)
        ctx = Context(bus=memory_bus, clock=vclock)
        up = UpstreamClient("http://b", MockTransport(handler), clock=vclock)
        signals = await Recorder[Signal](memory_bus, ctx.subjects.signal_all(), Signal).start()
        discovery = DiscoveryActor(up, modules=MODULES, refresh_interval=3600)
        actors = [
            discovery,
            *(FETCHERS[m](up) for m in MODULES),
            SignalAssembler(modules=MODULES),
            Scheduler(("SOL",), modules=MODULES, interval=5, window=3),
        ]
        async with Supervisor(ctx, actors):
            await vclock.sleep(22)
            sim.set_flavor(switch_to)
            switch_at, runs_before = len(signals.messages), discovery.runs
            await vclock.sleep(60)
        assert all(st.status == "ok" for s in signals.messages[:switch_at] for st in s.modules.values())
        assert discovery.runs == runs_before + 1
        after = signals.messages[switch_at:]
        for module in MODULES:
            assert sum(s.modules[module].status != "ok" for s in after) <= 1, module
        assert all(st.status == "ok" for s in after[1:] for st in s.modules.values())


class TestDiscoverCommand:
    @pytest.mark.parametrize("flavor", FLAVOR_NAMES)
    async def test_prints_the_route_map(self, flavor: str) -> None:
        """`sniper discover --backend URL` prints one route per module with its bindings; exit 0."""
        import asyncio
        import sys

        async with serve(port=0, flavor=flavor) as srv:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sniper",
                "discover",
                "--backend",
                srv.url,
                "--json",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
        doc = json.loads(out)
        assert proc.returncode == 0 and doc["version"] == "3.1.0" and doc["requests"] == {"discovery": 1}
        paths = {row["module"]: row["path"] for row in doc["modules"]}
        assert paths == {r.module: r.path for r in (r for r in Simulator(flavor=flavor).routes())}

    async def test_reports_what_could_not_be_bound(self) -> None:
        """A module the backend lacks is printed UNUSABLE with the reason; exit 1."""
        import asyncio
        import sys

        from marketsim import StatusFault

        async with serve(port=0, spec=False, faults={"bias": [StatusFault(404)]}) as srv:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sniper",
                "discover",
                "--backend",
                srv.url,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
        text = out.decode()
        assert proc.returncode == 1 and "spec: none" in text
        assert "bias     UNUSABLE  no known path answered: /institutional/bias: not_found 404" in text
        assert "whale    GET /whales/alerts" in text
        assert "funding  GET /derivatives/funding-rate" in text
