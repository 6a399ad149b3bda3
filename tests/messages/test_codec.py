"""The wire contract: messages round-trip, bad input is rejected with DecodeError."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import messages as m
from messages.schema import message_schema

WHALE = m.WhaleAlerts(
    symbol="SOL",
    alerts=(
        m.WhaleAlert(
            id="wh-1", ts=1.0, amount=10.0, amount_usd=1800.0, source="binance", to="x", direction="exchange_outflow"
        ),
    ),
)
EXAMPLES: list[m.Message] = [
    m.Tick(asset="SOL", cycle=3, ts=10.0, deadline=12.0, modules=("whale", "etf")),
    m.ModuleData(module="whale", asset="SOL", cycle=3, ts=10.5, latency_ms=12.0, payload=WHALE),
    m.ModuleData(
        module="spot_ob",
        asset="SOL",
        cycle=3,
        ts=10.5,
        payload=m.OrderBook(symbol="SOLUSDT", exchange="binance", ts=10.0, bids=((99.0, 1.0),), asks=((101.0, 2.0),)),
    ),
    m.ModuleData(
        module="etf",
        asset="BTC",
        cycle=0,
        ts=1.0,
        payload=m.EtfFlows(
            asset="BTC", as_of="2026-11-24", net_flow_usd=-1e8, issuers=(m.EtfIssuerFlow(ticker="IBIT", flow_usd=-1e8),)
        ),
    ),
    m.Degraded(module="etf", asset="SOL", cycle=3, ts=10.1, reason="payment_required", status=402),
    m.Signal(
        asset="SOL",
        cycle=3,
        ts=12.0,
        started=10.0,
        direction="long",
        score=0.4,
        confidence=0.8,
        modules={
            "whale": m.ModuleStatus(status="ok"),
            "etf": m.ModuleStatus(status="degraded", reason="payment_required"),
        },
        etf_available=False,
        components={"whale": 0.4},
    ),
    m.Health(asset="SOL", cycle=3, ts=12.0, state="soft_fail", consecutive_failures=0, next_delay=5.0),
    m.Heartbeat(actor="whale", ts=1.0, state="running"),
    m.ActorRestarted(actor="whale", ts=1.0, attempt=1, delay=0.5, error="RuntimeError: x"),
    m.ActorGaveUp(actor="whale", ts=1.0, restarts=5, period=60.0, error="RuntimeError: x"),
]


class TestRoundTrip:
    @pytest.mark.parametrize("msg", EXAMPLES, ids=lambda x: type(x).__name__)
    def test_round_trip_through_union(self, msg: m.Message) -> None:
        """Every message decodes back to an equal value through the AnyMessage union."""
        assert m.decode(m.encode(msg), m.AnyMessage) == msg

    @pytest.mark.parametrize("msg", EXAMPLES, ids=lambda x: type(x).__name__)
    def test_wire_is_plain_json_with_type_and_version(self, msg: m.Message) -> None:
        """The wire form is JSON any language reads, with a type tag and the schema version."""
        doc = json.loads(m.encode(msg))
        info = msgspec.inspect.type_info(type(msg))
        assert isinstance(info, msgspec.inspect.StructType)
        assert doc["type"] == info.tag
        assert doc["v"] == m.SCHEMA_VERSION

    def test_messages_are_immutable(self) -> None:
        """Messages are frozen: a consumer cannot change a fact for others."""
        tick = EXAMPLES[0]
        assert isinstance(tick, m.Tick)
        with pytest.raises(AttributeError):
            tick.cycle = 4  # type: ignore[misc]  # assigning to a frozen field is the point of the test

    @settings(max_examples=150, deadline=None)
    @given(
        asset=st.from_regex(r"[A-Z0-9]{1,20}", fullmatch=True),
        cycle=st.integers(0, 2**40),
        ts=st.floats(0, 4e9, allow_nan=False),
        score=st.floats(-1, 1, allow_nan=False),
        conf=st.floats(0, 1, allow_nan=False),
    )
    def test_signal_round_trips_for_any_valid_values(
        self, asset: str, cycle: int, ts: float, score: float, conf: float
    ) -> None:
        """Any in-range Signal survives encode/decode unchanged."""
        sig = m.Signal(
            asset=asset,
            cycle=cycle,
            ts=ts,
            started=ts,
            direction="flat",
            score=score,
            confidence=conf,
            modules={},
            etf_available=True,
        )
        assert m.decode(m.encode(sig), m.Signal) == sig


class TestRejection:
    @pytest.mark.parametrize(
        "data, fragment",
        [
            (b"", "truncated"),
            (b"not json", "malformed"),
            (b"{", "truncated"),
            (b"[]", "Expected `object`"),
            (b'{"type":"nope"}', "Invalid value 'nope'"),
            (b'{"asset":"SOL"}', "missing required field `type`"),
            (b'{"type":"tick","asset":"SOL","cycle":"3","ts":1,"deadline":2}', "Expected `int`, got `str`"),
            (b'{"type":"tick","asset":"sol.>","cycle":3,"ts":1,"deadline":2}', "matching regex"),
            (b'{"type":"tick","asset":"SOL","cycle":-1,"ts":1,"deadline":2}', ">= 0"),
            (
                b'{"type":"signal","asset":"SOL","cycle":1,"ts":1,"started":1,"direction":"up","score":0,"confidence":0,"modules":{},"etf_available":true}',
                "Invalid enum value 'up'",
            ),
            (
                b'{"type":"signal","asset":"SOL","cycle":1,"ts":1,"started":1,"direction":"long","score":2,"confidence":0,"modules":{},"etf_available":true}',
                "<= 1",
            ),
            (
                b'{"type":"degraded","module":"etf","asset":"SOL","cycle":1,"ts":1,"reason":"bored"}',
                "Invalid enum value 'bored'",
            ),
            (b'{"type":"tick","v":99,"asset":"SOL","cycle":3,"ts":1,"deadline":2}', "schema version 99"),
        ],
        ids=lambda x: x if isinstance(x, str) else None,
    )
    def test_bad_input_raises_decode_error(self, data: bytes, fragment: str) -> None:
        """Malformed, wrong-typed and unknown input raises DecodeError with a clear reason."""
        with pytest.raises(m.DecodeError) as info:
            m.decode(data, m.AnyMessage, subject="sniper.tick.SOL")
        assert fragment in info.value.reason
        assert info.value.subject == "sniper.tick.SOL"

    def test_oversized_input_is_rejected_before_parsing(self) -> None:
        """Input over the size limit is refused without being parsed."""
        big = b'{"type":"tick"' + b" " * m.MAX_MESSAGE_BYTES + b"}"
        with pytest.raises(m.DecodeError, match="exceeds") as info:
            m.decode(big, m.AnyMessage)
        assert info.value.kind == "too_large"

    def test_decode_error_keeps_a_short_preview(self) -> None:
        """The error carries a bounded preview and the size, for logs."""
        with pytest.raises(m.DecodeError) as info:
            m.decode(b"x" * 5000, m.Tick)
        assert len(info.value.preview) == 120 and info.value.size == 5000

    def test_decode_error_is_a_sniper_error(self) -> None:
        """Callers can catch every deliberate error as SniperError."""
        assert issubclass(m.DecodeError, m.ContractError) and issubclass(m.ContractError, m.SniperError)

    def test_unknown_fields_are_ignored_for_forward_compatibility(self) -> None:
        """A newer producer's extra field does not break an older consumer."""
        doc = json.loads(m.encode(EXAMPLES[0]))
        doc["added_later"] = 1
        assert m.decode(json.dumps(doc).encode(), m.Tick) == EXAMPLES[0]


