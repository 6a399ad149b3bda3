"""Tests for actors.symbols: one canonical instrument, many venue spellings.

Tables carry the traps that broke sniper before (USDTUSDC, 1000PEPE, 1INCH,
XBT, stream names, mixed separators); hypothesis checks that every spelling we
emit reads back as the same instrument and that junk only ever raises
SymbolError.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from actors.symbols import (
    FORMS,
    KNOWN_QUOTES,
    Instrument,
    Kind,
    SymbolError,
    Venue,
    bybit_category,
    convert,
    detect_form,
    form_from_pattern,
    format,
    format_form,
    instrument,
    parse,
    spot_symbol,
    swap_symbol,
)
from messages.errors import ContractError

SPOT, SWAP, FUTURE = Kind.SPOT, Kind.SWAP, Kind.FUTURE


def spot(base: str, quote: str = "USDT", mult: int = 1) -> Instrument:
    return Instrument(base=base, quote=quote, multiplier=mult)


def swap(base: str, quote: str = "USDT", settle: str | None = None, mult: int = 1) -> Instrument:
    return Instrument(base=base, quote=quote, kind=SWAP, settle=settle or quote, multiplier=mult)


def inverse(base: str, expiry: str | None = None) -> Instrument:
    kind = FUTURE if expiry else SWAP
    return Instrument(base=base, quote="USD", kind=kind, settle=base, expiry=expiry)


def future(base: str, quote: str, expiry: str, settle: str | None = None) -> Instrument:
    return Instrument(base=base, quote=quote, kind=FUTURE, settle=settle or quote, expiry=expiry)


class TestInstrument:
    """The model validates itself, so every Instrument on the bus is canonical."""

    @pytest.mark.parametrize(
        ("kwargs", "fragment"),
        [
            ({"base": "", "quote": "USDT"}, "non-empty"),
            ({"base": "sol", "quote": "USDT"}, "uppercase"),
            ({"base": "SO-L", "quote": "USDT"}, "uppercase"),
            ({"base": "1000", "quote": "USDT"}, "no letters"),
            ({"base": "XBT", "quote": "USD"}, "alias"),
            ({"base": "USDT", "quote": "USDT"}, "both"),
            ({"base": "1000PEPE", "quote": "USDT"}, "multiplier prefix"),
            ({"base": "PEPE", "quote": "USDT", "multiplier": 100}, "multiplier"),
            ({"base": "1INCH", "quote": "USDT", "multiplier": 1000}, "starting with a letter"),
            ({"base": "SOL", "quote": "USDT", "settle": "USDT"}, "spot"),
            ({"base": "SOL", "quote": "USDT", "kind": SWAP}, "needs settle"),
            ({"base": "SOL", "quote": "USDT", "kind": SWAP, "settle": "EUR"}, "needs settle"),
            ({"base": "BTC", "quote": "USD", "kind": FUTURE, "settle": "BTC"}, "6 digits"),
            ({"base": "BTC", "quote": "USD", "kind": FUTURE, "settle": "BTC", "expiry": "25032"}, "6 digits"),
            ({"base": "BTC", "quote": "USD", "kind": FUTURE, "settle": "BTC", "expiry": "251311"}, "calendar"),
            ({"base": "BTC", "quote": "USD", "kind": SWAP, "settle": "BTC", "expiry": "250328"}, "only futures"),
            ({"base": "BTC", "quote": "USD", "kind": "swap", "settle": "BTC"}, "Kind"),
        ],
    )
    def test_invalid_fields_raise(self, kwargs: dict[str, Any], fragment: str) -> None:
        """Each broken field raises SymbolError naming the problem."""
        with pytest.raises(SymbolError, match=fragment):
            Instrument(**kwargs)

    @pytest.mark.parametrize(
        ("inst", "inverse_", "linear"),
        [
            (spot("SOL"), False, False),
            (swap("SOL"), False, True),
            (inverse("BTC"), True, False),
            (future("BTC", "USDT", "250328"), False, True),
        ],
    )
    def test_inverse_and_linear(self, inst: Instrument, inverse_: bool, linear: bool) -> None:
        """is_inverse means settled in base, is_linear settled in quote; spot is neither."""
        assert (inst.is_inverse, inst.is_linear) == (inverse_, linear)

    @pytest.mark.parametrize(
        ("args", "kwargs", "expected"),
        [
            (("sol",), {}, spot("SOL")),
            (("xbt", "usd"), {}, spot("BTC", "USD")),
            (("1000pepe", "usdt", "swap"), {}, swap("PEPE", mult=1000)),
            (("BTC", "USD", SWAP), {}, inverse("BTC")),
            (("BTC", "USDT", "future"), {"expiry": "250328"}, future("BTC", "USDT", "250328")),
            (("XDG", "EUR"), {}, spot("DOGE", "EUR")),
        ],
    )
    def test_instrument_helper_normalises(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], expected: Instrument
    ) -> None:
        """instrument() case-folds, resolves aliases and multipliers and fills settle."""
        assert instrument(*args, **kwargs) == expected

    def test_helper_rejects_double_multiplier(self) -> None:
        """A 1000PEPE base plus multiplier=1000 is contradictory, not 10^6."""
        with pytest.raises(SymbolError, match="multiplier"):
            instrument("1000PEPE", multiplier=1000)

    @pytest.mark.parametrize("inst", [spot("SOL"), inverse("BTC", "250328"), swap("PEPE", mult=1000)])
    def test_msgspec_round_trip(self, inst: Instrument) -> None:
        """Instruments survive JSON encoding with kind as a plain string."""
        data = msgspec.json.encode(inst)
        assert msgspec.json.decode(data, type=Instrument) == inst
        assert b'"kind":"' + inst.kind.value.encode() + b'"' in data

    def test_decode_validates(self) -> None:
        """Invalid wire data fails decode instead of producing a non-canonical instrument."""
        with pytest.raises(msgspec.ValidationError, match="both"):
            msgspec.json.decode(b'{"base":"USDT","quote":"USDT"}', type=Instrument)

    def test_frozen_and_hashable(self) -> None:
        """Instruments are values: usable as dict keys and immutable."""
        assert {spot("SOL"): 1}[spot("SOL")] == 1
        with pytest.raises(AttributeError):
            spot("SOL").base = "ETH"  # type: ignore[misc]  # assigning to a frozen field is the point of the test


class TestParse:
    """parse() without a venue infers from the spelling alone."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("SOL", spot("SOL")),
            ("sol", spot("SOL")),
            ("BTC", spot("BTC")),
            ("USDC", spot("USDC")),
            ("WBTC", spot("WBTC")),
            ("STETH", spot("STETH")),
            ("SOLUSDT", spot("SOL")),
            ("solusdt", spot("SOL")),
            ("solusdt@depth", spot("SOL")),
            ("btcusdt@depth@100ms", spot("BTC")),
            ("sol_usdt", spot("SOL")),
            ("Sol/Usdt", spot("SOL")),
            ("SOL usdt", spot("SOL")),
            ("sol-usdt", spot("SOL")),
            ("  SOL / USDT ", spot("SOL")),
            ("USDTUSDC", spot("USDT", "USDC")),
            ("USDCUSDT", spot("USDC", "USDT")),
            ("BTCUSDT", spot("BTC", "USDT")),
            ("BTCFDUSD", spot("BTC", "FDUSD")),
            ("BTCTUSD", spot("BTC", "TUSD")),
            ("ETHBTC", spot("ETH", "BTC")),
            ("WBTCBTC", spot("WBTC", "BTC")),
            ("BNBETH", spot("BNB", "ETH")),
            ("1INCHUSDT", spot("1INCH")),
            ("100XUSDT", spot("100X")),
            ("1000PEPEUSDT", spot("PEPE", mult=1000)),
            ("10000LADYSUSDT", spot("LADYS", mult=10000)),
            ("1000000MOGUSDT", spot("MOG", mult=1_000_000)),
            ("1MBABYDOGEUSDT", spot("BABYDOGE", mult=1_000_000)),
            ("1000PEPE", spot("PEPE", mult=1000)),
            ("SOLUSD_PERP", inverse("SOL")),
            ("BTCUSD_250328", inverse("BTC", "250328")),
            ("BTCUSDT_250328", future("BTC", "USDT", "250328")),
            ("SOL-USDT-SWAP", swap("SOL")),
            ("sol-usdt-swap", swap("SOL")),
            ("BTC-USD-SWAP", inverse("BTC")),
            ("BTC-USDC-SWAP", swap("BTC", "USDC")),
            ("BTC-USD-250328", inverse("BTC", "250328")),
            ("BTC-USDT-250328", future("BTC", "USDT", "250328")),
            ("SOL-PERP", swap("SOL")),
            ("SOL/USDT:USDT", swap("SOL")),
            ("sol/usdt:usdt", swap("SOL")),
            ("BTC/USD:BTC", inverse("BTC")),
            ("BTC/USDT:USDT-250328", future("BTC", "USDT", "250328")),
            ("1000PEPE/USDT:USDT", swap("PEPE", mult=1000)),
            ("BTC-PERPETUAL", inverse("BTC")),
            ("eth-perpetual", inverse("ETH")),
            ("SOL_USDC-PERPETUAL", swap("SOL", "USDC")),
            ("BTC-28MAR25", inverse("BTC", "250328")),
            ("BTC-7MAR25", inverse("BTC", "250307")),
            ("BTC_USDC", spot("BTC", "USDC")),
            ("XBTUSD", spot("BTC", "USD")),
            ("XXBTZUSD", spot("BTC", "USD")),
            ("XETHZEUR", spot("ETH", "EUR")),
            ("XETHXXBT", spot("ETH", "BTC")),
            ("ETHXBT", spot("ETH", "BTC")),
            ("XDGUSD", spot("DOGE", "USD")),
            ("XBT/USD", spot("BTC", "USD")),
        ],
    )
    def test_infers_instrument(self, text: str, expected: Instrument) -> None:
        """Each spelling, in any case and separator style, yields the canonical instrument."""
        assert parse(text) == expected

    @pytest.mark.parametrize(
        ("text", "kwargs", "expected"),
        [
            ("SOLUSDT", {"venue": "binance"}, spot("SOL")),
            ("SOLUSDT", {"venue": "binance", "kind": "swap"}, swap("SOL")),
            ("1000PEPEUSDT", {"venue": Venue.BINANCE, "kind": SWAP}, swap("PEPE", mult=1000)),
            ("BTCUSDT", {"kind": SWAP}, swap("BTC")),
            ("BTCUSD", {"kind": SWAP}, inverse("BTC")),
            ("SOLUSDT", {"venue": "bybit"}, spot("SOL")),
            ("SOLUSDT", {"venue": "bybit", "kind": "swap"}, swap("SOL")),
            ("BTCUSD", {"venue": "bybit"}, inverse("BTC")),
            ("BTCUSD", {"venue": "binance_coinm"}, inverse("BTC")),
            ("XXBTZUSD", {"venue": "KRAKEN"}, spot("BTC", "USD")),
            ("btc-usd", {"venue": "coinbase"}, spot("BTC", "USD")),
            ("SOL", {"venue": "base"}, spot("SOL")),
            ("ETHBTC", {"venue": "base"}, spot("ETHBTC")),
            ("1000PEPE", {"venue": "base", "kind": SWAP}, swap("PEPE", mult=1000)),
            ("SOL", {"default_quote": "usdc"}, spot("SOL", "USDC")),
            ("ETH", {"default_quote": "XBT"}, spot("ETH", "BTC")),
            ("BTC-USD-SWAP", {"kind": "swap"}, inverse("BTC")),
        ],
    )
    def test_venue_and_kind_resolve_ambiguity(self, text: str, kwargs: dict[str, Any], expected: Instrument) -> None:
        """venue/kind/default_quote settle what the spelling leaves open."""
        assert parse(text, **kwargs) == expected


