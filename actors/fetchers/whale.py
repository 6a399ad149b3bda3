"""Whale alerts: large on-chain transfers of the traded asset."""

from __future__ import annotations

import msgspec

from messages import ModulePayload, WhaleAlerts
from messages.modules import MAX_WHALE_ALERTS

from ..fetcher import ModuleFetcher, keep_best


class WhaleFetcher(ModuleFetcher):
    """Fetches recent whale transfers for the asset (a core module)."""

    module = "whale"
    payload_type = WhaleAlerts

    def normalise(self, payload: ModulePayload) -> ModulePayload:
        """The newest `MAX_WHALE_ALERTS` alerts."""
        assert isinstance(payload, WhaleAlerts)
        alerts = keep_best(payload.alerts, MAX_WHALE_ALERTS, key=lambda a: -a.ts)
        return payload if alerts is payload.alerts else msgspec.structs.replace(payload, alerts=alerts)
