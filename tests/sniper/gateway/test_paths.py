"""The gateway's path rules (`sniper.gateway.paths`): targets, segments, queries, prefixes, the allow-list."""

from __future__ import annotations

from typing import Any

import pytest

from marketsim import FLAVOR_NAMES, Simulator
from sniper.gateway.paths import (
    MAX_DECODE_ROUNDS,
    AllowList,
    Refused,
    Target,
    check_path,
    check_prefix,
    check_query,
    check_segment,
    check_template,
    parse_target,
    templates_from_openapi,
)
from sniper.gateway.proxy import hop_by_hop_names, parse_networks


def refused(call: Any, *args: Any) -> str:
    """The code of the `Refused` that `call(*args)` raises (fails if it returns)."""
    with pytest.raises(Refused) as caught:
        call(*args)
    assert caught.value.status == 400
    return caught.value.code


class TestCheckSegment:
    @pytest.mark.parametrize(
        ("raw", "decoded"),
        [
            ("bias", "bias"),
            ("SOL-USDT-SWAP", "SOL-USDT-SWAP"),
            ("a.b", "a.b"),
            (".well-known", ".well-known"),
            ("..a", "..a"),
            ("a..", "a.."),
            ("v1.2", "v1.2"),
            ("%41", "A"),
            ("a%20b", "a b"),
            ("caf%C3%A9", "café"),
            ("%25", "%"),
            ("100%25", "100%"),
            ("%2541", "%41"),
            ("a;b=c", "a;b=c"),
            ("~user", "~user"),
            ("a:b@c", "a:b@c"),
            ("!$&'()*+,=", "!$&'()*+,="),
            ("%E2%88%95", "\u2215"),
        ],
    )
    def test_accepts_safe_segments_and_decodes_once(self, raw: str, decoded: str) -> None:
        """A safe segment comes back decoded exactly once, as a backend routes on it."""
        assert check_segment(raw) == decoded

    @pytest.mark.parametrize(
        ("raw", "code"),
        [
            ("", "empty_segment"),
            (".", "dot_segment"),
            ("..", "dot_segment"),
            ("...", "dot_segment"),
            ("..;", "dot_segment"),
            (".;x=1", "dot_segment"),
            ("..;jsessionid=1", "dot_segment"),
            ("%2e", "dot_segment"),
            ("%2e%2e", "dot_segment"),
            ("%2E%2E", "dot_segment"),
            (".%2e", "dot_segment"),
            ("%2e.", "dot_segment"),
            ("%252e%252e", "dot_segment"),
            ("%25252e%25252e", "dot_segment"),
            ("%2e%2e%3b", "dot_segment"),
            ("..%20", "dot_segment"),
            ("%EF%BC%8E%EF%BC%8E", "dot_segment"),
            ("%E2%80%A4%E2%80%A4", "dot_segment"),
            ("%E2%80%A5", "dot_segment"),
            ("%c0%ae", "invalid_utf8"),
            ("%c0%ae%c0%ae", "invalid_utf8"),
            ("%e0%80%ae", "invalid_utf8"),
            ("%f0%80%80%ae", "invalid_utf8"),
            ("%c0%af", "invalid_utf8"),
            ("%c1%9c", "invalid_utf8"),
            ("%ed%a0%80", "invalid_utf8"),
            ("%ff", "invalid_utf8"),
            ("%252ec0%25ae", "invalid_utf8"),
            ("a%2fb", "encoded_slash"),
            ("a%2Fb", "encoded_slash"),
            ("a%252fb", "encoded_slash"),
            ("..%2f", "encoded_slash"),
            ("a%EF%BC%8Fb", "encoded_slash"),
            ("a\\b", "backslash"),
            ("a%5cb", "backslash"),
            ("a%5Cb", "backslash"),
            ("a%255cb", "backslash"),
            ("a%EF%BC%BCb", "backslash"),
            ("a%EF%B9%A8b", "backslash"),
            ("a%00b", "control_character"),
            ("a%2500b", "control_character"),
            ("a%0ab", "control_character"),
            ("a%0d%0ab", "control_character"),
            ("a%09b", "control_character"),
            ("a%7fb", "control_character"),
            ("a%1bb", "control_character"),
            ("a%c2%85b", "control_character"),
            ("a%e2%80%8bb", "control_character"),
            ("a%e2%80%aeb", "control_character"),
            ("a%e2%80%a8b", "control_character"),
            ("a\x00b", "invalid_character"),
            ("a\tb", "invalid_character"),
            ("a b", "invalid_character"),
            ("caf\u00e9", "invalid_character"),
            ("a<b", "invalid_character"),
            ("a{b}", "invalid_character"),
            ("a|b", "invalid_character"),
            ("a^b", "invalid_character"),
            ("a`b", "invalid_character"),
            ('a"b', "invalid_character"),
            ("a?b", "invalid_character"),
            ("a#b", "invalid_character"),
            ("%", "bad_percent_encoding"),
            ("%2", "bad_percent_encoding"),
            ("%zz", "bad_percent_encoding"),
            ("%%32%65", "bad_percent_encoding"),
            ("%u002e", "bad_percent_encoding"),
            ("%" + "25" * MAX_DECODE_ROUNDS + "41", "too_deeply_encoded"),
        ],
    )
    def test_refuses_unsafe_segments(self, raw: str, code: str) -> None:
        """Dot segments in any spelling, slashes, backslashes, controls and broken escapes: 400 with a code."""
        assert refused(check_segment, raw) == code

    def test_decoding_is_bounded(self) -> None:
        """One level of encoding below the bound decodes; the bound itself is refused."""
        assert check_segment("%" + "25" * (MAX_DECODE_ROUNDS - 1) + "41") == "%" + "25" * (MAX_DECODE_ROUNDS - 2) + "41"


