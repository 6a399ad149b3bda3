"""Spot-ETF flows: keyed by BTC or ETH, never by the traded asset.

Only BTC and ETH have spot ETFs. Every other asset reads BTC's flows as a
market-wide risk gauge (configurable), so 100 assets share one request per
key: answers are single-flight and cached, since the data is daily.
"""

from __future__ import annotations

from typing import Any

import msgspec

from messages import EtfFlows, ModulePayload
from messages.modules import MAX_ETF_ISSUERS

from ..fetcher import ModuleFetcher, keep_best

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

    def normalise(self, payload: ModulePayload) -> ModulePayload:
        """The `MAX_ETF_ISSUERS` issuers with the largest flows (the net flow is the backend's, untouched)."""
        assert isinstance(payload, EtfFlows)
        issuers = keep_best(payload.issuers, MAX_ETF_ISSUERS, key=lambda i: -abs(i.flow_usd))
        return payload if issuers is payload.issuers else msgspec.structs.replace(payload, issuers=issuers)