class TestFormat:
    """format() writes each venue's spelling and refuses what a venue cannot list."""

    @pytest.mark.parametrize(
        ("inst", "venue", "expected"),
        [
            (spot("SOL"), "binance", "SOLUSDT"),
            (swap("SOL"), "binance", "SOLUSDT"),
            (swap("PEPE", mult=1000), "binance", "1000PEPEUSDT"),
            (swap("BABYDOGE", mult=1_000_000), "binance", "1MBABYDOGEUSDT"),
            (swap("MOG", mult=1_000_000), "binance", "1000000MOGUSDT"),
            (spot("USDT", "USDC"), "binance", "USDTUSDC"),
            (future("BTC", "USDT", "250328"), "binance", "BTCUSDT_250328"),
            (inverse("SOL"), "binance_coinm", "SOLUSD_PERP"),
            (inverse("BTC", "250328"), "binance_coinm", "BTCUSD_250328"),
            (spot("SOL"), "okx", "SOL-USDT"),
            (swap("SOL"), "okx", "SOL-USDT-SWAP"),
            (inverse("BTC"), "okx", "BTC-USD-SWAP"),
            (inverse("BTC", "250328"), "okx", "BTC-USD-250328"),
            (future("BTC", "USDT", "250328"), "okx", "BTC-USDT-250328"),
            (spot("SOL"), "bybit", "SOLUSDT"),
            (swap("SOL"), "bybit", "SOLUSDT"),
            (inverse("BTC"), "bybit", "BTCUSD"),
            (spot("SOL", "USD"), "coinbase", "SOL-USD"),
            (spot("BTC", "USDC"), "coinbase", "BTC-USDC"),
            (spot("SOL"), "ccxt", "SOL/USDT"),
            (swap("SOL"), "ccxt", "SOL/USDT:USDT"),
            (inverse("BTC"), "ccxt", "BTC/USD:BTC"),
            (future("BTC", "USDT", "250328"), "ccxt", "BTC/USDT:USDT-250328"),
            (swap("PEPE", mult=1000), "ccxt", "1000PEPE/USDT:USDT"),
            (inverse("BTC"), "deribit", "BTC-PERPETUAL"),
            (swap("SOL", "USDC"), "deribit", "SOL_USDC-PERPETUAL"),
            (inverse("BTC", "250328"), "deribit", "BTC-28MAR25"),
            (inverse("ETH", "250307"), "deribit", "ETH-7MAR25"),
            (spot("BTC", "USDC"), "deribit", "BTC_USDC"),
            (spot("BTC", "USD"), "kraken", "XBTUSD"),
            (spot("DOGE", "USD"), "kraken", "XDGUSD"),
            (spot("ETH", "BTC"), "kraken", "ETHXBT"),
            (spot("SOL", "USD"), "kraken", "SOLUSD"),
            (spot("SOL"), "base", "SOL"),
            (swap("PEPE", mult=1000), Venue.BASE, "1000PEPE"),
        ],
    )
    def test_spells_for_venue(self, inst: Instrument, venue: str, expected: str) -> None:
        """The venue's exact spelling, multiplier prefix and date style included."""
        assert format(inst, venue) == expected

    @pytest.mark.parametrize(
        ("inst", "venue", "fragment"),
        [
            (swap("SOL"), "coinbase", "only spot"),
            (swap("SOL", "USD"), "kraken", "only spot"),
            (inverse("BTC"), "binance", "binance_coinm"),
            (swap("SOL"), "binance_coinm", "COIN-M"),
            (spot("BTC", "USD"), "binance_coinm", "COIN-M"),
            (swap("PEPE", mult=1000), "okx", "multiplier"),
            (spot("PEPE", mult=1000), "coinbase", "multiplier"),
            (future("BTC", "USDT", "250328"), "bybit", "perpetuals"),
            (spot("BTC", "USD"), "bybit", "inverse perpetual"),
            (swap("BTC", "USD"), "okx", "USD-quoted = inverse"),
            (swap("BTC", "USD"), "deribit", "USD-quoted = inverse"),
            (Instrument(base="ETH", quote="USDT", kind=SWAP, settle="ETH"), "okx", "inverse"),
            (spot("XT", "USD"), "binance", "read back as X/TUSD"),
            (spot("FD", "USD"), "binance", r"read back as FDUSD/\(bare asset\)"),
            (spot("SOL", "ABC"), "binance", "bare asset"),
            (spot("SOL"), "nasdaq", "unknown venue"),
        ],
    )
    def test_refuses_inexpressible(self, inst: Instrument, venue: str, fragment: str) -> None:
        """A venue that cannot list the market raises instead of emitting a look-alike."""
        with pytest.raises(SymbolError, match=fragment):
            format(inst, venue)

    def test_rejects_non_instrument(self) -> None:
        """Passing a string where an Instrument is expected is a clear SymbolError."""
        with pytest.raises(SymbolError, match="Instrument"):
            format("SOLUSDT", "okx")  # type: ignore[arg-type]  # a str instead of an Instrument is the point of the test

    @pytest.mark.parametrize(
        ("inst", "category"),
        [(spot("SOL"), "spot"), (swap("SOL"), "linear"), (inverse("BTC"), "inverse")],
    )
    def test_bybit_category(self, inst: Instrument, category: str) -> None:
        """Bybit needs a category next to the shared SOLUSDT spelling."""
        assert bybit_category(inst) == category


