"""Scoring: each module's sub-score from handcrafted payloads, and how they combine."""

from __future__ import annotations

import functools
import math
from typing import Literal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.fetcher import BadPayload, ModuleFetcher
from actors.fetchers import FETCHERS
from actors.scoring import (
    DEFAULT_WEIGHTS,
    ScoringConfig,
    Verdict,
    combine,
    sub_score,
)
from actors.upstream import MockTransport, Response, UpstreamClient
from messages import (
    EtfFlows,
    InstitutionalBias,
    LiquidationHeatmap,
    LiquidationLevel,
    OrderBook,
    Payload,
    WhaleAlert,
    WhaleAlerts,
)
from messages.modules.bias import score as score_bias
from messages.modules.etf import score as score_etf
from messages.modules.heatmap import HEAT_SCALE
from messages.modules.heatmap import score as score_heatmap
from messages.modules.spot_ob import score as score_order_book
from messages.modules.whale import score as score_whale
from runtime.clock import VirtualClock

CFG = ScoringConfig()
Flow = Literal["exchange_inflow", "exchange_outflow", "transfer"]  # WhaleAlert.direction
Side = Literal["long", "short"]  # LiquidationLevel.side
ALL = frozenset(DEFAULT_WEIGHTS)


def book(bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> OrderBook:
    return OrderBook(symbol="SOLUSDT", exchange="binance", ts=0.0, bids=tuple(bids), asks=tuple(asks))


def whales(*flows: tuple[Flow, float]) -> WhaleAlerts:
    return WhaleAlerts(
        symbol="SOL",
        alerts=tuple(
            WhaleAlert(id=f"w{i}", ts=0.0, amount=1.0, amount_usd=usd, source="a", to="b", direction=d)
            for i, (d, usd) in enumerate(flows)
        ),
    )


def heat(price: float, *levels: tuple[float, Side, float]) -> LiquidationHeatmap:
    return LiquidationHeatmap(
        symbol="SOLUSDT",
        timeframe="1h",
        price=price,
        levels=tuple(LiquidationLevel(price=p, side=s, usd=u) for p, s, u in levels),
    )


def etf(flow: float) -> EtfFlows:
    return EtfFlows(asset="BTC", as_of="2026-01-01", net_flow_usd=flow)


def bias(score: float) -> InstitutionalBias:
    return InstitutionalBias(symbol="SOLUSDT", bias="neutral", score=score)


class TestOrderBook:
    @pytest.mark.parametrize(
        ("bids", "asks", "expected"),
        [
            ([(99.9, 3.0)], [(100.1, 1.0)], 0.5),
            ([(99.9, 1.0)], [(100.1, 3.0)], -0.5),
            ([(99.9, 2.0)], [(100.1, 2.0)], 0.0),
            ([(99.9, 1.0)], [(100.1, 0.0)], 1.0),
            ([(99.9, 0.0)], [(100.1, 0.0)], 0.0),
            # far levels (beyond 0.5% of mid = 100) do not count, however big
            ([(99.9, 1.0), (99.0, 1000.0)], [(100.1, 1.0), (101.0, 1000.0)], 0.0),
            ([(99.9, 1.0), (99.0, 1000.0)], [(100.1, 1.0)], 0.0),
            ([(99.9, 1.0)], [(100.1, 1.0), (110.0, 1e9)], 0.0),
            # just inside the edge (99.5 / 100.5) counts, just outside does not
            ([(99.9, 1.0), (99.51, 2.0)], [(100.1, 1.0)], 0.5),
            ([(99.9, 1.0)], [(100.1, 1.0), (100.49, 2.0)], -0.5),
            ([(99.9, 1.0), (99.49, 2.0)], [(100.1, 1.0)], 0.0),
            ([(99.9, 1.0)], [(100.1, 1.0), (100.51, 2.0)], 0.0),
        ],
        ids=[
            "bid-heavy",
            "ask-heavy",
            "balanced",
            "no-ask-size",
            "empty-sizes",
            "far-walls-both",
            "far-bid-wall",
            "far-ask-wall",
            "bid-inside-edge",
            "ask-inside-edge",
            "bid-outside-edge",
            "ask-outside-edge",
        ],
    )
    def test_imbalance_near_mid(
        self, bids: list[tuple[float, float]], asks: list[tuple[float, float]], expected: float
    ) -> None:
        """Imbalance is (bid - ask) / (bid + ask) over levels within near_mid of the mid only."""
        assert score_order_book(book(bids, asks)) == pytest.approx(expected)

    @pytest.mark.parametrize(("near_mid", "expected"), [(0.005, 0.0), (0.02, 0.5)])
    def test_near_mid_is_configurable(self, near_mid: float, expected: float) -> None:
        """Widening near_mid lets a level 1% away count."""
        ob = book([(99.9, 1.0), (99.0, 2.0)], [(100.1, 1.0)])
        assert score_order_book(ob, near_mid=near_mid) == pytest.approx(expected)


class TestWhale:
    @pytest.mark.parametrize(
        ("flows", "expected"),
        [
            ((("exchange_outflow", 3e6), ("exchange_inflow", 1e6)), 0.5),
            ((("exchange_outflow", 1e6), ("exchange_inflow", 3e6)), -0.5),
            ((("exchange_outflow", 5e6),), 1.0),
            ((("exchange_inflow", 5e6),), -1.0),
            ((("exchange_outflow", 1e6), ("exchange_outflow", 1e6), ("exchange_inflow", 2e6)), 0.0),
            ((("transfer", 9e9),), 0.0),
            ((("transfer", 9e9), ("exchange_outflow", 1e6)), 1.0),
            ((), 0.0),
        ],
        ids=[
            "net-outflow",
            "net-inflow",
            "only-out",
            "only-in",
            "balanced",
            "transfers-ignored",
            "transfer-plus-out",
            "none",
        ],
    )
    def test_outflow_minus_inflow(self, flows: tuple[tuple[Flow, float], ...], expected: float) -> None:
        """(outflows - inflows) / total in USD; exchange outflow is bullish, plain transfers do not count."""
        assert score_whale(whales(*flows)) == pytest.approx(expected)


class TestHeatmap:
    @pytest.mark.parametrize(
        ("levels", "sign"),
        [
            (((101.0, "short", 1e6),), 1),
            (((99.0, "long", 1e6),), -1),
            (((101.0, "short", 1e6), (99.0, "long", 1e6)), 0),
            # a near cluster outweighs a far one of equal size
            (((101.0, "short", 1e6), (95.0, "long", 1e6)), 1),
            (((105.0, "short", 1e6), (99.0, "long", 1e6)), -1),
            # wrong-side clusters do not count
            (((99.0, "short", 1e6), (101.0, "long", 1e6)), 0),
            (((100.0, "short", 1e6), (100.0, "long", 1e6)), 0),
            ((), 0),
        ],
        ids=[
            "short-above",
            "long-below",
            "symmetric",
            "near-short-wins",
            "near-long-wins",
            "wrong-sides",
            "at-price",
            "empty",
        ],
    )
    def test_sign(self, levels: tuple[tuple[float, Side, float], ...], sign: int) -> None:
        """Shorts above push up, longs below pull down; closer clusters weigh more."""
        score = score_heatmap(heat(100.0, *levels))
        assert (score > 0) - (score < 0) == sign

    @pytest.mark.parametrize(("near", "far"), [(0.01, 0.05), (0.02, 0.03), (0.001, 0.2)])
    def test_distance_weighting_matches_exp(self, near: float, far: float) -> None:
        """Each cluster weighs usd * exp(-distance / HEAT_SCALE)."""
        h = heat(100.0, (100.0 * (1 + near), "short", 1e6), (100.0 * (1 - far), "long", 1e6))
        up, down = math.exp(-near / HEAT_SCALE), math.exp(-far / HEAT_SCALE)
        assert score_heatmap(h) == pytest.approx((up - down) / (up + down))

    def test_size_can_beat_distance(self) -> None:
        """A far cluster big enough outweighs a near small one."""
        h = heat(100.0, (101.0, "short", 1e6), (95.0, "long", 1e8))
        assert score_heatmap(h) < 0


class TestEtf:
    @pytest.mark.parametrize(
        ("flow", "expected"),
        [
            (0.0, 0.0),
            (250e6, math.tanh(1.0)),
            (-250e6, -math.tanh(1.0)),
            (125e6, math.tanh(0.5)),
            (-1e12, -1.0),
            (1e12, 1.0),
        ],
    )
    def test_tanh_scaling_and_sign(self, flow: float, expected: float) -> None:
        """ETF score is tanh(net flow / 250M USD): signed, saturating at ±1."""
        assert score_etf(etf(flow)) == pytest.approx(expected)

    def test_scale_is_configurable(self) -> None:
        """A smaller scale makes the same flow count for more."""
        assert score_etf(etf(100e6), scale=100e6) == pytest.approx(math.tanh(1.0))


class TestBias:
    @pytest.mark.parametrize(
        ("score", "expected"),
        [(0.0, 0.0), (0.42, 0.42), (-0.7, -0.7), (1.0, 1.0), (-1.0, -1.0), (3.0, 1.0), (-3.0, -1.0)],
    )
    def test_passthrough_clipped(self, score: float, expected: float) -> None:
        """The backend's score passes through unchanged, clipped to [-1, 1]."""
        assert score_bias(bias(score)) == expected


class TestSubScore:
    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            (book([(99.9, 3.0)], [(100.1, 1.0)]), 0.5),
            (whales(("exchange_inflow", 1.0)), -1.0),
            (heat(100.0, (101.0, "short", 1.0)), 1.0),
            (etf(0.0), 0.0),
            (bias(0.3), 0.3),
        ],
        ids=["spot_ob", "whale", "heatmap", "etf", "bias"],
    )
    def test_dispatches_on_payload_type(self, payload: Payload, expected: float) -> None:
        """sub_score picks the scorer by payload type."""
        assert sub_score(payload, CFG) == pytest.approx(expected)

    def test_unknown_payload_is_a_type_error(self) -> None:
        """A payload type without a scorer raises TypeError naming it."""

        class Other(Payload, frozen=True, tag="other"):
            pass

        with pytest.raises(TypeError, match="Other"):
            sub_score(Other(), CFG)


