"""Upstream requests per successful fetch: the seed's try-three-shapes client vs discovery.

Same backend (the reference backend, in process, over loopback HTTP), same
fetches (heatmap and spot order book for SOL, `--fetches` times each), for
each route flavor. The backend's own counters are the measure.

The seed's client (shared/seed, section 3), reimplemented faithfully:
  getApiMap: GET /openapi.json once (cached 10 min); base path = the first path
  matching /liquidation.*heatmap/i (heatmap) or /spot.*orderbook/i (order book),
  else '/liquidations/heatmap' / '/spot/orderbook'.
  Then per fetch, three URL shapes in order, moving on only after a 404
  (any other error fails the fetch):
    heatmap: {base}?symbol=SOL-USDT-SWAP&timeframe=1h
           | {base}/SOL-USDT-SWAP?timeframe=1h
           | {base}?asset=SOL-USDT-SWAP&tf=1h
    spot:    {base}?symbol=SOLUSDT&exchange=binance&depth=50
           | {base}/binance/SOLUSDT?depth=50
           | {base}/SOLUSDT?ex=binance&limit=50

sniper: one discovery (GET /openapi.json, bind by meaning; without a spec,
known paths probed once and the one that answers remembered), then one
request per fetch built from the bound route.

Each flavor is measured with the spec served and with it switched off.

    python bench/discovery_economy.py [--fetches 50]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from actors.discovery import discover
from actors.routing import RequestSettings, build_request
from actors.upstream import AiohttpTransport, UpstreamClient
from marketsim import FLAVOR_NAMES, serve
from runtime import SystemClock

MODULES = ("heatmap", "spot_ob")


Client = Callable[[str, int], Awaitable[dict[str, int]]]


async def seed_client(url: str, fetches: int) -> dict[str, int]:
    """The seed's getHeatmap/getSpotOrderbook; returns successful fetches per module."""
    ok = {m: 0 for m in MODULES}
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/openapi.json") as resp:
            spec = await resp.json() if resp.status == 200 else {}
        paths = list((spec or {}).get("paths", {}))
        heat = next((p for p in paths if re.search(r"liquidation.*heatmap", p, re.I)), "") or "/liquidations/heatmap"
        spot = next((p for p in paths if re.search(r"spot.*orderbook", p, re.I)), "") or "/spot/orderbook"
        shapes = {
            "heatmap": [
                f"{heat}?symbol=SOL-USDT-SWAP&timeframe=1h",
                f"{heat}/SOL-USDT-SWAP?timeframe=1h",
                f"{heat}?asset=SOL-USDT-SWAP&tf=1h",
            ],
            "spot_ob": [
                f"{spot}?symbol=SOLUSDT&exchange=binance&depth=50",
                f"{spot}/binance/SOLUSDT?depth=50",
                f"{spot}/SOLUSDT?ex=binance&limit=50",
            ],
        }
        for _ in range(fetches):
            for module in MODULES:
                for shape in shapes[module]:
                    async with http.get(url + shape) as resp:
                        await resp.read()
                        if resp.status == 404:
                            continue
                        ok[module] += resp.status == 200
                        break
    return ok


async def sniper_client(url: str, fetches: int) -> dict[str, int]:
    ok = {m: 0 for m in MODULES}
    settings = RequestSettings()
    upstream = UpstreamClient(url, AiohttpTransport(), clock=SystemClock())
    try:
        found = await discover(upstream, settings, MODULES)
        for _ in range(fetches):
            for module in MODULES:
                route = found.bindings[module].route
                if route is None:
                    continue
                path, query = build_request(route, "SOL", settings)
                outcome = await upstream.get(module, path, query, budget=5)
                ok[module] += outcome.ok
    finally:
        await upstream.close()
    return ok


async def measure(flavor: str, spec: bool, client: Client, fetches: int) -> tuple[int, int, int]:
    """(requests to the backend, of which spec reads, successful fetches)."""
    async with serve(port=0, flavor=flavor, seed=4, spec=spec) as srv:
        ok = await client(srv.url, fetches)
        counters = srv.sim.counters()
    requests = sum(counters.get(m, {}).get("requests", 0) for m in MODULES) + counters.get("unmatched", {}).get(
        "requests", 0
    )
    spec_reads: int = counters.get("openapi", {}).get("requests", 0)
    return requests + spec_reads, spec_reads, sum(ok.values())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fetches", type=int, default=50, help="fetches per module per client and flavor")
    args = parser.parse_args()
    attempted = args.fetches * len(MODULES)
    print(f"{args.fetches} fetches each of {', '.join(MODULES)} for SOL per client and flavor ({attempted} attempted)")
    print(
        f"{'backend':<18} {'client':<7} {'requests':>9} {'spec reads':>11} {'successful':>11} "
        f"{'requests per success':>21}"
    )
    scenarios = [(f, True) for f in FLAVOR_NAMES] + [(f, False) for f in FLAVOR_NAMES]
    for flavor, spec in scenarios:
        label = f"{flavor}{'' if spec else ' (no spec)'}"
        for name, client in (("seed", seed_client), ("sniper", sniper_client)):
            requests, reads, ok = await measure(flavor, spec, client, args.fetches)
            ratio = f"{requests / ok:.3f}" if ok else "inf (no success)"
            print(f"{label:<18} {name:<7} {requests:>9} {reads:>11} {ok:>8}/{attempted:<3} {ratio:>20}")


if __name__ == "__main__":
    asyncio.run(main())
