"""Route flavors: one table per naming scheme, shared by routing and OpenAPI.

A flavor is a tuple of ``Route`` objects, one per module. Each route lists its
parameters with enough metadata to validate a request *and* to document it,
so the server and its published spec are generated from the same data.

Flavors:

* ``guessed``: the paths a naive client guessed (base symbols everywhere);
* ``seed`` (default): the seed document's real paths (venue-native symbols);
* ``v2``: different parameter names and path-vs-query placement.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ._payloads import EXCHANGES, TIMEFRAMES
from ._symbols import BASE, BINANCE_SPOT, OKX_SPOT, OKX_SWAP, SymbolForm

__all__ = [
    "DEFAULT_FLAVOR",
    "FLAVORS",
    "MODULES",
    "ModuleInfo",
    "Param",
    "RequestError",
    "Route",
]

MODULES_ORDER = ("whale", "etf", "heatmap", "spot_ob", "bias", "funding")
DEFAULT_FLAVOR = "seed"


class RequestError(Exception):
    """A request rejected with an HTTP status and a FastAPI-style detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Param:
    """One request parameter: wire name, placement and validation rule.

    ``key`` is the flavor-independent argument the value feeds (``base``,
    ``timeframe``, ``exchange``, ``depth``); ``name`` is what this flavor
    calls it on the wire.
    """

    name: str
    location: Literal["path", "query"]
    key: str
    description: str
    form: SymbolForm | None = None
    enum: tuple[str, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    default: str | int | None = None
    sample: str | None = None  # documented example when the form's (SOL) is wrong

    @property
    def required(self) -> bool:
        return self.location == "path" or self.default is None

    @property
    def example(self) -> str | int:
        if self.sample is not None:
            return self.sample
        if self.form is not None:
            return self.form.example
        if self.default is not None:
            return self.default
        return self.enum[0] if self.enum else 0

    def parse(self, raw: str | None) -> str | int:
        """Validate one raw value; raise ``RequestError`` when it is unusable."""
        where = f"{self.location} parameter '{self.name}'"
        if raw is None:
            if self.required:
                raise RequestError(422, f"missing required {where}")
            assert self.default is not None
            return self.default
        if self.form is not None:
            base = self.form.parse(raw)
            if base is not None:
                return base
            if self.location == "path":
                # Path segments name a resource: the wrong spelling is "not found".
                raise RequestError(404, f"unknown symbol '{raw}': expected {self.form.description}")
            raise RequestError(422, f"invalid value '{raw}' for {where}: expected {self.form.description}")
        if self.enum is not None:
            if raw not in self.enum:
                raise RequestError(422, f"invalid value '{raw}' for {where}: expected one of {', '.join(self.enum)}")
            return raw
        # int() would also take " 5", "+5" and "5_0"; a query string should not.
        number = int(raw) if raw.isascii() and raw.isdigit() else None
        if number is None or not self.minimum <= number <= self.maximum:  # type: ignore[operator]
            raise RequestError(
                422,
                f"invalid value '{raw}' for {where}: expected an integer between {self.minimum} and {self.maximum}",
            )
        return number


@dataclass(frozen=True, slots=True)
class Route:
    """A GET endpoint serving one module in one flavor."""

    module: str
    path: str
    params: tuple[Param, ...]
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = re.split(r"\{(\w+)\}", self.path)
        pattern = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts))
        object.__setattr__(self, "_regex", re.compile(pattern))

    def match(self, path: str) -> dict[str, str] | None:
        """Path parameters if ``path`` belongs to this route, else ``None``."""
        found = self._regex.fullmatch(path)
        return found.groupdict() if found else None

    def arguments(self, path_values: Mapping[str, str], query: Mapping[str, str]) -> dict[str, str | int]:
        """Validate the request and return builder arguments keyed by ``Param.key``.

        Path parameters are checked first, so a wrong path symbol is a 404
        even when a query parameter is also invalid (the resource does not
        exist, whatever the options).
        """
        ordered = sorted(self.params, key=lambda p: p.location != "path")
        return {p.key: p.parse(path_values.get(p.name) if p.location == "path" else query.get(p.name)) for p in ordered}


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """Flavor-independent documentation of a module."""

    operation_id: str
    summary: str
    description: str
    tag: str
    errors: tuple[int, ...]


