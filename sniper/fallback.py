"""Which venues a module falls back to, and where they are: the ``--fallback`` settings (issue 16).

Off by default: a module is asked of the backend only. ``--fallback
spot_ob=binance,okx;bias=okx`` (``SNIPER_FALLBACK``) names, per module, the
venues to try in order when the backend fails it. The venues and what each
serves are declared once, in `actors.venues` (``SOURCES``, each class's
``modules``); a pair that cannot work (ETF from a venue, heatmap from Bybit)
is a configuration error naming what can. The base URLs are overridable for
tests, proxies and testnets; ``--venue-share`` is the part of each venue's
documented rate limit this process may use (several processes on one IP
address should split it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from actors.upstream import Transport
from actors.venues import (
    BINANCE_FUTURES_API,
    BINANCE_SPOT_API,
    BYBIT_API,
    OKX_API,
    SOURCES,
    BinanceSource,
    BybitSource,
    OkxSource,
    VenueSource,
)
from messages.modules import REGISTRY, VENUES
from runtime.clock import Clock

#: Each venue's modules, as its client declares them.
SERVES: dict[str, frozenset[str]] = {name: cls.modules for name, cls in SOURCES.items()}


def parse_fallback(text: str) -> dict[str, tuple[str, ...]]:
    """``spot_ob=binance,okx;bias=okx`` -> {"spot_ob": ("binance", "okx"), "bias": ("okx",)}; "" or "off" -> {}."""
    text = text.strip()
    if text.lower() in ("", "off", "none"):
        return {}
    plan: dict[str, tuple[str, ...]] = {}
    for part in filter(None, (p.strip() for p in text.replace(" ", ";").split(";"))):
        module, eq, venues = part.partition("=")
        names = tuple(dict.fromkeys(v.strip().lower() for v in venues.split(",") if v.strip()))
        if not eq or not module.strip() or not names:
            raise ValueError(f"expected MODULE=VENUE[,VENUE...] (e.g. spot_ob=binance,okx), got {part!r}")
        if module.strip() in plan:
            raise ValueError(f"{module.strip()} is named twice")
        plan[module.strip()] = names
    return plan


def fallback_problem(plan: Mapping[str, tuple[str, ...]]) -> str | None:
    """Why `plan` cannot work (an unknown venue, a venue that does not serve the module), or None."""
    for module, venues in plan.items():
        if module not in REGISTRY:
            return f"unknown module {module!r}; known: {', '.join(REGISTRY)}"
        can = sorted(name for name, modules in SERVES.items() if module in modules)
        for venue in venues:
            if venue not in SERVES:
                return f"unknown venue {venue!r}; known: {', '.join(VENUES)}"
            if module not in SERVES[venue]:
                options = f"{module} can fall back to {', '.join(can)}" if can else f"{module} has no public source"
                return f"{venue} does not serve {module}: {options}"
    return None


@dataclass(frozen=True)
class FallbackSettings:
    """The fallback plan and the venues' base URLs."""

    plan: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    binance_api: str = BINANCE_SPOT_API
    binance_futures_api: str = BINANCE_FUTURES_API
    okx_api: str = OKX_API
    bybit_api: str = BYBIT_API
    venue_share: float = 0.5

    @property
    def venues(self) -> tuple[str, ...]:
        """The venues the plan uses, in the order they are declared (each has a flag: ``BINANCE``, ...)."""
        used = {venue for venues in self.plan.values() for venue in venues}
        return tuple(name for name in VENUES if name in used)


def build_sources(
    settings: FallbackSettings, transport: Transport, clock: Clock, *, depth: int, timeframe: str
) -> dict[str, tuple[VenueSource, ...]]:
    """Per module, its fallback sources in order; one client per venue (its rate limits), shared by its modules."""
    share = settings.venue_share
    made: dict[str, VenueSource] = {}
    for name in settings.venues:
        if name == "binance":
            made[name] = BinanceSource(
                transport,
                clock=clock,
                api=settings.binance_api,
                futures_api=settings.binance_futures_api,
                depth=depth,
                share=share,
            )
        elif name == "okx":
            made[name] = OkxSource(
                transport, clock=clock, api=settings.okx_api, depth=depth, share=share, timeframe=timeframe
            )
        else:
            made[name] = BybitSource(transport, clock=clock, api=settings.bybit_api, depth=depth, share=share)
    return {module: tuple(made[v] for v in venues) for module, venues in settings.plan.items()}
