"""How to ask the backend for a module: a route and how each parameter is bound.

A `Route` is data, not code, so the DiscoveryActor can build routes from a
backend's OpenAPI document and publish them (`RouteMap` on ``routes``), and a
fetcher on any host can use them. Each parameter is bound by *role*: the
fetcher knows what a symbol, a timeframe or a depth is; the route says where
it goes (path or query), under which name, and in which symbol form.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ._base import (
    MAX_ITEMS,
    MAX_PATH,
    ByModule,
    Count,
    Detail,
    Fence,
    Message,
    Module,
    Term,
    Timestamp,
)

ParamRole = Literal["symbol", "asset", "timeframe", "depth", "exchange", "const"]


class ParamBinding(msgspec.Struct, frozen=True, kw_only=True):
    """One request parameter: its name, where it goes, what fills it (strings at most 128 characters)."""

    name: Term
    location: Literal["path", "query"] = "query"
    role: ParamRole
    #: Symbol form for role=symbol (see actors.symbols.detect_form), e.g. "okx_swap".
    form: Term | None = None
    #: Lower-case the symbol (APIs that want ``solusdt``).
    lower: bool = False
    #: Fixed value for role=const, or the default when the role has no value.
    value: Term | None = None
    required: bool = True


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """A GET route for one module; `path` is a template like ``/book/{venue}/{pair}`` (at most 2048 characters).

    At most 32 parameters.
    """

    module: Module
    path: Annotated[str, msgspec.Meta(max_length=MAX_PATH)]
    method: Literal["GET"] = "GET"
    params: Annotated[tuple[ParamBinding, ...], msgspec.Meta(max_length=MAX_ITEMS)] = ()


RouteSource = Literal["default", "openapi", "alias", "learned"]
Notes = Annotated[list[Detail], msgspec.Meta(max_length=MAX_ITEMS)]


class RouteMap(Message, frozen=True, kw_only=True):
    """The routes fetchers should use, and why a module has none.

    `origin` says per module where its route came from (``openapi``: bound
    from the backend's spec; ``alias``: a known path that answered a probe;
    ``default``: the built-in routes); `notes` keeps what binding had to guess
    or choose (e.g. a timeframe the backend's enum lacks).

    Every dict is keyed by module name, at most 32 entries; a reason in
    `unusable` is at most 500 characters, as is each of at most 32 notes per module.
    """

    ts: Timestamp
    source: RouteSource
    routes: ByModule[Route] = msgspec.field(default_factory=dict)
    unusable: ByModule[Detail] = msgspec.field(default_factory=dict)
    origin: ByModule[RouteSource] = msgspec.field(default_factory=dict)
    notes: ByModule[Notes] = msgspec.field(default_factory=dict)
    spec_version: Term | None = None
    revision: Count = 0
    #: Discovery's lease term: fetchers ignore a map fenced below the highest they have seen.
    fence: Fence = 0
