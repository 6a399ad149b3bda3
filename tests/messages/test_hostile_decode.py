"""Hostile input to every decoder: it returns a valid message or raises DecodeError, nothing else.

Hypothesis throws random bytes, random JSON (extreme numbers included),
well-shaped messages with one field made extreme, deep nesting and huge
strings at the decoder of every message type and at the union decoder. Every
message that decodes re-encodes to an equal message. `TestFindings` has one
regression test per finding of the hostile probe (issue "No message may
silence or steer the pipeline", part 3).

The strategies and examples here are reused by ``tests/actors/test_hostile_handlers.py``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import messages as m
from messages._base import MAX_DETAIL, MAX_ERROR, MAX_MODULES, MAX_NOTE, MAX_SAFE_INT, MAX_TIMESTAMP
from messages.alerts import fingerprint
from messages.codec import MAX_DEPTH, nesting_exceeds
from messages.errors import MAX_REASON
from messages.schema import message_schema
from runtime.clock import VirtualClock

SUBJECT = "sniper.test.hostile"
T0 = VirtualClock.EPOCH
MESSAGE_TYPES: tuple[type[m.Message], ...] = m.ALL_MESSAGE_TYPES.__args__
#: Every decoder an actor, a recorder or a bot uses: one per type, and the union.
DECODER_TYPES: tuple[Any, ...] = (*MESSAGE_TYPES, m.AnyMessage)
KINDS = {"too_large", "too_deep", "malformed", "invalid", "version"}
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BOOK = m.OrderBook(symbol="SOLUSDT", exchange="binance", ts=T0, bids=((179.9, 40.0),), asks=((180.1, 10.0),))
CIRCUIT = m.CircuitState(module="etf", scope="all", state="open", ts=T0, until=T0 + 30, cause="throttled", opens=1)

#: One valid message of every type, dated like the virtual clock's start, as sniper would send them.
ALERT = m.Alert(
    name="core_down",
    state="firing",
    labels={"alertname": "core_down", "asset": "SOL"},
    fingerprint=fingerprint({"alertname": "core_down", "asset": "SOL"}),
    starts_at=T0,
    summary="SOL: every core module is failing",
    ts=T0 + 60,
)
EXAMPLES: tuple[m.Message, ...] = (
    m.Tick(asset="SOL", cycle=3, ts=T0, deadline=T0 + 3, modules=("whale", "etf", "heatmap", "spot_ob", "bias")),
    m.ModuleData(module="spot_ob", asset="SOL", cycle=3, ts=T0 + 0.1, latency_ms=40.0, payload=BOOK),
    m.Degraded(module="etf", asset="SOL", cycle=3, ts=T0 + 0.1, reason="rate_limited", status=429, retry_after=30.0),
    m.Signal(
        asset="SOL",
        cycle=3,
        ts=T0 + 3,
        started=T0,
        direction="long",
        score=0.4,
        confidence=0.85,
        modules={"whale": m.ModuleStatus(status="ok", latency_ms=41.2), "etf": m.ModuleStatus(status="missing")},
        etf_available=False,
        components={"whale": 0.4},
        complete=True,
    ),
    m.Health(
        asset="SOL",
        cycle=3,
        ts=T0 + 3,
        state="soft_fail",
        consecutive_failures=0,
        next_delay=5.0,
        failed=("etf",),
        ok=("whale",),
    ),
    m.Heartbeat(actor="fetch-whale", ts=T0, state="running", host="h", uptime=5.0, handled=9, bad_messages=1),
    m.ActorRestarted(actor="fetch-whale", ts=T0, attempt=1, delay=0.5, error="RuntimeError: x"),
    m.ActorGaveUp(actor="fetch-whale", ts=T0, restarts=5, period=60.0, error="RuntimeError: x"),
    m.RouteMap(
        ts=T0,
        source="openapi",
        routes=dict(m.DEFAULT_ROUTES),
        unusable={"etf": "no operation"},
        origin={"whale": "openapi"},
        notes={"whale": ["symbol: example -> base"]},
        spec_version="3.1.0",
        revision=2,
    ),
    CIRCUIT,
    m.FlagChanged(flag="ETF", enabled=False, ts=T0, who="ops@desk", why="plan expired", revision=3),
    m.FlagCommand(flag="etf", enabled=False, why="plan expired", who="ops@desk"),
    m.FlagReply(ok=True, flags={"ETF": False, "WHALE": True}),
    m.CircuitCommand(action="reset", module="etf"),
    m.CircuitReply(ok=True, circuits=[CIRCUIT]),
    m.StatusQuery(asset="SOL"),
    m.StatusReply(
        ok=True,
        ts=T0,
        assets={"SOL": m.AssetStatus(circuits=[CIRCUIT]), "BTC": m.AssetStatus()},
        flags={"ETF": False, "WHALE": True},
        omitted=2,
    ),
    ALERT,
    m.AlertLog(alert=ALERT, notified_at=T0 + 70, notifications=1),
    m.AlertCommand(action="mute", seconds=3600),
    m.AlertReply(ok=True, firing=[ALERT], muted_until=T0 + 3600),
    m.Mute(until=T0 + 3600),
    m.Lease(role="scheduler", holder="host-1-abc123", term=3, renewed=T0, ttl=5.0),
    m.LeaderChanged(role="scheduler", holder="host-1-abc123", term=3, ts=T0, previous="host-2-def456", host="h"),
    m.SharedFetch(module="etf", key="BTC", holder="host-1-abc123", state="claimed", ts=T0, until=T0 + 3),
)


class Raw(str):
    """A JSON token written as is (``1e400``, ``NaN``, ten thousand ``[``)."""


def dump(value: Any) -> str:
    """JSON text for `value`, with `Raw` tokens spliced in verbatim."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


DEEP = 10_000
#: Numbers at and beyond every edge: JSON-safe ints, int64, float range, and literals JSON does not have.
EXTREME_NUMBERS = (
    "0",
    "-0",
    "-0.0",
    "-1",
    "1e308",
    "-1e308",
    "1.7976931348623157e308",
    "1e400",
    "-1e400",
    "1e-400",
    "5e-324",
    str(2**53 - 1),
    str(2**53),
    str(2**53 + 1),
    str(2**63),
    str(-(2**63) - 1),
    str(2**64),
    "1" + "0" * 400,
    "1e11",
    "100000000001",
    "NaN",
    "Infinity",
    "-Infinity",
    "1E5",
    "0.1e1",
)
#: Strings at and beyond every documented length, and ones that are not names.
EXTREME_STRINGS = (
    "",
    "x" * MAX_NOTE,
    "x" * (MAX_NOTE + 1),
    "x" * (MAX_DETAIL + 1),
    "x" * (MAX_ERROR + 1),
    "SOL.>",
    "*",
    "A" * 21,
    "\u0000",
    "\U0001f680",
    "ETF",
    "etf",
    "all",
)
#: Containers nested past every bound, and wider than the dict and list limits.
EXTREME_CONTAINERS = (
    Raw("[" * DEEP),
    Raw("[" * DEEP + "]" * DEEP),
    Raw('{"a":' * DEEP + "1" + "}" * DEEP),
    Raw("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)),
    {f"m{i}": {"status": "ok"} for i in range(MAX_MODULES + 1)},
    [f"m{i}" for i in range(MAX_MODULES + 1)],
    {"BAD KEY": 1},
)

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(EXTREME_NUMBERS).map(Raw),
    st.sampled_from(EXTREME_STRINGS),
)
#: Any JSON value (and a few non-JSON literals), nested a little.
json_values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
#: The 900 KB `why` of the probe, the one string past the broker's limit when it appears twice.
HUGE = "w" * 900_000


def extreme_values(*, huge: bool = True) -> st.SearchStrategy[Any]:
    """Extreme numbers, strings and containers (with `huge`, a 900 KB string too)."""
    strings = (*EXTREME_STRINGS, HUGE) if huge else EXTREME_STRINGS
    return st.one_of(
        st.sampled_from(EXTREME_NUMBERS).map(Raw), st.sampled_from(strings), st.sampled_from(EXTREME_CONTAINERS)
    )


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into `doc` (dict keys and list indexes), containers included."""
    found = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, (*prefix, i))
    return found


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


@st.composite
def shaped(draw: st.DrawFn, examples: tuple[m.Message, ...] = EXAMPLES, *, huge: bool = True) -> bytes:
    """A valid message with one to three fields made extreme, removed, or an unknown field added."""
    extreme = extreme_values(huge=huge)
    doc = msgspec.to_builtins(draw(st.sampled_from(examples)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(("extreme", "extreme", "json", "drop", "unknown")))
        if action == "extreme":
            _set(doc, path, copy.deepcopy(draw(extreme)))  # the canned containers are shared
        elif action == "json":
            _set(doc, path, draw(json_values))
        elif action == "drop" and path[0] in doc:
            del doc[path[0]]
        else:
            doc[draw(st.sampled_from(("extra", "later", "type_v2")))] = copy.deepcopy(draw(extreme | json_values))
    return dump(doc).encode()


#: Every family of hostile bytes: random bytes, random JSON, extreme-valued messages.
hostile_bytes = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: dump(v).encode()),
    shaped(),
)


def check(tp: Any, data: bytes) -> m.Message | None:
    """Decode `data` as `tp`: a valid message that round-trips, or a well-formed DecodeError."""
    try:
        msg = m.decode(data, tp, subject=SUBJECT)
    except m.DecodeError as err:
        assert err.subject == SUBJECT
        assert err.kind in KINDS
        assert len(err.reason) <= MAX_REASON
        assert len(err.preview) <= 120 and err.size == len(data)
        assert SUBJECT in str(err)
        return None
    assert isinstance(msg, MESSAGE_TYPES if tp is m.AnyMessage else tp)
    again = m.decode(m.encode(msg), tp)
    assert again == msg
    return msg


class TestEveryDecoder:
    def test_examples_cover_every_message_type_and_decode(self) -> None:
        """The fuzz starts from a valid example of every wire type."""
        assert {type(x) for x in EXAMPLES} == set(MESSAGE_TYPES)
        for msg in EXAMPLES:
            assert check(type(msg), m.encode(msg)) == msg
            assert check(m.AnyMessage, m.encode(msg)) == msg

    @FUZZ
    @given(tp=st.sampled_from(DECODER_TYPES), data=st.binary(max_size=2000))
    def test_random_bytes(self, tp: Any, data: bytes) -> None:
        """Arbitrary bytes: a message or DecodeError."""
        check(tp, data)

    @FUZZ
    @given(tp=st.sampled_from(DECODER_TYPES), value=json_values)
    def test_random_json(self, tp: Any, value: Any) -> None:
        """Arbitrary JSON, non-JSON literals and extreme numbers included: a message or DecodeError."""
        check(tp, dump(value).encode())

    @FUZZ
    @given(example=st.sampled_from(EXAMPLES), union=st.booleans(), data=st.data())
    def test_messages_with_extreme_fields(self, example: m.Message, union: bool, data: st.DataObject) -> None:
        """Valid messages with fields made extreme, dropped or added: a message or DecodeError."""
        check(m.AnyMessage if union else type(example), data.draw(shaped((example,))))

    @FUZZ
    @given(tp=st.sampled_from(DECODER_TYPES), value=json_values, depth=st.integers(0, 3 * MAX_DEPTH))
    def test_nesting_at_any_depth(self, tp: Any, value: Any, depth: int) -> None:
        """Any value wrapped in `depth` arrays or objects, alone or as an unknown field: never RecursionError."""
        nested = value
        for i in range(depth):
            nested = [nested] if i % 2 else {"k": nested}
        for doc in (nested, {"type": "tick", "x": nested}, {"type": "signal", "modules": nested}):
            text = dump(doc).encode()
            if check(tp, text) is not None:
                assert not nesting_exceeds(text)

    @pytest.mark.parametrize("tp", DECODER_TYPES, ids=lambda t: getattr(t, "__name__", "AnyMessage"))
    @pytest.mark.parametrize(
        "data",
        [
            b"[" * DEEP,
            b"{" * DEEP,
            b"[" * DEEP + b"]" * DEEP,
            b'{"a":' * DEEP + b"1" + b"}" * DEEP,
            b'{"type":"tick","x":' + b"[" * DEEP + b"]" * DEEP + b"}",
            b'{"type":"tick","x":"' + b"[" * DEEP + b'"}',
            b'{"type":"tick","x":"\\"' + b"[" * DEEP + b'"}',
            b'"' + b"\\" * DEEP,
            b"1e400",
            b"NaN",
            b'{"type":"tick","asset":"SOL","cycle":1,"ts":1e400,"deadline":1e400}',
            b'{"type":"' + b"t" * 900_000 + b'"}',
            b"\xff\xfe\x00",
            b"",
        ],
        ids=lambda d: f"{d[:24]!r}..{len(d)}",
    )
    def test_canned_hostile_input(self, tp: Any, data: bytes) -> None:
        """The probe's worst inputs, against every decoder: DecodeError with a short reason."""
        assert check(tp, data) is None

    def test_every_kind_is_reachable(self) -> None:
        """`kind` tells a program what went wrong without parsing the sentence."""
        tick = m.Tick
        cases = {
            "too_large": b" " * (m.MAX_MESSAGE_BYTES + 1),
            "too_deep": b"[" * (MAX_DEPTH + 1),
            "malformed": b"{nope",
            "invalid": b'{"type":"tick","asset":"SOL","cycle":-1,"ts":1,"deadline":2}',
            "version": b'{"type":"tick","v":2,"asset":"SOL","cycle":1,"ts":1,"deadline":2}',
        }
        for kind, data in cases.items():
            with pytest.raises(m.DecodeError) as info:
                m.decode(data, tick)
            assert info.value.kind == kind, (kind, info.value.reason)
        with pytest.raises(m.DecodeError) as info:
            m.decode(cases["invalid"], tick)
        assert info.value.path == "$.cycle"

    def test_nesting_at_the_limit_is_fine_and_one_more_is_not(self) -> None:
        """32 levels decode (as far as the type allows); 33 are refused before parsing, strings ignored."""
        ok = b'{"type":"tick","asset":"SOL","cycle":1,"ts":1,"deadline":2,"x":' + b"[" * 31 + b"]" * 31 + b"}"
        assert isinstance(m.decode(ok, m.Tick), m.Tick)
        too_deep = ok.replace(b"[" * 31, b"[" * 32).replace(b"]" * 31, b"]" * 32)
        with pytest.raises(m.DecodeError, match="deeper than 32"):
            m.decode(too_deep, m.Tick)
        in_a_string = b'{"type":"tick","asset":"SOL","cycle":1,"ts":1,"deadline":2,"x":"' + b"[" * 100 + b'"}'
        assert isinstance(m.decode(in_a_string, m.Tick), m.Tick)


class TestBounds:
    """Each bound holds at its edge and fails one past it."""

    @pytest.mark.parametrize(
        "msg, field, good, bad",
        [
            (EXAMPLES[0], "cycle", MAX_SAFE_INT, MAX_SAFE_INT + 1),
            (EXAMPLES[0], "deadline", MAX_TIMESTAMP, MAX_TIMESTAMP + 1),
            (EXAMPLES[4], "consecutive_failures", MAX_SAFE_INT, MAX_SAFE_INT + 1),
            (EXAMPLES[4], "next_delay", 1e9, 1e9 + 1),
            (EXAMPLES[2], "status", 599, 1000),
            (EXAMPLES[2], "retry_after", 0.0, -1.0),
            (EXAMPLES[2], "detail", "x" * MAX_DETAIL, "x" * (MAX_DETAIL + 1)),
            (EXAMPLES[5], "handled", MAX_SAFE_INT, MAX_SAFE_INT + 1),
            (EXAMPLES[5], "actor", "a" * 64, "a" * 65),
            (EXAMPLES[5], "host", "h" * 253, "h" * 254),
            (EXAMPLES[6], "error", "e" * MAX_ERROR, "e" * (MAX_ERROR + 1)),
            (EXAMPLES[9], "opens", MAX_SAFE_INT, MAX_SAFE_INT + 1),
            (EXAMPLES[9], "scope", "BTC", "btc"),
            (EXAMPLES[9], "until", MAX_TIMESTAMP, 1e15),
            (EXAMPLES[10], "why", "y" * MAX_NOTE, "y" * (MAX_NOTE + 1)),
            (EXAMPLES[10], "who", "w" * MAX_NOTE, "w" * (MAX_NOTE + 1)),
            (EXAMPLES[10], "revision", MAX_SAFE_INT, 9e18),
            (EXAMPLES[10], "flag", "SPOT_OB", "spot_ob"),
            (EXAMPLES[11], "flag", "spot_ob", "spot-ob"),
            (EXAMPLES[8], "revision", MAX_SAFE_INT, 2**63),
            (EXAMPLES[13], "module", "etf", "ETF"),
            (EXAMPLES[-3], "term", MAX_SAFE_INT, MAX_SAFE_INT + 1),
            (EXAMPLES[-3], "holder", "h" * 128, "h" * 129),
            (EXAMPLES[-3], "holder", "host-1.x_y", "host 1"),
            (EXAMPLES[-2], "role", "scheduler", "sched.uler"),
            (EXAMPLES[-1], "state", "answered", "done"),
            (EXAMPLES[-1], "key", "BTC", "btc.x"),
            (EXAMPLES[0], "fence", MAX_SAFE_INT, -1),
        ],
        ids=lambda x: x if isinstance(x, str) and len(x) < 30 else None,
    )
    def test_edge(self, msg: m.Message, field: str, good: Any, bad: Any) -> None:
        """`good` decodes (and round-trips); `bad` is an invalid DecodeError naming the field."""
        doc = msgspec.to_builtins(msg)
        doc[field] = good
        assert check(type(msg), dump(doc).encode()) is not None
        doc[field] = bad
        with pytest.raises(m.DecodeError) as info:
            m.decode(dump(doc).encode(), type(msg))
        assert info.value.kind == "invalid" and info.value.path == f"$.{field}"

    @pytest.mark.parametrize(
        "msg, field",
        [
            (EXAMPLES[3], "modules"),
            (EXAMPLES[3], "components"),
            (EXAMPLES[8], "routes"),
            (EXAMPLES[8], "unusable"),
            (EXAMPLES[8], "origin"),
            (EXAMPLES[8], "notes"),
            (EXAMPLES[12], "flags"),
        ],
    )
    def test_keyed_dicts_hold_32_names_and_no_other_keys(self, msg: m.Message, field: str) -> None:
        """Dicts keyed by module (or flag) refuse a 33rd entry and keys that are not names."""
        doc = msgspec.to_builtins(msg)
        value = next(iter(doc[field].values()))
        name = str.upper if field == "flags" else str.lower
        doc[field] = {name(f"m{i}"): value for i in range(MAX_MODULES)}
        assert check(type(msg), dump(doc).encode()) is not None
        for bad in ({name(f"m{i}"): value for i in range(MAX_MODULES + 1)}, {"not a name": value}):
            doc[field] = bad
            with pytest.raises(m.DecodeError, match=field):
                m.decode(dump(doc).encode(), type(msg))

    @pytest.mark.parametrize("field", ["modules", "failed", "ok"])
    def test_module_lists_hold_32(self, field: str) -> None:
        """A tick's modules and a health's failed/ok lists: at most 32 module names."""
        msg = EXAMPLES[0] if field == "modules" else EXAMPLES[4]
        doc = msgspec.to_builtins(msg)
        doc[field] = [f"m{i}" for i in range(MAX_MODULES + 1)]
        with pytest.raises(m.DecodeError, match=field):
            m.decode(dump(doc).encode(), type(msg))

    def test_the_schema_shows_the_bounds(self) -> None:
        """Other bots see every bound in `sniper schema`."""
        defs = message_schema()["$defs"]
        assert defs["Tick"]["properties"]["cycle"]["maximum"] == MAX_SAFE_INT
        assert defs["Tick"]["properties"]["ts"]["maximum"] == MAX_TIMESTAMP
        assert defs["FlagCommand"]["properties"]["why"]["maxLength"] == MAX_NOTE
        assert defs["Signal"]["properties"]["modules"]["maxProperties"] == MAX_MODULES
        assert "pattern" in defs["Signal"]["properties"]["modules"]["propertyNames"]


class TestFindings:
    """One regression test per finding of the hostile probe on the decoders."""

    def test_cycle_1e23_is_refused(self) -> None:
        """Finding: "cycle 99999999999999999999999 accepted and published"; now any int is below 2^53."""
        for cycle in (99999999999999999999999, 2**53, 2**63):
            data = dump({"type": "tick", "asset": "SOL", "cycle": cycle, "ts": T0, "deadline": T0 + 3}).encode()
            with pytest.raises(m.DecodeError) as info:
                m.decode(data, m.Tick, subject="sniper.tick.SOL")
            assert (info.value.kind, info.value.path, info.value.subject) == ("invalid", "$.cycle", "sniper.tick.SOL")
        edge = m.Tick(asset="SOL", cycle=2**53 - 1, ts=T0, deadline=T0 + 3)
        assert m.decode(m.encode(edge), m.Tick) == edge

    def test_deep_nesting_is_a_decode_error_with_the_subject(self) -> None:
        """Finding: "deep nesting raises RecursionError (logged without subject, not counted)"."""
        for data in (
            b'{"type":"tick","asset":"SOL","cycle":1,"ts":1,"deadline":2,"x":' + b"[" * DEEP + b"]" * DEEP + b"}",
            b'{"type":"module_data","payload":' + b"[" * DEEP,
        ):
            for tp in (m.Tick, m.ModuleData, m.AnyMessage):
                with pytest.raises(m.DecodeError) as info:
                    m.decode(data, tp, subject="sniper.tick.SOL")
                assert (info.value.kind, info.value.subject) == ("too_deep", "sniper.tick.SOL")

    def test_tick_with_deadline_not_after_ts_is_refused(self) -> None:
        """Finding: "a tick with deadline < ts accepted"; equal is refused too, and cannot even be built."""
        for deadline in (T0 - 5, T0):
            data = dump({"type": "tick", "asset": "SOL", "cycle": 1, "ts": T0, "deadline": deadline}).encode()
            with pytest.raises(m.DecodeError, match="deadline") as info:
                m.decode(data, m.AnyMessage, subject="sniper.tick.SOL")
            assert info.value.kind == "invalid"
            with pytest.raises(ValueError, match="deadline"):
                m.Tick(asset="SOL", cycle=1, ts=T0, deadline=deadline)

    def test_900kb_why_is_refused_with_a_short_reason(self) -> None:
        """Finding: "a 900 KB `why` stored, published and logged"; `why` and `who` are 200 characters at most."""
        why = "w" * 900_000
        for msg in (
            {"flag": "ETF", "enabled": False, "why": why},
            {"type": "flag_changed", "flag": "ETF", "enabled": False, "ts": T0, "why": why},
        ):
            tp = m.FlagCommand if "type" not in msg else m.FlagChanged
            with pytest.raises(m.DecodeError) as info:
                m.decode(json.dumps(msg).encode(), tp, subject="sniper.cmd.flags")
            assert info.value.path == "$.why" and len(str(info.value)) < 300

    def test_a_huge_quoted_value_does_not_make_a_huge_reason(self) -> None:
        """msgspec quotes bad enum values and unknown field names; the reason stays short, the path kept."""
        for data in (
            b'{"type":"signal","direction":"' + b"d" * 900_000 + b'"}',
            b'{"' + b"k" * 900_000 + b'":1}',
        ):
            with pytest.raises(m.DecodeError) as info:
                m.decode(data, m.FlagCommand if data.startswith(b'{"k') else m.Signal)
            assert len(info.value.reason) <= MAX_REASON
