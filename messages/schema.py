"""JSON Schema for every wire message, generated from the Structs themselves.

`sniper schema` prints this, so bots written in other languages can validate
or generate code from the exact contract this build speaks.
"""

from __future__ import annotations

import inspect
from typing import Any

import msgspec

from ._base import SCHEMA_VERSION


def normalise(schema: Any) -> Any:
    """The schema with every ``description`` and ``title`` passed through ``inspect.cleandoc``.

    Docstrings become descriptions, and how a dependency indents them is an
    accident (msgspec 0.23 strips the indentation 0.22 kept). Both the generator
    and the docs test apply this, so only the contract itself is compared.
    """
    if isinstance(schema, dict):
        return {
            key: inspect.cleandoc(value)
            if key in ("description", "title") and isinstance(value, str)
            else normalise(value)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [normalise(item) for item in schema]
    return schema


def _normalised_document(schema: dict[str, Any]) -> dict[str, Any]:
    normalised: dict[str, Any] = normalise(schema)
    return normalised


def message_schema() -> dict[str, Any]:
    """One JSON Schema document: ``oneOf`` over every message, tagged by ``type``."""
    from . import ALL_MESSAGE_TYPES

    (refs,), components = msgspec.json.schema_components([ALL_MESSAGE_TYPES], ref_template="#/$defs/{name}")
    return _normalised_document(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "sniper wire messages",
            "description": f"Every message sniper publishes, schema version {SCHEMA_VERSION}. "
            "Dispatch on the 'type' field.",
            **refs,
            "$defs": components,
        }
    )


def upstream_schema() -> dict[str, Any]:
    """JSON Schema of the body each module's backend route must return (the upstream contract)."""
    from .modules import PAYLOAD_TYPES

    (*refs,), components = msgspec.json.schema_components(list(PAYLOAD_TYPES.values()), ref_template="#/$defs/{name}")
    return _normalised_document(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "sniper upstream payloads",
            "description": "The JSON body each module's backend route must return; the 'module' tag is optional.",
            "properties": dict(zip(PAYLOAD_TYPES, refs, strict=True)),
            "$defs": components,
        }
    )