class TestCheckPath:
    @pytest.mark.parametrize(
        ("path", "segments"),
        [
            ("/", ()),
            ("/a", ("a",)),
            ("/institutional/bias", ("institutional", "bias")),
            ("/a/%41/c", ("a", "A", "c")),
        ],
    )
    def test_splits_into_decoded_segments(self, path: str, segments: tuple[str, ...]) -> None:
        """``/`` is the empty path; otherwise one decoded segment per slash."""
        assert check_path(path) == segments

    @pytest.mark.parametrize(
        ("path", "code"),
        [
            ("//", "empty_segment"),
            ("/a//b", "empty_segment"),
            ("/a/", "empty_segment"),
            ("//a", "empty_segment"),
            ("/a/../b", "dot_segment"),
            ("/a/./b", "dot_segment"),
            ("a/b", "not_origin_form"),
        ],
    )
    def test_refuses_any_bad_segment(self, path: str, code: str) -> None:
        """One bad segment refuses the path."""
        assert refused(check_path, path) == code


class TestCheckQuery:
    @pytest.mark.parametrize("query", ["", "symbol=SOL", "a=%20&b=1+2", "x=/../y", "a=b?c", "k[]=v|w", "x=%00"])
    def test_accepts_printable_ascii(self, query: str) -> None:
        """The query is data for the backend: printable ASCII and well-formed escapes pass untouched."""
        check_query(query)

    @pytest.mark.parametrize(
        ("query", "code"),
        [
            ("a=%zz", "bad_percent_encoding"),
            ("a=%", "bad_percent_encoding"),
            ("a=b c", "bad_query"),
            ("a=\x00", "bad_query"),
            ("a=\u00e9", "bad_query"),
            ("a=b#c", "bad_query"),
        ],
    )
    def test_refuses_broken_queries(self, query: str, code: str) -> None:
        """Controls, spaces, non-ASCII and broken escapes in the query: 400."""
        assert refused(check_query, query) == code


class TestParseTarget:
    @pytest.mark.parametrize(
        ("raw", "prefix", "target"),
        [
            ("/gpts/a", "/gpts", Target("/a", "", ("a",))),
            ("/gpts/", "/gpts", Target("/", "", ())),
            ("/gpts/a/b?x=1&y=%20", "/gpts", Target("/a/b", "x=1&y=%20", ("a", "b"))),
            ("/gpts/a?", "/gpts", Target("/a", "", ("a",))),
            ("/gpts/a%41?q=/../", "/gpts", Target("/a%41", "q=/../", ("aA",))),
            ("/api/gpts/a", "/api/gpts", Target("/a", "", ("a",))),
        ],
    )
    def test_strips_the_prefix_and_keeps_the_rest_raw(self, raw: str, prefix: str, target: Target) -> None:
        """The path after the prefix and the query are kept byte for byte."""
        assert parse_target(raw, prefix) == target

    @pytest.mark.parametrize(
        ("raw", "code"),
        [
            ("http://evil/gpts/a", "not_origin_form"),
            ("https://x/gpts/a", "not_origin_form"),
            ("*", "not_origin_form"),
            ("127.0.0.1:80", "not_origin_form"),
            ("/gpts/a#f", "fragment"),
            ("/gpts/a?b#c", "fragment"),
            ("/gptsX/a", "prefix_encoded"),
            ("/gpts", "prefix_encoded"),
            ("/%67pts/a", "prefix_encoded"),
            ("/gp%74s/a", "prefix_encoded"),
            ("/GPTS/a", "prefix_encoded"),
            ("/gpts%2fa", "prefix_encoded"),
            ("/gpts//a", "empty_segment"),
            ("/gpts/../a", "dot_segment"),
            ("/gpts/a?%zz", "bad_percent_encoding"),
        ],
    )
    def test_refuses_targets_off_the_prefix_or_unsafe(self, raw: str, code: str) -> None:
        """Absolute form, fragments, a prefix not spelled literally at a segment boundary: 400."""
        assert refused(parse_target, raw, "/gpts") == code


