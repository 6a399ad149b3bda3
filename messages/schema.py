"""JSON Schema for every wire message, generated from the Structs themselves.

`sniper schema` prints this, so bots written in other languages can validate
or generate code from the exact contract this build speaks. msgspec writes
the schema; this module makes it one that any validator takes as is:

* standard JSON Schema 2020-12 only: no OpenAPI ``discriminator`` (ajv's strict
  mode rejects it, and Python's ``jsonschema`` silently ignores it);
* a root ``$id``, so ``<id>#/$defs/Signal`` names one message from outside;
* unions as ``oneOf`` whose branches differ by a ``const`` tag (``type`` for
  messages, ``module`` for payloads);
* ``v`` limited to the versions this build decodes;
* commands described as sniper accepts them: ``type`` optional, a flag name
  in any case of a known flag, ``flag`` and ``enabled`` together, ``reset``
  with a known module; ``status`` for one asset or all.
"""

from __future__ import annotations

import inspect
from typing import Any

import msgspec

from ._base import SCHEMA_VERSION

#: Identifier of the message schema (an identifier, not a download address).
MESSAGES_ID = f"https://sniper.example/schemas/messages/v{SCHEMA_VERSION}.json"
UPSTREAM_ID = f"https://sniper.example/schemas/upstream/v{SCHEMA_VERSION}.json"
_DRAFT = "https://json-schema.org/draft/2020-12/schema"
#: Oldest schema version a decoder of this build accepts (`messages.codec`).
OLDEST_VERSION = 1


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


def standard(schema: Any) -> Any:
    """`schema` in standard keywords: tagged ``anyOf`` + ``discriminator`` -> ``oneOf``; one-value enum -> ``const``."""
    if isinstance(schema, list):
        return [standard(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: standard(value) for key, value in schema.items() if key != "discriminator"}
    if "discriminator" in schema and "anyOf" in out:
        out["oneOf"] = out.pop("anyOf")  # the branches differ by a const tag: exactly one matches
    if isinstance(out.get("enum"), list) and len(out["enum"]) == 1:
        out["const"] = out.pop("enum")[0]
    return out


def _case_insensitive(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


#: Requests sniper accepts without a ``type`` on their own subject (``cmd.<name>``).
COMMANDS = ("FlagCommand", "CircuitCommand", "StatusQuery", "AlertCommand")


def _root_branch(ref: dict[str, str]) -> dict[str, Any]:
    """At the root every message names its type: commands too, since without it several would match."""
    if ref["$ref"].rsplit("/", 1)[1] in COMMANDS:
        return {**ref, "type": "object", "required": ["type"]}
    return ref


def _refine_commands(defs: dict[str, Any]) -> None:
    """Describe the commands as the flag keeper, circuit supervisor and status keeper accept them."""
    from .modules import MODULES, REGISTRY

    flags = sorted(spec.flag for spec in REGISTRY.values())
    for name in COMMANDS:
        defs[name]["required"] = [r for r in defs[name]["required"] if r != "type"]
    flag = defs["FlagCommand"]["properties"]["flag"]["anyOf"][0]
    flag["pattern"] = f"^(?:{'|'.join(_case_insensitive(f) for f in flags)})$"
    flag["description"] = f"A known feature flag, in any case: {', '.join(flags)}"
    defs["FlagCommand"]["dependentRequired"] = {"flag": ["enabled"], "enabled": ["flag"]}
    module = defs["CircuitCommand"]["properties"]["module"]["anyOf"][0]
    module.pop("pattern", None)
    module["enum"] = list(MODULES)
    defs["CircuitCommand"]["if"] = {"properties": {"action": {"const": "reset"}}}
    defs["CircuitCommand"]["then"] = {"required": ["module"], "properties": {"module": {"type": "string"}}}
    asset = defs["StatusQuery"]["properties"]["asset"]["anyOf"][0]
    asset["description"] = "One of the assets the pipeline runs (--assets), e.g. SOL; another is answered ok=false"


def _limit_versions(defs: dict[str, Any]) -> None:
    for definition in defs.values():
        version = definition.get("properties", {}).get("v")
        if version is not None:
            version["minimum"], version["maximum"] = OLDEST_VERSION, SCHEMA_VERSION


def message_schema() -> dict[str, Any]:
    """One JSON Schema document: ``oneOf`` over every message, each at ``#/$defs/<Name>``, tagged by ``type``."""
    from . import ALL_MESSAGE_TYPES

    (refs,), components = msgspec.json.schema_components([ALL_MESSAGE_TYPES], ref_template="#/$defs/{name}")
    defs: dict[str, Any] = standard(components)
    _limit_versions(defs)
    _refine_commands(defs)
    document: dict[str, Any] = normalise(
        {
            "$schema": _DRAFT,
            "$id": MESSAGES_ID,
            "title": "sniper wire messages",
            "description": f"Every message sniper publishes or accepts, schema version {SCHEMA_VERSION}. "
            "Dispatch on the 'type' field. A command sent on its own subject may omit 'type': validate it "
            "with #/$defs/<Name> (at the root a command names its type, or several would match).",
            "oneOf": [_root_branch(ref) for ref in refs["anyOf"]],
            "$defs": defs,
        }
    )
    return document


def _reachable(defs: dict[str, Any], name: str) -> dict[str, Any]:
    """The definitions `name` needs, itself first."""
    seen: dict[str, Any] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen[current] = defs[current]
        todo.extend(_refs(defs[current]))
    return seen


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"].rsplit("/", 1)[1]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def message_names() -> tuple[str, ...]:
    """Names `one_message_schema` accepts: every message type on the wire."""
    from . import ALL_MESSAGE_TYPES

    return tuple(tp.__name__ for tp in ALL_MESSAGE_TYPES.__args__)


def one_message_schema(name: str) -> dict[str, Any]:
    """A standalone schema for one message (``sniper schema --message Signal``)."""
    full = message_schema()
    if name not in message_names():
        from .errors import ContractError

        raise ContractError(f"no message called {name!r}; choose from {', '.join(message_names())}")
    return {
        "$schema": _DRAFT,
        "$id": MESSAGES_ID.removesuffix(".json") + f"/{name}.json",
        "title": name,
        "$ref": f"#/$defs/{name}",
        "$defs": _reachable(full["$defs"], name),
    }


def upstream_schema() -> dict[str, Any]:
    """JSON Schema of the body each module's backend route must return (the upstream contract)."""
    from .modules import PAYLOAD_TYPES

    (*refs,), components = msgspec.json.schema_components(list(PAYLOAD_TYPES.values()), ref_template="#/$defs/{name}")
    document: dict[str, Any] = normalise(
        {
            "$schema": _DRAFT,
            "$id": UPSTREAM_ID,
            "title": "sniper upstream payloads",
            "description": "The JSON body each module's backend route must return; the 'module' tag is optional.",
            "properties": dict(zip(PAYLOAD_TYPES, refs, strict=True)),
            "$defs": standard(components),
        }
    )
    return document
