"""Spot order book of the asset on one exchange."""

from __future__ import annotations

import itertools

import msgspec

from messages import ModulePayload, OrderBook, Payload
from messages.modules import MAX_BOOK_LEVELS

from ..fetcher import ModuleFetcher


class SpotOrderBookFetcher(ModuleFetcher):
    """Fetches a depth-limited spot order book (a core module).

    A backend may send more levels than asked for; the best `depth` per side
    are kept (the configured depth, at most `MAX_BOOK_LEVELS`).
    """

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

    @property
    def depth(self) -> int:
        """Levels kept per side."""
        return max(1, min(self.settings.depth, MAX_BOOK_LEVELS))

    def normalise(self, payload: ModulePayload) -> ModulePayload:
        """The best `depth` levels per side (`check` has made sure the sides are sorted)."""
        assert isinstance(payload, OrderBook)
        depth = self.depth
        if len(payload.bids) <= depth and len(payload.asks) <= depth:
            return payload
        return msgspec.structs.replace(payload, bids=payload.bids[:depth], asks=payload.asks[:depth])