finite = st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False)
prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)
levels = st.lists(st.tuples(prices, finite), max_size=8)
payloads = st.one_of(
    st.builds(
        lambda b, a, bb, aa: book([b, *bb], [a, *aa]),
        st.tuples(prices, finite),
        st.tuples(prices, finite),
        levels,
        levels,
    ),
    st.builds(
        lambda fs: whales(*fs),
        st.lists(st.tuples(st.sampled_from(["exchange_inflow", "exchange_outflow", "transfer"]), finite), max_size=8),
    ),
    st.builds(
        lambda p, ls: heat(p, *ls),
        prices,
        st.lists(st.tuples(prices, st.sampled_from(["long", "short"]), finite), max_size=8),
    ),
    st.builds(etf, st.floats(min_value=-1e13, max_value=1e13, allow_nan=False)),
    st.builds(bias, st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)),
)


class TestBounds:
    @settings(max_examples=300, deadline=None, database=None)
    @given(payload=payloads)
    def test_sub_scores_within_unit_interval(self, payload: Payload) -> None:
        """Every sub-score of any valid payload lies in [-1, 1]."""
        assert -1.0 <= sub_score(payload, CFG) <= 1.0

    @settings(max_examples=200, deadline=None, database=None)
    @given(
        components=st.dictionaries(
            st.sampled_from(sorted(DEFAULT_WEIGHTS)), st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)
        ),
        expected=st.frozensets(st.sampled_from(sorted(DEFAULT_WEIGHTS))),
    )
    def test_verdict_within_bounds(self, components: dict[str, float], expected: frozenset[str]) -> None:
        """combine always gives a score in [-1, 1], confidence in [0, 1] and a known direction."""
        v = combine(components, expected, CFG)
        assert (-1.0 <= v.score <= 1.0, 0.0 <= v.confidence <= 1.0, v.direction in {"long", "short", "flat"}) == (
            True,
            True,
            True,
        )


