"""aiohttp application: module endpoints, spec documents and the admin API.

aiohttp freezes its router at startup, but the route flavor must be
switchable at runtime. Module routes are therefore served by one catch-all
handler that matches the path against the current flavor's table; the fixed
endpoints (spec documents, health, admin) are ordinary aiohttp routes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
from aiohttp import web

from ._faults import (
    EnvelopeFault,
    MalformedFault,
    OversizeFault,
    StatusFault,
    TimeoutFault,
    decode_faults,
    envelope_response,
    hang,
    malformed_response,
    oversize_chunks,
    status_response,
)
from ._market import NoEtfError
from ._routes import RequestError, Route
from ._simulator import FLAVOR_NAMES, Simulator

__all__ = ["SIMULATOR", "create_app"]

log = logging.getLogger("marketsim")

SIMULATOR = web.AppKey("marketsim.simulator", Simulator)
_STOP = web.AppKey("marketsim.stop", asyncio.Event)
_FIXED_PATHS = frozenset({"/healthz", "/openapi.json", "/swagger.json"})


class _FlavorBody(msgspec.Struct, forbid_unknown_fields=True):
    flavor: Literal[FLAVOR_NAMES]  # type: ignore[valid-type]


class _SpecBody(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool


def _error(status: int, detail: str, **headers: str) -> web.Response:
    body = msgspec.json.encode({"detail": detail})
    return web.Response(body=body, status=status, headers=headers or None, content_type="application/json")


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(payload), status=status, content_type="application/json")


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer aiohttp's own HTTP errors and crashes with FastAPI-style JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return _error(exc.status, exc.reason, **headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, "Internal Server Error")


# -- module endpoints ---------------------------------------------------------
class _Outcome:
    """What the counters record for one request once it ends."""

    __slots__ = ("label",)

    def __init__(self) -> None:
        self.label: int | str | None = None


async def _module_endpoint(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIMULATOR]
    counters = sim.counter_book
    resolved = sim.resolve(request.path)
    if resolved is None:
        counters.request("unmatched")
        fixed = request.path in _FIXED_PATHS or request.path.startswith("/_admin")
        status, detail = (405, "Method Not Allowed") if fixed else (404, "Not Found")
        counters.status("unmatched", status)
        return _error(status, detail)
    route, path_values = resolved
    counters.request(route.module, route.path)
    outcome = _Outcome()
    try:
        response = await _serve_module(request, sim, route, path_values, outcome)
        if outcome.label is None:
            outcome.label = response.status
        return response
    finally:
        counters.status(route.module, outcome.label if outcome.label is not None else "cancelled")


async def _serve_module(
    request: web.Request, sim: Simulator, route: Route, path_values: dict[str, str], outcome: _Outcome
) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        return _error(405, "Method Not Allowed", Allow="GET")
    module = route.module
    delay, fault = sim.draw_fault(module)
    if delay:
        await asyncio.sleep(delay)
    # Upstream-side failures come before validation, as a gateway would answer.
    if isinstance(fault, TimeoutFault):
        outcome.label = "timeout"
        await hang(request, request.app[_STOP])
        return _error(503, "server shutting down")
    if isinstance(fault, StatusFault):
        return status_response(fault)
    if isinstance(fault, EnvelopeFault):
        return envelope_response(fault)
    try:
        payload = sim.build(module, route.arguments(path_values, request.query))
    except RequestError as exc:
        return _error(exc.status, exc.detail)
    except NoEtfError as exc:
        return _error(404, str(exc))
    if isinstance(fault, MalformedFault):
        return malformed_response(fault, payload)
    if isinstance(fault, OversizeFault):
        return await _stream_oversize(request, module, payload, fault, outcome)
    return _json(payload)


async def _stream_oversize(
    request: web.Request, module: str, payload: msgspec.Struct, fault: OversizeFault, outcome: _Outcome
) -> web.StreamResponse:
    """Write an oversize body chunk by chunk (chunked encoding, no Content-Length).

    A client that stops reading (a size cap) resets the connection; the rest
    is then never generated, and the counters record ``aborted``.
    """
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        for chunk in oversize_chunks(module, payload, fault):
            await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:
        outcome.label = "aborted"
    return response


# -- spec documents -----------------------------------------------------------
async def _openapi(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    sim.counter_book.request("openapi", "/openapi.json")
    version = request.query.get("version", "3.1")
    if not sim.spec_enabled:
        response = _error(404, "Not Found")
    else:
        try:
            response = _json(sim.openapi(version))
        except ValueError as exc:
            response = _error(422, str(exc))
    sim.counter_book.status("openapi", response.status)
    return response


async def _swagger(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    sim.counter_book.request("openapi", "/swagger.json")
    response = _json(sim.swagger(request.host)) if sim.spec_enabled else _error(404, "Not Found")
    sim.counter_book.status("openapi", response.status)
    return response


async def _healthz(request: web.Request) -> web.Response:
    return _json({"ok": True})


# -- admin API ----------------------------------------------------------------
def _decode(body: bytes, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        raise web.HTTPBadRequest(
            text=msgspec.json.encode({"detail": f"invalid body: {exc}"}).decode(),
            content_type="application/json",
        ) from None


async def _get_faults(request: web.Request) -> web.Response:
    return _json(request.app[SIMULATOR].faults_json())


async def _put_faults(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    module = request.match_info["module"]
    try:
        faults = decode_faults(await request.read())
        sim.set_fault(module, faults)
    except KeyError as exc:
        return _error(400, exc.args[0])
    except (ValueError, TypeError) as exc:
        return _error(400, str(exc))
    return _json({module: sim.faults_json()[module]})


async def _delete_module_faults(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    module = request.match_info["module"]
    try:
        sim.clear_fault(module)
    except KeyError as exc:
        return _error(400, exc.args[0])
    return _json({module: []})


async def _delete_faults(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    sim.clear_faults()
    return _json(sim.faults_json())


async def _get_counters(request: web.Request) -> web.Response:
    return _json(request.app[SIMULATOR].counters())


async def _delete_counters(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    sim.reset_counters()
    return _json(sim.counters())


async def _get_flavor(request: web.Request) -> web.Response:
    return _json({"flavor": request.app[SIMULATOR].flavor, "flavors": list(FLAVOR_NAMES)})


async def _put_flavor(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    body = _decode(await request.read(), _FlavorBody)
    sim.set_flavor(body.flavor)
    return _json({"flavor": sim.flavor, "flavors": list(FLAVOR_NAMES)})


async def _get_spec(request: web.Request) -> web.Response:
    return _json({"enabled": request.app[SIMULATOR].spec_enabled})


async def _put_spec(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    sim.set_spec(_decode(await request.read(), _SpecBody).enabled)
    return _json({"enabled": sim.spec_enabled})


async def _make_stop_event(app: web.Application) -> None:
    app[_STOP] = asyncio.Event()


async def _release_hung_requests(app: web.Application) -> None:
    # on_shutdown runs before aiohttp waits for in-flight handlers.
    app[_STOP].set()


def create_app(sim: Simulator | None = None, **config: Any) -> web.Application:
    """Build the aiohttp application around ``sim`` (or ``Simulator(**config)``)."""
    if sim is None:
        sim = Simulator(**config)
    elif config:
        raise TypeError("pass either a Simulator or Simulator keyword arguments, not both")
    app = web.Application(middlewares=[_json_errors])
    app[SIMULATOR] = sim
    app.on_startup.append(_make_stop_event)
    app.on_shutdown.append(_release_hung_requests)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_get("/swagger.json", _swagger)
    app.router.add_get("/_admin/faults", _get_faults)
    app.router.add_delete("/_admin/faults", _delete_faults)
    app.router.add_put("/_admin/faults/{module}", _put_faults)
    app.router.add_delete("/_admin/faults/{module}", _delete_module_faults)
    app.router.add_get("/_admin/counters", _get_counters)
    app.router.add_delete("/_admin/counters", _delete_counters)
    app.router.add_get("/_admin/flavor", _get_flavor)
    app.router.add_put("/_admin/flavor", _put_flavor)
    app.router.add_get("/_admin/spec", _get_spec)
    app.router.add_put("/_admin/spec", _put_spec)
    # Last: everything else goes through the current flavor's route table.
    app.router.add_route("*", "/{tail:.*}", _module_endpoint)
    return app
