"""Institutional bias (positioning) of the asset's perpetual swap."""

from __future__ import annotations

from messages import InstitutionalBias

from ..fetcher import ModuleFetcher


class BiasFetcher(ModuleFetcher):
    """Fetches the perpetual's positioning score (an optional module)."""

    module = "bias"
    payload_type = InstitutionalBias