ONE = ScoringConfig(weights={"a": 1.0})
HALVES = ScoringConfig(weights={"a": 0.25, "b": 0.75}, min_confidence=0.25)


class TestCombine:
    @pytest.mark.parametrize(
        ("components", "score"),
        [
            ({"spot_ob": 1.0, "whale": -1.0}, (0.25 - 0.2) / 0.45),
            ({"spot_ob": 0.8}, 0.8),
            ({"etf": -0.4}, -0.4),
            ({"whale": 0.5, "heatmap": 0.5, "bias": 0.5}, 0.5),
            ({"whale": 1.0, "etf": 1.0, "heatmap": -1.0, "spot_ob": -1.0, "bias": 1.0}, 0.55 - 0.45),
        ],
        ids=["two", "one", "etf-only", "equal", "all"],
    )
    def test_weights_renormalise_over_present(self, components: dict[str, float], score: float) -> None:
        """The score is the weighted mean over present modules only; absent ones do not dilute it."""
        assert combine(components, ALL, CFG).score == pytest.approx(score, abs=1e-6)

    @pytest.mark.parametrize(
        ("components", "expected", "confidence"),
        [
            ({"spot_ob": 0.1}, {"spot_ob", "whale"}, 0.25 / 0.45),
            ({"spot_ob": 0.1, "whale": 0.1}, {"spot_ob", "whale"}, 1.0),
            ({m: 0.0 for m in ALL}, ALL, 1.0),
            ({"whale": 0.0, "heatmap": 0.0, "spot_ob": 0.0}, ALL, 0.65 / 1.15),
            ({"whale": 0.0, "heatmap": 0.0, "spot_ob": 0.0}, ALL - {"etf"}, 0.65 / 1.0),
            # a present module that was not expected counts as expected
            ({"etf": 0.0}, {"whale"}, 0.15 / 0.35),
            ({"etf": 0.0}, set(), 1.0),
        ],
        ids=["half", "all-expected", "all", "core", "etf-disabled", "unexpected-present", "nothing-expected"],
    )
    def test_confidence_is_present_over_expected_weight(
        self, components: dict[str, float], expected: set[str], confidence: float
    ) -> None:
        """Confidence = present weight / expected weight; a disabled module is not expected."""
        assert combine(components, frozenset(expected), CFG).confidence == pytest.approx(confidence, abs=1e-6)

    @pytest.mark.parametrize(
        ("score", "direction"),
        [
            (0.15, "long"),
            (0.149, "flat"),
            (0.0, "flat"),
            (-0.149, "flat"),
            (-0.15, "short"),
            (1.0, "long"),
            (-1.0, "short"),
        ],
    )
    def test_direction_thresholds_are_inclusive(self, score: float, direction: str) -> None:
        """long at score >= threshold, short at <= -threshold, flat strictly between."""
        assert combine({"a": score}, {"a"}, ONE) == Verdict(score, 1.0, direction)

    @pytest.mark.parametrize(
        ("threshold", "score", "direction"),
        [(0.5, 0.5, "long"), (0.5, 0.49, "flat"), (0.5, -0.5, "short"), (0.0, 0.0, "long")],
    )
    def test_threshold_is_configurable(self, threshold: float, score: float, direction: str) -> None:
        """The direction threshold comes from the config."""
        cfg = ScoringConfig(weights={"a": 1.0}, threshold=threshold)
        assert combine({"a": score}, {"a"}, cfg).direction == direction

    @pytest.mark.parametrize(
        ("cfg", "components", "direction"),
        [
            (CFG, {"whale": 0.1, "heatmap": 0.2}, "long"),
            (CFG, {"whale": -0.41, "heatmap": 0.71}, "long"),
            (CFG, {"whale": 0.41, "heatmap": -0.71}, "short"),
            (ONE, {"a": 0.1499996}, "long"),
            (ONE, {"a": -0.1499996}, "short"),
        ],
        ids=["w0.1+h0.2", "w-0.41+h0.71", "w0.41-h0.71", "a0.1499996", "a-0.1499996"],
    )
    def test_reported_score_at_threshold_agrees_with_direction(
        self, cfg: ScoringConfig, components: dict[str, float], direction: str
    ) -> None:
        """A verdict whose reported score is exactly ±threshold is long/short, never flat."""
        v = combine(components, set(components), cfg)
        assert (abs(v.score), v.direction) == (cfg.threshold, direction)

    @pytest.mark.parametrize(
        ("components", "expected", "direction"),
        [
            ({"a": 1.0}, {"a", "b"}, "long"),  # confidence 0.25 == min_confidence: not flat
            ({"a": -1.0}, {"a", "b"}, "short"),
            ({"b": 1.0}, {"a", "b"}, "long"),
        ],
    )
    def test_confidence_at_minimum_still_has_direction(
        self, components: dict[str, float], expected: set[str], direction: str
    ) -> None:
        """Confidence exactly at min_confidence keeps the direction."""
        assert combine(components, expected, HALVES).direction == direction

    @pytest.mark.parametrize(("min_confidence", "direction"), [(0.26, "flat"), (0.25, "long"), (0.0, "long")])
    def test_low_confidence_is_flat(self, min_confidence: float, direction: str) -> None:
        """Below min_confidence the direction is flat however strong the score."""
        cfg = ScoringConfig(weights={"a": 0.25, "b": 0.75}, min_confidence=min_confidence)
        v = combine({"a": 1.0}, {"a", "b"}, cfg)
        assert (v.score, v.confidence, v.direction) == (1.0, 0.25, direction)

    @pytest.mark.parametrize(
        ("components", "expected"),
        [
            ({}, ALL),
            ({}, frozenset()),
            ({"unknown": 1.0}, ALL),
            ({"a": 1.0}, frozenset({"a"})),
        ],
        ids=["empty", "empty-nothing-expected", "unknown-module", "zero-weight"],
    )
    def test_nothing_present_is_flat_zero(self, components: dict[str, float], expected: frozenset[str]) -> None:
        """With no weighted module present the verdict is flat, score 0, confidence 0."""
        cfg = ScoringConfig(weights={**DEFAULT_WEIGHTS, "a": 0.0})
        assert combine(components, expected, cfg) == Verdict(0.0, 0.0, "flat")

    def test_zero_weight_module_is_ignored(self) -> None:
        """A module weighted 0 neither moves the score nor counts toward confidence."""
        cfg = ScoringConfig(weights={"a": 1.0, "z": 0.0})
        assert combine({"a": 0.5, "z": -1.0}, {"a", "z"}, cfg) == Verdict(0.5, 1.0, "long")

    def test_values_are_rounded_to_six_places(self) -> None:
        """Score and confidence are rounded to 6 decimals."""
        v = combine({"spot_ob": 1.0, "whale": -1.0}, ALL, CFG)
        assert (v.score, v.confidence) == (round(0.05 / 0.45, 6), round(0.45 / 1.15, 6))


