"""The gateway in front of a recording backend: forwarding, streaming, errors, headers, abuse, a property.

The recording backend is an aiohttp server on loopback that records the raw
request target of everything it receives and serves an OpenAPI document
listing its public routes; its ``/_admin/reset`` is left out of the document,
as the reference backend's ``/_admin/...`` routes are. Abuse requests and the
property test go over raw sockets: HTTP clients normalise paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import os
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from marketsim import serve as serve_reference
from sniper.gateway import GATEWAY_STATE, AllowList, GatewayConfig, GatewayStartError, create_app
from sniper.gateway.app import DEFAULT_PORT
from sniper.gateway.proxy import parse_networks

from .abuse_corpus import CORPUS, Abuse

#: The recording backend's public routes: path template -> methods (its /_admin/reset is not listed).
ROUTES: dict[str, tuple[str, ...]] = {
    "/institutional/bias": ("get", "post"),
    "/whales/alerts": ("get",),
    "/echo/{a}": ("get", "post", "put", "delete", "patch"),
    "/echo/{a}/{b}": ("get", "post"),
    "/echo/{a}/{b}/{c}": ("get",),
    "/files/{a}/{b}": ("get",),
    "/status/{code}": ("get",),
    "/gzip": ("get",),
    "/big": ("get",),
    "/stall": ("get",),
    "/slow": ("get",),
    "/hop": ("get",),
    "/upload": ("post",),
    "/cookie": ("get",),
}
ALLOW = AllowList((path, methods) for path, methods in ROUTES.items())
GZIPPED = gzip.compress(b'{"compressed": true, "pad": "' + b"x" * 5000 + b'"}', mtime=0)


def openapi_document() -> dict[str, Any]:
    paths = {
        path: {m: {"responses": {"200": {"description": "ok"}}} for m in methods} for path, methods in ROUTES.items()
    }
    return {"openapi": "3.1.0", "info": {"title": "recording backend", "version": "1"}, "paths": paths}


@dataclass
class Seen:
    """What the recording backend received."""

    method: str
    target: str  #: the raw request target
    headers: dict[str, str]
    probe: str | None


@dataclass
class Recorder:
    """The recording backend's state: every request, and events the streaming tests wait on."""

    seen: list[Seen] = field(default_factory=list)
    spec: bool | str = True  #: serve /openapi.json; "swagger": only /swagger.json; False: neither
    first_chunk: asyncio.Event | None = None
    release: asyncio.Event | None = None

    def outside_allow_list(self) -> list[Seen]:
        """Requests whose path, decoded once per segment like a backend routes, is not a listed path."""
        bad = []
        for seen in self.seen:
            path = seen.target.partition("?")[0]
            segments = () if path == "/" else tuple(unquote(s) for s in path[1:].split("/"))
            if path in ("/openapi.json", "/swagger.json") and seen.method == "GET":
                continue  # the gateway's own start-up read
            if not (path.startswith("/") and ALLOW.allows(segments, seen.method)):
                bad.append(seen)
        return bad


