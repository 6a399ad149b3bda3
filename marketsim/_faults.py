"""Fault injection: what can go wrong with an upstream, on demand.

Faults are msgspec structs tagged by ``kind``, so the admin API, the CLI and
the Python API share one strict validator (unknown kinds or fields are
rejected with msgspec's precise message). Each module holds an ordered list
of faults; per request every latency fault that fires adds its delay and the
first other fault that fires decides the outcome. ``rate`` makes a fault
intermittent; each installed fault draws from its own RNG seeded by
``(seed, module, position)`` so an intermittent pattern replays exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web
from msgspec import Meta

__all__ = [
    "DEFAULT_FAULTS",
    "EnvelopeFault",
    "Fault",
    "FaultBook",
    "LatencyFault",
    "MalformedFault",
    "StatusFault",
    "TimeoutFault",
    "decode_faults",
    "parse_fault_spec",
]

_Rate = Annotated[float, Meta(ge=0.0, le=1.0, description="Probability a request is hit")]


class _FaultBase(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    rate: _Rate = 1.0


class StatusFault(_FaultBase, tag="status", frozen=True):
    """Answer with an HTTP error status; 429 carries ``Retry-After``."""

    status: Annotated[int, Meta(ge=400, le=599)]
    retry_after: Annotated[int, Meta(ge=0)] | None = None
    retry_after_format: Literal["seconds", "http-date"] = "seconds"
    detail: str | None = None


class LatencyFault(_FaultBase, tag="latency", frozen=True):
    """Delay the answer by ``ms`` milliseconds (combines with other faults)."""

    ms: Annotated[float, Meta(ge=0, le=600_000)]


class TimeoutFault(_FaultBase, tag="timeout", frozen=True):
    """Accept the request and never answer until the client gives up."""


class MalformedFault(_FaultBase, tag="malformed", frozen=True):
    """HTTP 200 with a broken body (truncated JSON, wrong types, empty, HTML)."""

    mode: Literal["truncated", "wrong_types", "empty", "html"] = "truncated"


class EnvelopeFault(_FaultBase, tag="envelope", frozen=True):
    """OKX-style error envelope with a string code, by default under HTTP 200."""

    code: str = "50011"
    msg: str = "Too frequent"
    http_status: Annotated[int, Meta(ge=200, le=599)] = 200


Fault = StatusFault | LatencyFault | TimeoutFault | MalformedFault | EnvelopeFault
FAULT_KINDS = ("status", "latency", "timeout", "malformed", "envelope")
_POSITIONAL = {"status": "status", "latency": "ms", "malformed": "mode", "envelope": "code"}

DEFAULT_FAULTS: Mapping[str, tuple[Fault, ...]] = {
    # The seed's production behaviour: ETF flows sit behind a paid plan.
    "etf": (StatusFault(status=402, detail="Payment Required: ETF flows need a paid plan"),),
}


def _invalid(error: Exception) -> ValueError:
    return ValueError(f"invalid fault: {error} (kinds: {', '.join(FAULT_KINDS)})")


def decode_faults(body: bytes) -> list[Fault]:
    """Parse an admin request body: one fault object or a list of them."""
    try:
        decoded = msgspec.json.decode(body, type=Fault | list[Fault])
    except msgspec.DecodeError as error:
        raise _invalid(error) from None
    return decoded if isinstance(decoded, list) else [decoded]


def validate_fault(fault: Any) -> Fault:
    """Re-check a fault built in Python (struct constructors skip constraints)."""
    if not isinstance(fault, _FaultBase):
        raise TypeError(f"expected a Fault, got {type(fault).__name__}")
    try:
        checked: Fault = msgspec.convert(msgspec.to_builtins(fault), type=Fault)
        return checked
    except msgspec.ValidationError as error:
        raise _invalid(error) from None


def parse_fault_spec(spec: str) -> Fault:
    """Parse the CLI form ``kind[:value][:key=value...]``.

    Examples: ``status:500``, ``status:429:retry_after=30``, ``latency:200``,
    ``timeout``, ``malformed:truncated``, ``envelope``, ``status:503:rate=0.5``.
    """
    kind, *parts = spec.split(":")
    fields: dict[str, str] = {"kind": kind}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            if kind not in _POSITIONAL or _POSITIONAL[kind] in fields:
                raise ValueError(f"unexpected value {part!r} in fault spec {spec!r}")
            key, value = _POSITIONAL[kind], part
        fields[key] = value
    try:
        parsed: Fault = msgspec.convert(fields, type=Fault, strict=False)
        return parsed
    except msgspec.ValidationError as error:
        raise _invalid(error) from None


class FaultBook:
    """Faults installed per module, each paired with its own seeded RNG."""

    def __init__(self, modules: Iterable[str], seed: int) -> None:
        self._seed = seed
        self._installed: dict[str, list[tuple[Fault, random.Random]]] = {m: [] for m in modules}

    def _check_module(self, module: str) -> None:
        if module not in self._installed:
            raise KeyError(f"unknown module {module!r} (modules: {', '.join(self._installed)})")

    def set(self, module: str, faults: Sequence[Fault]) -> None:
        """Replace the faults of ``module``; validate everything before changing."""
        self._check_module(module)
        checked = [validate_fault(f) for f in faults]
        self._installed[module] = [
            (f, random.Random(f"{self._seed}:fault:{module}:{i}")) for i, f in enumerate(checked)
        ]

    def clear(self, module: str | None = None) -> None:
        """Remove the faults of one module, or of all modules."""
        if module is None:
            for faults in self._installed.values():
                faults.clear()
            return
        self._check_module(module)
        self._installed[module].clear()

    def get(self, module: str) -> list[Fault]:
        self._check_module(module)
        return [f for f, _ in self._installed[module]]

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """JSON-ready view of every module's faults (empty list = healthy)."""
        return {m: [msgspec.to_builtins(f) for f, _ in fs] for m, fs in self._installed.items()}

    def draw(self, module: str) -> tuple[float, Fault | None]:
        """Roll the dice for one request: total delay in seconds and the outcome."""
        delay, outcome = 0.0, None
        for fault, rng in self._installed[module]:
            # Draw for every fault so one fault's pattern never depends on another's.
            fires = fault.rate >= 1.0 or rng.random() < fault.rate
            if not fires:
                continue
            if isinstance(fault, LatencyFault):
                delay += fault.ms / 1000.0
            elif outcome is None:
                outcome = fault
        return delay, outcome


