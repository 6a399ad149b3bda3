"""What a module file declares itself with: the payload base, caps, `ModuleSpec`, scoring helpers.

A module is one file in this package (``whale.py``, ``funding.py``, ...) that
declares everything about it in one `ModuleSpec` named ``SPEC``: its payload
Struct (the upstream contract and what `ModuleData` carries), default route
and known alias paths, the words discovery recognises it by, its symbol form,
its request-key rule, cache lifetime, sanity check and caps, sub-score and
weight, whether it is core by default. Every list of modules in sniper is
derived from the registry (`messages.modules.MODULES`).

**Caps.** Every string of a payload has a maximum length and every number a
finite range (`MAX_MAGNITUDE`), checked when a body is decoded, so a 2 MB
string or a 1e308 flow is `bad_payload` instead of a crash or a NaN score.
Lists are not rejected for being long (a 10^6-level sorted book is a valid
answer): each module's `normalise` trims its payload to the module's own
``MAX_*`` counts after validating it, so the `ModuleData` a fetcher publishes
stays far below the broker's 1 MiB message limit whatever the backend sends
(``tests/actors/test_hostile_upstream.py`` computes the worst case).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import msgspec

from ..routes import ParamBinding, Route

NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
UnitScore = Annotated[float, msgspec.Meta(ge=-1, le=1)]

#: Largest magnitude of any payload number: USD values, prices, sizes, times.
#: Sums over capped lists stay finite, so scoring cannot overflow.
MAX_MAGNITUDE = 1e15
#: Longest strings, in characters.
MAX_SYMBOL_CHARS = 64  # symbols, exchanges
MAX_LABEL_CHARS = 64  # alert ids, wallet labels
MAX_TX_CHARS = 128  # transaction hashes and signatures
MAX_SHORT_CHARS = 32  # windows, timeframes, dates, tickers

Amount = Annotated[float, msgspec.Meta(ge=0, le=MAX_MAGNITUDE)]
Price = Annotated[float, msgspec.Meta(gt=0, le=MAX_MAGNITUDE)]
Signed = Annotated[float, msgspec.Meta(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]
EpochSeconds = Annotated[
    float, msgspec.Meta(ge=0, le=MAX_MAGNITUDE, description="Seconds since the Unix epoch (milliseconds pass too)")
]
Symbol = Annotated[str, msgspec.Meta(max_length=MAX_SYMBOL_CHARS)]
Label = Annotated[str, msgspec.Meta(max_length=MAX_LABEL_CHARS)]
TxHash = Annotated[str, msgspec.Meta(max_length=MAX_TX_CHARS)]
Short = Annotated[str, msgspec.Meta(max_length=MAX_SHORT_CHARS)]


class Payload(msgspec.Struct, frozen=True, kw_only=True, tag_field="module"):
    """Base of module payloads; the tag is the module name."""


P = TypeVar("P", bound=Payload)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ModuleTerms:
    """How discovery recognises the module's operation in an OpenAPI document (words of path, id, summary, tags)."""

    required: tuple[frozenset[str], ...]  # every group must be present
    bonus: frozenset[str] = frozenset()
    penalty: frozenset[str] = frozenset()


def _no_check(payload: Any) -> str | None:
    return None


def _unchanged(payload: T, depth: int) -> T:
    return payload


