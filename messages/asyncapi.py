"""AsyncAPI 3.0 document of the wire contract, derived from the channel catalogue and the message schema.

`sniper asyncapi` prints it; `docs/asyncapi.yaml` is its committed copy, kept
current by a test. Operations are written from sniper's side: ``send`` for what
sniper publishes (bots subscribe), ``receive`` for the commands it answers
(request/reply: the reply goes to the requester's inbox).

AsyncAPI's default schema format is JSON Schema draft 7 with a few extras, so
the 2020-12 keywords of `message_schema` are spelled in draft 7 here
(``prefixItems`` -> ``items``, ``dependentRequired`` -> ``dependencies``).
"""

from __future__ import annotations

from typing import Any

from ._base import SCHEMA_VERSION
from .catalogue import CHANNELS, PARAMETERS, Channel
from .schema import message_schema
from .subjects import DEFAULT_PREFIX, Subjects


def _draft7(node: Any) -> Any:
    """A 2020-12 schema node in draft 7 keywords, refs pointing at ``components/schemas``."""
    if isinstance(node, list):
        return [_draft7(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _draft7(value) for key, value in node.items() if key not in ("$schema", "$id")}
    if isinstance(out.get("$ref"), str):
        out["$ref"] = out["$ref"].replace("#/$defs/", "#/components/schemas/")
    if "prefixItems" in out:
        closed = out.get("items") is False
        out["items"] = out.pop("prefixItems")
        if closed:
            out["additionalItems"] = False
    if "dependentRequired" in out:
        out["dependencies"] = out.pop("dependentRequired")
    return out


def _message_ref(tp: type) -> dict[str, str]:
    return {"$ref": f"#/components/messages/{tp.__name__}"}


def _channel(ch: Channel, subjects: Subjects) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "address": ch.address_of(subjects),
        "description": ch.description,
        "messages": {tp.__name__: _message_ref(tp) for tp in ch.messages},
    }
    if ch.parameters:
        doc["parameters"] = {p: {"description": PARAMETERS[p]} for p in ch.parameters}
    return doc


def _operation(ch: Channel) -> tuple[str, dict[str, Any]]:
    verb = "publish" if ch.sent_by_sniper else "answer"
    name = f"{verb}{ch.name[0].upper()}{ch.name[1:]}"
    op: dict[str, Any] = {
        "action": "send" if ch.sent_by_sniper else "receive",
        "channel": {"$ref": f"#/channels/{ch.name}"},
        "messages": [{"$ref": f"#/channels/{ch.name}/messages/{tp.__name__}"} for tp in ch.messages],
    }
    if ch.reply is not None:
        op["reply"] = {
            "address": {
                "location": "$message.header#/reply_to",
                "description": "The request's NATS reply subject (the requester's inbox).",
            },
            "channel": {"$ref": f"#/channels/{ch.name}Reply"},
            "messages": [{"$ref": f"#/channels/{ch.name}Reply/messages/{ch.reply.__name__}"}],
        }
    if ch.queue is not None:
        op["bindings"] = {"nats": {"queue": ch.queue}}
    return name, op


def asyncapi_document(prefix: str = DEFAULT_PREFIX, *, version: str = "0") -> dict[str, Any]:
    """The AsyncAPI 3.0 document for a pipeline under `prefix`."""
    subjects = Subjects(prefix)
    schema = message_schema()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for ch in CHANNELS:
        channels[ch.name] = _channel(ch, subjects)
        if ch.reply is not None:
            channels[f"{ch.name}Reply"] = {
                "address": None,
                "description": f"The reply to {ch.name}: sent to the requester's inbox.",
                "messages": {ch.reply.__name__: _message_ref(ch.reply)},
            }
        name, op = _operation(ch)
        operations[name] = op
    used = sorted({tp.__name__ for ch in CHANNELS for tp in (*ch.messages, *((ch.reply,) if ch.reply else ()))})
    messages = {
        name: {
            "name": name,
            "title": name,
            "summary": schema["$defs"][name].get("description", "").split("\n\n")[0],
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
        for name in used
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "sniper",
            "version": version,
            "description": "sniper's NATS contract: signals for bots, events for operators, request/reply "
            f"commands, and the key-value buckets behind them. Messages are JSON, schema version {SCHEMA_VERSION}, "
            f"tagged by `type`; the JSON Schema is `sniper schema` ({schema['$id']}).",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:4222",
                "protocol": "nats",
                "description": "A local nats-server (`sniper demo` starts one on a free port and prints it).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": _draft7(schema["$defs"])},
    }