def recording_app(recorder: Recorder) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        recorder.seen.append(
            Seen(request.method, request.raw_path, dict(request.headers), request.headers.get("X-Probe"))
        )
        path = request.path
        if path == "/openapi.json" and recorder.spec is True:
            return web.json_response(openapi_document())
        if path == "/swagger.json" and recorder.spec == "swagger":
            document = openapi_document()
            del document["openapi"]
            return web.json_response({"swagger": "2.0", "basePath": "/", **document})
        if path in ("/openapi.json", "/swagger.json"):
            return web.json_response({}, status=404)
        if path == "/_admin/reset":
            return web.json_response({"reset": True})
        if path.startswith("/echo/") or path in ("/institutional/bias", "/whales/alerts") or path.startswith("/files/"):
            body = await request.read()
            return web.json_response(
                {
                    "method": request.method,
                    "target": request.raw_path,
                    "headers": [[k, v] for k, v in request.headers.items()],
                    "sha256": hashlib.sha256(body).hexdigest(),
                    "length": len(body),
                }
            )
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            headers = {"Location": "/elsewhere"} if 300 <= code < 400 else {}
            if code in (204, 304):
                return web.Response(status=code, headers=headers)
            return web.json_response({"status": code}, status=code, headers=headers)
        if path == "/gzip":
            return web.Response(body=GZIPPED, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        if path in ("/big", "/stall"):
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            await response.prepare(request)
            await response.write(b"a" * 65536)
            if path == "/stall":
                await asyncio.sleep(30)
            if recorder.release is not None:
                await recorder.release.wait()
            for i in range(64):
                await response.write(bytes([i]) * 65536)
            await response.write_eof()
            return response
        if path == "/slow":
            await asyncio.sleep(30)
            return web.json_response({})
        if path == "/hop":
            return web.json_response(
                {},
                headers={
                    "Connection": "X-Backend-Secret",
                    "X-Backend-Secret": "1",
                    "Keep-Alive": "timeout=5",
                    "Proxy-Authenticate": "Basic",
                    "Upgrade": "h2c",
                    "X-End-To-End": "kept",
                },
            )
        if path == "/upload":
            digest, length = hashlib.sha256(), 0
            async for chunk in request.content.iter_any():
                if length == 0 and recorder.first_chunk is not None:
                    recorder.first_chunk.set()
                digest.update(chunk)
                length += len(chunk)
            return web.json_response(
                {"sha256": digest.hexdigest(), "length": length, "te": request.headers.get("Transfer-Encoding")}
            )
        if path == "/cookie":
            response = web.json_response({"cookie": request.headers.get("Cookie")})
            response.set_cookie("session", "backend-secret")
            return response
        return web.json_response({"error": "no such route"}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextlib.asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def backend(recorder: Recorder) -> AsyncIterator[str]:
    async with running(recording_app(recorder)) as url:
        yield url


GatewayFactory = Callable[..., contextlib.AbstractAsyncContextManager[str]]


@pytest.fixture
def gateway(backend: str, recorder: Recorder) -> GatewayFactory:
    """``async with gateway(**config) as url``: a gateway in front of the recording backend."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[str]:
        config = GatewayConfig(**{"backend": backend, "port": 0, **overrides})
        app = await create_app(config)
        recorder.seen.clear()  # the start-up read of /openapi.json
        async with running(app) as url:
            yield url

    return start


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_answer(data: bytes) -> Answer:
    while data.startswith(b"HTTP/1.1 100"):
        data = data.split(b"\r\n\r\n", 1)[1]
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1]) if lines[0].startswith("HTTP/") else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(status, headers, body)


async def send_raw(url: str, raw: bytes) -> Answer:
    """Write `raw` to the server at `url` over a plain socket; read until it closes."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return parse_answer(data)


def raw_get(target: str, *headers: str, method: str = "GET", body: bytes = b"") -> bytes:
    lines = "".join(f"{h}\r\n" for h in ("Host: gateway.test", *headers, "Connection: close"))
    return f"{method} {target} HTTP/1.1\r\n{lines}\r\n".encode() + body


class TestForwarding:
    @pytest.mark.parametrize(
        "target",
        [
            "/institutional/bias?symbol=SOL-USDT-SWAP",
            "/whales/alerts",
            "/whales/alerts?symbol=SOL&x=%20y+z&k[]=1",
            "/echo/%41b",
            "/echo/a;b=c",
            "/echo/caf%C3%A9",
            "/echo/a/b?q=/../x",
            "/echo/%2541",
            "/files/x.json/%7E",
        ],
    )
    async def test_path_and_query_reach_the_backend_byte_for_byte(
        self, target: str, gateway: GatewayFactory, recorder: Recorder
    ) -> None:
        """/gpts/<path>?<query> arrives as /<path>?<query>, exactly as sent (raw socket: nothing normalises)."""
        async with gateway() as url:
            answer = await send_raw(url, raw_get(f"/gpts{target}"))
        assert answer.status == 200, answer
        assert [s.target for s in recorder.seen] == [target]

    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
    async def test_method_and_body_are_preserved(
        self, method: str, gateway: GatewayFactory, client: aiohttp.ClientSession
    ) -> None:
        """The backend sees the client's method and body (and its Content-Type)."""
        body = os.urandom(3000)
        async with (
            gateway() as url,
            client.request(method, f"{url}/gpts/echo/x", data=body, headers={"Content-Type": "application/x-t"}) as r,
        ):
            echo = await r.json()
        assert (r.status, echo["method"], echo["length"]) == (200, method, len(body))
        assert echo["sha256"] == hashlib.sha256(body).hexdigest()
        assert ["Content-Type", "application/x-t"] in echo["headers"]

    @pytest.mark.parametrize("status", [200, 201, 204, 301, 302, 304, 400, 404, 418, 429, 500, 503])
    async def test_status_is_preserved_and_redirects_not_followed(
        self, status: int, gateway: GatewayFactory, client: aiohttp.ClientSession
    ) -> None:
        """Whatever status the backend answers is the client's, a backend 5xx included; a Location is passed on."""
        async with gateway() as url, client.get(f"{url}/gpts/status/{status}", allow_redirects=False) as r:
            await r.read()
        assert r.status == status
        assert (r.headers.get("Location") == "/elsewhere") == (300 <= status < 400)

    async def test_head(self, gateway: GatewayFactory, client: aiohttp.ClientSession) -> None:
        """HEAD is forwarded where GET is documented; no body comes back."""
        async with gateway() as url, client.head(f"{url}/gpts/whales/alerts") as r:
            assert (r.status, await r.read()) == (200, b"")

    async def test_gzip_body_passes_untouched(self, gateway: GatewayFactory, recorder: Recorder) -> None:
        """A compressed answer keeps its Content-Encoding and its exact bytes."""
        async with gateway() as url:
            answer = await send_raw(url, raw_get("/gpts/gzip", "Accept-Encoding: gzip"))
        assert (answer.status, answer.headers["content-encoding"]) == (200, "gzip")
        assert answer.headers["content-length"] == str(len(GZIPPED))
        assert answer.body == GZIPPED
        assert recorder.seen[0].headers.get("Accept-Encoding") == "gzip"

    async def test_no_headers_added_for_the_client(self, gateway: GatewayFactory, recorder: Recorder) -> None:
        """The backend sees no User-Agent, Accept or Accept-Encoding the client did not send."""
        async with gateway() as url:
            await send_raw(url, raw_get("/gpts/whales/alerts"))
        seen = {k.lower() for k in recorder.seen[0].headers}
        assert not seen & {"user-agent", "accept", "accept-encoding", "content-type"}

    async def test_cookies_are_not_kept_between_clients(
        self, gateway: GatewayFactory, client: aiohttp.ClientSession
    ) -> None:
        """A Set-Cookie reaches the client; the gateway's session never replays it to anyone."""
        async with gateway() as url:
            async with client.get(f"{url}/gpts/cookie") as first:
                assert "session=backend-secret" in first.headers["Set-Cookie"]
            answer = await send_raw(url, raw_get("/gpts/cookie"))
        assert answer.body == b'{"cookie": null}'


class TestStreaming:
    async def test_request_body_is_streamed(
        self, gateway: GatewayFactory, recorder: Recorder, client: aiohttp.ClientSession
    ) -> None:
        """The backend gets the first chunk before the client sent the rest (nothing buffers the body)."""
        recorder.first_chunk = asyncio.Event()
        sent = hashlib.sha256()

        async def body() -> AsyncIterator[bytes]:
            first = b"f" * 65536
            sent.update(first)
            yield first
            assert recorder.first_chunk is not None
            await asyncio.wait_for(recorder.first_chunk.wait(), 10)
            for i in range(40):
                chunk = bytes([i]) * 65536
                sent.update(chunk)
                yield chunk

        async with gateway(max_body_bytes=8 << 20) as url, client.post(f"{url}/gpts/upload", data=body()) as r:
            echo = await r.json()
        assert (r.status, echo["length"], echo["sha256"]) == (200, 41 * 65536, sent.hexdigest())
        assert echo["te"] == "chunked"

    async def test_response_is_streamed(
        self, gateway: GatewayFactory, recorder: Recorder, client: aiohttp.ClientSession
    ) -> None:
        """The client reads the first chunk while the backend has not written the rest yet."""
        recorder.release = asyncio.Event()
        async with gateway() as url, client.get(f"{url}/gpts/big") as r:
            first = await asyncio.wait_for(r.content.readexactly(65536), 10)
            recorder.release.set()
            rest = await r.read()
        assert first == b"a" * 65536
        assert rest == b"".join(bytes([i]) * 65536 for i in range(64))
        assert "Content-Length" not in r.headers and r.headers["Transfer-Encoding"] == "chunked"


class TestLimitsAndFailures:
    async def test_declared_body_over_the_limit_is_413_before_forwarding(
        self, gateway: GatewayFactory, recorder: Recorder
    ) -> None:
        """Content-Length above --gateway-max-body: JSON 413, the backend sees nothing."""
        async with gateway(max_body_bytes=1000) as url:
            answer = await send_raw(
                url, raw_get("/gpts/upload", "Content-Length: 1001", method="POST", body=b"x" * 1001)
            )
        assert (answer.status, recorder.seen) == (413, [])
        assert b'"error": "body_too_large"' in answer.body

    async def test_expect_continue_over_the_limit_gets_413_not_100(
        self, gateway: GatewayFactory, recorder: Recorder
    ) -> None:
        """With Expect: 100-continue an oversized body is refused before the client sends it."""
        async with gateway(max_body_bytes=1000) as url:
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                writer.write(raw_get("/gpts/upload", "Content-Length: 5000", "Expect: 100-continue", method="POST"))
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            finally:
                writer.close()
                await writer.wait_closed()
        assert head.startswith(b"HTTP/1.1 413 ") and recorder.seen == []

    async def test_chunked_body_over_the_limit_is_413(
        self, gateway: GatewayFactory, client: aiohttp.ClientSession
    ) -> None:
        """A chunked body is counted while streamed; passing the limit answers 413."""

        async def body() -> AsyncIterator[bytes]:
            for _ in range(40):
                yield b"x" * 1000

        async with gateway(max_body_bytes=10_000) as url, client.post(f"{url}/gpts/upload", data=body()) as r:
            assert (r.status, (await r.json())["error"]) == (413, "body_too_large")

    async def test_backend_down_is_502(self, client: aiohttp.ClientSession) -> None:
        """Nothing listening at the backend (explicit allow-list): JSON 502."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = GatewayConfig(backend=f"http://127.0.0.1:{port}", port=0, allow=("/whales/alerts",))
        app = await create_app(config)
        assert app[GATEWAY_STATE].backend_spec is None
        async with running(app) as url, client.get(f"{url}/gpts/whales/alerts") as r:
            assert (r.status, (await r.json())["error"]) == (502, "backend_unreachable")

    async def test_slow_backend_is_504(self, gateway: GatewayFactory, client: aiohttp.ClientSession) -> None:
        """No answer within --read-timeout: JSON 504."""
        async with gateway(read_timeout=0.3) as url, client.get(f"{url}/gpts/slow") as r:
            assert (r.status, (await r.json())["error"]) == (504, "backend_timeout")

    async def test_stall_after_the_status_cuts_the_answer(
        self, gateway: GatewayFactory, client: aiohttp.ClientSession
    ) -> None:
        """A backend silent mid-body: the status is sent already, so the client sees a cut body, never a whole one."""
        async with gateway(read_timeout=0.3) as url, client.get(f"{url}/gpts/stall") as r:
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()

    async def test_broken_backend_answer_is_502(self, client: aiohttp.ClientSession) -> None:
        """A backend that answers garbage: JSON 502."""

        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            app = await create_app(GatewayConfig(backend=f"http://127.0.0.1:{port}", port=0, allow=("/x",)))
            async with running(app) as url, client.get(f"{url}/gpts/x") as r:
                assert (r.status, (await r.json())["error"]) == (502, "bad_gateway")
        finally:
            server.close()
            await server.wait_closed()


class TestHeaders:
    async def test_hop_by_hop_and_connection_named_request_headers_are_dropped(
        self, gateway: GatewayFactory, recorder: Recorder
    ) -> None:
        """Connection, Keep-Alive, TE, Trailer, Upgrade, Proxy-* and the names in Connection never reach the backend."""
        headers = (
            "Connection: keep-alive, X-Client-Secret",
            "X-Client-Secret: 1",
            "Keep-Alive: timeout=5",
            "TE: trailers",
            "Trailer: X-T",
            "Upgrade: websocket",
            "Proxy-Authorization: Basic eDp5",
            "Proxy-Connection: keep-alive",
            "X-End-To-End: kept",
        )
        async with gateway() as url:
            raw = raw_get("/gpts/whales/alerts", *headers).replace(b"Connection: close\r\n", b"")
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                writer.write(raw)
                await reader.readuntil(b"\r\n\r\n")
            finally:
                writer.close()
                await writer.wait_closed()
        seen = {k.lower(): v for k, v in recorder.seen[0].headers.items()}
        dropped = {"x-client-secret", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization"}
        assert not dropped & set(seen) and "proxy-connection" not in seen
        assert seen.get("connection", "keep-alive") == "keep-alive"  # the gateway's own connection to the backend
        assert seen["x-end-to-end"] == "kept"

    async def test_hop_by_hop_response_headers_are_dropped(self, gateway: GatewayFactory) -> None:
        """The backend's hop-by-hop fields and the ones its Connection names stay between it and the gateway."""
        async with gateway() as url:
            answer = await send_raw(url, raw_get("/gpts/hop"))
        assert answer.status == 200 and answer.headers["x-end-to-end"] == "kept"
        assert not {"x-backend-secret", "keep-alive", "proxy-authenticate", "upgrade"} & set(answer.headers)

    async def test_forwarded_headers_from_an_untrusted_peer_are_replaced(
        self, gateway: GatewayFactory, recorder: Recorder
    ) -> None:
        """X-Forwarded-* (and Forwarded, X-Real-IP) from an untrusted client are dropped; ours say who it was."""
        forged = (
            "X-Forwarded-For: 6.6.6.6",
            "X-Forwarded-Proto: https",
            "X-Forwarded-Host: evil.example",
            "Forwarded: for=6.6.6.6",
            "X-Real-IP: 6.6.6.6",
        )
        async with gateway() as url:
            await send_raw(url, raw_get("/gpts/whales/alerts", *forged))
        seen = {k.lower(): v for k, v in recorder.seen[0].headers.items()}
        assert seen["x-forwarded-for"] == "127.0.0.1"
        assert (seen["x-forwarded-proto"], seen["x-forwarded-host"]) == ("http", "gateway.test")
        assert "forwarded" not in seen and "x-real-ip" not in seen
        assert seen["via"] == "1.1 sniper"

    async def test_forwarded_headers_from_a_trusted_proxy_are_extended(
        self, gateway: GatewayFactory, recorder: Recorder
    ) -> None:
        """From a configured proxy: its X-Forwarded-For chain gets the peer appended, Proto and Host are kept."""
        incoming = ("X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https", "X-Forwarded-Host: api.example")
        async with gateway(trusted_proxies=parse_networks("127.0.0.0/8")) as url:
            await send_raw(url, raw_get("/gpts/whales/alerts", *incoming, "Via: 1.1 edge"))
        seen = {k.lower(): v for k, v in recorder.seen[0].headers.items()}
        assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
        assert (seen["x-forwarded-proto"], seen["x-forwarded-host"]) == ("https", "api.example")
        assert seen["via"] == "1.1 edge, 1.1 sniper"

    async def test_a_trusted_list_not_naming_the_peer_trusts_nothing(
        self, gateway: GatewayFactory, recorder: Recorder
    ) -> None:
        """Trusted proxies elsewhere (10.0.0.0/8): the loopback client's claims are still dropped."""
        async with gateway(trusted_proxies=parse_networks("10.0.0.0/8")) as url:
            await send_raw(url, raw_get("/gpts/whales/alerts", "X-Forwarded-For: 6.6.6.6"))
        assert recorder.seen[0].headers["X-Forwarded-For"] == "127.0.0.1"


class TestStart:
    async def test_allow_list_and_spec_come_from_the_backend(self, backend: str) -> None:
        """app[GATEWAY_STATE]: exactly the document's paths, the raw document, its URL."""
        app = await create_app(GatewayConfig(backend=backend))
        state = app[GATEWAY_STATE]
        try:
            assert set(state.allowed) == set(ROUTES)
            assert state.backend_spec == openapi_document()
            assert state.spec_url == f"{backend}/openapi.json"
            assert state.config.port == DEFAULT_PORT
        finally:
            await state.session.close()

    async def test_backend_without_a_document_stops_the_start(self, backend: str, recorder: Recorder) -> None:
        """No /openapi.json or /swagger.json and no --allow: GatewayStartError naming --allow."""
        recorder.spec = False
        with pytest.raises(GatewayStartError, match=r"serves no OpenAPI document.*--allow"):
            await create_app(GatewayConfig(backend=backend))

    async def test_swagger_document_is_the_fallback(self, backend: str, recorder: Recorder) -> None:
        """Without /openapi.json, /swagger.json (Swagger 2.0) gives the allow-list."""
        recorder.spec = "swagger"
        app = await create_app(GatewayConfig(backend=backend))
        state = app[GATEWAY_STATE]
        try:
            assert (set(state.allowed), state.spec_url) == (set(ROUTES), f"{backend}/swagger.json")
        finally:
            await state.session.close()

    async def test_explicit_allow_list_starts_without_a_document(
        self, backend: str, recorder: Recorder, client: aiohttp.ClientSession
    ) -> None:
        """With --allow the document is optional; only the named paths are forwarded."""
        recorder.spec = False
        app = await create_app(GatewayConfig(backend=backend, allow=("/whales/alerts", "/echo/{a}")))
        assert (app[GATEWAY_STATE].allowed, app[GATEWAY_STATE].backend_spec) == (("/whales/alerts", "/echo/{a}"), None)
        async with running(app) as url:
            for path, status in [("/whales/alerts", 200), ("/echo/x", 200), ("/institutional/bias", 404)]:
                async with client.get(f"{url}/gpts{path}") as r:
                    assert r.status == status, path

    async def test_extra_routes_win_over_the_proxy(self, backend: str, client: aiohttp.ClientSession) -> None:
        """Routes added by `extra` (sniper's own endpoints) are matched before the catch-all."""

        def add(app: web.Application, config: GatewayConfig) -> None:
            async def own(request: web.Request) -> web.Response:
                return web.json_response({"own": request.path, "paths": list(request.app[GATEWAY_STATE].allowed)})

            app.router.add_get(f"{config.prefix}/openapi.json", own)
            app.router.add_get(f"{config.prefix}/sniper/ping", own)
            app.router.add_get(f"{config.prefix}/whales/alerts", own)

        app = await create_app(GatewayConfig(backend=backend), extra=[add])
        async with running(app) as url:
            for path in ("/gpts/openapi.json", "/gpts/sniper/ping", "/gpts/whales/alerts"):
                async with client.get(f"{url}{path}") as r:
                    assert (r.status, (await r.json())["own"]) == (200, path)

    async def test_a_session_with_a_cookie_jar_is_refused(self, backend: str) -> None:
        """A given session must not keep cookies (they would leak between clients)."""
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ValueError, match="DummyCookieJar"):
                await create_app(GatewayConfig(backend=backend), session=session)

    async def test_a_given_session_is_used_and_left_open(self, backend: str, client: aiohttp.ClientSession) -> None:
        """create_app(session=...) forwards through that session and does not close it."""
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            app = await create_app(GatewayConfig(backend=backend), session=session)
            assert app[GATEWAY_STATE].session is session
            async with running(app) as url, client.get(f"{url}/gpts/whales/alerts") as r:
                assert r.status == 200
            assert not session.closed

    @pytest.mark.parametrize(
        ("overrides", "match"),
        [
            ({"backend": "ftp://x"}, "not an http"),
            ({"backend": "http://"}, "not an http"),
            ({"prefix": "/gpts/"}, "not a path prefix"),
            ({"prefix": "gpts"}, "not a path prefix"),
            ({"port": 70000}, "between 0 and 65535"),
            ({"read_timeout": 0}, "positive"),
            ({"allow": ()}, "empty"),
            ({"allow": ("nope",)}, "not a path template"),
        ],
    )
    def test_config_checks(self, overrides: dict[str, Any], match: str) -> None:
        """GatewayConfig refuses values that cannot work, with a ConfigError naming the problem."""
        with pytest.raises(ValueError, match=match):
            GatewayConfig(**{"backend": "http://127.0.0.1:8000", **overrides})


class TestReferenceBackend:
    async def test_documented_routes_work_and_admin_is_unreachable(self, client: aiohttp.ClientSession) -> None:
        """In front of marketsim: /gpts/institutional/bias?... answers; /gpts/_admin/... never reaches it."""
        async with serve_reference(port=0, seed=5) as ref:
            app = await create_app(GatewayConfig(backend=ref.url))
            assert "/_admin/counters" not in app[GATEWAY_STATE].allowed
            async with running(app) as url:
                async with client.get(f"{url}/gpts/institutional/bias?symbol=SOL-USDT-SWAP") as r:
                    bias = await r.json()
                assert (r.status, bias["symbol"]) == (200, "SOL-USDT-SWAP")
                ref.sim.reset_counters()
                faults, flavor = ref.sim.faults(), ref.sim.flavor
                for target, method in [
                    ("/gpts/_admin/counters", "GET"),
                    ("/gpts/_admin/faults", "DELETE"),
                    ("/gpts/_admin/flavor", "PUT"),
                    ("/gpts/_admin/spec", "PUT"),
                    ("/gpts/institutional/../_admin/counters", "GET"),
                    ("/gpts/institutional/%2e%2e/_admin/counters", "GET"),
                    ("/gpts/..%2F_admin%2Fcounters", "GET"),
                ]:
                    answer = await send_raw(url, raw_get(target, method=method))
                    assert answer.status in (400, 404), target
                assert sum(module["requests"] for module in ref.sim.counters().values()) == 0
                assert (ref.sim.faults(), ref.sim.flavor) == (faults, flavor)


# -- over raw sockets, with the servers on their own thread (sync tests: the corpus and hypothesis) ----------


class ThreadedStack:
    """The recording backend and a gateway in front, on an event loop of their own thread."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with running(recording_app(self.recorder)) as backend:
            app = await create_app(GatewayConfig(backend=backend, port=0))
            async with running(app) as url:
                self.port = int(url.rsplit(":", 1)[1])
                self.recorder.seen.clear()
                self.ready.set()
                await self._stop.wait()

    def __enter__(self) -> ThreadedStack:
        self._thread.start()
        assert self.ready.wait(10), "the stack did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.loop.close()

    def send(self, raw: bytes) -> Answer:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(raw)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return parse_answer(b"".join(chunks))


@pytest.fixture(scope="module")
def stack() -> Iterator[ThreadedStack]:
    with ThreadedStack() as running_stack:
        yield running_stack


class TestAbuseCorpus:
    def test_corpus_is_large_and_varied(self) -> None:
        """At least 200 requests over every category of trick."""
        categories = {abuse.category for abuse in CORPUS}
        assert len(CORPUS) >= 200 and len({a.raw for a in CORPUS}) == len(CORPUS)
        assert {"dotdot", "encoded_slash", "backslash", "control", "absolute_form", "prefix_boundary"} <= categories

    @pytest.mark.parametrize("abuse", CORPUS, ids=[a.id for a in CORPUS])
    def test_refused_and_never_forwarded(self, abuse: Abuse, stack: ThreadedStack) -> None:
        """Each abuse request gets its refusal and the recording backend sees nothing at all."""
        before = len(stack.recorder.seen)
        answer = stack.send(abuse.raw)
        assert answer.status == abuse.expected, answer
        assert stack.recorder.seen[before:] == []
        assert stack.recorder.outside_allow_list() == []


class TestFraming:
    @pytest.mark.parametrize(
        "raw",
        [
            b"GET /gpts/echo/a\r\nX-Evil: 1 HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
            b"GET /gpts/echo/a\rb HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
            b"GET /gpts/echo/a\nGET /_admin/reset HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
            b"GET /gpts/echo/a HTTP/1.1\r\nHost: g\r\n\r\n"
            b"GET /_admin/reset HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
            b"GET /gpts/echo/a HTTP/1.1\r\nHost: g\r\n\r\n"
            b"GET /gpts/../_admin/reset HTTP/1.1\r\nConnection: close\r\n\r\n",
            b"POST /gpts/echo/a HTTP/1.1\r\nHost: g\r\nContent-Length: 44\r\n\r\n"
            b"GET /_admin/reset HTTP/1.1\r\nHost: g\r\n\r\nGET /gpts/sniper/x HTTP/1.1\r\nConnection: close\r\n\r\n",
            b"GET /gpts/echo/a HTTP/1.0\r\n\r\n",
            b"GET /gpts/echo/a\r\n\r\n",
        ],
    )
    def test_raw_line_breaks_and_pipelining_never_leave_the_allow_list(self, raw: bytes, stack: ThreadedStack) -> None:
        """CR/LF in a target, pipelined or smuggled second requests: the backend only ever sees allowed paths."""
        before = len(stack.recorder.seen)
        stack.send(raw)
        assert stack.recorder.outside_allow_list() == []
        assert all(seen.target == "/echo/a" for seen in stack.recorder.seen[before:])


#: Pieces of generated paths: plain text, dots, escapes of every trick, controls, Unicode.
PIECES = st.sampled_from(
    [
        "a",
        "Z",
        "0",
        "-",
        "_",
        "~",
        ".",
        "..",
        "/",
        "//",
        "\\",
        ";",
        "%",
        "%2e",
        "%2E",
        "%2f",
        "%5c",
        "%25",
        "%252e",
        "%00",
        "%41",
        "%c0%ae",
        "%e2%80%a5",
        "%ef%bc%8e",
        "%ef%bc%8f",
        "?",
        "#",
        "=",
        "&",
        "+",
        "@",
        ":",
        "sniper",
        "_admin",
        "reset",
        "echo",
        "\u00e9",
        "\uff0e",
        "\x00",
        "\x01",
        "\t",
        "\x7f",
        " ",
    ]
)
#: Pieces that keep a path forwardable, so both outcomes are common.
SAFE = st.sampled_from(["a", "b", "Z", "9", "-", "_", "~", ".", "%41", "%20", "%25", ";", "=", "@", ":", "!", "?x=1"])
HEADS = st.sampled_from(["echo/", "echo/a/", "files/a/", "", "institutional/"])
ANY_PIECE = st.one_of(SAFE, PIECES, st.characters(codec="utf-8", exclude_characters="\r\n"))
#: Generated tails after "/gpts/": half from safe pieces only (mostly forwarded), half from anything.
TAILS = st.one_of(
    st.builds(lambda head, pieces: head + "".join(pieces), HEADS, st.lists(SAFE, min_size=1, max_size=8)),
    st.builds(lambda head, pieces: head + "".join(pieces), HEADS, st.lists(ANY_PIECE, max_size=10)),
)


class TestPathProperty:
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(tail=TAILS)
    def test_forwarded_exactly_or_refused(self, tail: str, stack: ThreadedStack) -> None:
        """Any path: the backend receives exactly the stripped path and query, or the gateway refuses (4xx)."""
        assume("\r" not in tail and "\n" not in tail)
        probe = os.urandom(8).hex()
        target = f"/gpts/{tail}"
        raw = target.encode("utf-8")
        request = b"GET %s HTTP/1.1\r\nHost: gateway.test\r\nX-Probe: %s\r\nConnection: close\r\n\r\n" % (
            raw,
            probe.encode(),
        )
        answer = stack.send(request)
        reached = [s for s in stack.recorder.seen if s.probe == probe]
        event("forwarded" if reached else f"refused {answer.status}")
        if reached:
            expected = target.removeprefix("/gpts").split(" ", 1)[0]
            expected = expected.removesuffix("?") if expected.count("?") == 1 else expected
            assert [s.target for s in reached] == [expected]
            assert answer.status == 200
        else:
            assert 400 <= answer.status < 500, (target, answer)
        assert stack.recorder.outside_allow_list() == []


class TestCommandLine:
    async def test_sniper_gateway_serves_until_sigterm(self, backend: str) -> None:
        """`sniper gateway --backend URL --port 0` logs its URL, forwards, and exits 0 on SIGTERM."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sniper",
            "gateway",
            "--backend",
            backend,
            "--port",
            "0",
            "--log-format",
            "json",
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        assert proc.stderr is not None
        try:
            url = ""
            while not url:
                line = await asyncio.wait_for(proc.stderr.readline(), 20)
                assert line, "the gateway exited before serving"
                if b"gateway_serving" in line:
                    import json

                    url = json.loads(line)["url"]
            async with aiohttp.ClientSession() as session, session.get(f"{url}whales/alerts") as r:
                assert r.status == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 20)
        assert code == 0


