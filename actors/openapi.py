"""Read an API description (OpenAPI 3.0, 3.1, Swagger 2.0) into one plain shape.

Discovery does not care which version a backend speaks; it needs, per GET
operation: the full path, the words that say what it is (operationId,
summary, description, tags) and each parameter's name, place, requirement,
type, enum, pattern, default, examples and description. This module turns any
of the three versions into `Operation`s, resolving local ``$ref``s
(``#/components/parameters/...``, ``#/parameters/...``, schemas) and applying
the base path (Swagger's ``basePath``, or the path of OpenAPI's first server
URL). Anything it cannot read raises `SpecError` with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


class SpecError(ValueError):
    """A document that is not a usable OpenAPI/Swagger description."""


@dataclass(frozen=True, slots=True)
class SpecParam:
    name: str
    location: str  # path | query | header | cookie
    required: bool
    type: str | None = None
    enum: tuple[Any, ...] = ()
    pattern: str | None = None
    default: Any = None
    examples: tuple[Any, ...] = ()
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    operation_id: str = ""
    summary: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    params: tuple[SpecParam, ...] = field(default_factory=tuple)

    @property
    def words(self) -> str:
        """Everything that names this operation, for matching by meaning."""
        return " ".join((self.path, self.operation_id, self.summary, self.description, *self.tags))


def spec_version(doc: Any) -> str:
    if not isinstance(doc, dict):
        raise SpecError("the document is not a JSON object")
    version = doc.get("openapi")
    if isinstance(version, str):
        if not version.startswith("3."):
            raise SpecError(f"unsupported OpenAPI version {version!r}")
        return version
    if str(doc.get("swagger", "")).startswith("2"):
        return "2.0"
    raise SpecError("neither an 'openapi' nor a 'swagger' version field")


def _resolve(doc: dict[str, Any], node: Any, depth: int = 0) -> Any:
    """Follow a local $ref (bounded, so a cyclic document cannot loop)."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if depth > 20 or not isinstance(ref, str) or not ref.startswith("#/"):
            raise SpecError(f"cannot resolve $ref {ref!r} (only local references are followed)")
        target: Any = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise SpecError(f"$ref {ref!r} points nowhere")
            target = target[part]
        node, depth = target, depth + 1
    return node


def _examples(param: dict[str, Any], schema: dict[str, Any]) -> tuple[Any, ...]:
    out: list[Any] = []
    for source in (param, schema):
        if "example" in source:
            out.append(source["example"])
        if "x-example" in source:
            out.append(source["x-example"])
        examples = source.get("examples")
        if isinstance(examples, list):
            out.extend(examples)
        elif isinstance(examples, dict):  # OpenAPI 3 parameter examples: {name: {value: ...}}
            out.extend(v.get("value") for v in examples.values() if isinstance(v, dict) and "value" in v)
    unique: list[Any] = []
    for x in out:  # Swagger's parameter is its own schema: the same example twice
        if x is not None and x not in unique:
            unique.append(x)
    return tuple(unique)


def _param(doc: dict[str, Any], raw: Any, swagger: bool) -> SpecParam | None:
    raw = _resolve(doc, raw)
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not isinstance(raw.get("in"), str):
        raise SpecError(f"a parameter without name/in: {str(raw)[:80]}")
    if raw["in"] in ("body", "formData"):
        return None  # not a GET concern
    schema = raw if swagger else _resolve(doc, raw.get("schema") or {})
    if not isinstance(schema, dict):
        schema = {}
    if "anyOf" in schema and not schema.get("type"):  # FastAPI's Optional[x]: anyOf [x, null]
        for option in schema["anyOf"]:
            option = _resolve(doc, option)
            if isinstance(option, dict) and option.get("type") not in (None, "null"):
                schema = {**option, **{k: v for k, v in schema.items() if k != "anyOf"}}
                break
    enum = schema.get("enum")
    return SpecParam(
        name=raw["name"],
        location=raw["in"],
        required=bool(raw.get("required")) or raw["in"] == "path",
        type=schema.get("type") if isinstance(schema.get("type"), str) else None,
        enum=tuple(enum) if isinstance(enum, list) else (),
        pattern=schema.get("pattern") if isinstance(schema.get("pattern"), str) else None,
        default=schema.get("default"),
        examples=_examples(raw, schema),
        description=str(raw.get("description") or schema.get("description") or ""),
        minimum=_number(schema.get("minimum")),
        maximum=_number(schema.get("maximum")),
    )


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _base_path(doc: dict[str, Any], swagger: bool) -> str:
    if swagger:
        base = doc.get("basePath") or ""
        base = base if isinstance(base, str) else ""
    else:
        servers = doc.get("servers") or []
        first = servers[0] if isinstance(servers, list) and servers else None
        url = first.get("url", "") if isinstance(first, dict) and isinstance(first.get("url", ""), str) else ""
        base = urlsplit(url).path if "://" in url else url
    base = "/" + str(base).strip("/") if base and base != "/" else ""
    return base


def load_operations(doc: Any) -> tuple[str, list[Operation]]:
    """(version, GET operations) of an OpenAPI 3.x or Swagger 2.0 document."""
    version = spec_version(doc)
    swagger = version == "2.0"
    paths = doc.get("paths")
    if not isinstance(paths, dict):
        raise SpecError("the document has no 'paths' object")
    base = _base_path(doc, swagger)
    operations: list[Operation] = []
    for path, item in paths.items():
        item = _resolve(doc, item)
        if not isinstance(path, str) or not isinstance(item, dict):
            continue
        op = item.get("get")
        if not isinstance(op, dict):
            continue
        shared = item.get("parameters") or []
        own = op.get("parameters") or []
        if not isinstance(shared, list) or not isinstance(own, list):
            raise SpecError(f"{path}: 'parameters' must be a list")
        params: dict[tuple[str, str], SpecParam] = {}
        for raw in shared + own:  # operation-level parameters override path-level ones
            param = _param(doc, raw, swagger)
            if param is not None:
                params[(param.name, param.location)] = param
        tags = op.get("tags") or ()
        tags = tags if isinstance(tags, list) else ()
        operations.append(
            Operation(
                method="GET",
                path=base + path,
                operation_id=str(op.get("operationId") or ""),
                summary=str(op.get("summary") or ""),
                description=str(op.get("description") or ""),
                tags=tuple(str(t) for t in tags if isinstance(t, str)),
                params=tuple(params.values()),
            )
        )
    return version, operations