class TestConvert:
    """convert() chains parse and format for one-off translations."""

    @pytest.mark.parametrize(
        ("text", "to", "kwargs", "expected"),
        [
            ("SOLUSDT", "okx", {}, "SOL-USDT"),
            ("SOLUSDT", "okx", {"from_venue": "binance", "kind": "swap"}, "SOL-USDT-SWAP"),
            ("SOL-USDT-SWAP", "binance", {}, "SOLUSDT"),
            ("SOL-USDT-SWAP", "ccxt", {}, "SOL/USDT:USDT"),
            ("BTC-USD-SWAP", "binance_coinm", {}, "BTCUSD_PERP"),
            ("BTC-USD-SWAP", "deribit", {}, "BTC-PERPETUAL"),
            ("BTC-28MAR25", "okx", {}, "BTC-USD-250328"),
            ("BTCUSD_250328", "ccxt", {}, "BTC/USD:BTC-250328"),
            ("XXBTZUSD", "coinbase", {}, "BTC-USD"),
            ("BTC-USD", "kraken", {}, "XBTUSD"),
            ("doge/usd", "kraken", {}, "XDGUSD"),
            ("1000PEPEUSDT", "ccxt", {"kind": SWAP}, "1000PEPE/USDT:USDT"),
            ("solusdt@depth", "coinbase", {}, "SOL-USDT"),
            ("SOL_USDC-PERPETUAL", "okx", {}, "SOL-USDC-SWAP"),
            ("BTCUSD", "okx", {"from_venue": "bybit"}, "BTC-USD-SWAP"),
            ("sol usdt", "base", {}, "SOL"),
        ],
    )
    def test_converts(self, text: str, to: str, kwargs: dict[str, Any], expected: str) -> None:
        """Spellings translate across venues without guessing."""
        assert convert(text, to, **kwargs) == expected

    @pytest.mark.parametrize(
        ("text", "to", "fragment"),
        [("1000PEPEUSDT", "okx", "multiplier"), ("SOL-USDT-SWAP", "coinbase", "only spot")],
    )
    def test_refuses(self, text: str, to: str, fragment: str) -> None:
        """A conversion that would change the market raises."""
        with pytest.raises(SymbolError, match=fragment):
            convert(text, to)


