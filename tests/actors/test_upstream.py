"""Upstream calls: every way a call ends becomes a classified Outcome, in virtual time."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import aiohttp
import pytest
from aiohttp import web

from actors.upstream import (
    AiohttpTransport,
    ErrorClass,
    MockTransport,
    Outcome,
    Response,
    Transport,
    UpstreamClient,
    classify,
    parse_retry_after,
)
from marketsim import OversizeFault, serve
from runtime.clock import SystemClock, VirtualClock

NOW = VirtualClock.EPOCH


def http_date(ts: float) -> str:
    """An RFC 7231 HTTP-date for wall time `ts`."""
    return email.utils.formatdate(ts, usegmt=True)


def resp(status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, dict(headers or {}), body)


class TestClassifyStatus:
    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    def test_5xx_is_transient(self, status: int) -> None:
        """Every 5xx is a transient upstream_error carrying its status."""
        out = classify(resp(status, b'{"detail": "backend on fire"}'), now=NOW)
        assert (out.error_class, out.reason, out.status, out.detail) == (
            "transient",
            "upstream_error",
            status,
            "backend on fire",
        )
        assert not out.ok

    @pytest.mark.parametrize("status", [429, 418])
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ({"retry-after": "30"}, 30.0),
            ({"retry-after": " 2.5 "}, 2.5),
            ({"retry-after": "0"}, 0.0),
            ({"retry-after": http_date(NOW + 120)}, 120.0),
            ({"retry-after": http_date(NOW - 60)}, 0.0),
            ({}, None),
            ({"retry-after": ""}, None),
            ({"retry-after": "soon, please"}, None),
        ],
        ids=["delta", "delta-float", "zero", "http-date", "date-in-past", "missing", "empty", "garbage"],
    )
    def test_throttled_reads_retry_after(self, status: int, header: dict[str, str], expected: float | None) -> None:
        """429 and 418 are throttled/rate_limited, with Retry-After as seconds from `now`."""
        out = classify(resp(status, b"", header), now=NOW)
        assert (out.error_class, out.reason, out.status, out.retry_after) == (
            "throttled",
            "rate_limited",
            status,
            expected,
        )

    @pytest.mark.parametrize(
        ("status", "body", "detail"),
        [
            (402, b"", ""),
            (402, b'{"msg": "pay up"}', "pay up"),
            (401, b'{"msg": "Upgrade your plan to use this endpoint"}', "Upgrade your plan to use this endpoint"),
            (403, b'{"message": "subscription expired"}', "subscription expired"),
            (403, b'{"error": "API quota exhausted"}', "API quota exhausted"),
            (401, b'{"detail": "bad api key"}', "bad api key"),
            (403, b"", "forbidden"),
            (403, b"<html>denied</html>", "<html>denied</html>"),
        ],
        ids=["402", "402-msg", "401-plan", "403-subscription", "403-quota", "401-no-plan", "403-empty", "403-html"],
    )
    def test_entitlement(self, status: int, body: bytes, detail: str) -> None:
        """402, and 401/403 with or without a plan message, are entitlement/payment_required."""
        out = classify(resp(status, body), now=NOW)
        assert (out.error_class, out.reason, out.status, out.detail) == (
            "entitlement",
            "payment_required",
            status,
            detail,
        )

    @pytest.mark.parametrize("status", [404, 400, 405, 409, 410, 422, 301, 302])
    def test_other_non_2xx_is_endpoint_missing(self, status: int) -> None:
        """404 and any other non-2xx that is not 401/402/403/418/429/5xx mean the route does not fit."""
        out = classify(resp(status, b'{"detail": "no such route"}'), now=NOW)
        assert (out.error_class, out.reason, out.status, out.detail) == (
            "endpoint_missing",
            "not_found",
            status,
            "no such route",
        )

    @pytest.mark.parametrize(
        "body",
        [
            b'{"symbol": "SOL", "alerts": []}',
            b"[]",
            b"",
            b'{"code": "0", "msg": "success", "data": []}',
            b'{"code": 0, "data": {}}',
            b'{"code": "00000", "data": []}',
            b'{"code": 200, "data": []}',
            b'{"code": " OK "}',
            b'{"code": "success"}',
            b"[1, 2, 3]",
        ],
        ids=[
            "object",
            "empty-list",
            "empty-body",
            "cg-code-0",
            "int-0",
            "00000",
            "int-200",
            "ok-text",
            "success",
            "list",
        ],
    )
    @pytest.mark.parametrize("status", [200, 204])
    def test_ok_bodies(self, status: int, body: bytes) -> None:
        """A 2xx with a usable (possibly empty) body is ok and keeps the body."""
        out = classify(resp(status, body), now=NOW)
        assert (out.error_class, out.reason, out.status, out.body, out.ok) == ("ok", "ok", status, body, True)

    @pytest.mark.parametrize("body", [b"<html>maintenance</html>", b"{not json", b"\xff\xfe\x00", b"  "])
    def test_non_json_200_is_ok_at_this_layer(self, body: bytes) -> None:
        """A 200 that is not JSON passes as ok here; the payload decoder calls it bad_payload later."""
        out = classify(resp(200, body), now=NOW)
        assert (out.error_class, out.body) == ("ok", body)


class TestClassifyEnvelope:
    @pytest.mark.parametrize(
        ("body", "error_class", "reason", "detail"),
        [
            (b'{"code": "40001", "msg": "Server busy"}', "transient", "upstream_error", "code 40001: Server busy"),
            (b'{"code": "30001", "message": "internal"}', "transient", "upstream_error", "code 30001: internal"),
            (b'{"code": 1, "data": null}', "transient", "upstream_error", "code 1: "),
            (b'{"code": "50011", "msg": "Too frequent"}', "throttled", "rate_limited", "code 50011: Too frequent"),
            (b'{"code": "50061", "msg": "Too many"}', "throttled", "rate_limited", "code 50061: Too many"),
            (
                b'{"code": -1003, "msg": "Way too many requests"}',
                "throttled",
                "rate_limited",
                "code -1003: Way too many requests",
            ),
            (b'{"code": 429, "msg": "slow down"}', "throttled", "rate_limited", "code 429: slow down"),
            (
                b'{"code": "50111", "msg": "Plan does not include"}',
                "entitlement",
                "payment_required",
                "code 50111: Plan does not include",
            ),
            (
                b'{"code": "40301", "msg": "Upgrade plan"}',
                "entitlement",
                "payment_required",
                "code 40301: Upgrade plan",
            ),
            (
                b'{"code": 402, "msg": "Payment required"}',
                "entitlement",
                "payment_required",
                "code 402: Payment required",
            ),
            (
                b'{"code": "401", "msg": "API key missing"}',
                "entitlement",
                "payment_required",
                "code 401: API key missing",
            ),
        ],
        ids=[
            "cg-40001",
            "cg-message-key",
            "int-code-no-msg",
            "okx-50011",
            "okx-50061",
            "binance-1003",
            "int-429",
            "okx-50111",
            "cg-40301",
            "int-402",
            "str-401",
        ],
    )
    def test_error_envelope_in_200(self, body: bytes, error_class: str, reason: str, detail: str) -> None:
        """An error code inside an HTTP 200 envelope is classified like the matching HTTP status."""
        out = classify(resp(200, body), now=NOW)
        assert (out.error_class, out.reason, out.status, out.detail) == (error_class, reason, 200, detail)
        assert out.retry_after is None

    def test_envelope_message_is_truncated(self) -> None:
        """An envelope message longer than 200 characters is cut to 200."""
        out = classify(resp(200, b'{"code": "40001", "msg": "' + b"x" * 500 + b'"}'), now=NOW)
        assert out.detail == "code 40001: " + "x" * 200


class TestParseRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (None, None),
            ("", None),
            ("120", 120.0),
            ("  7 ", 7.0),
            ("0.25", 0.25),
            ("-5", 0.0),
            (http_date(NOW + 3600), 3600.0),
            (http_date(NOW), 0.0),
            (http_date(NOW - 1), 0.0),
            ("Thu, 01 Jan 2026 00:01:30 GMT", 90.0),
            ("tomorrow", None),
            ("Foo, 99 Bar 2026 99:99:99 GMT", None),
            ("12 seconds", None),
        ],
        ids=[
            "none",
            "empty",
            "delta",
            "padded",
            "fraction",
            "negative",
            "date-1h",
            "date-now",
            "date-past",
            "literal-date",
            "word",
            "bad-date",
            "delta-with-unit",
        ],
    )
    def test_values(self, value: str | None, expected: float | None) -> None:
        """Delta-seconds and HTTP-dates become non-negative seconds; anything else is None."""
        assert parse_retry_after(value, now=NOW) == expected

    @pytest.mark.parametrize(
        "value, expected",
        [("1e300", 1e9), ("inf", 1e9), ("-inf", 0.0), ("nan", None), ("Fri, 31 Dec 9999 23:59:59 GMT", 1e9)],
    )
    def test_extremes_stay_within_the_wire_limit(self, value: str, expected: float | None) -> None:
        """A hostile Retry-After is clamped to MAX_SECONDS, so the Degraded carrying it still decodes."""
        assert parse_retry_after(value, now=NOW) == expected


def json_handler(url: str) -> Response:
    return Response(200, {}, b'{"url": "' + url.encode() + b'"}')


class TestUpstreamClient:
    @pytest.mark.parametrize("base", ["http://backend:8000", "http://backend:8000/", "http://backend:8000//"])
    @pytest.mark.parametrize("path", ["/api/whale", "api/whale"])
    def test_url_joins_base_and_path(self, base: str, path: str) -> None:
        """Trailing slashes on the base and a missing leading slash on the path give one clean URL."""
        client = UpstreamClient(base, MockTransport(json_handler), clock=VirtualClock())
        assert client.url(path) == "http://backend:8000/api/whale"

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            (None, "http://b/api/ob"),
            ({}, "http://b/api/ob"),
            ({"symbol": "SOLUSDT"}, "http://b/api/ob?symbol=SOLUSDT"),
            ({"symbol": "SOL/USDT", "depth": "50"}, "http://b/api/ob?symbol=SOL%2FUSDT&depth=50"),
            ({"q": "a b&c=d"}, "http://b/api/ob?q=a+b%26c%3Dd"),
        ],
        ids=["none", "empty", "one", "slash", "reserved"],
    )
    async def test_query_is_encoded(self, query: dict[str, str] | None, expected: str) -> None:
        """The query string is URL-encoded and omitted when empty; the transport sees that URL."""
        transport = MockTransport(json_handler)
        client = UpstreamClient("http://b/", transport, clock=VirtualClock())
        out = await client.get("spot_ob", "/api/ob", query, budget=1)
        assert (client.url("/api/ob", query), transport.calls, out.ok) == (expected, [expected], True)

    async def test_sends_json_accept_and_user_agent(self) -> None:
        """Every request carries accept: application/json and the configured user agent."""
        seen: list[Mapping[str, str]] = []

        class Recording(Transport):
            async def get(self, url: str, headers: Mapping[str, str], *, max_body: int | None = None) -> Response:
                seen.append(dict(headers))
                return Response(200, {}, b"[]")

        client = UpstreamClient("http://b", Recording(), clock=VirtualClock(), user_agent="sniper-test/1")
        await client.get("whale", "/x", None, budget=1)
        assert seen == [{"accept": "application/json", "user-agent": "sniper-test/1"}]

    async def test_async_handler_result_is_classified(self) -> None:
        """A coroutine handler's response is awaited and classified like a plain one."""

        async def handler(url: str) -> Response:
            return Response(503, {}, b'{"detail": "down"}')

        client = UpstreamClient("http://b", MockTransport(handler), clock=VirtualClock())
        out = await client.get("etf", "/etf", None, budget=1)
        assert (out.error_class, out.reason, out.status, out.detail) == ("transient", "upstream_error", 503, "down")

    async def test_budget_times_out_in_virtual_time_when_advanced(self) -> None:
        """A handler slower than the budget yields 'timeout' exactly when the budget has passed."""
        clock = VirtualClock()

        async def slow(url: str) -> Response:
            await clock.sleep(10)
            return Response(200, {}, b"{}")

        client = UpstreamClient("http://b", MockTransport(slow), clock=clock)
        task = asyncio.create_task(client.get("heatmap", "/hm", None, budget=1))
        await clock.advance_to(0.999)
        assert not task.done()
        await clock.advance_to(1.0)
        assert task.done()
        out = task.result()
        assert (out.error_class, out.reason, out.status, out.latency_ms) == ("transient", "timeout", None, 1000.0)
        assert out.detail == "no answer within 1.00s"
        assert clock.pending_timers == 0

    async def test_budget_times_out_with_autojump(self) -> None:
        """With autojump, a timed-out call takes exactly the budget of virtual time."""
        clock = VirtualClock(autojump=True)

        async def slow(url: str) -> Response:
            await clock.sleep(10)
            return Response(200, {}, b"{}")

        client = UpstreamClient("http://b", MockTransport(slow), clock=clock)
        try:
            out = await client.get("heatmap", "/hm", None, budget=1)
        finally:
            clock.stop_autojump()
        assert (out.reason, out.latency_ms, clock.monotonic()) == ("timeout", 1000.0, 1.0)

    @pytest.mark.parametrize(
        ("exc", "reason"),
        [
            (aiohttp.ClientConnectionError("connection reset"), "unreachable"),
            (aiohttp.ServerDisconnectedError(), "unreachable"),
            (ConnectionRefusedError(111, "Connection refused"), "unreachable"),
            (OSError("name resolution failed"), "unreachable"),
            (aiohttp.ClientPayloadError("truncated body"), "upstream_error"),
            (aiohttp.InvalidURL("http://b/w"), "upstream_error"),
            (TimeoutError(), "timeout"),
        ],
        ids=["conn-error", "server-disconnected", "refused", "oserror", "payload", "invalid-url", "timeout-error"],
    )
    async def test_transport_errors_become_outcomes(self, exc: BaseException, reason: str) -> None:
        """A transport exception is never raised: it becomes a transient Outcome with a reason."""

        def failing(url: str) -> Response:
            raise exc

        client = UpstreamClient("http://b", MockTransport(failing), clock=VirtualClock())
        out = await client.get("whale", "/w", None, budget=2)
        assert (out.error_class, out.reason, out.status, out.body) == ("transient", reason, None, b"")
        if reason != "timeout":
            assert out.detail.startswith(type(exc).__name__ + ":")
            assert len(out.detail) <= 200

    @pytest.mark.parametrize("delay", [0.0, 0.05, 0.25, 1.5])
    async def test_latency_is_virtual_time(self, delay: float) -> None:
        """latency_ms is the virtual time the call took, in milliseconds."""
        clock = VirtualClock(autojump=True)

        async def handler(url: str) -> Response:
            await clock.sleep(delay)
            return Response(200, {}, b"[]")

        client = UpstreamClient("http://b", MockTransport(handler), clock=clock)
        try:
            out = await client.get("bias", "/b", None, budget=5)
        finally:
            clock.stop_autojump()
        assert out.ok is True
        assert out.latency_ms == pytest.approx(delay * 1000)

    async def test_retry_after_http_date_uses_clock_wall_time(self) -> None:
        """An HTTP-date Retry-After is measured against the injected clock's wall time."""
        clock = VirtualClock(start=NOW)
        await clock.advance(30)

        def handler(url: str) -> Response:
            return Response(429, {"retry-after": http_date(NOW + 90)}, b"")

        client = UpstreamClient("http://b", MockTransport(handler), clock=clock)
        out = await client.get("bias", "/b", None, budget=5)
        assert (out.error_class, out.retry_after) == ("throttled", 60.0)

    async def test_stats_count_requests_per_module_and_class(self) -> None:
        """stats.requests counts every call per module; by_class splits them by error class."""
        answers = {"/ok": Response(200, {}, b"[]"), "/gone": Response(404, {}, b""), "/pay": Response(402, {}, b"")}
        client = UpstreamClient(
            "http://b", MockTransport(lambda url: answers[url.removeprefix("http://b")]), clock=VirtualClock()
        )
        for module, path in [
            ("whale", "/ok"),
            ("whale", "/ok"),
            ("whale", "/gone"),
            ("etf", "/pay"),
            ("spot_ob", "/ok"),
        ]:
            await client.get(module, path, None, budget=1)
        assert client.stats.requests == {"whale": 3, "etf": 1, "spot_ob": 1}
        assert client.stats.by_class == {
            "whale": {"ok": 2, "endpoint_missing": 1},
            "etf": {"entitlement": 1},
            "spot_ob": {"ok": 1},
        }

    async def test_failures_are_counted_too(self) -> None:
        """Timeouts and connection errors count as requests of their module."""
        clock = VirtualClock(autojump=True)

        async def handler(url: str) -> Response:
            if url.endswith("/slow"):
                await clock.sleep(60)
            raise ConnectionRefusedError(111, "refused")

        client = UpstreamClient("http://b", MockTransport(handler), clock=clock)
        try:
            await client.get("heatmap", "/slow", None, budget=1)
            await client.get("heatmap", "/down", None, budget=1)
        finally:
            clock.stop_autojump()
        assert (client.stats.requests, client.stats.by_class) == ({"heatmap": 2}, {"heatmap": {"transient": 2}})

    async def test_close_closes_the_transport(self) -> None:
        """close() releases the transport."""
        closed: list[bool] = []

        class Closing(MockTransport):
            async def close(self) -> None:
                closed.append(True)

        client = UpstreamClient("http://b", Closing(json_handler), clock=VirtualClock())
        await client.close()
        assert closed == [True]


