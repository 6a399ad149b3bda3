"""Venue public APIs as module sources: the fallback when the backend lacks a module (issue 16).

Why: the seed lost its order book and heatmap because the backend did not
have them where the client looked; when the backend truly lacks a module, or
is down, the same data is public and keyless at the venues. These are thin
clients with ccxt's shape (books: bids descending, asks ascending) but none
of its weight, one file per venue:

=======  ===============================  ===================================================
venue    serves                           not served, and limits (details: the venue's file)
=======  ===============================  ===================================================
binance  spot_ob, bias, funding           heatmap: no REST liquidation history any more
okx      spot_ob, bias, funding, heatmap  heatmap = OKX's own recently filled liquidations
bybit    spot_ob                          bias, funding, heatmap: not asked of Bybit yet
=======  ===============================  ===================================================

``whale`` and ``etf`` have no public source. A fetcher calls::

    source = BinanceSource(transport, clock=clock)      # api=... overrides the base URL
    payload, outcome = await source.fetch("spot_ob", "SOL", budget=1.5)
    # payload: the module's Struct, checked and trimmed like a backend body, or None;
    # outcome: an actors.upstream.Outcome with upstream.py's error classes and reasons

`fetch` never raises. A module the venue does not serve is ``endpoint_missing``
with ``called=False``; so is an asset the venue cannot spell. Each source keeps
a sliding-window rate limit per documented limit (a `share` of it, default
half) and holds off after a throttle answer until its Retry-After has passed,
answering ``throttled`` with ``called=False`` meanwhile. Everything reads time
from the injected clock. Share one `actors.upstream.AiohttpTransport` per
process (the sources never close it).
"""

from __future__ import annotations

from typing import Protocol

from actors.upstream import Outcome
from messages import ModulePayload

from ._client import DEFAULT_SHARE, RateLimit
from .binance import BINANCE_FUTURES_API, BINANCE_SPOT_API, BinanceSource
from .bybit import BYBIT_API, BybitSource
from .okx import OKX_API, OkxSource


class VenueSource(Protocol):
    """What a fetcher needs of a fallback source."""

    @property
    def name(self) -> str:
        """``binance``, ``okx``, ``bybit``: what ``ModuleStatus.source`` will say."""
        ...

    @property
    def modules(self) -> frozenset[str]:
        """The modules this source can serve."""
        ...

    async def fetch(self, module: str, asset: str, *, budget: float) -> tuple[ModulePayload | None, Outcome]:
        """The module's payload for `asset` within `budget` seconds, or None and why; never raises."""
        ...


#: Source classes by venue name (each takes ``transport, *, clock, api=..., depth=, quote=, share=``).
SOURCES: dict[str, type[BinanceSource | OkxSource | BybitSource]] = {
    "binance": BinanceSource,
    "okx": OkxSource,
    "bybit": BybitSource,
}

__all__ = [
    "BINANCE_FUTURES_API",
    "BINANCE_SPOT_API",
    "BYBIT_API",
    "DEFAULT_SHARE",
    "OKX_API",
    "SOURCES",
    "BinanceSource",
    "BybitSource",
    "OkxSource",
    "RateLimit",
    "VenueSource",
]