class TestPipelineHelpers:
    """spot_symbol/swap_symbol turn a bare asset into a venue symbol."""

    @pytest.mark.parametrize(
        ("args", "kwargs", "expected"),
        [
            (("SOL",), {}, "SOLUSDT"),
            (("sol", "okx"), {}, "SOL-USDT"),
            (("BTC", "kraken"), {"quote": "USD"}, "XBTUSD"),
            (("ETH", "coinbase"), {"quote": "USD"}, "ETH-USD"),
            (("SOL", "ccxt"), {}, "SOL/USDT"),
            (("1000PEPE",), {}, "1000PEPEUSDT"),
            (("USDT",), {"quote": "USDC"}, "USDTUSDC"),
        ],
    )
    def test_spot_symbol(self, args: tuple[Any, ...], kwargs: dict[str, Any], expected: str) -> None:
        """Spot symbol for an asset, USDT-quoted unless told otherwise."""
        assert spot_symbol(*args, **kwargs) == expected

    @pytest.mark.parametrize(
        ("args", "kwargs", "expected"),
        [
            (("SOL",), {}, "SOL-USDT-SWAP"),
            (("BTC",), {"quote": "USD"}, "BTC-USD-SWAP"),
            (("SOL", "binance"), {}, "SOLUSDT"),
            (("SOL", "ccxt"), {}, "SOL/USDT:USDT"),
            (("BTC", "deribit"), {"quote": "USD"}, "BTC-PERPETUAL"),
            (("SOL", "deribit"), {"quote": "USDC"}, "SOL_USDC-PERPETUAL"),
            (("ETH", "binance_coinm"), {"quote": "USD"}, "ETHUSD_PERP"),
        ],
    )
    def test_swap_symbol(self, args: tuple[Any, ...], kwargs: dict[str, Any], expected: str) -> None:
        """Perpetual symbol for an asset; a USD quote means the inverse contract."""
        assert swap_symbol(*args, **kwargs) == expected

    @pytest.mark.parametrize(
        ("func", "args", "fragment"),
        [
            (swap_symbol, ("SOL", "coinbase"), "only spot"),
            (spot_symbol, ("SOL-USDT",), "bare asset"),
            (spot_symbol, ("USDT",), "both"),
        ],
    )
    def test_helpers_refuse(self, func, args: tuple[Any, ...], fragment: str) -> None:
        """Helpers raise SymbolError rather than inventing a symbol."""
        with pytest.raises(SymbolError, match=fragment):
            func(*args)