def gateway_args(*argv: str) -> Any:
    from sniper import cli

    return cli.build_parser().parse_args(["gateway", *argv])


class TestGatewayOptions:
    def test_defaults_are_the_config_defaults(self) -> None:
        """Without flags or variables, `sniper gateway` builds GatewayConfig's own defaults."""
        from sniper.config import gateway_config_from

        config = gateway_config_from(gateway_args("--backend", "http://127.0.0.1:8000"), {})
        assert config == GatewayConfig(backend="http://127.0.0.1:8000")

    def test_flags_then_environment(self) -> None:
        """Each gateway flag sets its field; SNIPER_GATEWAY_* apply without a flag; a flag wins."""
        from sniper.config import GATEWAY_OPTIONS, gateway_config_from

        env = {
            "SNIPER_BACKEND": "http://env:1",
            "SNIPER_GATEWAY_PORT": "9000",
            "SNIPER_GATEWAY_PREFIX": "/env",
            "SNIPER_GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8",
            "SNIPER_GATEWAY_ALLOW": "/a,/b/{x}",
        }
        argv = ["--port", "9100", "--path-prefix", "/api/gpts", "--host", "0.0.0.0", "--gateway-max-body", "10"]
        argv += ["--connect-timeout", "1.5", "--read-timeout", "2", "--nats", "nats://127.0.0.1:4222"]
        config = gateway_config_from(gateway_args(*argv), env)
        assert (config.backend, config.port, config.prefix, config.host) == (
            "http://env:1",
            9100,
            "/api/gpts",
            "0.0.0.0",
        )
        assert (config.max_body_bytes, config.connect_timeout, config.read_timeout) == (10, 1.5, 2.0)
        assert (config.allow, [str(n) for n in config.trusted_proxies]) == (("/a", "/b/{x}"), ["10.0.0.0/8"])
        assert config.nats == "nats://127.0.0.1:4222"
        assert {opt.var for opt in GATEWAY_OPTIONS} >= {"SNIPER_GATEWAY_PORT", "SNIPER_GATEWAY_PREFIX"}

    @pytest.mark.parametrize(
        ("argv", "env", "named"),
        [
            ([], {}, "--backend / SNIPER_BACKEND"),
            (["--backend", "nope"], {}, "--backend / SNIPER_BACKEND"),
            (["--backend", "http://h:1", "--path-prefix", "/gpts/"], {}, "--path-prefix / SNIPER_GATEWAY_PREFIX"),
            (["--backend", "http://h:1", "--port", "70000"], {}, "--port / SNIPER_GATEWAY_PORT"),
            (["--backend", "http://h:1", "--read-timeout", "0"], {}, "--read-timeout / SNIPER_GATEWAY_READ_TIMEOUT"),
            (["--backend", "http://h:1", "--allow", "nope"], {}, "--allow / SNIPER_GATEWAY_ALLOW"),
            (["--backend", "http://h:1"], {"SNIPER_GATEWAY_PORT": "x"}, "SNIPER_GATEWAY_PORT"),
            (["--backend", "http://h:1", "--nats", "http://x"], {}, "--nats / SNIPER_NATS"),
        ],
    )
    def test_bad_values_name_the_flag(self, argv: list[str], env: dict[str, str], named: str) -> None:
        """A value that cannot work: ConfigError naming the flag or variable (the CLI exits 2 with it)."""
        from messages import ConfigError
        from sniper.config import gateway_config_from

        with pytest.raises(ConfigError, match=named):
            gateway_config_from(gateway_args(*argv), env)

    def test_help_lists_every_gateway_flag(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`sniper gateway --help` names each flag with its variable and default."""
        from sniper import cli
        from sniper.config import GATEWAY_OPTIONS

        with pytest.raises(SystemExit):
            cli.main(["gateway", "--help"])
        out = " ".join(capsys.readouterr().out.split())
        for opt in GATEWAY_OPTIONS:
            assert opt.flag in out and opt.var in out
        assert "--backend URL" in out and "--nats URL" in out
