"""Strict request targets for the gateway: prefix stripping, segment checks, the allow-list.

The gateway forwards ``<prefix>/<path>?<query>`` to the backend as
``/<path>?<query>``, byte for byte: nothing here re-encodes or normalises a
path. Instead every target that a server, a framework or a file system could
read as something else is refused:

* the request target must be in origin form (``/...``); absolute form
  (``http://host/...``), authority form and ``*`` are refused, and so is a
  fragment (``#``);
* the prefix matches only literally and at a segment boundary (``/gpts/x``,
  never ``/gptsX`` or ``/%67pts/x``);
* each segment may hold only RFC 3986 ``pchar`` characters raw, and is
  percent-decoded repeatedly (at most `MAX_DECODE_ROUNDS` times, until
  stable); every stage must be valid UTF-8 (overlong forms such as ``%c0%ae``
  are not) and hold no dot segment in any spelling (``..``, ``%2e%2e``,
  ``%252e%252e``, ``..;``, fullwidth dots), no slash (``%2F``), no backslash,
  no control or format character (NUL included); empty segments are refused;
* the query is kept raw; it may hold printable ASCII and well-formed
  percent escapes only.

`AllowList` then decides which paths exist upstream, matched on the segments
decoded once (what a backend routes on): by default exactly the paths of the
backend's OpenAPI document (`templates_from_openapi`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

__all__ = [
    "MAX_DECODE_ROUNDS",
    "RESERVED_SEGMENT",
    "AllowList",
    "Refused",
    "Target",
    "check_path",
    "check_prefix",
    "check_query",
    "check_segment",
    "check_template",
    "parse_target",
    "templates_from_openapi",
]

#: How many times a segment is percent-decoded at most; still changing after that: refused.
MAX_DECODE_ROUNDS = 4
#: ``<prefix>/sniper/...`` belongs to sniper's own endpoints and is never forwarded.
RESERVED_SEGMENT = "sniper"

_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
#: RFC 3986 pchar, raw: unreserved, sub-delims, ":" and "@", and "%" of an escape.
_PCHAR = frozenset(_UNRESERVED + "!$&'()*+,;=:@%")
#: Printable ASCII but "#": what a query may hold raw (browsers send some of it unescaped).
_QUERY = frozenset(chr(c) for c in range(0x21, 0x7F)) - {"#"}
_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: Unicode categories refused in a decoded segment: controls, format characters, surrogates, separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_PARAM = re.compile(r"\{([^{}/]+)\}")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")
#: The HTTP methods an OpenAPI path item may name.
OPENAPI_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class Refused(Exception):
    """A request the gateway answers itself: `status`, a short `code` and a sentence for people."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Target:
    """What is forwarded: `path` and `query` exactly as received (minus the prefix), and the routing view."""

    path: str  #: "/institutional/bias": the raw path after the prefix, forwarded byte for byte
    query: str  #: the raw query string without "?" ("" if none)
    segments: tuple[str, ...]  #: each segment percent-decoded once, as a backend routes on it


def _bad(code: str, detail: str) -> Refused:
    return Refused(400, code, detail)


def _is_dot_segment(text: str) -> bool:
    """ ".", "..", "...", "..;x", ". ." : a segment that a server or file system may read as a directory step."""
    base = text.split(";", 1)[0]
    return "." in base and not base.strip(". ")


def _check_text(text: str, raw: str) -> None:
    """One decoding stage of a segment: no slash, backslash, control character or dot segment in any form."""
    forms = (text,) if text.isascii() else (text, unicodedata.normalize("NFKC", text))
    for form in forms:
        if "/" in form:
            raise _bad("encoded_slash", f"segment {raw!r} hides a slash")
        if "\\" in form:
            raise _bad("backslash", f"segment {raw!r} holds a backslash")
        if _is_dot_segment(form):
            raise _bad("dot_segment", f"segment {raw!r} is a dot segment")
    if text.isascii():
        if not text.isprintable():
            raise _bad("control_character", f"segment {raw!r} holds a control character")
    elif any(unicodedata.category(c) in _FORBIDDEN_CATEGORIES for c in text):
        raise _bad("control_character", f"segment {raw!r} holds a control or format character")