class TestSubjects:
    @pytest.mark.parametrize(
        "build, expected",
        [
            (lambda s: s.tick("SOL"), "sniper.tick.SOL"),
            (lambda s: s.data("spot_ob", "SOL"), "sniper.data.spot_ob.SOL"),
            (lambda s: s.degraded("etf", "BTC"), "sniper.degraded.etf.BTC"),
            (lambda s: s.signal("SOL"), "sniper.signal.SOL"),
            (lambda s: s.signal_all(), "sniper.signal.*"),
            (lambda s: s.heartbeat("whale"), "sniper.heartbeat.whale"),
            (lambda s: s.actor_event("whale"), "sniper.actor.whale"),
            (lambda s: s.health("SOL"), "sniper.health.SOL"),
            (lambda s: s.circuit("etf"), "sniper.circuit.etf"),
            (lambda s: s.command("flags"), "sniper.cmd.flags"),
            (lambda s: s.everything(), "sniper.>"),
        ],
    )
    def test_default_prefix_layout(self, build, expected: str) -> None:
        """Subjects follow the documented layout under the default prefix."""
        assert build(m.Subjects()) == expected

    def test_custom_prefix(self) -> None:
        """A deployment may choose its own (multi-token) prefix."""
        assert m.Subjects("desk.a").signal("SOL") == "desk.a.signal.SOL"

    @pytest.mark.parametrize("bad", ["", "SOL.>", "SO L", "*", ">", "a.b", "sol\n"])
    def test_unsafe_tokens_are_rejected(self, bad: str) -> None:
        """A value that would change a subject's meaning raises SubjectError."""
        with pytest.raises(m.SubjectError):
            m.Subjects().signal(bad)

    @pytest.mark.parametrize("bad", ["", "a..b", "$SYS", "a.*", "a b"])
    def test_unsafe_prefixes_are_rejected(self, bad: str) -> None:
        """Prefixes must be plain dot-separated tokens, never reserved `$` names."""
        with pytest.raises(m.SubjectError):
            m.Subjects(bad)


class TestSchema:
    def test_schema_covers_every_message_type(self) -> None:
        """The JSON Schema lists every wire message, dispatchable by `type`."""
        schema = message_schema()
        names = {ref["$ref"].rsplit("/", 1)[1] for ref in schema["oneOf"]}
        assert names == {t.__name__ for t in m.AnyMessage.__args__}
        assert schema["$defs"]["Signal"]["properties"]["score"]["maximum"] == 1


class TestCycleNames:
    def test_valid_names_are_remembered_up_to_the_limit(self) -> None:
        """The memo of valid names stops growing at its limit; names past it are still checked, every time."""
        from messages._base import ASSET_PATTERN, _Names

        names = _Names(ASSET_PATTERN, "asset", limit=100)
        for i in range(1000):
            names.check(f"A{i}")
        assert len(names._seen) == 100
        with pytest.raises(ValueError, match="matching regex"):
            names.check("a.b")

    @pytest.mark.parametrize("field, value", [("asset", "sol"), ("asset", "S.L"), ("module", "E T"), ("module", "Etf")])
    def test_per_cycle_messages_refuse_bad_names_like_the_schema(self, field: str, value: str) -> None:
        """Degraded checks asset and module characters as the schema's pattern says, though not by msgspec regex."""
        doc = {"type": "degraded", "module": "etf", "asset": "SOL", "cycle": 1, "ts": 1.0, "reason": "timeout"}
        doc[field] = value
        with pytest.raises(m.DecodeError, match="matching regex"):
            m.decode(msgspec.json.encode(doc), m.Degraded)
