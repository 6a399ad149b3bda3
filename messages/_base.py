"""The base every wire message derives from.

Why these Struct options:

* ``frozen=True``: a message is a fact that happened; nobody downstream may
  change it (Nautilus Trader's habit), and frozen Structs are hashable.
* ``kw_only=True``: producers in other languages build messages by name, and
  so should we; adding a field never shifts positions.
* ``tag_field="type"`` with snake_case tags: one typed decoder for a union of
  messages dispatches on ``type`` (msgspec's asyncio-kv example), and a bot in
  any language can switch on it too.
* ``v``: the schema version. Adding an optional field does not bump it;
  renaming or retyping one does, and decoders reject versions newer than they
  know instead of misreading them.
* Bounded everything: every int below 2^53, every float finite and inside a
  range, every string, dict and list no longer than its limit (below).
"""

from __future__ import annotations

import re
from typing import Annotated, TypeVar

import msgspec

SCHEMA_VERSION = 1

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def snake_tag(class_name: str) -> str:
    """`ModuleData` -> `module_data`: the value of the ``type`` field on the wire."""
    return _CAMEL.sub("_", class_name).lower()


# -- Limits -------------------------------------------------------------------
# Every bound a decoder enforces is declared here, once, as a constant and an
# Annotated type (README, "Limits"). A message that breaks one is a
# DecodeError, so no producer can hand a consumer a number JavaScript cannot
# hold, an infinity, a megabyte of "why", or a dict of ten thousand modules.
# The JSON Schema (`sniper schema`) shows every bound to other bots.

#: Largest integer every JSON reader holds exactly (JavaScript's Number.MAX_SAFE_INTEGER).
MAX_SAFE_INT = 2**53 - 1
#: Latest timestamp accepted, in seconds since the epoch (the year 5138).
MAX_TIMESTAMP = 1e11
#: Longest duration accepted, in seconds (about 31 years).
MAX_SECONDS = 1e9
#: Longest latency accepted, in milliseconds (about 2.8 hours).
MAX_LATENCY_MS = 1e7
#: Most entries in a dict keyed by module (or flag) and in a list of modules.
MAX_MODULES = 32
#: Most breaker states in one reply (modules x scopes).
MAX_CIRCUITS = 1024
#: Most assets one status reply describes (ask for one asset to see any other).
MAX_STATUS_ASSETS = 64
#: Most parameters of one route; most notes per module in a route map.
MAX_ITEMS = 32
#: Longest operator note: `who` and `why` of a flag change.
MAX_NOTE = 200
#: Longest explanation: `detail` of a degradation or breaker, a module's reason in a signal or route map.
MAX_DETAIL = 500
#: Longest error text: an exception an actor died of, an error in a command reply.
MAX_ERROR = 1000
#: Longest host name (DNS: 253 characters).
MAX_HOST = 253
#: Longest route path template.
MAX_PATH = 2048
#: Longest short term: a parameter name or value, a symbol form, a spec version.
MAX_TERM = 128

# Every name pattern ends in (?!\n)$: Python's `$` also matches before a final
# newline, so "etf\n" would pass a plain ^...$ and then break a subject. The
# lookahead is valid ECMAScript too, so other bots' validators read it the same.
ASSET_PATTERN = r"^[A-Z0-9]{1,20}(?!\n)$"
MODULE_PATTERN = r"^[a-z][a-z0-9_]{0,31}(?!\n)$"

Asset = Annotated[str, msgspec.Meta(pattern=ASSET_PATTERN, description="Base asset, e.g. SOL")]
Module = Annotated[str, msgspec.Meta(pattern=MODULE_PATTERN, description="Module name, e.g. spot_ob")]
Modules = Annotated[tuple[Module, ...], msgspec.Meta(max_length=MAX_MODULES)]