def check_segment(raw: str) -> str:
    """The segment `raw` (between two slashes, undecoded) decoded once; `Refused` (400) if it is unsafe.

    Every decoding stage, up to `MAX_DECODE_ROUNDS`, is checked: ``%252e%252e``
    is refused as surely as ``..``.
    """
    if not raw:
        raise _bad("empty_segment", "empty path segment (//, or a trailing slash)")
    for c in raw:
        if c not in _PCHAR:
            if c == "\\":
                raise _bad("backslash", f"segment {raw!r} holds a backslash")
            if not c.isprintable() or not c.isascii():
                raise _bad("invalid_character", f"segment {raw!r} holds a control or non-ASCII character")
            raise _bad("invalid_character", f"segment {raw!r} holds {c!r}, which must be percent-encoded")
    if _ESCAPE.search(raw):
        raise _bad("bad_percent_encoding", f"segment {raw!r} has a '%' not followed by two hex digits")
    current, once = raw, None
    for _ in range(MAX_DECODE_ROUNDS + 1):
        _check_text(current, raw)
        if "%" not in current:
            break
        try:
            decoded = unquote_to_bytes(current).decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("invalid_utf8", f"segment {raw!r} decodes to invalid (or overlong) UTF-8") from None
        if decoded == current:
            break
        if once is None:
            once = decoded
        current = decoded
    else:
        raise _bad("too_deeply_encoded", f"segment {raw!r} is percent-encoded more than {MAX_DECODE_ROUNDS} times")
    return raw if once is None else once


@lru_cache(maxsize=4096)
def check_path(path: str) -> tuple[str, ...]:
    """The segments of `path` (``/a/b``, raw, after the prefix) decoded once; `Refused` if any is unsafe.

    ``/`` alone is the empty path (no segments). Results are cached: a busy
    gateway sees the same few paths again and again.
    """
    if path == "/":
        return ()
    if not path.startswith("/"):
        raise _bad("not_origin_form", "the path must start with '/'")
    return tuple(check_segment(part) for part in path[1:].split("/"))


def check_query(query: str) -> None:
    """`Refused` (400) unless the raw query is printable ASCII with well-formed percent escapes."""
    if not all(c in _QUERY for c in query):
        raise _bad("bad_query", "the query holds a control, space or non-ASCII character")
    if _ESCAPE.search(query):
        raise _bad("bad_percent_encoding", "the query has a '%' not followed by two hex digits")


def parse_target(raw_target: str, prefix: str) -> Target:
    """Split the raw request target (``request.raw_path``) under `prefix` into what is forwarded.

    `Refused` with 400 for anything but an origin-form target spelling `prefix`
    literally and followed by ``/`` and a safe path.
    """
    if not raw_target.startswith("/"):
        raise _bad("not_origin_form", "only origin-form request targets (/path?query) are accepted")
    if "#" in raw_target:
        raise _bad("fragment", "a request target carries no fragment ('#')")
    path, _, query = raw_target.partition("?")
    start = len(prefix)
    if not (path.startswith(prefix) and path[start : start + 1] == "/"):
        raise _bad("prefix_encoded", f"the path must begin with {prefix}/ spelled literally")
    tail = path[start:]
    segments = check_path(tail)
    if query:
        check_query(query)
    return Target(tail, query, segments)


def check_prefix(prefix: str) -> str | None:
    """What is wrong with a gateway path prefix such as ``/gpts`` (or ``/api/gpts``), or None."""
    parts = prefix.split("/")
    if len(parts) < 2 or parts[0] != "" or not all(_PREFIX_SEGMENT.match(p) and p.strip(".") for p in parts[1:]):
        return f"{prefix!r} is not a path prefix like /gpts (letters, digits, '-', '_', '.', '~'; no trailing '/')"
    return None


def check_template(template: str) -> str | None:
    """What is wrong with an allow-list path template (``/whales/alerts``, ``/flows/{asset}``), or None."""
    if not template.startswith("/") or any(c.isspace() or not c.isprintable() for c in template):
        return f"{template!r} is not a path template like /whales/alerts or /flows/{{asset}}"
    rest = _PARAM.sub("", template)
    if "{" in rest or "}" in rest:
        return f"{template!r} has unbalanced braces"
    return None


def _segment_matcher(segment: str) -> str | re.Pattern[str]:
    if "{" not in segment:
        return segment
    pattern, last = [], 0
    for param in _PARAM.finditer(segment):
        pattern.append(re.escape(segment[last : param.start()]))
        pattern.append(".+?")
        last = param.end()
    pattern.append(re.escape(segment[last:]))
    return re.compile("".join(pattern), re.DOTALL)


