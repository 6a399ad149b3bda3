"""The module registry: one file per module, and every list of modules derived from it."""

from __future__ import annotations

import math
import typing

import msgspec
import pytest

from actors.capabilities import ALIASES, MODULE_FORM, TERMS
from actors.fetchers import FETCHERS
from actors.flags import flag_name
from actors.scoring import DEFAULT_WEIGHTS, sub_score
from actors.symbols import FORMS
from marketsim import FLAVORS
from messages import MODULES, PAYLOAD_TYPES, REGISTRY, ModuleData, ModuleSpec
from messages.modules import DEFAULT_CORE, DEFAULT_ROUTES
from messages.modules.bias import SPEC as BIAS
from messages.modules.funding import FundingRate
from messages.modules.funding import score as funding_score
from sniper.config import MODULES as CONFIG_MODULES
from sniper.config import feature_defaults


def funding(rate: float, *, oi: float = 0.0, hours: float = 8.0) -> FundingRate:
    return FundingRate(
        symbol="SOL-USDT-SWAP", funding_rate=rate, predicted_rate=rate, interval_hours=hours, oi_change_pct=oi
    )


class TestRegistry:
    def test_six_modules_in_their_declared_order(self) -> None:
        """The registry lists the six modules in `order`; config and fetchers use the same tuple."""
        assert MODULES == ("whale", "etf", "heatmap", "spot_ob", "bias", "funding")
        assert CONFIG_MODULES == MODULES == tuple(FETCHERS)
        assert [REGISTRY[m].order for m in MODULES] == sorted(REGISTRY[m].order for m in MODULES)

    @pytest.mark.parametrize("module", MODULES)
    def test_every_list_derives_from_the_spec(self, module: str) -> None:
        """Payload, route, aliases, terms, form, weight, flag and fetcher all come from the module's SPEC."""
        spec = REGISTRY[module]
        assert PAYLOAD_TYPES[module] is spec.payload and DEFAULT_ROUTES[module] is spec.route
        assert ALIASES[module] is spec.aliases and TERMS[module] is spec.terms and MODULE_FORM[module] == spec.form
        assert DEFAULT_WEIGHTS[module] == spec.weight and flag_name(module) == spec.flag == module.upper()
        assert FETCHERS[module].spec is spec and FETCHERS[module].payload_type is spec.payload
        assert spec.form in FORMS and (module in DEFAULT_CORE) is spec.core

    def test_module_data_carries_every_registered_payload(self) -> None:
        """`ModuleData.payload` is the union of the registered payloads, so a new module needs no edit there."""
        hints = typing.get_type_hints(ModuleData)
        assert set(typing.get_args(hints["payload"])) == set(PAYLOAD_TYPES.values())

    def test_core_by_default_is_whale_heatmap_spot_ob(self) -> None:
        """ETF, bias and funding are optional: their failure never makes a hard failure."""
        assert {"whale", "heatmap", "spot_ob"} == DEFAULT_CORE

    def test_feature_flags_come_from_the_registry(self) -> None:
        """FEATURE_FUNDING switches funding like any other module."""
        assert feature_defaults({"FEATURE_FUNDING": "off"}) == {**{m: True for m in MODULES}, "funding": False}

    @pytest.mark.parametrize("flavor", sorted(FLAVORS))
    def test_the_reference_backend_serves_a_known_path_per_module(self, flavor: str) -> None:
        """Each flavor's path for each module is one of the module's aliases (probing finds it without a spec)."""
        served = {route.module: route.path for route in FLAVORS[flavor]}
        for module in MODULES:
            assert served[module] in {alias.path for alias in REGISTRY[module].aliases}, (flavor, module)

    @pytest.mark.parametrize(
        ("change", "problem"),
        [
            ({"name": "whales"}, "payload's tag"),
            ({"weight": 1.5}, "weight"),
            ({"proxy": "ETH"}, "keyed_by and proxy"),
            ({"route": REGISTRY["whale"].route}, "another module"),
        ],
    )
    def test_an_inconsistent_spec_is_refused(self, change: dict[str, object], problem: str) -> None:
        """A spec whose parts disagree fails at import, naming the problem."""
        fields = {f: getattr(BIAS, f) for f in BIAS.__dataclass_fields__}
        with pytest.raises(ValueError, match=problem):
            ModuleSpec(**{**fields, **change})

    def test_etf_is_keyed_by_btc_or_eth(self) -> None:
        """The request-key rule lives in the ETF spec: other assets read the proxy."""
        etf = REGISTRY["etf"]
        assert [etf.key_for(a) for a in ("BTC", "ETH", "SOL")] == ["BTC", "ETH", "BTC"]
        assert etf.key_for("SOL", "ETH") == "ETH" and REGISTRY["whale"].key_for("SOL", "ETH") == "SOL"


class TestFundingScore:
    @pytest.mark.parametrize(
        ("rate", "expected"),
        [
            (0.0001, 0.0),  # the usual baseline: no crowd
            (0.0006, -math.tanh(1.0)),  # longs pay 0.06 % per 8 h: bearish
            (-0.0004, math.tanh(1.0)),  # shorts pay: bullish
        ],
    )
    def test_crowded_longs_paying_high_funding_read_bearish(self, rate: float, expected: float) -> None:
        """-tanh((rate per 8 h - 0.01 %) / 0.05 %)."""
        assert funding_score(funding(rate)) == pytest.approx(expected)

    def test_rate_is_read_per_eight_hours(self) -> None:
        """A 1-hour interval's rate counts eight times (0.0000125 per hour is the baseline)."""
        assert funding_score(funding(0.0001 / 8, hours=1.0)) == pytest.approx(0.0)
        assert funding_score(funding(0.0006 / 8, hours=1.0)) == pytest.approx(-math.tanh(1.0))

    @pytest.mark.parametrize(("oi", "factor"), [(-30.0, 1.0), (0.0, 1.0), (10.0, 1.25), (20.0, 1.5), (90.0, 1.5)])
    def test_rising_open_interest_amplifies(self, oi: float, factor: float) -> None:
        """Open interest rising up to 20 % amplifies up to 1.5 times; falling leaves the score."""
        assert funding_score(funding(0.0003, oi=oi)) == pytest.approx(factor * -math.tanh(0.4))

    @pytest.mark.parametrize("rate", [-1e15, -1.0, 0.0, 1.0, 1e15])
    def test_extreme_rates_stay_in_range(self, rate: float) -> None:
        """Whatever the rate, the sub-score is finite and in [-1, 1]."""
        score = sub_score(funding(rate, oi=1e15, hours=1e-9))
        assert math.isfinite(score) and -1.0 <= score <= 1.0

    def test_body_decodes_with_defaults(self) -> None:
        """Only symbol and the two rates are required; the rest default (8-hour interval)."""
        body = b'{"symbol": "SOL-USDT-SWAP", "funding_rate": 0.0001, "predicted_rate": 0.0002}'
        payload = msgspec.json.decode(body, type=FundingRate)
        assert payload.interval_hours == 8.0 and payload.oi_change_pct == 0.0
