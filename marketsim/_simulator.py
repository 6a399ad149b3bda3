"""The ``Simulator``: all mutable state behind the HTTP app.

Keeping state out of aiohttp handlers lets in-process tests drive the same
object the admin API drives (flavor, spec switch, faults, counters), and lets
one simulator be served, stopped and served again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from ._faults import DEFAULT_FAULTS, Fault, FaultBook
from ._market import Market
from ._openapi import openapi_document, swagger_document
from ._routes import DEFAULT_FLAVOR, FLAVORS, MODULES_ORDER, Route

__all__ = ["FLAVOR_NAMES", "MODULE_KEYS", "Counters", "Simulator"]

MODULE_KEYS: tuple[str, ...] = MODULES_ORDER
FLAVOR_NAMES: tuple[str, ...] = tuple(FLAVORS)
SPEC_VERSIONS = {"3.1": "3.1", "3.1.0": "3.1", "3.0": "3.0", "3.0.3": "3.0"}
_VERSION = "0.1.0"


class Counters:
    """Request and status counts per module (plus ``openapi`` and ``unmatched``).

    Requests are counted on arrival, statuses on completion, so a request
    held by a timeout fault is visible while it hangs. Faulted answers count
    like any other; a request that never got an answer counts as
    ``"timeout"`` (or ``"cancelled"`` if the handler was interrupted), and an
    oversize body its client stopped reading as ``"aborted"``.
    Unmatched paths keep no per-route map: a scanner must not grow memory.
    """

    _GROUPS = (*MODULE_KEYS, "openapi", "unmatched")

    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}
        self.reset()

    def reset(self) -> None:
        self._data = {g: {"requests": 0, "by_status": {}, "by_route": {}} for g in self._GROUPS}
        del self._data["unmatched"]["by_route"]

    def request(self, group: str, route: str | None = None) -> None:
        entry = self._data[group]
        entry["requests"] += 1
        if route is not None and "by_route" in entry:
            entry["by_route"][route] = entry["by_route"].get(route, 0) + 1

    def status(self, group: str, status: int | str) -> None:
        by_status = self._data[group]["by_status"]
        key = str(status)
        by_status[key] = by_status.get(key, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return msgspec.json.decode(msgspec.json.encode(self._data), type=dict[str, Any])  # deep copy


class Simulator:
    """Market model, route flavor, spec switch, faults and counters.

    ``faults`` maps module keys to one fault or a list of faults; it replaces
    the defaults of the modules it names. ``now`` is the time source of the
    market model (inject a fake clock in tests).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        flavor: str = DEFAULT_FLAVOR,
        spec: bool = True,
        default_faults: bool = True,
        faults: Mapping[str, Fault | Sequence[Fault]] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.seed = seed
        self.market = Market(seed, now)
        self._fault_book = FaultBook(MODULE_KEYS, seed)
        self._counters = Counters()
        self._flavor = DEFAULT_FLAVOR
        self._spec = bool(spec)
        self.set_flavor(flavor)
        if default_faults:
            for module, defaults in DEFAULT_FAULTS.items():
                self._fault_book.set(module, defaults)
        for module, fault in (faults or {}).items():
            self.set_fault(module, fault)

    # -- flavor and spec -------------------------------------------------
    @property
    def flavor(self) -> str:
        return self._flavor

    def set_flavor(self, name: str) -> None:
        """Switch route naming; the OpenAPI document follows immediately."""
        if name not in FLAVORS:
            raise ValueError(f"unknown flavor {name!r} (flavors: {', '.join(FLAVORS)})")
        self._flavor = name

    def routes(self) -> tuple[Route, ...]:
        """Module routes of the current flavor."""
        return FLAVORS[self._flavor]

    def resolve(self, path: str) -> tuple[Route, dict[str, str]] | None:
        """The current flavor's route for ``path`` and its path values."""
        for route in FLAVORS[self._flavor]:
            values = route.match(path)
            if values is not None:
                return route, values
        return None

    @property
    def spec_enabled(self) -> bool:
        return self._spec

    def set_spec(self, enabled: bool) -> None:
        """Serve or hide the OpenAPI/Swagger documents (hidden: 404)."""
        self._spec = bool(enabled)

    def openapi(self, version: str = "3.1") -> dict[str, Any]:
        """OpenAPI document of the current flavor (``3.1`` or ``3.0``)."""
        if version not in SPEC_VERSIONS:
            raise ValueError(f"unsupported OpenAPI version {version!r} (versions: 3.1, 3.0)")
        return openapi_document(
            self.routes(), flavor=self._flavor, version=SPEC_VERSIONS[version], app_version=_VERSION
        )

    def swagger(self, host: str | None = None) -> dict[str, Any]:
        """Swagger 2.0 document of the current flavor."""
        return swagger_document(self.routes(), flavor=self._flavor, app_version=_VERSION, host=host)

    # -- faults ------------------------------------------------------------
    def set_fault(self, module: str, fault: Fault | Sequence[Fault]) -> None:
        """Replace the faults of ``module`` (one fault or a list, combined).

        Raises ``KeyError`` for an unknown module and ``ValueError``/``TypeError``
        for an invalid fault; nothing changes in that case.
        """
        faults = list(fault) if isinstance(fault, (list, tuple)) else [fault]
        self._fault_book.set(module, faults)  # type: ignore[arg-type]

    def clear_fault(self, module: str) -> None:
        """Make ``module`` healthy again."""
        self._fault_book.clear(module)

    def clear_faults(self) -> None:
        """Make every module healthy, including the default ETF paywall."""
        self._fault_book.clear()

    def faults(self) -> dict[str, list[Fault]]:
        """Installed faults per module."""
        return {m: self._fault_book.get(m) for m in MODULE_KEYS}

    def faults_json(self) -> dict[str, list[dict[str, Any]]]:
        return self._fault_book.snapshot()

    def draw_fault(self, module: str) -> tuple[float, Fault | None]:
        """Delay in seconds and outcome fault (or ``None``) for one request."""
        return self._fault_book.draw(module)

    # -- counters ------------------------------------------------------------
    @property
    def counter_book(self) -> Counters:
        return self._counters

    def counters(self) -> dict[str, Any]:
        """Copy of the counters: ``{module: {requests, by_status, by_route}}``."""
        return self._counters.snapshot()

    def reset_counters(self) -> None:
        self._counters.reset()

    # -- data ------------------------------------------------------------------
    def build(self, module: str, args: Mapping[str, Any]) -> msgspec.Struct:
        """Payload of ``module`` for validated arguments (``NoEtfError`` for etf)."""
        market = self.market
        base = args["base"]
        if module == "whale":
            return market.whale_alerts(base)
        if module == "etf":
            return market.etf_flows(base)
        if module == "heatmap":
            return market.heatmap(base, args["timeframe"])
        if module == "spot_ob":
            return market.order_book(base, args["exchange"], args["depth"])
        if module == "bias":
            return market.bias(base)
        if module == "funding":
            return market.funding(base)
        raise KeyError(module)