class _Names:
    """Names already seen valid, so the hot path checks a set instead of running a regex.

    msgspec runs a `pattern` through Python's `re` on every decode: for a Tick
    (an asset and its modules) that was most of the decode time. The messages
    every cycle carries (Tick, ModuleData, Degraded) bound the length in the
    decoder and check the characters in `__post_init__` through this memo; the
    JSON Schema shows the same pattern. At most `limit` names are remembered,
    so a flood of distinct valid names costs a regex each, never memory.
    """

    __slots__ = ("_match", "_seen", "limit", "pattern", "what")

    def __init__(self, pattern: str, what: str, *, limit: int = 4096) -> None:
        self.pattern, self.what, self.limit = pattern, what, limit
        self._match = re.compile(pattern).match
        self._seen: set[str] = set()

    def check(self, value: str) -> None:
        if value in self._seen:
            return
        if not self._match(value):
            raise ValueError(f"{self.what} {value!r}: expected `str` matching regex {self.pattern!r}")
        if len(self._seen) < self.limit:
            self._seen.add(value)


ASSET_NAMES = _Names(ASSET_PATTERN, "asset")
MODULE_NAMES = _Names(MODULE_PATTERN, "module")
#: An asset or module on the per-cycle messages: length bounded by the decoder,
#: characters checked by `ASSET_NAMES` / `MODULE_NAMES` in `__post_init__`.
CycleAsset = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=20, extra_json_schema={"pattern": ASSET_PATTERN}, description="Base asset, e.g. SOL"
    ),
]
CycleModule = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=32,
        extra_json_schema={"pattern": MODULE_PATTERN},
        description="Module name, e.g. spot_ob",
    ),
]
V = TypeVar("V")
#: A dict keyed by module name: ``ByModule[ModuleStatus]``.
ByModule = Annotated[dict[Module, V], msgspec.Meta(max_length=MAX_MODULES)]
Timestamp = Annotated[
    float, msgspec.Meta(ge=0, le=MAX_TIMESTAMP, description="Seconds since the Unix epoch (finite, at most 1e11)")
]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS, description="A duration in seconds (at most 1e9)")]
LatencyMs = Annotated[float, msgspec.Meta(ge=0, le=MAX_LATENCY_MS, description="Milliseconds (at most 1e7)")]
Cycle = Annotated[
    int, msgspec.Meta(ge=0, le=MAX_SAFE_INT, description="Per-asset cycle number, starting at 0 (below 2^53)")
]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INT, description="A count or revision (below 2^53)")]
#: A fencing token: the lease term of the singleton that published a message (0: published without a lease).
#: Receivers ignore a message whose fence is below the highest they have seen from that singleton.
Fence = Annotated[
    int,
    msgspec.Meta(ge=0, le=MAX_SAFE_INT, description="Fencing token: the publisher's lease term (0: no lease)"),
]
HttpStatus = Annotated[int, msgspec.Meta(ge=100, le=999, description="An HTTP status code")]
ActorName = Annotated[
    str,
    msgspec.Meta(pattern=r"^[A-Za-z0-9_\-]{1,64}(?!\n)$", description="Actor name, a subject token, e.g. fetch-whale"),
]
FlagName = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9_]{0,31}(?!\n)$", description="Feature flag, e.g. SPOT_OB")
]
FlagArgument = Annotated[
    str,
    msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}(?!\n)$", description="Feature flag in any case, e.g. etf"),
]
Scope = Annotated[
    str, msgspec.Meta(pattern=r"^(all|[A-Z0-9]{1,20})(?!\n)$", description="'all' (module-wide) or an asset")
]
Note = Annotated[str, msgspec.Meta(max_length=MAX_NOTE)]
Detail = Annotated[str, msgspec.Meta(max_length=MAX_DETAIL)]
ErrorText = Annotated[str, msgspec.Meta(max_length=MAX_ERROR)]
Hostname = Annotated[str, msgspec.Meta(max_length=MAX_HOST)]
Term = Annotated[str, msgspec.Meta(max_length=MAX_TERM)]
Version = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INT, description="Schema version of the message")]


class Message(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    tag_field="type",
    tag=snake_tag,
    omit_defaults=False,
):
    """Base of every message on the bus."""

    v: Version = SCHEMA_VERSION