class TestDetectForm:
    """detect_form() names an example's shape so other assets can be spelled alike."""

    @pytest.mark.parametrize(
        ("example", "form"),
        [
            ("SOL", "base"),
            ("btc", "base"),
            ("USDT", "base"),
            ("1000PEPE", "base"),
            ("SOLUSDT", "concat"),
            ("solusdt", "concat"),
            ("btcusdt@depth", "concat"),
            ("ETHBTC", "concat"),
            ("1000PEPEUSDT", "concat"),
            ("SOL-USDT", "dash"),
            ("SOL_USDT", "underscore"),
            ("sol/usdt", "slash"),
            ("SOL-USDT-SWAP", "okx_swap"),
            ("BTC-USD-250328", "okx_swap"),
            ("SOL/USDT:USDT", "ccxt_swap"),
            ("BTC/USDT:USDT-250328", "ccxt_swap"),
            ("SOLUSD_PERP", "binance_coinm"),
            ("BTCUSD_250328", "binance_coinm"),
            ("BTC-PERPETUAL", "deribit"),
            ("SOL_USDC-PERPETUAL", "deribit"),
            ("BTC-28MAR25", "deribit"),
        ],
    )
    def test_detects(self, example: str, form: str) -> None:
        """Each example maps to one form name."""
        assert detect_form(example) == form

    @pytest.mark.parametrize(
        "example",
        [
            "SOL-USDT-SWAP",
            "sol-usdt-swap",
            "SOLUSDT",
            "solusdt",
            "SOL_USDC-PERPETUAL",
            "BTC/USD:BTC",
            "ETH",
            "eth-usdc",
        ],
    )
    def test_format_form_inverts_detect(self, example: str) -> None:
        """format_form(parse(x), detect_form(x)) gives x back, case included."""
        assert format_form(parse(example), detect_form(example), lower=example.islower()) == example

    @pytest.mark.parametrize("example", ["SOL usdt", "XBTUSD", "BTCUSDT_250328", "", "SOL-USDT_X", "€"])
    def test_undetectable_raises(self, example: str) -> None:
        """Examples no form reproduces raise SymbolError instead of a wrong guess."""
        with pytest.raises(SymbolError):
            detect_form(example)


