"""One fetcher class per module of the registry; the shared behaviour is in `actors.fetcher`."""

from __future__ import annotations

from messages.modules import REGISTRY

from ..fetcher import ModuleFetcher, fetcher_for

#: Module name -> fetcher class, in the order modules are listed everywhere.
FETCHERS: dict[str, type[ModuleFetcher]] = {name: fetcher_for(spec) for name, spec in REGISTRY.items()}
MODULES: tuple[str, ...] = tuple(FETCHERS)

__all__ = ["FETCHERS", "MODULES"]
