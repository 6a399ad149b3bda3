"""Fake Binance, OKX and Bybit public APIs, over loopback HTTP or in memory: documented shapes and errors.

::

    async with FakeBinance() as fake:                       # real HTTP on 127.0.0.1, port 0
        source = BinanceSource(transport, clock=SystemClock(), api=fake.url, futures_api=fake.url)
        fake.script.push(FakeBinance.too_many("30"))         # the next request, whatever its path
        fake.scripts["/api/v3/depth"].push(FakeBinance.banned(http_date))  # the next depth request
        fake.requests[0].path, .params, .at, .status, .weight

    fake = FakeOkx(clock=vclock)                            # no server: fake.transport is the transport
    OkxSource(fake.transport, clock=vclock)

Each fake serves SOL, BTC and ETH (``ASSETS``) in its venue's spelling; any
other symbol gets the venue's own "no such instrument" answer (Binance 400
``-1121``, OKX ``51001`` in a 200, Bybit ``retCode`` 10001). Answers are the
documented bodies (NOTES.md, "Venues"): decimal strings, millisecond times,
OKX's string-code envelope, Bybit's ``retCode`` envelope. `scramble_books`
sends book levels out of order (the clients sort, as ccxt does).

Scripted answers (`VenueReply`: status, JSON body or `raw` bytes, headers,
delay on the fake's clock, dropped connection) come first from the path's
own script (`scripts[path]`), then from `script`, whose default is the
normal answer. Every request is recorded with its arrival time on the
fake's clock and, at Binance, its request weight as Binance counts it;
`max_in_window` is what a venue's limiter would see.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiohttp import web

from actors.upstream import BodyTooLarge, Response, Transport
from runtime.clock import Clock

from . import Answer, LoopbackFake, Reply, Script

#: asset -> (price, tick, contract value at OKX)
ASSETS: dict[str, tuple[float, float, str]] = {"SOL": (150.0, 0.01, "1"), "BTC": (60000.0, 0.1, "0.01")}
ASSETS["ETH"] = (3000.0, 0.01, "0.1")
#: Long/short account ratio series, oldest first (the latest is last): SOL up, BTC flat, ETH down.
RATIOS = {"SOL": [2.0] * 95 + [2.4], "BTC": [1.5] * 96, "ETH": [1.8] * 95 + [1.4]}
FUNDING = {"SOL": "0.00025000", "BTC": "0.00010000", "ETH": "-0.00005000"}


@dataclass(frozen=True, slots=True)
class VenueReply(Reply):
    """A `Reply` with response headers (Retry-After) and, instead of `body`, `raw` bytes sent as they are."""

    headers: Mapping[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def slow(self, seconds: float) -> VenueReply:
        return dataclasses.replace(self, delay=self.delay + seconds)


@dataclass(frozen=True, slots=True)
class VenueAnswer(Answer):
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def encoded(self) -> bytes:
        return self.raw if self.raw is not None else json.dumps(self.body).encode()


@dataclass(frozen=True, slots=True)
class VenueRequest:
    """One request as the fake saw it; `status` is what it answered (None: dropped, or still waiting)."""

    path: str
    params: Mapping[str, str]
    at: float  # the fake's clock.monotonic() on arrival
    weight: int = 0  # Binance's request weight for it (0 at other venues)
    status: int | None = None


def levels(price: float, tick: float, n: int, side: int) -> list[list[str]]:
    """`n` book levels one tick apart from `price` (side -1: bids going down, +1: asks going up)."""
    digits = max(0, -math.floor(math.log10(tick)))
    return [[f"{price + side * tick * (i + 1):.{digits}f}", f"{1 + (i * 7) % 13 / 4:.4f}"] for i in range(n)]


class VenueFake(LoopbackFake):
    """What the three venue fakes share: scripts, request records, window counts, an in-memory transport."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self.script = Script()
        self.scripts: defaultdict[str, Script] = defaultdict(Script)
        self.requests: list[VenueRequest] = []
        self.scramble_books = False
        #: An `actors.upstream.Transport` that calls `handle` without sockets (for autojump virtual time).
        self.transport = FakeTransport(self)

    # -- what each venue implements --------------------------------------------------------------------------
    def route(self, path: str, params: Mapping[str, str]) -> VenueAnswer:
        raise NotImplementedError

    def weight(self, path: str, params: Mapping[str, str]) -> int:
        return 0

    # -- views -------------------------------------------------------------------------------------------------
    def on(self, *paths: str) -> list[VenueRequest]:
        """The requests to any of `paths`, in arrival order."""
        return [r for r in self.requests if r.path in paths]

    def max_in_window(self, window: float, paths: Iterable[str], *, weighted: bool = False) -> int:
        """Most requests (or weight) on `paths` that arrived within any `window` seconds, as a venue counts."""
        wanted = set(paths)
        arrivals = [(r.at, r.weight if weighted else 1) for r in self.requests if r.path in wanted]
        best = used = first = 0
        for at, units in arrivals:
            used += units
            while arrivals[first][0] <= at - window:
                used -= arrivals[first][1]
                first += 1
            best = max(best, used)
        return best

    def used_weight(self, window: float) -> int:
        """Weight of the requests that arrived in the last `window` seconds (Binance's X-MBX-USED-WEIGHT-1M)."""
        since, used = self.clock.monotonic() - window, 0
        for request in reversed(self.requests):
            if request.at <= since:
                break
            used += request.weight
        return used

    # -- answering ---------------------------------------------------------------------------------------------
    async def handle(self, method: str, path: str, params: Mapping[str, Any] | Any) -> VenueAnswer:
        query = {str(k): str(v) for k, v in params.items()} if isinstance(params, Mapping) else {}
        index = len(self.requests)
        self.requests.append(VenueRequest(path, query, self.clock.monotonic(), self.weight(path, query)))
        self.changed.set()
        answer = VenueAnswer(0, drop=True)
        try:
            own = self.scripts.get(path)
            reply = own.queue.popleft() if own is not None and own.queue else self.script.next()
            answer = await self._answer(reply, lambda: self.route(path, query))
        finally:
            status = None if answer.drop else answer.status
            self.requests[index] = dataclasses.replace(self.requests[index], status=status)
            self.changed.set()
        return answer

    async def _answer(self, reply: Reply, normal: Callable[[], VenueAnswer]) -> VenueAnswer:
        if reply.delay > 0:
            await self.clock.sleep(reply.delay)
        if reply.drop:
            return VenueAnswer(0, drop=True)
        headers = dict(reply.headers) if isinstance(reply, VenueReply) else {}
        if isinstance(reply, VenueReply) and reply.raw is not None:
            return VenueAnswer(reply.status, headers=headers, raw=reply.raw)
        if reply.body is not None:
            return VenueAnswer(reply.status, reply.body, headers=headers)
        if reply.status != 200:
            return VenueAnswer(reply.status, {"msg": "Internal Server Error"}, headers=headers)
        answer = normal()
        return dataclasses.replace(answer, headers={**answer.headers, **headers})

    async def _http(self, request: web.Request) -> web.StreamResponse:
        answer = await self.handle(request.method, request.path, dict(request.query))
        if answer.drop:
            if request.transport is not None:
                request.transport.close()
            return web.Response()  # never written: the connection is gone
        kind = "text/plain" if answer.raw is not None else "application/json"
        headers = {"Content-Type": kind, **answer.headers}
        return web.Response(status=answer.status, body=answer.encoded(), headers=headers)

    # -- canned answers for `script` -----------------------------------------------------------------------------
    @staticmethod
    def error(status: int = 503) -> VenueReply:
        return VenueReply(status, {"msg": "Service Unavailable"})

    @staticmethod
    def malformed(raw: bytes = b'{"bids": [["150.0", "1.0"]') -> VenueReply:
        """A 200 whose body is not the documented shape (truncated JSON by default)."""
        return VenueReply(200, raw=raw)


