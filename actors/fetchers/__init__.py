"""One fetcher actor per module; the shared behaviour is in `actors.fetcher`."""

from __future__ import annotations

from ..fetcher import ModuleFetcher
from .bias import BiasFetcher
from .etf import EtfFetcher
from .heatmap import HeatmapFetcher
from .spot_ob import SpotOrderBookFetcher
from .whale import WhaleFetcher

#: Module name -> fetcher class, in the order modules are listed everywhere.
FETCHERS: dict[str, type[ModuleFetcher]] = {
    cls.module: cls for cls in (WhaleFetcher, EtfFetcher, HeatmapFetcher, SpotOrderBookFetcher, BiasFetcher)
}
MODULES: tuple[str, ...] = tuple(FETCHERS)

__all__ = [
    "FETCHERS",
    "MODULES",
    "BiasFetcher",
    "EtfFetcher",
    "HeatmapFetcher",
    "SpotOrderBookFetcher",
    "WhaleFetcher",
]