# -- finite scoring: extreme numbers are rejected at the fetcher or scored finitely --------------

#: Floats at every edge: zeros, subnormals, the payload bound (1e15) and either side of it, the largest doubles.
EXTREMES = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1e-300,
    1.0,
    999_999_999_999_999.9,
    1e15,
    -1e15,
    1.0000000000000002e15,
    1e16,
    -1e16,
    1e300,
    1e308,
    -1e308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
]
#: Any JSON-writable float: the edges above, or anything at all.
extreme = st.sampled_from(EXTREMES) | st.floats(allow_nan=False, allow_infinity=False)


def mostly(in_range: st.SearchStrategy[float]) -> st.SearchStrategy[float]:
    """Three draws in four from `in_range`, one `extreme`: bodies are accepted often enough to score them."""
    return st.integers(0, 3).flatmap(lambda k: in_range if k else extreme)


usd = mostly(st.floats(min_value=0, max_value=1e15))
signed = mostly(st.floats(min_value=-1e15, max_value=1e15))
price = mostly(st.floats(min_value=1e-9, max_value=1e9))
unit = mostly(st.floats(min_value=-1, max_value=1))
count = st.one_of(st.integers(0, 3), st.integers(0, 1500))  # "huge lists": past every list cap


def _repeat(items: list[dict[str, object]], n: int) -> list[dict[str, object]]:
    return [items[i % len(items)] for i in range(n)] if items else []


