"""GPT Actions: the gateway's own OpenAPI document, and sniper's read endpoints under the prefix.

A custom GPT calls an API from its OpenAPI document, so ``<prefix>/openapi.json``
is the backend's document rewritten for the gateway: `servers` points at the
prefix on the host the caller used, only the allowed paths stay, every
operation has an `operationId` and a `summary` (GPT Actions need both), and
sniper's own read endpoints are added:

    GET <prefix>/sniper/signals            the last signal of every asset
    GET <prefix>/sniper/signals/{asset}    one asset's last signal (404 if none)
    GET <prefix>/sniper/health             is the pipeline producing signals, per asset how old

Their payloads are the wire contract's `Signal` (JSON Schema 2020-12, which
OpenAPI 3.1 uses as is). The signals come from the gateway's live state (the
durable stream at start, then a live subscription).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, Protocol

import msgspec
from aiohttp import web

from messages import Signal
from messages._base import ASSET_PATTERN
from messages.schema import one_message_schema

#: How old a signal may be before its asset counts as stale (seconds), when nothing better is known.
STALE_AFTER = 60.0
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
_NOT_ID = re.compile(r"[^A-Za-z0-9_]+")


class SignalSource(Protocol):
    """Where the read endpoints take signals from (the gateway's live state)."""

    def last_signals(self) -> Mapping[str, Signal]: ...

    @property
    def connected(self) -> bool: ...


def operation_id(method: str, path: str) -> str:
    """A stable operationId from method and path: ``get /institutional/bias`` -> ``get_institutional_bias``."""
    words = _NOT_ID.sub("_", path.replace("{", "by_").replace("}", "")).strip("_")
    return f"{method}_{words}" if words else method


def _components(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A message's schema as OpenAPI 3.1 components: (a $ref to it, the schemas it needs)."""
    schema = one_message_schema(name)
    defs = copy.deepcopy(schema["$defs"])
    text = msgspec.json.encode(defs).decode().replace('"#/$defs/', '"#/components/schemas/')
    return {"$ref": f"#/components/schemas/{name}"}, msgspec.json.decode(text.encode())


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def sniper_paths() -> tuple[dict[str, Any], dict[str, Any]]:
    """The read endpoints' path items (relative to the prefix) and the component schemas they use."""
    signal, schemas = _components("Signal")
    error = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
    health = {
        "type": "object",
        "required": ["status", "nats", "assets"],
        "properties": {
            "status": {"enum": ["ok", "stale", "no_signals"]},
            "nats": {"type": "boolean", "description": "The gateway's link to NATS is up"},
            "assets": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {"age": {"type": "number"}, "cycle": {"type": "integer"}},
                },
            },
        },
    }
    paths = {
        "/sniper/signals": {
            "get": {
                "operationId": "get_sniper_signals",
                "summary": "The last trading signal of every asset",
                "responses": {
                    "200": _json("Last signal per asset", {"type": "object", "additionalProperties": signal})
                },
            }
        },
        "/sniper/signals/{asset}": {
            "get": {
                "operationId": "get_sniper_signal_by_asset",
                "summary": "The last trading signal of one asset",
                "parameters": [
                    {
                        "name": "asset",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": ASSET_PATTERN.replace("(?!\\n)", "")},
                        "description": "Base asset, e.g. SOL",
                    }
                ],
                "responses": {
                    "200": _json("The asset's last signal", signal),
                    "404": _json("No signal for this asset yet", error),
                },
            }
        },
        "/sniper/health": {
            "get": {
                "operationId": "get_sniper_health",
                "summary": "Whether the pipeline is producing signals, and how old each asset's last one is",
                "responses": {"200": _json("Pipeline health as the gateway sees it", health)},
            }
        },
    }
    return paths, schemas


def gateway_document(backend: Mapping[str, Any], *, server: str, allowed: set[str]) -> dict[str, Any]:
    """The backend's OpenAPI document for GPT Actions behind the gateway at `server` (absolute URL with prefix)."""
    doc = copy.deepcopy(dict(backend))
    doc["openapi"] = "3.1.0" if not str(doc.get("openapi", "")).startswith("3.1") else doc["openapi"]
    doc.pop("swagger", None)
    doc["servers"] = [{"url": server, "description": "sniper's /gpts gateway"}]
    info = doc.setdefault("info", {})
    info.setdefault("title", "market data behind sniper's gateway")
    info.setdefault("version", "1")
    paths = {path: item for path, item in (doc.get("paths") or {}).items() if path in allowed}
    for path, item in paths.items():
        for method in _METHODS:
            op = item.get(method)
            if isinstance(op, dict):
                op.setdefault("operationId", operation_id(method, path))
                op.setdefault("summary", op.get("description", "").split("\n")[0] or f"{method.upper()} {path}")
    ours, schemas = sniper_paths()
    paths.update(ours)
    doc["paths"] = paths
    doc.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
    return doc


def _age(signal: Signal, now: float) -> float:
    return round(max(0.0, now - signal.ts), 3)


def add_gpts_routes(app: web.Application, prefix: str, source: SignalSource, *, now: Any) -> None:
    """``<prefix>/sniper/...`` read endpoints; `now()` gives the current wall time (the injected clock)."""

    async def signals(_: web.Request) -> web.Response:
        body = {asset: msgspec.to_builtins(sig) for asset, sig in sorted(source.last_signals().items())}
        return web.json_response(body)

    async def one(request: web.Request) -> web.Response:
        asset = request.match_info["asset"].upper()
        found = source.last_signals().get(asset)
        if found is None:
            return web.json_response({"error": f"no signal for {asset[:20]!r} yet"}, status=404)
        return web.json_response(msgspec.to_builtins(found))

    async def health(_: web.Request) -> web.Response:
        last = source.last_signals()
        clock_now = now()
        assets = {a: {"age": _age(s, clock_now), "cycle": s.cycle} for a, s in sorted(last.items())}
        if not last:
            status = "no_signals"
        elif any(v["age"] > STALE_AFTER for v in assets.values()):
            status = "stale"
        else:
            status = "ok"
        return web.json_response({"status": status, "nats": source.connected, "assets": assets})

    app.router.add_get(f"{prefix}/sniper/signals", signals)
    app.router.add_get(f"{prefix}/sniper/signals/{{asset:[A-Za-z0-9]{{1,20}}}}", one)
    app.router.add_get(f"{prefix}/sniper/health", health)