@dataclass(frozen=True)
class _Rule:
    template: str
    matchers: tuple[str | re.Pattern[str], ...]
    methods: frozenset[str] | None  # None: any method

    def matches(self, segments: tuple[str, ...]) -> bool:
        if len(segments) != len(self.matchers):
            return False
        for matcher, segment in zip(self.matchers, segments, strict=True):
            if isinstance(matcher, str):
                if matcher != segment:
                    return False
            elif not matcher.fullmatch(segment):
                return False
        return True


class AllowList:
    """The upstream paths the gateway forwards: literal paths and ``{param}`` templates, with methods.

    A path matches when it has as many segments as a template and each
    decoded segment equals the template's, a ``{param}`` standing for any
    non-empty text within one segment. `methods` None allows every method;
    HEAD is allowed wherever GET is.
    """

    def __init__(self, rules: Iterable[tuple[str, Iterable[str] | None]]) -> None:
        self._literal: dict[tuple[str, ...], list[_Rule]] = {}
        self._templated: list[_Rule] = []
        seen: dict[str, _Rule] = {}
        for template, methods in rules:
            if problem := check_template(template):
                raise ValueError(problem)
            wanted = None if methods is None else frozenset(m.upper() for m in methods)
            if wanted is not None and "GET" in wanted:
                wanted |= {"HEAD"}
            old = seen.get(template)
            if old is not None:  # the same path twice: merge the methods
                wanted = None if old.methods is None or wanted is None else old.methods | wanted
            segments = () if template == "/" else tuple(template[1:].split("/"))
            seen[template] = _Rule(template, tuple(_segment_matcher(s) for s in segments), wanted)
        for rule in seen.values():
            if all(isinstance(m, str) for m in rule.matchers):
                self._literal.setdefault(tuple(str(m) for m in rule.matchers), []).append(rule)
            else:
                self._templated.append(rule)
        self._rules = tuple(seen.values())

    @property
    def templates(self) -> tuple[str, ...]:
        """Every template, in the order given."""
        return tuple(rule.template for rule in self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def methods(self, segments: tuple[str, ...]) -> frozenset[str] | None:
        """The methods allowed on a path (decoded segments): None for any, empty if the path is not listed."""
        found: set[str] = set()
        for rule in (*self._literal.get(segments, ()), *(r for r in self._templated if r.matches(segments))):
            if rule.methods is None:
                return None
            found |= rule.methods
        return frozenset(found)

    def allows(self, segments: tuple[str, ...], method: str = "GET") -> bool:
        """True if `method` on the path is forwarded."""
        methods = self.methods(segments)
        return methods is None or method in methods


def _server_path(document: Mapping[str, Any]) -> str:
    """The base path the document's paths are relative to: OpenAPI ``servers[0]``, Swagger ``basePath``."""
    if "swagger" in document:
        base = document.get("basePath")
        return base.rstrip("/") if isinstance(base, str) else ""
    servers = document.get("servers")
    if not (isinstance(servers, list) and servers and isinstance(servers[0], Mapping)):
        return ""
    url = servers[0].get("url")
    if not isinstance(url, str):
        return ""
    variables = servers[0].get("variables")
    if isinstance(variables, Mapping):
        for name, spec in variables.items():
            if isinstance(spec, Mapping) and isinstance(spec.get("default"), str):
                url = url.replace(f"{{{name}}}", spec["default"])
    try:
        path = urlsplit(url).path
    except ValueError:
        return ""
    return path.rstrip("/")


def templates_from_openapi(document: Mapping[str, Any], backend_path: str = "") -> list[tuple[str, frozenset[str]]]:
    """(path template, methods) for every operation of an OpenAPI 3.x or Swagger 2.0 document.

    Paths are made relative to the backend URL's own path (`backend_path`),
    after the document's base path (``servers[0].url``, ``basePath``) is put
    in front. `ValueError` if `document` is no OpenAPI document.
    """
    if not (isinstance(document, Mapping) and ("openapi" in document or "swagger" in document)):
        raise ValueError("not an OpenAPI or Swagger document (no 'openapi' or 'swagger' key)")
    paths = document.get("paths")
    if not isinstance(paths, Mapping):
        raise ValueError("the document has no 'paths' object")
    base, own = _server_path(document), backend_path.rstrip("/")
    out: list[tuple[str, frozenset[str]]] = []
    for path, item in paths.items():
        if not (isinstance(path, str) and path.startswith("/") and isinstance(item, Mapping)):
            continue
        full = f"{base}{path}"
        if own and base.startswith(own):
            full = full[len(own) :] or "/"
        methods = frozenset(m.upper() for m in OPENAPI_METHODS if m in item)
        if methods and check_template(full) is None:
            out.append((full, methods))
    return out