class TestCheckPrefix:
    @pytest.mark.parametrize("prefix", ["/gpts", "/api/gpts", "/g-p_t.s~1"])
    def test_accepts_plain_prefixes(self, prefix: str) -> None:
        """One or more plain segments, no trailing slash."""
        assert check_prefix(prefix) is None

    @pytest.mark.parametrize(
        "prefix", ["", "/", "gpts", "/gpts/", "//gpts", "/gp ts", "/../x", "/./x", "/g{x}", "/g%41"]
    )
    def test_refuses_anything_else(self, prefix: str) -> None:
        """Empty, relative, trailing slash, dot segments, braces, escapes: a problem named."""
        assert "is not a path prefix" in (check_prefix(prefix) or "")


class TestCheckTemplate:
    @pytest.mark.parametrize("template", ["/", "/a", "/a/{b}", "/a/{b}.json", "/a/{b}-{c}"])
    def test_accepts_templates(self, template: str) -> None:
        """Literal paths and ``{param}`` templates."""
        assert check_template(template) is None

    @pytest.mark.parametrize("template", ["", "a", "/a b", "/a/{b", "/a/b}", "/a/{}", "/a\n"])
    def test_refuses_malformed_templates(self, template: str) -> None:
        """Relative, spaced, unbalanced or empty braces: a problem named."""
        assert check_template(template)


class TestAllowList:
    ALLOW = AllowList(
        [
            ("/whales/alerts", {"get"}),
            ("/institutional/bias", {"get", "post"}),
            ("/flows/{asset}", {"get"}),
            ("/depth/{venue}/{pair}.json", {"get"}),
            ("/any", None),
            ("/", {"get"}),
        ]
    )

    @pytest.mark.parametrize(
        ("segments", "method"),
        [
            (("whales", "alerts"), "GET"),
            (("whales", "alerts"), "HEAD"),
            (("institutional", "bias"), "POST"),
            (("flows", "BTC"), "GET"),
            (("flows", "a b;c"), "GET"),
            (("depth", "binance", "SOLUSDT.json"), "GET"),
            (("any",), "DELETE"),
            ((), "GET"),
        ],
    )
    def test_allows_listed_paths_and_methods(self, segments: tuple[str, ...], method: str) -> None:
        """Literal paths, ``{param}`` segments, HEAD with GET, None for any method."""
        assert self.ALLOW.allows(segments, method)

    @pytest.mark.parametrize(
        ("segments", "method"),
        [
            (("whales", "alerts"), "POST"),
            (("whales",), "GET"),
            (("whales", "alerts", "x"), "GET"),
            (("Whales", "alerts"), "GET"),
            (("flows",), "GET"),
            (("flows", "BTC", "x"), "GET"),
            (("depth", "binance", "SOLUSDT"), "GET"),
            (("_admin", "reset"), "GET"),
            (("any", "x"), "GET"),
        ],
    )
    def test_refuses_everything_else(self, segments: tuple[str, ...], method: str) -> None:
        """Other methods, other segment counts, other spellings: not allowed."""
        assert not self.ALLOW.allows(segments, method)

    def test_methods_say_which_and_whether(self) -> None:
        """`methods`: the allowed set, None for any, empty for an unlisted path."""
        assert self.ALLOW.methods(("whales", "alerts")) == frozenset({"GET", "HEAD"})
        assert self.ALLOW.methods(("any",)) is None
        assert self.ALLOW.methods(("nope",)) == frozenset()

    def test_same_template_twice_merges_methods(self) -> None:
        """A template listed twice allows the union of its methods."""
        allow = AllowList([("/a", {"post"}), ("/a", {"delete"})])
        assert (allow.templates, allow.methods(("a",))) == (("/a",), frozenset({"POST", "DELETE"}))

    def test_templates_keep_their_order(self) -> None:
        """`templates` lists them as given (what the gateway's own OpenAPI document filters by)."""
        assert self.ALLOW.templates[:3] == ("/whales/alerts", "/institutional/bias", "/flows/{asset}")

    def test_bad_template_is_a_value_error(self) -> None:
        """A malformed template fails at construction."""
        with pytest.raises(ValueError, match="unbalanced"):
            AllowList([("/a/{b", None)])


