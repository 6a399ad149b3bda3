"""marketsim: the reference market-data backend sniper is tested against.

An aiohttp server with six modules (``whale``, ``etf``, ``heatmap``,
``spot_ob``, ``bias``, ``funding``), three route flavors (``seed`` default, ``guessed``,
``v2``) switchable at runtime, generated OpenAPI 3.1 / 3.0.3 / Swagger 2.0
documents of the current flavor, deterministic synthetic data for a seed,
runtime-injectable faults and per-module request counters.

Public API::

    Simulator(*, seed=0, flavor="seed", spec=True, default_faults=True,
              faults=None, now=time.time)
        .flavor / .set_flavor(name)          .spec_enabled / .set_spec(enabled)
        .set_fault(module, fault | [faults]) .clear_fault(module) .clear_faults()
        .faults() -> {module: [Fault]}       .counters() / .reset_counters()
        .openapi(version="3.1"|"3.0")        .swagger(host=None)
        .routes()                            .market (the Market model)

    create_app(sim=None, **simulator_kwargs) -> aiohttp.web.Application

    async with serve(host="127.0.0.1", port=0, *, sim=None, access_log=False,
                     shutdown_timeout=5.0, **simulator_kwargs) as srv:
        srv.url   # "http://127.0.0.1:54321" (no trailing slash)
        srv.sim   # the Simulator

    await start_server(host="127.0.0.1", port=0, ...same...) -> RunningServer
        # RunningServer(url, host, port, sim, runner); await it.close()

    run(host="127.0.0.1", port=8000, *, ready=None, **kwargs)  # blocks until SIGINT/SIGTERM

Faults (msgspec structs, all with ``rate: float = 1.0``)::

    StatusFault(status=429, retry_after=30)  LatencyFault(ms=200)  TimeoutFault()
    MalformedFault(mode="truncated"|"wrong_types"|"empty"|"html")
    EnvelopeFault(code="50011", msg="Too frequent", http_status=200)
    OversizeFault(levels=1_000_000) | OversizeFault(size=2_000_000)  # valid, huge, streamed
    parse_fault_spec("status:429:retry_after=30")   # the CLI syntax
    parse_fault_arg("etf=status:402")               # MODULE=SPEC, an argparse type

By default ``etf`` answers 402 (paid plan), as the seed's production did;
``default_faults=False`` (CLI ``--no-default-faults``) turns that off.

HTTP: module routes per flavor (see ``FLAVORS``), ``GET /openapi.json``
(``?version=3.0``), ``GET /swagger.json``, ``GET /healthz`` and the admin API
under ``/_admin`` (``faults``, ``faults/{module}``, ``counters``, ``flavor``,
``spec``). Admin routes are not part of the published spec.
"""

from ._app import SIMULATOR, create_app
from ._cli import parse_fault_arg
from ._faults import (
    DEFAULT_FAULTS,
    EnvelopeFault,
    Fault,
    LatencyFault,
    MalformedFault,
    OversizeFault,
    StatusFault,
    TimeoutFault,
    parse_fault_spec,
)
from ._market import KNOWN_PRICES, Market, NoEtfError
from ._routes import DEFAULT_FLAVOR, FLAVORS, Route
from ._server import RunningServer, run, serve, start_server
from ._simulator import FLAVOR_NAMES, MODULE_KEYS, Simulator

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_FAULTS",
    "DEFAULT_FLAVOR",
    "FLAVORS",
    "FLAVOR_NAMES",
    "KNOWN_PRICES",
    "MODULE_KEYS",
    "SIMULATOR",
    "EnvelopeFault",
    "Fault",
    "LatencyFault",
    "MalformedFault",
    "Market",
    "NoEtfError",
    "OversizeFault",
    "Route",
    "RunningServer",
    "Simulator",
    "StatusFault",
    "TimeoutFault",
    "create_app",
    "parse_fault_arg",
    "parse_fault_spec",
    "run",
    "serve",
    "start_server",
]
