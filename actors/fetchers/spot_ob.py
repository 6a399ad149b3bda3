"""Spot order book of the asset on one exchange."""

from __future__ import annotations

import itertools

from messages import OrderBook, Payload

from ..fetcher import ModuleFetcher


class SpotOrderBookFetcher(ModuleFetcher):
    """Fetches a depth-limited spot order book (a core module)."""

    module = "spot_ob"
    payload_type = OrderBook

    def check(self, payload: Payload) -> str | None:
        assert isinstance(payload, OrderBook)
        if not payload.bids or not payload.asks:
            return "order book has an empty side"
        if payload.bids[0][0] >= payload.asks[0][0]:
            return f"crossed book: best bid {payload.bids[0][0]} >= best ask {payload.asks[0][0]}"
        if any(a[0] <= b[0] for a, b in itertools.pairwise(payload.bids)):
            return "bids are not in descending price order"
        if any(a[0] >= b[0] for a, b in itertools.pairwise(payload.asks)):
            return "asks are not in ascending price order"
        return None