def openapi(paths: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": paths, **extra}


class TestTemplatesFromOpenapi:
    def test_every_operation_with_its_methods(self) -> None:
        """Each path with the methods it documents; other keys of a path item are ignored."""
        doc = openapi(
            {"/a": {"get": {}, "post": {}, "parameters": []}, "/b/{x}": {"delete": {}}, "/c": {"summary": "x"}}
        )
        assert templates_from_openapi(doc) == [("/a", frozenset({"GET", "POST"})), ("/b/{x}", frozenset({"DELETE"}))]

    @pytest.mark.parametrize(
        ("extra", "backend_path", "expected"),
        [
            ({"servers": [{"url": "/api"}]}, "", "/api/a"),
            ({"servers": [{"url": "http://h:1/api/"}]}, "", "/api/a"),
            ({"servers": [{"url": "/api"}]}, "/api", "/a"),
            ({"servers": [{"url": "/{base}", "variables": {"base": {"default": "v2"}}}]}, "", "/v2/a"),
            ({"swagger": "2.0", "basePath": "/v1"}, "", "/v1/a"),
            ({}, "/api", "/a"),
        ],
    )
    def test_base_paths(self, extra: dict[str, Any], backend_path: str, expected: str) -> None:
        """servers[0].url or Swagger's basePath go in front, minus the backend URL's own path."""
        doc = openapi({"/a": {"get": {}}}, **extra)
        if "swagger" in extra:
            del doc["openapi"]
        assert templates_from_openapi(doc, backend_path) == [(expected, frozenset({"GET"}))]

    @pytest.mark.parametrize("doc", [{}, {"paths": {}}, {"openapi": "3.1.0"}, {"openapi": "3.1.0", "paths": []}, []])
    def test_no_document_is_a_value_error(self, doc: Any) -> None:
        """Without an 'openapi'/'swagger' key and a paths object there is nothing to allow."""
        with pytest.raises(ValueError):
            templates_from_openapi(doc)

    @pytest.mark.parametrize("flavor", FLAVOR_NAMES)
    @pytest.mark.parametrize("version", ["3.1", "3.0", "swagger"])
    def test_reference_backend_documents(self, flavor: str, version: str) -> None:
        """Every flavor and document version of the reference backend gives its routes, never /_admin."""
        sim = Simulator(flavor=flavor)
        doc = sim.swagger() if version == "swagger" else sim.openapi(version)
        templates = dict(templates_from_openapi(doc))
        assert set(templates) == {route.path for route in sim.routes()}
        assert all("GET" in methods for methods in templates.values())
        assert not any(t.startswith("/_admin") for t in templates)


class TestHopByHopNames:
    @pytest.mark.parametrize(
        ("connection", "extra"),
        [
            ([], set()),
            (["close"], {"close"}),
            (["X-Secret, Keep-Alive"], {"x-secret", "keep-alive"}),
            (["a", "B ,c"], {"a", "b", "c"}),
        ],
    )
    def test_fixed_set_plus_connection_names(self, connection: list[str], extra: set[str]) -> None:
        """RFC 9110 7.6.1: the hop-by-hop fields and every name listed in Connection, lower-cased."""
        from multidict import CIMultiDict

        headers: CIMultiDict[str] = CIMultiDict(("Connection", value) for value in connection)
        names = hop_by_hop_names(headers)
        assert {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"} <= names
        assert {"proxy-authorization", "proxy-authenticate", "proxy-connection"} <= names
        assert extra <= names


class TestParseNetworks:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("", ()),
            ("127.0.0.1", ("127.0.0.1/32",)),
            ("10.0.0.0/8, ::1", ("10.0.0.0/8", "::1/128")),
            ("10.1.2.3/8,10.0.0.0/8", ("10.0.0.0/8",)),
        ],
    )
    def test_addresses_and_networks(self, text: str, expected: tuple[str, ...]) -> None:
        """Comma-separated addresses (host networks) and networks, host bits dropped, duplicates once."""
        assert tuple(str(n) for n in parse_networks(text)) == expected

    @pytest.mark.parametrize("text", ["x", "10.0.0.300", "10.0.0.0/33", "::g"])
    def test_bad_entry_is_named(self, text: str) -> None:
        """A bad entry raises ValueError naming it."""
        with pytest.raises(ValueError, match="is not an IP address"):
            parse_networks(text)
