"""Abuse requests for the gateway, as raw bytes (clients normalise paths; these are sent over sockets).

Each entry aims at something the recording backend of `test_proxy` must never
see: its ``/_admin/reset`` route (not in its OpenAPI document), a path off the
allow-list, or a path spelled so that the gateway and the backend would read
it differently. `expected` is the status the gateway (or aiohttp's own parser,
for what never reaches a handler) answers; the backend must see none of them.

The recording backend documents ``/institutional/bias`` (GET, POST),
``/whales/alerts`` (GET), ``/echo/{a}``, ``/echo/{a}/{b}``, ``/echo/{a}/{b}/{c}``
(any method it lists) and ``/files/{a}/{b}`` (GET); the gateway's prefix is
``/gpts``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Abuse:
    """One raw request: its category, the bytes sent and the status expected back."""

    category: str
    raw: bytes
    expected: int

    @property
    def id(self) -> str:
        line = self.raw.split(b"\r\n", 1)[0].decode("latin-1")
        return f"{self.category}:{line[:90]!r}"


def request(target: str | bytes, method: str = "GET", headers: tuple[str, ...] = (), body: bytes = b"") -> bytes:
    """A raw HTTP/1.1 request closing its connection; `target` goes into the request line untouched."""
    raw_target = target if isinstance(target, bytes) else target.encode("utf-8")
    lines = ["Host: gateway.test", *headers, "Connection: close"]
    head = b"%s %s HTTP/1.1\r\n" % (method.encode(), raw_target) + "".join(f"{h}\r\n" for h in lines).encode()
    return head + b"\r\n" + body


#: Spellings of "..": raw, percent-encoded, double and triple encoded, overlong UTF-8, path parameters,
#: trailing blanks and controls, Unicode dots that NFKC folds to ".".
DOTDOT = (
    "..",
    "%2e%2e",
    "%2E%2E",
    ".%2e",
    "%2e.",
    "%2E.",
    "%252e%252e",
    "%252E%252E",
    ".%252e",
    "%25252e%25252e",
    "%2525252e%2525252e",
    "%c0%ae%c0%ae",
    "%C0%AE%C0%AE",
    "%e0%80%ae%e0%80%ae",
    "%f0%80%80%ae%f0%80%80%ae",
    "%c0.%c0.",
    "..;",
    "%2e%2e;",
    "..;jsessionid=1",
    "..%3b",
    "..%20",
    "..%09",
    "..%00",
    "%2e%2e%00",
    "%ef%bc%8e%ef%bc%8e",
    "%e2%80%a5",
    "%e2%80%a4%e2%80%a4",
    "...",
)
#: Where a ".." is put: before the admin route, deeper, inside a templated route, at the end.
DOTDOT_PLACES = (
    "/gpts/{d}/_admin/reset",
    "/gpts/institutional/{d}/{d}/_admin/reset",
    "/gpts/echo/{d}/_admin/reset",
    "/gpts/whales/{d}",
)
DOT = ("%2e", "%2E", ".", "%252e", "%c0%ae", ".;", "%ef%bc%8e", "%e2%80%a4")
DOT_PLACES = ("/gpts/{d}/_admin/reset", "/gpts/institutional/{d}/bias")
#: Slashes hidden in a segment: encoded, double encoded, overlong, fullwidth.
SLASH = ("%2f", "%2F", "%252f", "%25252f", "%c0%af", "%e0%80%af", "%ef%bc%8f")
SLASH_PLACES = (
    "/gpts/..{s}_admin{s}reset",
    "/gpts/institutional{s}..{s}..{s}_admin{s}reset",
    "/gpts/{s}_admin{s}reset",
    "/gpts/echo/a{s}b",
)
#: Backslashes: raw, encoded, double encoded, overlong, fullwidth and small reverse solidus.
BACKSLASH = ("\\", "%5c", "%5C", "%255c", "%c1%9c", "%ef%bc%bc", "%ef%b9%a8")
BACKSLASH_PLACES = ("/gpts/..{b}_admin{b}reset", "/gpts/{b}_admin{b}reset", "/gpts/echo/a{b}b")
#: Controls, NUL, format and separator characters, encoded (raw ones never pass aiohttp's parser).
CONTROL = (
    "%00",
    "%0a",
    "%0d",
    "%0d%0a",
    "%09",
    "%1b",
    "%7f",
    "%c2%85",
    "%c2%80",
    "%e2%80%8b",
    "%e2%80%ae",
    "%e2%80%a8",
    "%2500",
    "%ed%a0%80",
)
CONTROL_PLACES = ("/gpts/institutional/bias{c}", "/gpts/echo/a{c}b")
#: Broken percent escapes, including IIS's %u form.
MALFORMED = ("%", "%2", "%zz", "%%", "%u002e", "%g0")
MALFORMED_PLACES = ("/gpts/institutional/bias{m}", "/gpts/{m}/_admin/reset")


def _corpus() -> list[Abuse]:
    out: list[Abuse] = []

    def add(category: str, expected: int, *targets: str, method: str = "GET") -> None:
        out.extend(Abuse(category, request(t, method), expected) for t in targets)

    add("dotdot", 400, *(place.format(d=d) for place in DOTDOT_PLACES for d in DOTDOT))
    add("dot", 400, *(place.format(d=d) for place in DOT_PLACES for d in DOT))
    add("encoded_slash", 400, *(place.format(s=s) for place in SLASH_PLACES for s in SLASH))
    add("backslash", 400, *(place.format(b=b) for place in BACKSLASH_PLACES for b in BACKSLASH))
    add("control", 400, *(place.format(c=c) for place in CONTROL_PLACES for c in CONTROL))
    add("malformed_escape", 400, *(place.format(m=m) for place in MALFORMED_PLACES for m in MALFORMED))
    add(
        "empty_segment",
        400,
        "/gpts//_admin/reset",
        "/gpts///_admin/reset",
        "/gpts/_admin//reset",
        "/gpts/institutional//bias",
        "/gpts/institutional/bias/",
        "/gpts/whales/alerts//",
        "/gpts//",
        "/gpts/echo//a",
        "/gpts/echo/a//b",
        "/gpts//institutional/bias",
    )
    add(
        "too_deep",
        400,
        "/gpts/%2525252525252e%2525252525252e/_admin/reset",
        "/gpts/" + "%2e%2e/" * 900 + "_admin/reset",
    )
    add(
        "absolute_form",
        400,
        "http://backend/gpts/_admin/reset",
        "http://gateway.test/gpts/institutional/bias",
        "https://gateway.test/gpts/whales/alerts?symbol=SOL",
        "HTTP://gateway.test/gpts/institutional/bias",
        "http://127.0.0.1:1/gpts/_admin/reset",
        "http://user:pass@gateway.test/gpts/_admin/reset",
    )
    add(
        "fragment",
        400,
        "/gpts/institutional/bias#/../../_admin/reset",
        "/gpts/_admin/reset#",
        "/gpts/whales/alerts?symbol=SOL#x",
    )
    add("bad_query", 400, "/gpts/institutional/bias?x=%zz", "/gpts/whales/alerts?symbol=%")
    add(
        "prefix_spelling",
        400,
        "/%67pts/_admin/reset",
        "/%67%70%74%73/institutional/bias",
        "/gp%74s/institutional/bias",
        "/gpt%73/_admin/reset",
    )
    add(
        "prefix_boundary",
        404,
        "/gptsX/_admin/reset",
        "/gpts_admin/reset",
        "/gpts../_admin/reset",
        "/gpts%2f_admin/reset",
        "/gpts%2F..%2F_admin%2Freset",
        "/gpts",
        "/gpts?x=/_admin/reset",
        "/GPTS/_admin/reset",
        "/Gpts/institutional/bias",
        "/_admin/reset",
        "/",
        "/gpts;/_admin/reset",
        "/gpts./_admin/reset",
        "/gpts%2e/_admin/reset",
        "//gpts/institutional/bias",
        "/./gpts/institutional/bias",
        "/x/../gpts/institutional/bias",
        "/institutional/bias",
    )
    add(
        "off_allow_list",
        404,
        "/gpts/_admin/reset",
        "/gpts/_admin/faults",
        "/gpts/_admin",
        "/gpts/openapi.json",
        "/gpts/swagger.json",
        "/gpts/institutional",
        "/gpts/institutional/bias/extra",
        "/gpts/Institutional/bias",
        "/gpts/INSTITUTIONAL/BIAS",
        "/gpts/institutional/bi%2561s",
        "/gpts/institutional/bias;x=1",
        "/gpts/%5fadmin/reset",
        "/gpts/_admin%3breset",
        "/gpts/whales/alerts.json",
        "/gpts/echo",
        "/gpts/echo/a/b/c/d",
        "/gpts/files/a",
        "/gpts/",
        "/gpts/healthz",
        "/gpts/_admin/reset?/../../institutional/bias",
        "/gpts/%E2%88%95_admin%E2%88%95reset",
    )
    add(
        "reserved",
        404,
        "/gpts/sniper/x",
        "/gpts/sniper",
        "/gpts/SNIPER/x",
        "/gpts/%73niper/x",
        "/gpts/Sniper/status",
    )
    add("reserved", 400, "/gpts/sniper/../_admin/reset", "/gpts/sniper/%2e%2e/_admin/reset")
    for method in ("DELETE", "POST", "PUT", "TRACE", "OPTIONS", "PROPFIND", "PATCH"):
        add("method", 405, "/gpts/whales/alerts", method=method)
    add("method", 404, "/gpts/_admin/reset", method="POST")
    add("method", 404, "/gpts/_admin/reset", method="DELETE")
    raw_bytes = (b"\x00", b"\x01", b"\x1b", b"\x7f", b"\xc3\xa9", b"\xff")
    out.extend(Abuse("raw_control", request(b"/gpts/institutional/bias" + c), 400) for c in raw_bytes)
    out.extend(Abuse("raw_control", request(b"/gpts/" + c + b"/../_admin/reset"), 400) for c in raw_bytes)
    # Asterisk and authority forms parse, but match no route (their path is "*" or empty): 404.
    out.append(Abuse("asterisk_form", request("*", "OPTIONS"), 404))
    out.append(Abuse("authority_form", request("127.0.0.1:80", "CONNECT"), 404))
    out.append(Abuse("authority_form", request("gateway.test:443", "CONNECT"), 404))
    smuggle = "/gpts/_admin/reset"
    out.extend(
        [
            Abuse(
                "framing",
                request(smuggle, "POST", ("Content-Length: 4", "Transfer-Encoding: chunked"), b"0\r\n\r\n"),
                400,
            ),
            Abuse("framing", request(smuggle, "POST", ("Content-Length: 4", "Content-Length: 5"), b"abcde"), 400),
            Abuse("framing", request(smuggle, "POST", ("Transfer-Encoding: xchunked",), b"0\r\n\r\n"), 400),
            Abuse("framing", request(smuggle, "POST", ("Content-Length: -1",), b""), 400),
            Abuse("framing", request(smuggle, "GET", ("X-Folded: a", " b")), 400),
        ]
    )
    return out


CORPUS: list[Abuse] = _corpus()
