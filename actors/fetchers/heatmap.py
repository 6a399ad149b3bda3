"""Liquidation heatmap of the asset's perpetual swap."""

from __future__ import annotations

from messages import LiquidationHeatmap, Payload

from ..fetcher import ModuleFetcher


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