class TestFormatForm:
    """format_form() spells an instrument in a generic form for unknown APIs."""

    @pytest.mark.parametrize(
        ("inst", "form", "lower", "expected"),
        [
            (spot("SOL"), "base", False, "SOL"),
            (spot("SOL"), "concat", True, "solusdt"),
            (spot("SOL"), "dash", False, "SOL-USDT"),
            (spot("SOL"), "underscore", False, "SOL_USDT"),
            (spot("SOL"), "slash", False, "SOL/USDT"),
            (swap("SOL"), "concat", False, "SOLUSDT"),
            (spot("SOL"), "okx_swap", False, "SOL-USDT-SWAP"),
            (spot("SOL"), "ccxt_swap", False, "SOL/USDT:USDT"),
            (spot("BTC", "USD"), "ccxt_swap", False, "BTC/USD:BTC"),
            (spot("BTC", "USD"), "binance_coinm", False, "BTCUSD_PERP"),
            (spot("BTC", "USD"), "deribit", True, "btc-perpetual"),
            (inverse("BTC", "250328"), "okx_swap", False, "BTC-USD-250328"),
            (spot("PEPE", mult=1000), "concat", False, "1000PEPEUSDT"),
        ],
    )
    def test_renders(self, inst: Instrument, form: str, lower: bool, expected: str) -> None:
        """Derivative forms promote spot to the perpetual; lower=True lowercases."""
        assert format_form(inst, form, lower=lower) == expected

    @pytest.mark.parametrize(
        ("inst", "form", "fragment"),
        [
            (future("BTC", "USDT", "250328"), "dash", "expiry"),
            (spot("SOL"), "binance_coinm", "COIN-M"),
            (spot("SOL"), "kebab", "unknown form"),
            (spot("XT", "USD"), "concat", "read back"),
        ],
    )
    def test_refuses(self, inst: Instrument, form: str, fragment: str) -> None:
        """Forms that would lose or change information raise."""
        with pytest.raises(SymbolError, match=fragment):
            format_form(inst, form)