def _book_doc(
    best_bid: float, spread: float | None, step: float | None, size: float, n_bids: int, n_asks: int
) -> dict[str, object]:
    """A book from its best bid; a None spread or step is picked so the book is sorted (if the numbers allow)."""
    spread = best_bid / 1000 if spread is None else spread
    step = best_bid / (2 * n_bids + 2) if step is None else step
    best_ask = best_bid + abs(spread)
    return {
        "symbol": "SOLUSDT",
        "exchange": "binance",
        "ts": 0.0,
        "bids": [[best_bid - i * abs(step), size] for i in range(n_bids)],
        "asks": [[best_ask + i * abs(step), size] for i in range(n_asks)],
    }


def _whale_doc(flows: list[tuple[str, float, float]], n: int) -> dict[str, object]:
    alerts = [
        {"id": "w", "ts": ts, "amount": 1.0, "amount_usd": usd, "from": "a", "to": "b", "direction": d}
        for d, usd, ts in flows
    ]
    return {"symbol": "SOL", "alerts": _repeat(alerts, n)}


def _heat_doc(price: float, levels: list[tuple[float, str | None, float]], n: int) -> dict[str, object]:
    """Clusters at `price` * (1 + offset); a None side is the sane one (shorts above, longs below)."""
    items = [
        {"price": price * (1 + off), "side": side or ("short" if off > 0 else "long"), "usd": usd}
        for off, side, usd in levels
    ]
    return {"symbol": "SOL-USDT-SWAP", "timeframe": "1h", "price": price, "levels": _repeat(items, n)}