@dataclass(frozen=True, slots=True)
class ModuleSpec:
    """Everything sniper knows about one module, declared once (see the package docstring)."""

    name: str
    #: Position in every list of modules (CLI help, signals, metrics): whale 10, etf 20, ...
    order: int
    payload: type[Payload]
    #: One line for help texts and docs.
    summary: str
    #: Core modules decide health: a cycle in which every enabled core module failed is a hard failure.
    core: bool
    #: Weight of the sub-score in the signal (`actors.scoring`).
    weight: float
    #: The sub-score: finite, in [-1, 1], for any payload that decodes (`actors.scoring` clips once more).
    score: Callable[[Any], float]
    #: The route used until discovery says otherwise (the one the reference backend serves by default).
    route: Route
    #: Known namings, most common first, probed when the backend has no usable spec.
    aliases: tuple[Route, ...]
    terms: ModuleTerms
    #: Symbol spelling the module most likely wants when a spec says nothing (`actors.symbols.FORMS`).
    form: str
    #: Assets the backend keys this module by (ETF flows exist for BTC and ETH only); None: the traded asset.
    keyed_by: frozenset[str] | None = None
    #: The key other assets read when `keyed_by` is set (configurable, e.g. `--etf-proxy`).
    proxy: str | None = None
    #: Seconds a successful answer for one key is reused (0: every tick asks).
    cache_ttl: float = 0.0
    #: A reason a decoded payload is unusable (a crossed book), or None.
    check: Callable[[Any], str | None] = _no_check
    #: The payload trimmed to the module's caps; `depth` is the configured order-book depth.
    normalise: Callable[[Any, int], Any] = _unchanged
    #: Feature-flag name (``FEATURE_<FLAG>`` in the environment); default: the name in upper case.
    flag: str = field(default="")
    #: How far a venue's answer (the fallback, `actors.venues`) counts against the backend's, in [0, 1]:
    #: its weight is multiplied by this in score and confidence. 1: the same measure (an order book).
    venue_trust: float = 1.0

    def __post_init__(self) -> None:
        if not self.flag:
            object.__setattr__(self, "flag", self.name.upper())
        tag = self.payload.__struct_config__.tag
        if tag != self.name:
            raise ValueError(f"module {self.name!r}: its payload's tag is {tag!r}")
        if self.route.module != self.name or any(r.module != self.name for r in self.aliases):
            raise ValueError(f"module {self.name!r}: a route names another module")
        if (self.keyed_by is None) != (self.proxy is None) or (self.keyed_by and self.proxy not in self.keyed_by):
            raise ValueError(f"module {self.name!r}: keyed_by and proxy go together, and proxy is one of keyed_by")
        if not (0 <= self.weight <= 1):
            raise ValueError(f"module {self.name!r}: weight {self.weight} is not in [0, 1]")
        if not (0 <= self.venue_trust <= 1):
            raise ValueError(f"module {self.name!r}: venue_trust {self.venue_trust} is not in [0, 1]")

    def key_for(self, asset: str, proxy: str | None = None) -> str:
        """The upstream key for a traded asset: itself, or the proxy for modules keyed by a few assets."""
        if self.keyed_by is None or asset in self.keyed_by:
            return asset
        return proxy or self.proxy or asset


# -- helpers module files share -----------------------------------------------------


def clip(x: float) -> float:
    """`x` within [-1, 1]; NaN is 0.0 (no evidence), never a bound."""
    if math.isnan(x):
        return 0.0
    return max(-1.0, min(1.0, x))


def ratio(pos: float, neg: float) -> float:
    """(pos - neg) / (pos + neg) for non-negative totals; 0.0 when either is not finite or both are 0."""
    if not (math.isfinite(pos) and math.isfinite(neg)):
        return 0.0  # an overflowed or NaN total is no evidence either way (inf/inf must not read as +1)
    total = pos + neg
    if math.isinf(total):  # two finite halves of a huge book: halving is exact and cannot overflow
        pos, neg = pos / 2, neg / 2
        total = pos + neg
    return 0.0 if total <= 0 else clip((pos - neg) / total)


def keep_best(items: tuple[T, ...], n: int, key: Callable[[T], float]) -> tuple[T, ...]:
    """The `n` items with the smallest `key`, in their original order (`items` itself if it is short)."""
    if len(items) <= n:
        return items
    chosen = heapq.nsmallest(n, range(len(items)), key=lambda i: key(items[i]))
    return tuple(items[i] for i in sorted(chosen))


def route(module: str, path: str, *params: ParamBinding) -> Route:
    """A GET route (for `ModuleSpec.route` and `aliases`)."""
    return Route(module=module, path=path, params=params)


def symbol(name: str, form: str, location: str = "query") -> ParamBinding:
    """A symbol parameter in `form` (``base``, ``okx_swap``, ``concat``, ...)."""
    return ParamBinding(name=name, location=location, role="symbol", form=form)  # type: ignore[arg-type]


def role(name: str, role: str, location: str = "query") -> ParamBinding:
    """A parameter filled by role: ``asset``, ``timeframe``, ``depth``, ``exchange``."""
    return ParamBinding(name=name, location=location, role=role)  # type: ignore[arg-type]