class TestFormFromPattern:
    """form_from_pattern() guesses a form from an OpenAPI-style regex."""

    @pytest.mark.parametrize(
        ("regex", "form"),
        [
            (r"^[A-Z]+USDT$", "concat"),
            (r"^[a-z]+usdt$", "concat"),
            (r"^[A-Z0-9]{2,20}$", "base"),
            (r"^[A-Z]+-[A-Z]+$", "dash"),
            (r"[A-Z]+_[A-Z]+", "underscore"),
            (r"^[A-Z]+/[A-Z]+$", "slash"),
            (r"^[A-Z]+-[A-Z]+-SWAP$", "okx_swap"),
            (r"^[A-Z]+/[A-Z]+:[A-Z]+$", "ccxt_swap"),
            (r"^[A-Z]+USD_PERP$", "binance_coinm"),
            (r"^[A-Z]+-PERPETUAL$", "deribit"),
            (r".*", None),
            (r"^[A-Z]+[-_/][A-Z]+$", None),
            (r"^\d+$", None),
            (r"(", None),
            (r"a{9999999999}", None),
            (r"[[A-Z]+-[A-Z]+", "dash"),
        ],
    )
    def test_guesses(self, regex: str, form: str | None) -> None:
        """Specific patterns give a form; loose, empty or invalid ones give None."""
        assert form_from_pattern(regex) == form


class TestErrors:
    """SymbolError says which input was bad and why."""

    @pytest.mark.parametrize(
        ("text", "kwargs", "fragment"),
        [
            ("", {}, "empty"),
            ("   ", {}, "empty"),
            ("@depth", {}, "empty"),
            ("SOL$USDT", {}, "bad character"),
            ("SOL\tUSDT", {}, "bad character"),
            ("ßOL", {}, "non-ASCII"),
            ("-SOL", {}, "empty or malformed"),
            ("SOL-USDT-", {}, "empty or malformed"),
            ("A-B-C", {}, "3 parts"),
            ("USDT", {}, "both"),
            ("1000USDT", {}, "no letters"),
            ("BTC/USD:BTC-250328-50000-C", {}, "options"),
            ("SOL/USDT:EUR", {}, "needs settle"),
            ("BTC-USD-251399", {}, "calendar"),
            ("BTC-31FEB25", {}, "calendar"),
            ("SOL-USDT-SWAP", {"kind": "spot"}, "names a swap"),
            ("SOLUSDT", {"kind": FUTURE}, "expiry"),
            ("SOLUSDT", {"kind": "perp"}, "unknown kind"),
            ("SOLUSDT", {"venue": "ftx"}, "unknown venue"),
            ("SOL-USDT-SWAP", {"venue": "coinbase"}, "not a coinbase symbol"),
            ("BTCUSD", {"venue": "binance", "kind": SWAP}, "binance_coinm"),
            ("SOL-USDT", {"venue": "base"}, "bare asset"),
            (123, {}, "str"),
        ],
    )
    def test_parse_errors(self, text: str, kwargs: dict[str, Any], fragment: str) -> None:
        """Bad input raises SymbolError whose message names the reason."""
        with pytest.raises(SymbolError, match=fragment):
            parse(text, **kwargs)

    def test_error_names_input(self) -> None:
        """The offending text appears in the message so logs point at the producer."""
        with pytest.raises(SymbolError, match="'SOL\\$USDT'"):
            parse("SOL$USDT")

    def test_error_types(self) -> None:
        """SymbolError is the project's contract error and still a ValueError."""
        assert issubclass(SymbolError, ValueError)
        assert issubclass(SymbolError, ContractError)


# ------------------------------------------------------------------ properties

