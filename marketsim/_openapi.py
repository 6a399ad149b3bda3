"""OpenAPI 3.1 / 3.0.3 and Swagger 2.0 documents from one route table.

The 3.1 document is built first (JSON Schema 2020-12, as msgspec emits it);
the older formats are derived from it by a schema downgrade, so the three
documents cannot disagree about paths, parameters or payload shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from ._payloads import PAYLOAD_TYPES, HTTPError
from ._routes import MODULES, Param, Route

__all__ = ["openapi_document", "swagger_document"]

_COMPONENTS = "#/components/schemas/"
_DEFINITIONS = "#/definitions/"
_ERROR_TEXT = {
    402: "Payment Required: the endpoint needs a paid plan",
    404: "Unknown symbol in the path, or no data for the asset",
    422: "Validation Error: missing or malformed parameter",
    429: "Too Many Requests: retry after the Retry-After delay",
}
_RETRY_AFTER = "Seconds to wait before retrying"
_TAG_TEXT = {
    "whales": "On-chain whale transfers",
    "etf": "US spot ETF flows",
    "liquidations": "Derivatives liquidation levels",
    "spot": "Spot order books",
    "institutional": "Derivatives positioning",
    "funding": "Perpetual swap funding rates",
}


def _components() -> dict[str, Any]:
    types = [*PAYLOAD_TYPES.values(), HTTPError]
    _, schemas = msgspec.json.schema_components(types, ref_template=_COMPONENTS + "{name}")
    return {name: _typed_enums(schema) for name, schema in schemas.items()}


def _typed_enums(schema: Any) -> Any:
    """Add ``type: string`` to bare string enums (msgspec omits it for Literal)."""
    if isinstance(schema, dict):
        out = {k: _typed_enums(v) for k, v in schema.items()}
        enum = out.get("enum")
        if isinstance(enum, list) and "type" not in out and all(isinstance(v, str) for v in enum):
            out = {"type": "string", **out}
        return out
    if isinstance(schema, list):
        return [_typed_enums(v) for v in schema]
    return schema


def _param_schema(param: Param) -> dict[str, Any]:
    if param.form is not None:
        schema: dict[str, Any] = {"type": "string", "pattern": param.form.public_pattern}
    elif param.enum is not None:
        schema = {"type": "string", "enum": list(param.enum)}
    else:
        schema = {"type": "integer", "minimum": param.minimum, "maximum": param.maximum}
    if param.default is not None:
        schema["default"] = param.default
    schema["examples"] = [param.example]
    return {"title": param.name, **schema}


def _error_codes(route: Route) -> list[int]:
    codes = set(MODULES[route.module].errors)
    if any(p.location == "path" for p in route.params):
        codes.add(404)
    return sorted(codes)


def _operation_31(route: Route) -> dict[str, Any]:
    info = MODULES[route.module]
    payload = PAYLOAD_TYPES[route.module].__name__
    responses: dict[str, Any] = {
        "200": {
            "description": "Successful Response",
            "content": {"application/json": {"schema": {"$ref": _COMPONENTS + payload}}},
        }
    }
    for code in _error_codes(route):
        response: dict[str, Any] = {
            "description": _ERROR_TEXT[code],
            "content": {"application/json": {"schema": {"$ref": _COMPONENTS + "HTTPError"}}},
        }
        if code == 429:
            response["headers"] = {"Retry-After": {"description": _RETRY_AFTER, "schema": {"type": "integer"}}}
        responses[str(code)] = response
    return {
        "tags": [info.tag],
        "summary": info.summary,
        "description": info.description,
        "operationId": info.operation_id,
        "parameters": [
            {
                "name": p.name,
                "in": p.location,
                "required": p.required,
                "description": p.description,
                "schema": _param_schema(p),
                "example": p.example,
            }
            for p in route.params
        ],
        "responses": responses,
    }


_DIALECTS: dict[str, tuple[str, str]] = {
    # dialect: (where $refs point, how "may be null" is spelled)
    "3.0": (_COMPONENTS, "nullable"),
    "2.0": (_DEFINITIONS, "x-nullable"),
}
_NULL = {"type": "null"}


def _downgrade(schema: Any, *, dialect: Literal["3.0", "2.0"]) -> Any:
    """Rewrite a JSON Schema 2020-12 node into the OpenAPI 3.0 or Swagger 2.0 dialect.

    The 2020-12 spellings have older equivalents: ``examples`` becomes ``example``,
    ``const`` a one-value ``enum``, a numeric ``exclusiveMinimum``/``exclusiveMaximum``
    a ``minimum``/``maximum`` with the boolean flag, a ``"null"`` type or variant the
    nullable flag, a ``type`` array an ``anyOf``, ``prefixItems`` a homogeneous
    ``items`` and ``contentEncoding: base64`` ``format: byte``. Swagger 2.0 has no
    ``anyOf``/``oneOf``/``not``: they are kept as ``x-`` extensions (unchecked).
    """
    if not isinstance(schema, dict):
        return schema
    ref_prefix, nullable_key = _DIALECTS[dialect]

    def again(node: Any) -> Any:
        return _downgrade(node, dialect=dialect)

    out: dict[str, Any] = {}
    nullable = False
    merge: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: again(sub) for name, sub in value.items()}
        elif key in ("anyOf", "oneOf"):
            rest = [again(sub) for sub in value if sub != _NULL]
            nullable |= len(rest) < len(value)
            if len(rest) == 1:
                # A $ref ignores its siblings in 3.0 and 2.0: wrap it to keep the flag.
                merge = {"allOf": rest} if "$ref" in rest[0] and nullable else rest[0]
            elif rest:
                out[key] = rest
        elif key == "allOf":
            out[key] = [again(sub) for sub in value]
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = again(value)
        elif key == "$ref":
            out[key] = ref_prefix + value.removeprefix(_COMPONENTS)
        elif key == "examples":
            if value:
                out["example"] = value[0]
        elif key == "const":
            out["enum"] = [value]
        elif key == "contentEncoding" and value == "base64":
            out["format"] = "byte"
        else:
            out[key] = value
    out.update(merge)
    prefix = out.pop("prefixItems", None)
    if prefix is not None:
        # Tuples become homogeneous fixed-length arrays; the 2020-12 form is lost.
        kinds = [again(item) for item in prefix]
        out["items"] = kinds[0] if all(k == kinds[0] for k in kinds) else {}
    elif out.get("items") is False:  # no items allowed: an empty array
        out["items"] = {}
        out["maxItems"] = 0
    _exclusive_bounds(out)
    kind = out.get("type")
    if isinstance(kind, list):
        types = [t for t in kind if t != "null"]
        nullable |= len(types) < len(kind)
        del out["type"]
        if len(types) == 1:
            out["type"] = types[0]
        elif types:
            out["anyOf"] = [{"type": t} for t in types]
        else:
            out["enum"] = [None]
    elif kind == "null":
        del out["type"]
        out["enum"] = [None]
        nullable = True
    if nullable:
        out[nullable_key] = True
    if dialect == "2.0":
        for key in ("anyOf", "oneOf", "not"):
            if key in out:
                out["x-" + key] = out.pop(key)
    return out


def _exclusive_bounds(schema: dict[str, Any]) -> None:
    """Numeric 2020-12 ``exclusiveMinimum: 0`` -> ``minimum: 0, exclusiveMinimum: true`` (in place)."""
    for exclusive, inclusive, sign in (("exclusiveMinimum", "minimum", 1), ("exclusiveMaximum", "maximum", -1)):
        bound = schema.get(exclusive)
        if bound is None or isinstance(bound, bool):
            continue
        current = schema.get(inclusive)
        if current is not None and sign * (current - bound) > 0:
            del schema[exclusive]  # the inclusive bound is the stricter one
        else:
            schema[inclusive] = bound
            schema[exclusive] = True


def openapi_document(routes: Sequence[Route], *, flavor: str, version: str, app_version: str) -> dict[str, Any]:
    """OpenAPI ``3.1.0`` (default) or ``3.0.3`` document for ``routes``."""
    paths = {route.path: {"get": _operation_31(route)} for route in routes}
    tags = sorted({MODULES[r.module].tag for r in routes})
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "marketsim",
            "version": app_version,
            "description": f"Reference market-data backend (route flavor: {flavor}).",
            "x-flavor": flavor,
        },
        "tags": [{"name": t, "description": _TAG_TEXT[t]} for t in tags],
        "paths": paths,
        "components": {"schemas": _components()},
    }
    if version == "3.1":
        return document
    document = _downgrade_document(document, dialect="3.0")
    document["openapi"] = "3.0.3"
    return document


def _downgrade_document(document: dict[str, Any], *, dialect: Literal["3.0", "2.0"]) -> dict[str, Any]:
    def fix(schema: Any) -> Any:
        return _downgrade(schema, dialect=dialect)

    out = dict(document)
    out["components"] = {"schemas": {n: fix(s) for n, s in document["components"]["schemas"].items()}}
    out["paths"] = {}
    for path, item in document["paths"].items():
        op = dict(item["get"])
        op["parameters"] = [{**p, "schema": fix(p["schema"])} for p in op["parameters"]]
        op["responses"] = {
            code: {
                **resp,
                "content": {ct: {"schema": fix(c["schema"])} for ct, c in resp["content"].items()},
            }
            for code, resp in op["responses"].items()
        }
        out["paths"][path] = {"get": op}
    return out


def swagger_document(routes: Sequence[Route], *, flavor: str, app_version: str, host: str | None) -> dict[str, Any]:
    """Swagger 2.0 document: inline parameter types, ``definitions``, ``x-example``."""
    base = openapi_document(routes, flavor=flavor, version="3.1", app_version=app_version)
    down = _downgrade_document(base, dialect="2.0")
    paths: dict[str, Any] = {}
    for path, item in down["paths"].items():
        op = item["get"]
        parameters = []
        for p in op["parameters"]:
            schema = dict(p["schema"])
            schema.pop("title", None)
            example = schema.pop("example", p["example"])
            parameters.append(
                {
                    "name": p["name"],
                    "in": p["in"],
                    "required": p["required"],
                    "description": p["description"],
                    **schema,
                    "x-example": example,
                }
            )
        responses = {}
        for code, resp in op["responses"].items():
            converted: dict[str, Any] = {
                "description": resp["description"],
                "schema": resp["content"]["application/json"]["schema"],
            }
            if "headers" in resp:
                converted["headers"] = {
                    name: {"type": h["schema"]["type"], "description": h["description"]}
                    for name, h in resp["headers"].items()
                }
            responses[code] = converted
        paths[path] = {
            "get": {
                **{k: op[k] for k in ("tags", "summary", "description", "operationId")},
                "produces": ["application/json"],
                "parameters": parameters,
                "responses": responses,
            }
        }
    document: dict[str, Any] = {
        "swagger": "2.0",
        "info": base["info"],
        "basePath": "/",
        "schemes": ["http"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "tags": base["tags"],
        "paths": paths,
        "definitions": down["components"]["schemas"],
    }
    if host:
        document["host"] = host
    return document
