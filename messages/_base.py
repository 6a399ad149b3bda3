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
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

SCHEMA_VERSION = 1

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def snake_tag(class_name: str) -> str:
    """`ModuleData` -> `module_data`: the value of the ``type`` field on the wire."""
    return _CAMEL.sub("_", class_name).lower()


Asset = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{1,20}$", description="Base asset, e.g. SOL")]
Module = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="Module name, e.g. spot_ob")]
Timestamp = Annotated[float, msgspec.Meta(ge=0, description="Seconds since the Unix epoch")]
Cycle = Annotated[int, msgspec.Meta(ge=0, description="Per-asset cycle number, starting at 0")]


class Message(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    tag_field="type",
    tag=snake_tag,
    omit_defaults=False,
):
    """Base of every message on the bus."""

    v: int = SCHEMA_VERSION
