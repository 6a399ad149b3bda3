"""Spot-ETF flows: keyed by BTC or ETH, never by the traded asset.

Only BTC and ETH have spot ETFs. Every other asset reads BTC's flows as a
market-wide risk gauge (configurable), so 100 assets share one request per
key: answers are single-flight and cached, since the data is daily.
"""

from __future__ import annotations

from typing import Any

from messages import EtfFlows

from ..fetcher import ModuleFetcher

ETF_ASSETS = frozenset({"BTC", "ETH"})


class EtfFetcher(ModuleFetcher):
    """Fetches BTC/ETH spot-ETF net flows (an optional module: a paid route in the seed)."""

    module = "etf"
    payload_type = EtfFlows
    cache_ttl = 60.0

    def __init__(self, *args: Any, proxy_asset: str = "BTC", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if proxy_asset not in ETF_ASSETS:
            raise ValueError(f"ETF proxy asset must be one of {sorted(ETF_ASSETS)}, not {proxy_asset!r}")
        self.proxy_asset = proxy_asset

    def key_for(self, asset: str) -> str:
        return asset if asset in ETF_ASSETS else self.proxy_asset
