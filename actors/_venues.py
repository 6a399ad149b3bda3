"""Venue spelling rules behind :mod:`actors.symbols`: vocabulary, lexing, rendering.

Private: import from ``actors.symbols``.  Split out only to keep each file
readable; nothing here knows about parsing policy (defaults, ``kind=``), only
how venues spell things and how to cut a string into parts.
"""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING

from messages.errors import SymbolError

if TYPE_CHECKING:
    from .symbols import Instrument


class Kind(enum.StrEnum):
    """Market type; a str enum so it encodes as plain ``"spot"`` etc. in messages."""

    SPOT = "spot"
    SWAP = "swap"  # perpetual
    FUTURE = "future"  # dated, carries an expiry


class Venue(enum.StrEnum):
    """Spelling families understood by :func:`parse` and :func:`format`."""

    BINANCE = "binance"  # spot and USD-M: SOLUSDT, 1000PEPEUSDT, BTCUSDT_250328
    BINANCE_COINM = "binance_coinm"  # SOLUSD_PERP, BTCUSD_250328 (inverse)
    OKX = "okx"  # SOL-USDT, SOL-USDT-SWAP, BTC-USD-SWAP, BTC-USD-250328
    BYBIT = "bybit"  # SOLUSDT (+ category), BTCUSD inverse perp
    COINBASE = "coinbase"  # SOL-USD, spot only
    CCXT = "ccxt"  # SOL/USDT, SOL/USDT:USDT, BTC/USD:BTC, BTC/USDT:USDT-250328
    DERIBIT = "deribit"  # BTC-PERPETUAL, SOL_USDC-PERPETUAL, BTC-28MAR25, BTC_USDC
    KRAKEN = "kraken"  # XBTUSD, SOLUSD; reads XXBTZUSD
    BASE = "base"  # bare asset: SOL


KNOWN_QUOTES: tuple[str, ...] = (
    "USDT",
    "USDC",
    "FDUSD",
    "BUSD",
    "TUSD",
    "DAI",
    "USD",
    "EUR",
    "GBP",
    "TRY",
    "BRL",
    "JPY",
    "BTC",
    "ETH",
    "BNB",
)
ALIASES = {"XBT": "BTC", "XDG": "DOGE"}  # Kraken's names -> canonical
KRAKEN_NAMES = {v: k for k, v in ALIASES.items()}
SUFFIXES = sorted((*KNOWN_QUOTES, "XBT"), key=len, reverse=True)  # longest match wins
# Real assets whose names end in a quote: a bare "WBTC" is an asset, not W/BTC.
ASSETS_ENDING_IN_QUOTE = frozenset(
    {
        "WBTC",
        "TBTC",
        "HBTC",
        "RENBTC",
        "WETH",
        "STETH",
        "WSTETH",
        "BETH",
        "WBETH",
        "CBETH",
        "RETH",
        "WBNB",
        "SUSD",
        "LUSD",
        "GUSD",
        "PYUSD",
        "AEUR",
        "SDAI",
    }
)
BINANCE_1M = frozenset({"BABYDOGE"})  # Binance lists 1MBABYDOGEUSDT, not 1000000BABYDOGE
MULTIPLIERS = (1000, 10000, 1_000_000)
MULT_PREFIX = re.compile(r"(1000000|10000|1000|1M)(?=[A-Z])")
CODE = re.compile(r"[A-Z0-9]{1,20}")
TOKEN = re.compile(r"[A-Z0-9]+")
YYMMDD = re.compile(r"[0-9]{6}")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DERIBIT_DATE = re.compile(r"([0-9]{1,2})(" + "|".join(MONTHS) + r")([0-9]{2})")
KRAKEN_LEGACY = re.compile(r"X([A-Z]{3})(ZUSD|ZEUR|ZGBP|ZCAD|ZJPY|ZCHF|ZAUD|XXBT|XETH)")
SEPS = re.compile(r"[/\-_ ]+")
ALLOWED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-_: ")


def mult_value(prefix: str) -> int:
    """Multiplier named by a symbol prefix: ``1M`` is Binance's spelling of 1000000."""
    return 1_000_000 if prefix == "1M" else int(prefix)


def implied_settle(base: str, quote: str) -> str:
    """Settlement when a spelling leaves it implicit: USD-quoted derivatives are inverse."""
    return base if quote == "USD" else quote


# ---------------------------------------------------------------- parsing


def clean(text: object) -> str:
    """Uppercase, trim and drop a stream suffix (``solusdt@depth``); reject junk early."""
    if not isinstance(text, str):
        raise SymbolError(f"symbol must be a str, got {type(text).__name__}")
    if not text.isascii():  # before upper(): "ß".upper() == "SS" would sneak through
        raise SymbolError(f"{text!r}: non-ASCII characters in symbol")
    s = text.strip().partition("@")[0].strip().upper()
    if not s:
        raise SymbolError(f"{text!r}: empty symbol")
    if bad := sorted(set(s) - ALLOWED):
        raise SymbolError(f"{text!r}: bad character(s) {''.join(bad)!r}; expected letters, digits and / - _ : or space")
    return s


def tokens(s: str, text: str) -> list[str]:
    """Cut on any run of separators; a leading/trailing separator leaves an empty part: an error."""
    parts = SEPS.split(s)
    if not all(TOKEN.fullmatch(p) for p in parts):
        raise SymbolError(f"{text!r}: empty or malformed part in {parts}")
    return parts