_BASES = st.one_of(
    st.from_regex(r"[A-Z][A-Z0-9]{0,7}", fullmatch=True),
    st.sampled_from(["BTC", "ETH", "SOL", "USDT", "USDC", "1INCH", "100X", "WBTC", "PEPE", "T", "SWAP", "PERP"]),
)
_EXPIRIES = st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31)).map(lambda d: d.strftime("%y%m%d"))


@st.composite
def instruments(draw: st.DrawFn) -> Instrument:
    """Valid instruments over known quotes, with every kind, settlement and multiplier."""
    base, quote, kind = draw(_BASES), draw(st.sampled_from(KNOWN_QUOTES)), draw(st.sampled_from(Kind))
    settle = None if kind is SPOT else draw(st.sampled_from([base, quote]))
    expiry = draw(_EXPIRIES) if kind is FUTURE else None
    mult = draw(st.sampled_from([1, 1, 1000, 10000, 1_000_000]))
    try:
        return Instrument(base=base, quote=quote, kind=kind, settle=settle, expiry=expiry, multiplier=mult)
    except SymbolError:
        assume(False)
        raise  # unreachable: assume(False) aborts the example


_SPELLS_KIND = [v for v in Venue if v not in (Venue.BINANCE, Venue.BYBIT, Venue.BASE)]
_PROPS = settings(max_examples=200, deadline=None)


class TestRoundTrip:
    """Whatever we emit reads back as the same instrument; junk only raises SymbolError."""

    @_PROPS
    @given(inst=instruments())
    def test_venue_round_trip(self, inst: Instrument) -> None:
        """parse(format(i, v), venue=v) == i for every venue that can express i."""
        for venue in Venue:
            if venue is Venue.BASE:
                continue
            try:
                text = format(inst, venue)
            except SymbolError:
                continue
            assert parse(text, venue=venue, kind=inst.kind) == inst, (venue, text)
            assert parse(text.lower(), venue=venue, kind=inst.kind) == inst, (venue, text)
            if venue in _SPELLS_KIND:  # kind is in the spelling: no hints needed
                assert parse(text, venue=venue) == inst, (venue, text)
                assert parse(text) == inst, (venue, text)

    @_PROPS
    @given(inst=instruments())
    def test_form_round_trip(self, inst: Instrument) -> None:
        """parse(format_form(i, f)) == i for every form that carries what i needs."""
        for form in FORMS:
            try:
                text = format_form(inst, form)
            except SymbolError:
                continue
            implied = inst.kind is SPOT or inst.settle == (inst.base if inst.quote == "USD" else inst.quote)
            if form == "base" and implied and inst.kind is not FUTURE:
                assert parse(text, venue="base", default_quote=inst.quote, kind=inst.kind) == inst, text
            elif form in ("concat", "dash", "underscore", "slash") and implied:
                assert parse(text, kind=inst.kind) == inst, (form, text)
            elif form not in ("base", "concat", "dash", "underscore", "slash") and inst.kind is not SPOT:
                assert parse(text) == inst, (form, text)
            try:
                detected = detect_form(text)
            except SymbolError:
                continue
            if detected == "base":
                assert text.isalnum(), (form, text)
            else:
                assert format_form(parse(text), detected) == text, (form, detected, text)

    @_PROPS
    @given(text=st.text(max_size=30), venue=st.sampled_from([None, *Venue]), kind=st.sampled_from([None, *Kind]))
    def test_parse_only_raises_symbol_error(self, text: str, venue: Venue | None, kind: Kind | None) -> None:
        """Arbitrary text either parses or raises SymbolError, never anything else."""
        with contextlib.suppress(SymbolError):
            parse(text, venue=venue, kind=kind)

    @_PROPS
    @given(text=st.text(alphabet="ABCDSTUXZ01256789/-_: @abc", max_size=24))
    def test_symbolish_text_only_raises_symbol_error(self, text: str) -> None:
        """Symbol-like junk reaches the deeper parser paths and still fails cleanly."""
        for call in (parse, detect_form):
            with contextlib.suppress(SymbolError):
                call(text)

    @_PROPS
    @given(regex=st.text(max_size=20))
    def test_form_from_pattern_never_raises(self, regex: str) -> None:
        """Any regex text gives a form name or None."""
        assert form_from_pattern(regex) in (*FORMS, None)