def _etf_doc(net: float, flows: list[float], n: int) -> dict[str, object]:
    items = [{"ticker": "IBIT", "flow_usd": f} for f in flows]
    return {"asset": "BTC", "as_of": "2026-01-01", "net_flow_usd": net, "issuers": _repeat(items, n)}


def _bias_doc(score: float, ratio: float, funding: float, oi: float) -> dict[str, object]:
    return {
        "symbol": "SOL-USDT-SWAP",
        "bias": "neutral",
        "score": score,
        "long_short_ratio": ratio,
        "funding_rate": funding,
        "oi_change_pct": oi,
    }


hostile_bodies = st.one_of(
    st.tuples(
        st.just("spot_ob"),
        st.builds(_book_doc, price, st.none() | extreme, st.none() | extreme, usd, st.integers(1, 1500), count),
    ),
    st.tuples(
        st.just("whale"),
        st.builds(
            _whale_doc,
            st.lists(
                st.tuples(st.sampled_from(["exchange_inflow", "exchange_outflow", "transfer"]), usd, usd), max_size=4
            ),
            count,
        ),
    ),
    st.tuples(
        st.just("heatmap"),
        st.builds(
            _heat_doc,
            price,
            st.lists(
                st.tuples(
                    mostly(st.floats(min_value=-0.5, max_value=0.5)),
                    st.none() | st.sampled_from(["long", "short"]),
                    usd,
                ),
                max_size=4,
            ),
            count,
        ),
    ),
    st.tuples(st.just("etf"), st.builds(_etf_doc, signed, st.lists(signed, max_size=4), count)),
    st.tuples(st.just("bias"), st.builds(_bias_doc, unit, usd, signed, signed)),
)


@functools.cache
def fetcher(module: str) -> ModuleFetcher:
    """A real fetcher of `module`, used only for its payload reading (decode, check, trim)."""
    return FETCHERS[module](
        UpstreamClient("http://unused", MockTransport(lambda url: Response(500, {}, b"")), clock=VirtualClock())
    )


def read(module: str, doc: object) -> Payload | None:
    """What the fetcher makes of a backend body: the trimmed payload, or None for bad_payload."""
    try:
        return fetcher(module).read_payload(msgspec.json.encode(doc))
    except BadPayload:
        return None


def in_unit_interval(x: float) -> bool:
    return math.isfinite(x) and -1.0 <= x <= 1.0


