"""Turn a `Route` plus an asset into a concrete request (path and query).

Shared by every fetcher and by discovery's probes, so a route means the same
thing wherever it is used. Values are URL-encoded per path segment, so a
symbol can never add a segment or a query of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from actors.symbols import format_form, instrument
from messages.errors import SymbolError
from messages.routes import ParamBinding, Route


@dataclass(frozen=True, slots=True)
class RequestSettings:
    """Values for the non-symbol roles, chosen by configuration."""

    quote: str = "USDT"
    timeframe: str = "1h"
    exchange: str = "binance"
    depth: int = 50


class RouteError(ValueError):
    """A route that cannot be filled for this asset (unknown role, bad symbol form)."""


def bind_value(param: ParamBinding, key: str, settings: RequestSettings) -> str | None:
    """The value for one parameter, or None to leave an optional one out."""
    match param.role:
        case "symbol":
            try:
                return format_form(instrument(key, settings.quote), param.form or "base", lower=param.lower)
            except SymbolError as exc:
                raise RouteError(f"{param.name}: {exc}") from None
        case "asset":
            return key
        case "timeframe":
            return settings.timeframe
        case "depth":
            return str(settings.depth)
        case "exchange":
            return settings.exchange
        case "const":
            return param.value
    raise RouteError(f"{param.name}: unknown role {param.role!r}")  # pragma: no cover - Literal-typed


def build_request(route: Route, key: str, settings: RequestSettings) -> tuple[str, dict[str, str]]:
    """(path, query) for `route` and the asset key (e.g. SOL; BTC for ETF flows)."""
    path = route.path
    query: dict[str, str] = {}
    for param in route.params:
        value = bind_value(param, key, settings)
        if value is None:
            if param.required:
                raise RouteError(f"{route.module}: required parameter {param.name!r} has no value")
            continue
        if param.location == "path":
            placeholder = "{" + param.name + "}"
            if placeholder not in path:
                raise RouteError(f"{route.module}: path {route.path!r} has no {placeholder}")
            path = path.replace(placeholder, quote(value, safe=""))
        else:
            query[param.name] = value
    if "{" in path:
        raise RouteError(f"{route.module}: unfilled path parameter in {path!r}")
    return path, query