def split_concat(tok: str) -> tuple[str, str | None]:
    """Split ``SOLUSDT`` on the longest known quote suffix; quote None means a bare asset."""
    if tok in KNOWN_QUOTES or tok in ALIASES or tok in ASSETS_ENDING_IN_QUOTE:
        return tok, None
    splits = [(tok.removesuffix(q), q) for q in SUFFIXES if tok.endswith(q) and len(tok) > len(q)]
    for base, q in splits:  # XBTUSD is XBT/USD, not XB/TUSD: an alias base beats length
        if base in ALIASES:
            return base, q
    return splits[0] if splits else (tok, None)


def split_single(tok: str) -> tuple[str, str | None]:
    """Split a separator-less token, knowing Kraken's legacy X/Z-prefixed pair keys."""
    if m := KRAKEN_LEGACY.fullmatch(tok):  # XXBTZUSD, XETHXXBT
        return m[1], m[2][1:]
    return split_concat(tok)


def deribit_expiry(m: re.Match[str]) -> str:
    """Deribit's 7MAR25 / 28MAR25 -> canonical YYMMDD (validated later by the model)."""
    return f"{m[3]}{MONTHS.index(m[2]) + 1:02d}{int(m[1]):02d}"


# ---------------------------------------------------------------- formatting


def refuse(i: Instrument, where: str, why: str) -> None:
    """Raise the one error shape for "this venue or form cannot spell that market"."""
    raise SymbolError(f"{where} cannot express {i}: {why}")


def mbase(i: Instrument, v: Venue | None = None) -> str:
    """Base with its multiplier prefix, as venues list it (1000PEPE)."""
    if i.multiplier == 1:
        return i.base
    if i.multiplier == 1_000_000 and v is Venue.BINANCE and i.base in BINANCE_1M:
        return f"1M{i.base}"
    return f"{i.multiplier}{i.base}"


def concat(i: Instrument, where: str, base: str, quote: str) -> str:
    """Glue base+quote, refusing strings that would split back differently (XT+USD -> X/TUSD)."""
    s = base + quote
    if split_single(s) != (base, quote):
        back = split_single(s)
        refuse(i, where, f"{s!r} would read back as {back[0]}/{back[1] or '(bare asset)'}")
    return s


def _no_multiplier(i: Instrument, v: Venue) -> None:
    """Dropping a x1000 silently would misprice by 1000x, so venues without such contracts refuse."""
    if i.multiplier != 1:
        refuse(i, v.value, "the venue has no multiplier contracts (x1000 prices differ from spot)")


def _implicit_settle(i: Instrument, v: Venue) -> None:
    """Venues that do not spell settlement must agree with the USD-is-inverse rule."""
    if i.kind is not Kind.SPOT and i.settle != implied_settle(i.base, i.quote):
        refuse(i, v.value, "its spelling implies USD-quoted = inverse, anything else = linear")


def render(i: Instrument, v: Venue) -> str:
    """Spell ``i`` for ``v``, refusing anything that would read back as another market."""
    k, b, q = i.kind, i.base, i.quote
    if v is Venue.CCXT:
        s = f"{mbase(i)}/{q}"
        return s if k is Kind.SPOT else f"{s}:{i.settle}" + (f"-{i.expiry}" if i.expiry else "")
    if v is Venue.BASE:
        return mbase(i)
    if v in (Venue.BINANCE, Venue.BYBIT):
        _implicit_settle(i, v)
        if i.is_inverse and v is Venue.BINANCE:
            refuse(i, v.value, "inverse contracts live on binance_coinm")
        if v is Venue.BYBIT and k is Kind.FUTURE:
            refuse(i, v.value, "only spot and perpetuals are supported for bybit")
        if v is Venue.BYBIT and k is Kind.SPOT and q == "USD":
            refuse(i, v.value, "BTCUSD on bybit is the inverse perpetual")
        s = concat(i, v.value, mbase(i, v), q)
        return f"{s}_{i.expiry}" if k is Kind.FUTURE else s
    if v in (Venue.COINBASE, Venue.KRAKEN) and k is not Kind.SPOT:
        refuse(i, v.value, "only spot markets are supported")
    _no_multiplier(i, v)
    _implicit_settle(i, v)
    if v is Venue.BINANCE_COINM:
        if not i.is_inverse:
            refuse(i, v.value, "COIN-M lists only inverse USD-quoted derivatives")
        return concat(i, v.value, b, q) + (f"_{i.expiry}" if i.expiry else "_PERP")
    if v is Venue.OKX:
        return f"{b}-{q}" + {Kind.SPOT: "", Kind.SWAP: "-SWAP"}.get(k, f"-{i.expiry}")
    if v is Venue.COINBASE:
        return f"{b}-{q}"
    if v is Venue.KRAKEN:
        return concat(i, v.value, KRAKEN_NAMES.get(b, b), KRAKEN_NAMES.get(q, q))
    # Deribit: spot BTC_USDC; inverse BTC-PERPETUAL / BTC-7MAR25; linear SOL_USDC-PERPETUAL
    if k is Kind.SPOT:
        return f"{b}_{q}"
    head = b if i.is_inverse else f"{b}_{q}"
    if k is Kind.SWAP:
        return f"{head}-PERPETUAL"
    e = i.expiry or ""
    return f"{head}-{int(e[4:])}{MONTHS[int(e[2:4]) - 1]}{e[:2]}"  # Deribit does not pad the day