class TestFiniteScoring:
    @settings(max_examples=400, deadline=None, database=None)
    @given(body=hostile_bodies)
    def test_any_body_is_rejected_or_scores_finitely(self, body: tuple[str, dict[str, object]]) -> None:
        """For any body, with extreme floats and huge lists, the fetcher rejects it or its sub-score is in [-1, 1]."""
        module, doc = body
        payload = read(module, doc)
        if payload is not None:
            assert in_unit_interval(sub_score(payload, CFG))

    @pytest.mark.parametrize(
        ("module", "doc"),
        [
            ("spot_ob", _book_doc(1e308, 1e300, 1e300, 1e308, 2, 2)),
            ("spot_ob", _book_doc(100.0, 0.1, 0.1, 1e16, 3, 3)),
            ("whale", _whale_doc([("exchange_inflow", 1e308, 0.0), ("exchange_outflow", 1e308, 0.0)], 2)),
            ("heatmap", _heat_doc(1e308, [(-0.01, "long", 1.0)], 1)),
            ("etf", _etf_doc(1e308, [], 0)),
            ("bias", _bias_doc(0.0, 1.0, 1e308, 0.0)),
            ("whale", _whale_doc([("transfer", 1.0, 1e308)], 1)),
        ],
        ids=["book-1e308", "book-size-1e16", "whale-1e308", "heatmap-1e308", "etf-1e308", "bias-1e308", "ts-1e308"],
    )
    def test_numbers_beyond_1e15_are_bad_payload(self, module: str, doc: dict[str, object]) -> None:
        """A payload number beyond ±1e15 makes the body bad_payload, naming the bound."""
        with pytest.raises(BadPayload, match="1000000000000000"):
            fetcher(module).read_payload(msgspec.json.encode(doc))

    @pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
    def test_non_finite_numbers_never_reach_a_payload(self, value: float) -> None:
        """inf and NaN cannot be written in JSON (msgspec writes null), so such a body never decodes."""
        assert read("etf", _etf_doc(value, [], 0)) is None

    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            (book([(1e308, 1e308), (9e307, 1e308)], [(1.1e308, 1e308), (1.2e308, 1e308)]), 0.0),
            (book([(99.9, 1e308), (99.8, 1e308)], [(100.1, 1e308), (100.2, 1e308)]), 0.0),
            (book([(99.9, 1.7e308), (99.8, 1.7e308)], [(100.1, 1.7e308)]), 0.0),
            (book([(99.9, 1e308)], [(100.1, 0.0)]), 1.0),
            (book([(99.9, 1.5e308)], [(100.1, 0.5e308)]), 0.5),
            (whales(("exchange_outflow", 1e308), ("exchange_outflow", 1e308), ("exchange_inflow", 1e308)), 0.0),
            (whales(("exchange_outflow", math.inf), ("exchange_inflow", math.inf)), 0.0),
            (whales(("exchange_outflow", math.nan), ("exchange_inflow", 1.0)), 0.0),
            (heat(0.0, (1.0, "short", 1.0)), 0.0),
            (heat(math.nan, (1.0, "short", 1.0)), 0.0),
            (heat(100.0, (101.0, "short", math.inf), (99.0, "long", math.inf)), 0.0),
            (etf(math.nan), 0.0),
            (etf(math.inf), 1.0),
            (bias(math.nan), 0.0),
            (bias(-math.inf), -1.0),
        ],
        ids=[
            "book-1e308-prices",
            "book-balanced-1e308",
            "book-overflowing-side",
            "book-one-sided-1e308",
            "book-huge-finite-halves",
            "whale-overflow",
            "whale-inf-inf",
            "whale-nan",
            "heat-zero-price",
            "heat-nan-price",
            "heat-inf-usd",
            "etf-nan",
            "etf-inf",
            "bias-nan",
            "bias-minus-inf",
        ],
    )
    def test_scoring_is_defensive_on_payloads_built_in_code(self, payload: Payload, expected: float) -> None:
        """Payloads that skip validation still score finitely: inf/inf and NaN are 0, never a clipped +1."""
        assert sub_score(payload, CFG) == expected

    @settings(max_examples=300, deadline=None, database=None)
    @given(
        payload=st.one_of(
            st.builds(
                lambda b, a, bb, aa: book([b, *bb], [a, *aa]),
                st.tuples(st.floats(), st.floats()),
                st.tuples(st.floats(), st.floats()),
                st.lists(st.tuples(st.floats(), st.floats()), max_size=4),
                st.lists(st.tuples(st.floats(), st.floats()), max_size=4),
            ),
            st.builds(
                lambda fs: whales(*fs),
                st.lists(
                    st.tuples(st.sampled_from(["exchange_inflow", "exchange_outflow", "transfer"]), st.floats()),
                    max_size=6,
                ),
            ),
            st.builds(
                lambda p, ls: heat(p, *ls),
                st.floats(),
                st.lists(st.tuples(st.floats(), st.sampled_from(["long", "short"]), st.floats()), max_size=6),
            ),
            st.builds(etf, st.floats()),
            st.builds(bias, st.floats()),
        )
    )
    def test_any_float_in_code_built_payloads_scores_within_bounds(self, payload: Payload) -> None:
        """Even with NaN and ±inf anywhere (no decoder in the way), every sub-score is finite and in [-1, 1]."""
        assert in_unit_interval(sub_score(payload, CFG))

    def test_an_empty_book_side_is_a_value_error(self) -> None:
        """A book with an empty side cannot be scored: ValueError, which the assembler reports as bad_payload."""
        with pytest.raises(ValueError, match="empty side"):
            sub_score(book([], [(100.1, 1.0)]), CFG)