async def hang(request: web.Request, stop: asyncio.Event, poll: float = 0.25) -> None:
    """Hold a request until its client disconnects or the server stops.

    The runner cancels handlers on disconnect; polling the transport is a
    second line of defence for runners built without handler cancellation.
    """
    while not stop.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll)


def _json(body: Any, status: int) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json")


def status_response(fault: StatusFault) -> web.Response:
    """The error answer of a status fault, with ``Retry-After`` when due."""
    status = HTTPStatus(fault.status) if fault.status in HTTPStatus._value2member_map_ else None
    detail = fault.detail or (status.phrase if status else f"HTTP {fault.status}")
    response = _json({"detail": detail}, fault.status)
    retry_after = fault.retry_after
    if retry_after is None and fault.status == 429:
        retry_after = 1
    if retry_after is not None:
        if fault.retry_after_format == "http-date":
            response.headers["Retry-After"] = email.utils.formatdate(time.time() + retry_after, usegmt=True)
        else:
            response.headers["Retry-After"] = str(retry_after)
    return response


def envelope_response(fault: EnvelopeFault) -> web.Response:
    return _json({"code": fault.code, "msg": fault.msg, "data": None}, fault.http_status)


def _stringify_numbers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stringify_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_stringify_numbers(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def malformed_response(fault: MalformedFault, payload: msgspec.Struct) -> web.Response:
    """HTTP 200 whose body a strict client must refuse."""
    if fault.mode == "html":
        html = "<html><head><title>Just a moment...</title></head><body>Checking your browser</body></html>"
        return web.Response(text=html, content_type="text/html")
    if fault.mode == "empty":
        return web.Response(body=b"", content_type="application/json")
    if fault.mode == "wrong_types":
        body = msgspec.json.encode(_stringify_numbers(msgspec.to_builtins(payload)))
    else:
        encoded = msgspec.json.encode(payload)
        body = encoded[: max(1, len(encoded) // 2)]
    return web.Response(body=body, content_type="application/json")