MODULES: dict[str, ModuleInfo] = {
    "whale": ModuleInfo(
        "getWhaleAlerts",
        "Whale alerts",
        "Large on-chain transfers of the asset during the last hour, newest first.",
        "whales",
        (422, 429),
    ),
    "etf": ModuleInfo(
        "getEtfFlows",
        "Spot ETF flows",
        "Daily net creations/redemptions of US spot ETFs (BTC and ETH only). Requires a paid plan.",
        "etf",
        (402, 404, 422, 429),
    ),
    "heatmap": ModuleInfo(
        "getLiquidationHeatmap",
        "Liquidation heatmap",
        "Estimated liquidation clusters within 8% of the perpetual swap price.",
        "liquidations",
        (422, 429),
    ),
    "spot_ob": ModuleInfo(
        "getSpotOrderBook",
        "Spot order book",
        "Aggregated top of the spot order book on one exchange.",
        "spot",
        (422, 429),
    ),
    "bias": ModuleInfo(
        "getInstitutionalBias",
        "Institutional bias",
        "Derivatives positioning (long/short ratio, funding, open interest) reduced to a score.",
        "institutional",
        (422, 429),
    ),
    "funding": ModuleInfo(
        "getFundingRate",
        "Funding rate",
        "Current and predicted funding rate of the perpetual swap, the next funding time"
        " and the open-interest change over 24 hours.",
        "funding",
        (422, 429),
    ),
}


def _symbol(name: str, location: Literal["path", "query"], form: SymbolForm) -> Param:
    return Param(name, location, "base", form.description, form=form)


def _etf_asset(name: str, location: Literal["path", "query"]) -> Param:
    return Param(name, location, "base", "Asset with US spot ETFs: BTC or ETH", form=BASE, sample="BTC")


def _timeframe(name: str) -> Param:
    return Param(name, "query", "timeframe", "Aggregation window", enum=TIMEFRAMES, default="1h")


def _exchange(name: str, location: Literal["path", "query"]) -> Param:
    default = "binance" if location == "query" else None
    return Param(name, location, "exchange", "Spot exchange", enum=EXCHANGES, default=default)


def _depth(name: str) -> Param:
    return Param(name, "query", "depth", "Levels per side", minimum=1, maximum=500, default=50)


FLAVORS: dict[str, tuple[Route, ...]] = {
    "seed": (
        Route("whale", "/whales/alerts", (_symbol("symbol", "query", BASE),)),
        Route("etf", "/advanced/etf/flows", (_etf_asset("asset", "query"),)),
        Route("heatmap", "/liquidations/heatmap", (_symbol("symbol", "query", OKX_SWAP), _timeframe("timeframe"))),
        Route(
            "spot_ob",
            "/spot/orderbook",
            (_symbol("symbol", "query", BINANCE_SPOT), _exchange("exchange", "query"), _depth("depth")),
        ),
        Route("bias", "/institutional/bias", (_symbol("symbol", "query", OKX_SWAP),)),
        Route("funding", "/derivatives/funding-rate", (_symbol("symbol", "query", OKX_SWAP),)),
    ),
    "guessed": (
        Route("whale", "/advanced/whale/alerts", (_symbol("symbol", "query", BASE),)),
        Route("etf", "/advanced/etf/flows", (_etf_asset("asset", "query"),)),
        Route(
            "heatmap",
            "/advanced/liquidation/heatmap/{symbol}",
            (_symbol("symbol", "path", BASE), _timeframe("timeframe")),
        ),
        Route(
            "spot_ob",
            "/advanced/spot/orderbook/{symbol}",
            (_symbol("symbol", "path", BASE), _exchange("exchange", "query"), _depth("depth")),
        ),
        Route("bias", "/institutional/bias", (_symbol("symbol", "query", OKX_SWAP),)),
        Route("funding", "/funding", (_symbol("symbol", "query", BASE),)),
    ),
    "v2": (
        Route("whale", "/api/v2/onchain/whale-transfers", (_symbol("coin", "query", BASE),)),
        Route("etf", "/api/v2/flows/etf/{ccy}", (_etf_asset("ccy", "path"),)),
        Route(
            "heatmap",
            "/api/v2/derivatives/liquidation-map/{instId}",
            (_symbol("instId", "path", OKX_SWAP), _timeframe("interval")),
        ),
        Route(
            "spot_ob",
            "/api/v2/market/depth/{venue}/{pair}",
            (_exchange("venue", "path"), _symbol("pair", "path", OKX_SPOT), _depth("limit")),
        ),
        Route("bias", "/api/v2/positioning/{instId}", (_symbol("instId", "path", OKX_SWAP),)),
        Route("funding", "/api/v2/derivatives/funding/{instId}", (_symbol("instId", "path", OKX_SWAP),)),
    ),
}
