"""The gateway's reverse-proxy handler: strict target, allow-list, streamed both ways.

`Proxy.handle` is the aiohttp handler of the ``<prefix>/{tail}`` catch-all. Per
request it:

1. parses ``request.raw_path`` (the undecoded target) with
   `sniper.gateway.paths.parse_target`: 400 for anything unsafe;
2. refuses ``<prefix>/sniper/...`` (404, sniper's own endpoints), paths off the
   allow-list (404) and methods the backend does not document (405);
3. refuses a declared body over the limit before reading it (413), and counts
   a chunked one while streaming it (413 as soon as it passes the limit);
4. forwards method, path and query byte for byte (``yarl.URL.build(...,
   encoded=True)``: nothing re-normalises), the end-to-end headers (hop-by-hop
   ones and every header named in ``Connection`` dropped, RFC 9110 7.6.1),
   ``X-Forwarded-For/-Proto/-Host`` and ``Via``; the body is streamed from
   ``request.content``;
5. streams the answer back with its status and headers, compressed bodies
   untouched (``auto_decompress=False``); an answer of at most `SMALL_BODY`
   bytes with a Content-Length is read whole and sent in one write.

Errors are JSON, ``{"error": CODE, "status": N, "detail": TEXT}``: 400, 404,
405, 413, 502 (backend unreachable or broken answer), 504 (connect or read
timeout). A failure after the answer started cannot change its status: the
client connection is closed instead, so the client sees a truncated body.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterable
from functools import lru_cache

import aiohttp
from aiohttp import hdrs, web
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from runtime.logs import get_logger

from .paths import RESERVED_SEGMENT, AllowList, Refused, Target, parse_target

__all__ = [
    "FORWARDING_HEADERS",
    "HOP_BY_HOP",
    "SKIP_AUTO_HEADERS",
    "IPNetwork",
    "Proxy",
    "error_response",
    "hop_by_hop_names",
    "parse_networks",
]

log = get_logger("gateway")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Hop-by-hop fields (RFC 9110 7.6.1, plus the non-standard Keep-Alive and Proxy-Connection).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer"}
    | {"transfer-encoding", "upgrade"}
)
#: Set by proxies: believed only from a trusted proxy, dropped from anyone else.
FORWARDING_HEADERS = frozenset(
    {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-forwarded-prefix"}
    | {"forwarded", "x-real-ip"}
)
#: Request fields the client session sets itself for this hop (Host: the backend's) or that must not pass.
_REQUEST_OWN = frozenset({"host", "expect"})
_VIA = {aiohttp.HttpVersion11: "1.1 sniper", aiohttp.HttpVersion10: "1.0 sniper"}
#: Answers up to this size with a Content-Length are read whole and sent in one write (the common case:
#: small JSON); larger or unknown-length ones are streamed chunk by chunk.
SMALL_BODY = 64 * 1024
#: Auto headers aiohttp's client would add that the client did not send.
SKIP_AUTO_HEADERS = frozenset({hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.CONTENT_TYPE})


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``10.0.0.0/8,127.0.0.1`` -> networks (a bare address is a /32 or /128); ValueError names a bad one."""
    out: list[IPNetwork] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or network like 10.0.0.0/8") from None
    return tuple(dict.fromkeys(out))


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error the gateway answers itself: ``{"error": code, "status": status, "detail": detail}``."""
    return web.json_response({"error": code, "status": status, "detail": detail}, status=status, headers=headers)


def hop_by_hop_names(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> frozenset[str]:
    """Lower-case names to drop: the fixed hop-by-hop set and every name listed in ``Connection``."""
    named = headers.getall(hdrs.CONNECTION, ())
    if not named:
        return HOP_BY_HOP
    extra = {token.strip().lower() for value in named for token in value.split(",")}
    return HOP_BY_HOP | extra


class _TooLarge(Exception):
    """The streamed request body passed the limit."""


@lru_cache(maxsize=1024)
def _in_networks(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


class Proxy:
    """The handler (`handle`) of ``<prefix>/{tail:.*}``: see the module docstring.

    `session` is the one pooled client session (its cookie jar must be a
    `aiohttp.DummyCookieJar`: a proxy keeps no cookies between clients).
    """

    def __init__(
        self,
        *,
        backend: str,
        prefix: str,
        allow: AllowList,
        session: aiohttp.ClientSession,
        max_body_bytes: int,
        connect_timeout: float,
        read_timeout: float,
        trusted_proxies: Iterable[IPNetwork] = (),
    ) -> None:
        url = URL(backend)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"{backend!r} is not an http(s) URL")
        self._scheme, self._host, self._port = url.scheme, url.raw_host or url.host, url.port
        self._base = url.raw_path.rstrip("/")
        self.prefix = prefix
        self.allow = allow
        self.session = session
        self.max_body_bytes = max_body_bytes
        self.trusted = tuple(trusted_proxies)
        # The session may skip those auto headers already (ours does): then nothing is built per request.
        skipped = {name.lower() for name in session.skip_auto_headers}
        self._skip_auto = None if {name.lower() for name in SKIP_AUTO_HEADERS} <= skipped else SKIP_AUTO_HEADERS
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)

    # -- checks ---------------------------------------------------------------

    def _target(self, request: web.BaseRequest) -> Target | web.Response:
        """The forwarded target, or the error answer."""
        try:
            target = parse_target(request.raw_path, self.prefix)
        except Refused as exc:
            return error_response(exc.status, exc.code, exc.detail)
        segments = target.segments
        if segments and segments[0].casefold() == RESERVED_SEGMENT:
            return error_response(404, "not_found", f"{self.prefix}/{RESERVED_SEGMENT}/ has no such endpoint")
        methods = self.allow.methods(segments)
        if methods is not None and request.method not in methods:
            if not methods:
                return error_response(404, "not_found", f"{target.path} is not a path of the backend's API")
            allowed = ", ".join(sorted(methods))
            return error_response(
                405, "method_not_allowed", f"{request.method} {target.path}: allowed {allowed}", {"Allow": allowed}
            )
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            return self._too_large()
        return target

    def _too_large(self) -> web.Response:
        response = error_response(413, "body_too_large", f"the request body exceeds {self.max_body_bytes} bytes")
        response.force_close()  # the unread body stays behind: this connection cannot carry another request
        return response

    async def expect_handler(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: refuse before the client sends the body, else let it send."""
        checked = self._target(request)
        if isinstance(checked, web.Response):
            checked.force_close()
            return checked
        if request.version == aiohttp.HttpVersion11 and request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
            return None
        return error_response(417, "expectation_failed", "only 'Expect: 100-continue' is understood")

    # -- headers --------------------------------------------------------------

    def _request_headers(self, request: web.BaseRequest) -> CIMultiDict[str]:
        incoming = request.headers
        drop = hop_by_hop_names(incoming) | _REQUEST_OWN
        remote = request.remote or ""
        trusted = bool(self.trusted) and _in_networks(remote, self.trusted)
        if not trusted:
            drop = drop | FORWARDING_HEADERS
        out: CIMultiDict[str] = CIMultiDict(
            [(name, value) for name, value in incoming.items() if name.lower() not in drop]
        )
        chain = ", ".join(out.popall("X-Forwarded-For", ())) if trusted else ""
        out["X-Forwarded-For"] = f"{chain}, {remote}" if chain else remote
        if not trusted or "X-Forwarded-Proto" not in out:
            out["X-Forwarded-Proto"] = request.scheme
        if not trusted or "X-Forwarded-Host" not in out:
            host = incoming.get(hdrs.HOST)
            if host:
                out["X-Forwarded-Host"] = host
        via = _VIA.get(request.version) or f"{request.version.major}.{request.version.minor} sniper"
        previous = out.popall(hdrs.VIA, ())
        out[hdrs.VIA] = ", ".join([*previous, via]) if previous else via
        return out

    @staticmethod
    def _response_headers(upstream: CIMultiDictProxy[str], *, keep_length: bool = True) -> CIMultiDict[str]:
        drop = hop_by_hop_names(upstream)
        if not keep_length:
            drop = drop | {"content-length"}
        return CIMultiDict([(name, value) for name, value in upstream.items() if name.lower() not in drop])

    # -- forwarding -----------------------------------------------------------

    async def _body(self, content: StreamReader, over: list[bool]) -> AsyncIterator[bytes]:
        limit, seen = self.max_body_bytes, 0
        while chunk := await content.readany():
            seen += len(chunk)
            if seen > limit:
                over.append(True)
                raise _TooLarge
            yield chunk

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The request handler (see the module docstring)."""
        checked = self._target(request)
        if isinstance(checked, web.Response):
            return checked
        url = URL.build(
            scheme=self._scheme,
            host=self._host,
            port=self._port,
            path=self._base + checked.path,
            query_string=checked.query,
            encoded=True,
        )
        over: list[bool] = []
        data = self._body(request.content, over) if request.body_exists else None
        try:
            upstream = await self.session.request(
                request.method,
                url,
                headers=self._request_headers(request),
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                skip_auto_headers=self._skip_auto,
                timeout=self._timeout,
                raise_for_status=False,
            )
        except Exception as exc:
            if over:
                return self._too_large()
            return self._failure(exc, request.raw_path.partition("?")[0])
        try:
            response = await self._relay(request, upstream)
        except BaseException:
            upstream.close()
            raise
        upstream.release()
        return response

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        length = upstream.content_length
        if length is not None and length <= SMALL_BODY and request.method != "HEAD":
            # One write for header and body. (A 204 or 304 has no body; aiohttp drops a Content-Length on it.)
            try:
                body = await upstream.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                return self._failure(exc, request.raw_path.partition("?")[0])
            headers = self._response_headers(upstream.headers, keep_length=False)
            return web.Response(status=upstream.status, reason=upstream.reason, headers=headers, body=body)
        response = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=self._response_headers(upstream.headers)
        )
        await response.prepare(request)
        content = upstream.content
        while True:
            try:
                chunk = await content.readany()
            except (TimeoutError, aiohttp.ClientError) as exc:
                # The status is sent: close the connection so the client sees a cut answer, never a whole one.
                log.warning("gateway_answer_cut", path=request.raw_path.partition("?")[0], error=type(exc).__name__)
                upstream.close()
                response.force_close()
                if request.transport is not None:
                    request.transport.close()
                return response
            if not chunk:
                break
            await response.write(chunk)
        await response.write_eof()
        return response

    def _failure(self, exc: Exception, path: str) -> web.Response:
        if isinstance(exc, TimeoutError):  # ServerTimeoutError, ConnectionTimeoutError, SocketTimeoutError
            log.warning("gateway_backend_timeout", path=path, error=type(exc).__name__)
            return error_response(504, "backend_timeout", "the backend did not answer in time")
        if isinstance(exc, aiohttp.ClientConnectorError):
            log.warning("gateway_backend_unreachable", path=path, error=str(exc))
            return error_response(502, "backend_unreachable", "the backend cannot be reached")
        if isinstance(exc, aiohttp.ClientError):
            log.warning("gateway_backend_error", path=path, error=f"{type(exc).__name__}: {exc}")
            return error_response(502, "bad_gateway", "the backend's answer was broken or cut")
        raise exc
