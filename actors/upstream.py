"""Talking to the market-data backend: one client, swappable transports, typed outcomes.

The transport is the seam (httpx's habit): `AiohttpTransport` does real HTTP
on one pooled session per process; `MockTransport` answers from a function,
optionally with virtual latency, so fetcher tests run in virtual time with no
sockets. `UpstreamClient` adds what every fetcher needs once: the base URL,
a time budget enforced with the injected clock, and turning every way a call
can end into an `Outcome` (see `classify`). Nothing here raises for an
upstream failure: failures are data.

Bodies are read with a size cap (`UpstreamClient(max_body=...)`, default
4 MiB): a transport stops reading at the cap, without buffering the rest, and
refuses a declared ``Content-Length`` above it before reading anything. A 2xx
over the cap is ``bad_payload`` with a ``too_large: ...`` detail; an error
status keeps its own class (a 429 stays ``rate_limited``, with its
Retry-After). `UpstreamClient.get` decides this: it is the one place that turns
transport errors into outcomes.

Error classes::

    transient         5xx, connection reset, timeout          retry later
    throttled         429, 418 (Binance ban), Retry-After     wait exactly that long
    entitlement       402; 401/403 caused by the plan         retrying never heals it
    endpoint_missing  404 for the route                       rediscover the route
    bad_payload       body that does not match the contract   fix the producer
    ok                2xx with a usable body (possibly empty: "no data" is not an error)

An HTTP 200 can still be an error: CoinGlass answers ``{"code": "0"}`` on
success and another *string* code on failure; OKX uses string codes too
(``"50011"`` = too many requests). `classify` looks inside such envelopes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp
import msgspec
from yarl import URL

from messages._base import MAX_SECONDS
from runtime.clock import Clock

ErrorClass = Literal["ok", "transient", "throttled", "entitlement", "endpoint_missing", "bad_payload"]

#: Largest backend body read by default (bytes); see `UpstreamClient`.
DEFAULT_MAX_BODY = 4 * 1024 * 1024
_CHUNK = 64 * 1024
#: URLs remembered per client and parsed URLs per transport (one per module and asset in use).
_MAX_URLS = 16384


class BodyTooLarge(Exception):
    """A transport stopped reading: the body is (or declares itself) larger than the cap.

    Carries the status and headers, which arrived: an error status is still
    classified by them (a 429's Retry-After is not lost to a long body).
    """

    def __init__(
        self,
        limit: int,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        declared: int | None = None,
    ) -> None:
        self.limit = limit
        self.status = status
        self.headers: Mapping[str, str] = headers or {}
        self.declared = declared
        said = f" (Content-Length {declared})" if declared is not None else ""
        super().__init__(f"too_large: body exceeds {limit} bytes{said}")


@dataclass(frozen=True, slots=True)
class Response:
    """What a transport returns: status, headers (lower-cased keys), body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    """The classified result of one upstream call."""

    error_class: ErrorClass
    reason: str  # a messages.Reason value, or "ok"
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None
    body: bytes = b""
    latency_ms: float = 0.0
    #: False for outcomes decided before any request was sent (no route, say).
    called: bool = True

    @property
    def ok(self) -> bool:
        return self.error_class == "ok"


class Transport:
    """Sends one GET; raises asyncio.TimeoutError / aiohttp.ClientError / OSError on failure.

    With `max_body`, a body longer than that many bytes raises `BodyTooLarge`
    as soon as the transport knows (a declared Content-Length, or the first
    chunk past the cap), and the rest is never read.
    """

    async def get(
        self, url: str, headers: Mapping[str, str], *, max_body: int | None = None
    ) -> Response:  # pragma: no cover - interface
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections."""


class AiohttpTransport(Transport):
    """Real HTTP on one pooled ClientSession (one per process, as aiohttp advises: a session per request leaks)."""

    def __init__(self, *, limit: int = 200, safety_timeout: float = 30.0) -> None:
        # The per-call budget is enforced by UpstreamClient through the clock;
        # this timeout only guards against a call nobody is waiting for.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=safety_timeout),
            connector=aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300),
            raise_for_status=False,
        )
        self._urls: dict[str, URL] = {}

    def _parsed(self, url: str) -> URL:
        """`URL(url)`, as aiohttp would parse it, remembered (parsing was ~10 % of aiohttp's request path)."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= _MAX_URLS:
                self._urls.clear()
            parsed = self._urls[url] = URL(url)
        return parsed

    async def get(self, url: str, headers: Mapping[str, str], *, max_body: int | None = None) -> Response:
        async with self._session.get(self._parsed(url), headers=dict(headers), allow_redirects=False) as resp:
            head = {k.lower(): v for k, v in resp.headers.items()}
            declared = resp.content_length
            if max_body is None:
                return Response(resp.status, head, await resp.read())
            if declared is not None and declared > max_body:
                resp.close()  # drop the connection: the body is never read
                raise BodyTooLarge(max_body, status=resp.status, headers=head, declared=declared)
            if declared is not None and "content-encoding" not in head:
                # Uncompressed with a length within the cap: exactly `declared` bytes, in one read.
                # (A compressed body is counted as it inflates, below: its length says nothing.)
                return Response(resp.status, head, await resp.read())
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > max_body:
                    resp.close()  # the rest stays unread; a half-read connection is not reused
                    raise BodyTooLarge(max_body, status=resp.status, headers=head)
                chunks.append(chunk)
            return Response(resp.status, head, b"".join(chunks))

    async def close(self) -> None:
        await self._session.close()


Handler = Callable[[str], Awaitable[Response] | Response]


class MockTransport(Transport):
    """Answers from `handler(url)`; for tests, with no sockets (httpx's MockTransport)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[str] = []

    async def get(self, url: str, headers: Mapping[str, str], *, max_body: int | None = None) -> Response:
        self.calls.append(url)
        result = self.handler(url)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, Response)
        if max_body is not None and len(result.body) > max_body:
            raise BodyTooLarge(max_body, status=result.status, headers=result.headers)
        return result


@dataclass(slots=True)
class UpstreamStats:
    """Per-module request counts, for the upstream-economy measurements."""

    requests: dict[str, int] = field(default_factory=dict)
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)

    def count(self, module: str, outcome: Outcome) -> None:
        self.requests[module] = self.requests.get(module, 0) + 1
        per = self.by_class.setdefault(module, {})
        per[outcome.error_class] = per.get(outcome.error_class, 0) + 1


class UpstreamClient:
    """GET against one backend base URL, within a clock-enforced budget, classified.

    `max_body` caps every body read (bytes): a longer one is ``bad_payload``
    (``too_large: ...``), read no further than the cap.
    """

    def __init__(
        self,
        base_url: str,
        transport: Transport,
        *,
        clock: Clock,
        user_agent: str = "sniper",
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        if max_body <= 0:
            raise ValueError(f"max_body must be a positive number of bytes, not {max_body}")
        self.base_url = base_url.rstrip("/")
        self.transport = transport
        self.clock = clock
        self.max_body = max_body
        self.headers = {"accept": "application/json", "user-agent": user_agent}
        self.stats = UpstreamStats()
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        """The full URL; remembered per (path, query), since fetchers ask for the same few on every tick."""
        key = (path, tuple(query.items()) if query else ())
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) >= _MAX_URLS:
                self._urls.clear()
            url = self.base_url + (path if path.startswith("/") else "/" + path)
            url = self._urls[key] = f"{url}?{urlencode(query)}" if query else url
        return url

    async def get(self, module: str, path: str, query: Mapping[str, str] | None, *, budget: float) -> Outcome:
        """One classified GET; never raises for anything the network or backend does."""
        url = self.url(path, query)
        started = self.clock.monotonic()
        try:
            resp = await self.clock.timeout(budget, self.transport.get(url, self.headers, max_body=self.max_body))
            if len(resp.body) > self.max_body:  # a transport that ignored the cap
                raise BodyTooLarge(self.max_body, status=resp.status, headers=resp.headers)
        except BodyTooLarge as exc:
            outcome = _too_large(exc, now=self.clock.now())
        except TimeoutError:
            outcome = Outcome("transient", "timeout", detail=f"no answer within {budget:.2f}s")
        except (aiohttp.ClientConnectionError, OSError) as exc:
            outcome = Outcome("transient", "unreachable", detail=f"{type(exc).__name__}: {exc}"[:200])
        except aiohttp.ClientError as exc:
            outcome = Outcome("transient", "upstream_error", detail=f"{type(exc).__name__}: {exc}"[:200])
        else:
            outcome = classify(resp, now=self.clock.now())
        outcome = dataclasses.replace(outcome, latency_ms=(self.clock.monotonic() - started) * 1000)
        self.stats.count(module, outcome)
        return outcome

    async def close(self) -> None:
        await self.transport.close()


# -- classification -----------------------------------------------------------


def bad_payload(detail: str, *, status: int | None = None, latency_ms: float = 0.0) -> Outcome:
    """The outcome of an answer that arrived but is unusable (too large, undecodable, insane)."""
    return Outcome("bad_payload", "bad_payload", status, detail[:300], latency_ms=latency_ms)


def _too_large(exc: BodyTooLarge, *, now: float) -> Outcome:
    """A body over the cap: ``bad_payload`` for a 2xx; an error status keeps its own class, body unread."""
    if exc.status is None or 200 <= exc.status < 300:
        return bad_payload(str(exc), status=exc.status)
    outcome = classify(Response(exc.status, exc.headers, b""), now=now)
    return dataclasses.replace(outcome, detail=str(exc))


_envelope = msgspec.json.Decoder(dict[str, Any])
_OK_CODES = frozenset({"0", "00000", "200", "success", "ok"})
_THROTTLE_CODES = frozenset({"50011", "50061", "429", "10006", "-1003"})
_ENTITLEMENT_CODES = frozenset({"402", "40301", "50111", "401", "403"})


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date.

    Clamped to [0, MAX_SECONDS] (NaN is no answer): the value travels on in a
    `Degraded`, whose decoders refuse anything beyond the wire limits.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return min(MAX_SECONDS, max(0.0, seconds))


def classify(resp: Response, *, now: float) -> Outcome:
    """Map one HTTP response to an error class and a Degraded reason (`now`: wall time, for HTTP-date Retry-After)."""
    status = resp.status
    if 200 <= status < 300:  # the common case first: no error detail to read
        return _classify_ok(resp)
    detail = _detail(resp.body)
    if status in (429, 418):
        retry = parse_retry_after(resp.headers.get("retry-after"), now=now)
        return Outcome("throttled", "rate_limited", status, detail, retry_after=retry)
    if status == 402 or (status in (401, 403) and _mentions_plan(detail)):
        return Outcome("entitlement", "payment_required", status, detail)
    if status in (401, 403):
        return Outcome("entitlement", "payment_required", status, detail or "forbidden")
    if status == 404:
        return Outcome("endpoint_missing", "not_found", status, detail)
    if status >= 500:
        return Outcome("transient", "upstream_error", status, detail)
    # Other 4xx (400, 422), and 1xx/3xx: our request does not fit this route; rediscovery may help.
    return Outcome("endpoint_missing", "not_found", status, detail)


def _classify_ok(resp: Response) -> Outcome:
    """A 2xx: usable, unless its body is an error envelope (CoinGlass's and OKX's string codes)."""
    status = resp.status
    envelope = _envelope_error(resp.body)
    if envelope is not None:
        code, msg = envelope
        if code in _THROTTLE_CODES:
            return Outcome("throttled", "rate_limited", status, f"code {code}: {msg}")
        if code in _ENTITLEMENT_CODES:
            return Outcome("entitlement", "payment_required", status, f"code {code}: {msg}")
        return Outcome("transient", "upstream_error", status, f"code {code}: {msg}")
    return Outcome("ok", "ok", status, body=resp.body)


def _detail(body: bytes) -> str:
    if not body:
        return ""
    try:
        doc = _envelope.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body[:200].decode("utf-8", "replace")
    for key in ("detail", "msg", "message", "error"):
        text = doc.get(key)
        if isinstance(text, str):
            return text[:200]
    return ""


def _mentions_plan(detail: str) -> bool:
    text = detail.lower()
    return any(word in text for word in ("plan", "subscription", "upgrade", "payment", "quota", "license"))


def _envelope_error(body: bytes) -> tuple[str, str] | None:
    """(code, message) when a 200 body is an error envelope, else None."""
    if not body or body[:1] != b"{":
        return None
    if b'"code"' not in body and b"\\u" not in body:
        return None  # no "code" key can be in there (only a \u escape could spell one otherwise): no decode
    try:
        doc = _envelope.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # not JSON: the payload decoder will call it bad_payload
    if "code" not in doc:
        return None
    code = doc["code"]
    code_text = str(code).strip().lower()
    if code_text in _OK_CODES:
        return None
    msg = doc.get("msg") or doc.get("message") or ""
    return str(code), str(msg)[:200]
