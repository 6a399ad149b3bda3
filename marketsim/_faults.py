"""Fault injection: what can go wrong with an upstream, on demand.

Faults are msgspec structs tagged by ``kind``, so the admin API, the CLI and
the Python API share one strict validator (unknown kinds or fields are
rejected with msgspec's precise message). Each module holds an ordered list
of faults; per request every latency fault that fires adds its delay and the
first other fault that fires decides the outcome. ``rate`` makes a fault
intermittent; each installed fault draws from its own RNG seeded by
``(seed, module, position)`` so an intermittent pattern replays exactly.

``oversize`` is the one fault whose answer is *valid*: the real payload with
its list grown to ``levels`` items (or the body to ``size`` bytes), streamed
in chunks, so a 17 MB order book costs the simulator no memory and a client
that stops reading at its cap stops the generation too.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import itertools
import math
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
    "OversizeFault",
    "StatusFault",
    "TimeoutFault",
    "decode_faults",
    "oversize_chunks",
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


#: Body size of an oversize fault that names neither ``size`` nor ``levels``.
DEFAULT_OVERSIZE = 2_000_000


class OversizeFault(_FaultBase, tag="oversize", frozen=True):
    """HTTP 200 with a huge but valid body, streamed: the real answer with its list grown.

    ``levels``: items in the module's list in total (an order book splits them
    between bids and asks); ``size``: grow the body to about this many bytes
    instead (the default, 2 MB, when neither is given). What grows: order-book
    levels beyond the real top of book, still sorted; whale alerts older than
    the real ones (``transfer``s, which move no score); liquidation clusters
    beyond 10 % of the price, shorts above and longs below; ETF issuers with
    zero flow. Bias and funding have no list: their bodies are padded with JSON whitespace.
    The body is valid against sniper's upstream contract, though longer than
    the ``maxItems`` this simulator's own OpenAPI document states.
    """

    size: Annotated[int, Meta(ge=1, le=1 << 34)] | None = None
    levels: Annotated[int, Meta(ge=1, le=100_000_000)] | None = None

    def __post_init__(self) -> None:
        if self.size is not None and self.levels is not None:
            raise ValueError("an oversize fault takes size or levels, not both")


Fault = StatusFault | LatencyFault | TimeoutFault | MalformedFault | EnvelopeFault | OversizeFault
FAULT_KINDS = ("status", "latency", "timeout", "malformed", "envelope", "oversize")
_POSITIONAL = {"status": "status", "latency": "ms", "malformed": "mode", "envelope": "code", "oversize": "size"}

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
    ``timeout``, ``malformed:truncated``, ``envelope``, ``status:503:rate=0.5``,
    ``oversize`` (2 MB), ``oversize:17000000``, ``oversize:levels=1000000``.
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


# -- oversize: valid bodies of any size, generated while streaming ------------------------------
_GROWN: Mapping[str, tuple[str, ...]] = {
    "spot_ob": ("bids", "asks"),
    "whale": ("alerts",),
    "heatmap": ("levels",),
    "etf": ("issuers",),
}
_CHUNK = 64 * 1024
_LEVEL_BYTES = 16  # about one grown order-book level, to pick enough decimals in size mode


def _decimal(ticks: int, digits: int) -> bytes:
    """``ticks`` / 10**digits written exactly, e.g. (1799119, 4) -> b"179.9119"."""
    if digits == 0:
        return b"%d.0" % ticks
    text = str(ticks).rjust(digits + 1, "0")
    return f"{text[:-digits]}.{text[-digits:]}".encode()


def _book_side(levels: list[Any], step: int, count: int, fallback: float) -> Iterator[bytes]:
    """Levels beyond the last real one, strictly further from the mid, in exact decimals.

    Enough decimals that ``count`` bids stay above half the last price; a
    price never has more than 15 significant digits, so the JSON floats keep
    the order of the decimals.
    """
    last = float(levels[-1][0]) if levels else fallback
    digits = max(0, math.ceil(math.log10(2 * max(count, 1) / last)))
    scaled = last * 10**digits
    ticks = math.floor(scaled) - 1 if step < 0 else math.ceil(scaled) + 1
    while True:
        yield b"[" + _decimal(ticks, digits) + b",1.25]"
        ticks += step


def _grown_items(module: str, field: str, doc: dict[str, Any], count: int) -> Iterator[bytes]:
    """Endless valid extra items for one list of one module's payload."""
    if module == "spot_ob":
        mid = float(doc["bids"][0][0]) if doc["bids"] else 1.0
        return _book_side(doc[field], -1 if field == "bids" else 1, count, mid)
    if module == "whale":
        oldest = min((float(a["ts"]) for a in doc["alerts"]), default=time.time())
        start = math.floor(oldest * 1000) - 1
        return (
            b'{"id":"wh-ovs-%08d","ts":%s,"amount":1.0,"amount_usd":1.0,"from":"unknown wallet",'
            b'"to":"unknown wallet","direction":"transfer","tx":"0x%064x"}' % (i, _decimal(max(start - i, 0), 3), i)
            for i in itertools.count()
        )
    if module == "heatmap":
        price = float(doc["price"])
        return (
            msgspec.json.encode(
                {"price": price * 1.1 * (1 + i * 1e-6), "side": "short", "usd": 1000.0}
                if i % 2 == 0
                else {"price": price * 0.9 / (1 + i * 1e-6), "side": "long", "usd": 1000.0}
            )
            for i in itertools.count()
        )
    return (b'{"ticker":"OVS%d","flow_usd":0.0}' % i for i in itertools.count())


def _pieces(module: str, doc: dict[str, Any], fault: OversizeFault) -> Iterator[bytes]:
    fields = _GROWN.get(module, ())
    if not fields:  # nothing to grow: pad the real body with whitespace, still one valid JSON document
        body = msgspec.json.encode(doc)
        target = fault.size or fault.levels or DEFAULT_OVERSIZE
        yield body
        for done in range(len(body), target, _CHUNK):
            yield b" " * min(_CHUNK, target - done)
        return
    size = fault.size if fault.size is not None or fault.levels is not None else DEFAULT_OVERSIZE
    head = msgspec.json.encode({k: v for k, v in doc.items() if k not in fields})
    yield head[:-1]  # the object stays open: the grown lists follow
    sent = len(head) - 1
    for i, field in enumerate(fields):
        real = doc[field]
        if size is None:  # levels mode: exactly `levels` items over all lists
            assert fault.levels is not None
            wanted = fault.levels // len(fields) + (1 if i < fault.levels % len(fields) else 0)
            budget = None
        else:  # size mode: each list grows until its share of the body is written
            wanted = size // _LEVEL_BYTES  # more than fit: the budget stops first
            budget = size * (i + 1) // len(fields)
        items = itertools.chain(
            (msgspec.json.encode(x) for x in real),
            itertools.islice(_grown_items(module, field, doc, wanted), max(0, wanted - len(real))),
        )
        opening = b',"' + field.encode() + b'":['
        yield opening
        sent += len(opening)
        for n, item in enumerate(items):
            if n and budget is not None and sent >= budget:
                break
            piece = b"," + item if n else item
            yield piece
            sent += len(piece)
        yield b"]"
        sent += 1
    yield b"}"


def oversize_chunks(module: str, payload: msgspec.Struct, fault: OversizeFault) -> Iterator[bytes]:
    """The body of an oversize fault for ``module``'s real ``payload``, in chunks of about 64 KiB."""
    buffer = bytearray()
    for piece in _pieces(module, msgspec.to_builtins(payload), fault):
        buffer += piece
        if len(buffer) >= _CHUNK:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)
