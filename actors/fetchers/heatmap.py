"""Liquidation heatmap of the asset's perpetual swap."""

from __future__ import annotations

import msgspec

from messages import LiquidationHeatmap, ModulePayload, Payload
from messages.modules import MAX_HEATMAP_LEVELS

from ..fetcher import ModuleFetcher, keep_best


class HeatmapFetcher(ModuleFetcher):
    """Fetches liquidation clusters around the price (a core module)."""

    module = "heatmap"
    payload_type = LiquidationHeatmap

    def check(self, payload: Payload) -> str | None:
        assert isinstance(payload, LiquidationHeatmap)
        wrong = [lv for lv in payload.levels if (lv.side == "short") != (lv.price > payload.price)]
        if len(wrong) > len(payload.levels) // 2:
            return "liquidation sides contradict the price (shorts should sit above, longs below)"
        return None

    def normalise(self, payload: ModulePayload) -> ModulePayload:
        """The `MAX_HEATMAP_LEVELS` clusters nearest to the price (the ones scoring weighs most)."""
        assert isinstance(payload, LiquidationHeatmap)
        price = payload.price
        levels = keep_best(payload.levels, MAX_HEATMAP_LEVELS, key=lambda lv: abs(lv.price - price))
        return payload if levels is payload.levels else msgspec.structs.replace(payload, levels=levels)
