"""Whale alerts: large on-chain transfers of the traded asset."""

from __future__ import annotations

from messages import WhaleAlerts

from ..fetcher import ModuleFetcher


class WhaleFetcher(ModuleFetcher):
    """Fetches recent whale transfers for the asset (a core module)."""

    module = "whale"
    payload_type = WhaleAlerts