class TestOutcome:
    @pytest.mark.parametrize(
        ("error_class", "ok"),
        [
            ("ok", True),
            ("transient", False),
            ("throttled", False),
            ("entitlement", False),
            ("endpoint_missing", False),
            ("bad_payload", False),
        ],
    )
    def test_ok_property(self, error_class: ErrorClass, ok: bool) -> None:
        """Outcome.ok is true only for the ok class."""
        assert Outcome(error_class, "x").ok is ok


MIB = 1024 * 1024


class TestBodyCap:
    def test_default_cap_is_4_mib(self) -> None:
        """Without max_body a client reads at most 4 MiB per body; a cap must be positive."""
        assert UpstreamClient("http://b", MockTransport(json_handler), clock=VirtualClock()).max_body == 4 * MIB
        with pytest.raises(ValueError, match="max_body"):
            UpstreamClient("http://b", MockTransport(json_handler), clock=VirtualClock(), max_body=0)

    @pytest.mark.parametrize(("size", "ok"), [(0, True), (999, True), (1000, True), (1001, False), (17_000_000, False)])
    async def test_2xx_over_the_cap_is_bad_payload_too_large(self, size: int, ok: bool) -> None:
        """A 2xx body up to the cap is ok; one byte more is bad_payload with a too_large detail and no body."""
        body = b" " * size
        client = UpstreamClient(
            "http://b", MockTransport(lambda url: Response(200, {}, body)), clock=VirtualClock(), max_body=1000
        )
        out = await client.get("whale", "/w", None, budget=1)
        if ok:
            assert (out.error_class, out.body) == ("ok", body)
        else:
            assert (out.error_class, out.reason, out.status, out.body) == ("bad_payload", "bad_payload", 200, b"")
            assert out.detail == "too_large: body exceeds 1000 bytes"
        assert client.stats.by_class == {"whale": {out.error_class: 1}}

    @pytest.mark.parametrize(
        ("status", "headers", "error_class", "reason", "retry_after"),
        [
            (429, {"retry-after": "30"}, "throttled", "rate_limited", 30.0),
            (503, {}, "transient", "upstream_error", None),
            (402, {}, "entitlement", "payment_required", None),
            (404, {}, "endpoint_missing", "not_found", None),
        ],
        ids=["429", "503", "402", "404"],
    )
    async def test_error_status_over_the_cap_keeps_its_class(
        self,
        status: int,
        headers: dict[str, str],
        error_class: ErrorClass,
        reason: str,
        retry_after: float | None,
    ) -> None:
        """A long error body is not read, but the status (and Retry-After) still decide the outcome."""
        client = UpstreamClient(
            "http://b",
            MockTransport(lambda url: Response(status, headers, b"x" * 5000)),
            clock=VirtualClock(),
            max_body=1000,
        )
        out = await client.get("bias", "/b", None, budget=1)
        assert (out.error_class, out.reason, out.status, out.retry_after, out.body) == (
            error_class,
            reason,
            status,
            retry_after,
            b"",
        )
        assert out.detail == "too_large: body exceeds 1000 bytes"

    async def test_a_transport_that_ignores_the_cap_is_still_capped(self) -> None:
        """The client checks what any transport returns: a body over the cap is too_large even if read whole."""

        class Careless(Transport):
            async def get(self, url: str, headers: Mapping[str, str], *, max_body: int | None = None) -> Response:
                return Response(200, {}, b"[" + b"0," * 5000 + b"0]")

        out = await UpstreamClient("http://b", Careless(), clock=VirtualClock(), max_body=1000).get(
            "heatmap", "/h", None, budget=1
        )
        assert (out.reason, out.detail) == ("bad_payload", "too_large: body exceeds 1000 bytes")

    async def test_latency_is_measured_for_a_too_large_body(self) -> None:
        """A too_large outcome still carries the call's latency."""
        clock = VirtualClock(autojump=True)

        async def slow_and_big(url: str) -> Response:
            await clock.sleep(0.25)
            return Response(200, {}, b" " * 2000)

        client = UpstreamClient("http://b", MockTransport(slow_and_big), clock=clock, max_body=1000)
        try:
            out = await client.get("spot_ob", "/ob", None, budget=5)
        finally:
            clock.stop_autojump()
        assert (out.reason, out.latency_ms) == ("bad_payload", 250.0)