class FakeTransport(Transport):
    """`actors.upstream.Transport` over a fake's `handle`: no sockets, so autojump virtual time works."""

    def __init__(self, fake: VenueFake) -> None:
        self.fake = fake

    async def get(self, url: str, headers: Mapping[str, str], *, max_body: int | None = None) -> Response:
        parts = urlsplit(url)
        answer = await self.fake.handle("GET", parts.path, dict(parse_qsl(parts.query)))
        if answer.drop:
            raise aiohttp.ServerDisconnectedError()
        head = {k.lower(): v for k, v in answer.headers.items()}
        body = answer.encoded()
        if max_body is not None and len(body) > max_body:
            raise BodyTooLarge(max_body, status=answer.status, headers=head)
        return Response(answer.status, head, body)


def _asset(symbol: str, suffix: str) -> str | None:
    asset = symbol.removesuffix(suffix)
    return asset if symbol.endswith(suffix) and asset in ASSETS else None


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(params.get(name, default))
    except ValueError:
        return -1


class FakeBinance(VenueFake):
    """Binance spot ``/api/v3/depth`` and USD-M ``premiumIndex``, ``fundingInfo``, ``globalLongShortAccountRatio``."""

    #: Symbols fundingInfo lists (an adjusted interval, in hours); others keep 8.
    funding_hours: dict[str, int] = {"ETHUSDT": 4}  # noqa: RUF012  # read-only table

    def weight(self, path: str, params: Mapping[str, str]) -> int:
        if path == "/api/v3/depth":
            limit = _int(params, "limit", 100)
            return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        if path == "/fapi/v1/premiumIndex":
            return 1 if "symbol" in params else 10
        return 0  # fundingInfo and /futures/data count requests in their own limits

    def route(self, path: str, params: Mapping[str, str]) -> VenueAnswer:
        now_ms = int(self.clock.now() * 1000)
        if path == "/fapi/v1/fundingInfo":
            listed = [
                {"symbol": s, "fundingIntervalHours": h, "disclaimer": False} for s, h in self.funding_hours.items()
            ]
            return VenueAnswer(200, listed)
        asset = _asset(params.get("symbol", ""), "USDT")
        if path not in ("/api/v3/depth", "/fapi/v1/premiumIndex", "/futures/data/globalLongShortAccountRatio"):
            return VenueAnswer(404, {"code": -5000, "msg": "Path not found"})
        if asset is None:
            return VenueAnswer(400, {"code": -1121, "msg": "Invalid symbol."})
        price, tick, _ = ASSETS[asset]
        if path == "/api/v3/depth":
            n = min(max(_int(params, "limit", 100), 1), 5000)
            bids, asks = levels(price, tick, n, -1), levels(price, tick, n, 1)
            if self.scramble_books:
                bids, asks = bids[::-1], asks[1::2] + asks[::2]
            used = self.used_weight(60.0)
            body = {"lastUpdateId": 1027024, "bids": bids, "asks": asks}
            return VenueAnswer(200, body, headers={"X-MBX-USED-WEIGHT-1M": str(used)})
        if path == "/fapi/v1/premiumIndex":
            hours = self.funding_hours.get(params["symbol"], 8)
            step = hours * 3_600_000
            return VenueAnswer(
                200,
                {
                    "symbol": params["symbol"],
                    "markPrice": f"{price:.8f}",
                    "indexPrice": f"{price:.8f}",
                    "estimatedSettlePrice": f"{price:.8f}",
                    "lastFundingRate": FUNDING[asset],
                    "interestRate": "0.00010000",
                    "nextFundingTime": (now_ms // step + 1) * step,
                    "time": now_ms,
                },
            )
        points = RATIOS[asset][-min(max(_int(params, "limit", 30), 1), 500) :]
        start = now_ms // 300_000 * 300_000 - (len(points) - 1) * 300_000
        rows = [
            {
                "symbol": params["symbol"],
                "longShortRatio": f"{r:.4f}",
                "longAccount": f"{r / (1 + r):.4f}",
                "shortAccount": f"{1 / (1 + r):.4f}",
                "timestamp": start + i * 300_000,
            }
            for i, r in enumerate(points)
        ]
        return VenueAnswer(200, rows)

    @staticmethod
    def too_many(retry_after: str) -> VenueReply:
        """429 with Retry-After (seconds or an HTTP-date), as Binance answers a weight overrun."""
        body = {"code": -1003, "msg": "Too much request weight used; current limit is 6000 per 1 MINUTE."}
        return VenueReply(429, body, headers={"Retry-After": retry_after})

    @staticmethod
    def banned(retry_after: str) -> VenueReply:
        """418: the IP ban that follows ignored 429s (2 minutes to 3 days)."""
        body = {"code": -1003, "msg": "Way too much request weight used; IP banned until 1767229200000."}
        return VenueReply(418, body, headers={"Retry-After": retry_after})


class FakeOkx(VenueFake):
    """OKX ``market/books``, ``public/funding-rate``, the contract long/short ratio, liquidation orders, mark price."""

    def route(self, path: str, params: Mapping[str, str]) -> VenueAnswer:
        now_ms = int(self.clock.now() * 1000)
        if path == "/api/v5/public/liquidation-orders":
            return self._liquidations(params, now_ms)
        inst = params.get("instId", "")
        spot, swap = _asset(inst, "-USDT"), _asset(inst, "-USDT-SWAP")
        if path == "/api/v5/market/books" and spot is not None:
            size = _int(params, "sz", 1)
            if not 1 <= size <= 400:
                return self.envelope([], code="51000", msg="Parameter sz error")
            price, tick, _ = ASSETS[spot]
            bids = [[*lv, "0", "3"] for lv in levels(price, tick, size, -1)]
            asks = [[*lv, "0", "2"] for lv in levels(price, tick, size, 1)]
            if self.scramble_books:
                bids, asks = bids[::-1], asks[1::2] + asks[::2]
            return self.envelope([{"asks": asks, "bids": bids, "ts": str(now_ms)}])
        if swap is None:
            return self.envelope([], code="51001", msg="Instrument ID does not exist")
        price, _, ct_val = ASSETS[swap]
        if path == "/api/v5/public/funding-rate":
            settles = (now_ms // 28_800_000 + 1) * 28_800_000
            funding = {"instId": inst, "instType": "SWAP", "method": "current_period", "fundingRate": FUNDING[swap]}
            funding |= {"nextFundingRate": "", "fundingTime": str(settles), "ts": str(now_ms)}
            return self.envelope([funding | {"nextFundingTime": str(settles + 28_800_000)}])
        if path == "/api/v5/rubik/stat/contracts/long-short-account-ratio-contract":
            points = RATIOS[swap][-min(max(_int(params, "limit", 100), 1), 100) :]
            newest = now_ms // 300_000 * 300_000
            return self.envelope([[str(newest - i * 300_000), f"{r:.4f}"] for i, r in enumerate(reversed(points))])
        if path == "/api/v5/public/mark-price":
            return self.envelope([{"instId": inst, "instType": "SWAP", "markPx": f"{price:.2f}", "ts": str(now_ms)}])
        if path == "/api/v5/public/instruments":
            spec = {"instId": inst, "instType": "SWAP", "ctVal": ct_val, "ctValCcy": swap, "ctType": "linear"}
            return self.envelope([spec | {"settleCcy": "USDT", "instFamily": f"{swap}-USDT"}])
        return VenueAnswer(404, {"code": "50000", "msg": "Not Found", "data": []})

    def _liquidations(self, params: Mapping[str, str], now_ms: int) -> VenueAnswer:
        family = params.get("instFamily") or params.get("uly")
        if params.get("instType") != "SWAP" or not family:
            return self.envelope([], code="50014", msg="Parameter instFamily can not be empty", status=400)
        asset = _asset(family, "-USDT")
        if asset is None:
            return self.envelope([], code="51001", msg="Instrument ID does not exist")
        price, _, _ = ASSETS[asset]
        details = []  # longs flushed below the price, shorts above, one a minute; three from hours ago
        for k in range(1, 31):
            side, sign = ("long", -1) if k % 3 else ("short", 1)
            ago = k * 60_000 if k <= 27 else k * 600_000
            px = price * (1 + sign * 0.002 * (1 + k % 5))
            details.append({"bkLoss": "0", "bkPx": f"{px:.2f}", "ccy": "", "posSide": side})
            details[-1] |= {"side": "sell" if side == "long" else "buy", "sz": str(k % 4 + 1), "ts": str(now_ms - ago)}
        limit = min(max(_int(params, "limit", 100), 1), 100)
        batch = {"details": details[:limit], "instFamily": family, "instId": f"{family}-SWAP", "instType": "SWAP"}
        return self.envelope([batch | {"uly": family}])

    @staticmethod
    def envelope(data: list[Any], *, code: str = "0", msg: str = "", status: int = 200) -> VenueAnswer:
        return VenueAnswer(status, {"code": code, "msg": msg, "data": data})

    @staticmethod
    def too_many(status: int = 429) -> VenueReply:
        """Code 50011, with HTTP 429 or inside a 200."""
        return VenueReply(status, {"code": "50011", "msg": "Too Many Requests", "data": []})

    @staticmethod
    def code(code: str, msg: str, status: int = 200) -> VenueReply:
        return VenueReply(status, {"code": code, "msg": msg, "data": []})


class FakeBybit(VenueFake):
    """Bybit v5 ``market/orderbook`` (spot and linear)."""

    def route(self, path: str, params: Mapping[str, str]) -> VenueAnswer:
        if path != "/v5/market/orderbook":
            return VenueAnswer(404, {"retCode": 10017, "retMsg": "route not found"})
        asset = _asset(params.get("symbol", ""), "USDT")
        category = params.get("category")
        top = {"spot": 200, "linear": 500}.get(category or "")
        if top is None or asset is None:
            return self.ret_code_answer(10001, "params error: Symbol Is Invalid")
        limit = _int(params, "limit", 1)
        if not 1 <= limit <= top:
            return self.ret_code_answer(10001, "params error: limit invalid")
        price, tick, _ = ASSETS[asset]
        bids, asks = levels(price, tick, limit, -1), levels(price, tick, limit, 1)
        if self.scramble_books:
            bids, asks = bids[::-1], asks[1::2] + asks[::2]
        now_ms = int(self.clock.now() * 1000)
        result = {"s": params["symbol"], "b": bids, "a": asks, "ts": now_ms, "u": 18521288, "seq": 7961638724}
        return VenueAnswer(200, {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": now_ms})

    @staticmethod
    def ret_code_answer(code: int, msg: str) -> VenueAnswer:
        return VenueAnswer(200, {"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": 0})

    @staticmethod
    def ret_code(code: int, msg: str) -> VenueReply:
        """An error ``retCode`` inside an HTTP 200 (10006: too many visits; 10016: server error)."""
        return VenueReply(200, {"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": 0})

    @staticmethod
    def too_frequent() -> VenueReply:
        """403 "access too frequent": an IP ban of at least 10 minutes."""
        return VenueReply(403, raw=b"403 Forbidden: access too frequent. Please try again later.")

    @staticmethod
    def geo_blocked() -> VenueReply:
        """403 from the CDN for a blocked country: not a rate limit."""
        return VenueReply(403, raw=b"The CloudFront distribution is configured to block access from your country.")


__all__ = ["ASSETS", "FakeBinance", "FakeBybit", "FakeOkx", "FakeTransport", "VenueFake", "VenueReply", "VenueRequest"]