@contextlib.asynccontextmanager
async def http_server(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    """A one-route aiohttp server on a free loopback port (every path goes to `handler`); yields its URL."""
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class TestBodyCapOverRealHttp:
    """AiohttpTransport against real sockets: the cap stops reading, and the connection is let go."""

    async def test_endless_body_stops_at_the_cap_and_drops_the_connection(self) -> None:
        """A body that never ends is read to the cap only; the server sees its client go away."""
        gone = asyncio.Event()
        sent = 0

        async def endless(request: web.Request) -> web.StreamResponse:
            nonlocal sent
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            try:
                while True:
                    await response.write(b" " * 65536)
                    sent += 65536
            finally:
                gone.set()

        async with http_server(endless) as url:
            client = UpstreamClient(url, AiohttpTransport(), clock=SystemClock(), max_body=MIB)
            try:
                out = await client.get("whale", "/w", None, budget=10)
                await asyncio.wait_for(gone.wait(), 5)
            finally:
                await client.close()
        assert (out.error_class, out.reason, out.status) == ("bad_payload", "bad_payload", 200)
        assert out.detail == f"too_large: body exceeds {MIB} bytes"
        assert sent < 64 * MIB  # the server stopped long before "forever": the client hung up

    async def test_declared_content_length_over_the_cap_is_refused_before_reading(self) -> None:
        """A Content-Length above the cap is refused at once, though the body never arrives."""
        gone = asyncio.Event()

        async def declares_a_gigabyte(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = 10**9
            await response.prepare(request)
            try:
                await response.write(b"[")
                await asyncio.Event().wait()  # the rest never comes
            finally:
                gone.set()
            return response  # pragma: no cover - cancelled when the client hangs up

        async with http_server(declares_a_gigabyte) as url:
            client = UpstreamClient(url, AiohttpTransport(), clock=SystemClock(), max_body=MIB)
            try:
                out = await client.get("spot_ob", "/ob", None, budget=10)
                await asyncio.wait_for(gone.wait(), 5)
            finally:
                await client.close()
        assert (out.reason, out.status) == ("bad_payload", 200)
        assert out.detail == f"too_large: body exceeds {MIB} bytes (Content-Length 1000000000)"

    async def test_marketsim_17_mb_book_is_too_large_and_the_session_lives_on(self) -> None:
        """marketsim's 10^6-level book (~17 MB, streamed) is too_large at the default cap; the next call is ok."""
        async with serve(port=0, faults={"spot_ob": OversizeFault(levels=1_000_000)}) as srv:
            client = UpstreamClient(srv.url, AiohttpTransport(), clock=SystemClock())
            path, query = "/spot/orderbook", {"symbol": "SOLUSDT", "exchange": "binance", "depth": "50"}
            try:
                big = await client.get("spot_ob", path, query, budget=10)
                srv.sim.clear_fault("spot_ob")
                healthy = await client.get("spot_ob", path, query, budget=10)
            finally:
                await client.close()
        assert (big.reason, big.status, big.detail) == ("bad_payload", 200, "too_large: body exceeds 4194304 bytes")
        assert healthy.ok and len(healthy.body) < 10_000

    async def test_marketsim_body_under_the_cap_is_read_whole(self) -> None:
        """A 2 MB oversize whale body fits the 4 MiB cap: it is read whole and left to the fetcher to trim."""
        async with serve(port=0, faults={"whale": OversizeFault(size=2_000_000)}) as srv:
            client = UpstreamClient(srv.url, AiohttpTransport(), clock=SystemClock())
            try:
                out = await client.get("whale", "/whales/alerts", {"symbol": "SOL"}, budget=10)
            finally:
                await client.close()
        assert out.ok and 2_000_000 <= len(out.body) < 2_100_000
