"""Canonical instrument model and venue symbol converters.

Why: sniper kept failing because clients guessed symbol spellings (`SOL` vs
`SOLUSDT` vs `SOL-USDT-SWAP`).  Every symbol now goes through one model,
:class:`Instrument`; :func:`parse` reads any common spelling and :func:`format`
writes one venue's spelling, refusing (``SymbolError``) what that venue cannot
express instead of emitting a look-alike of a different market.

Rules the whole module follows:

* Concatenated symbols split on the LONGEST known quote suffix (``USDTUSDC`` is
  USDT/USDC, ``BTCFDUSD`` is BTC/FDUSD), and :func:`format` refuses to emit a
  concatenation that would not split back the same way.
* Where a spelling leaves settlement implicit, a derivative quoted in USD is
  inverse (settled in the base) and anything else is linear.  That holds for
  OKX, Binance COIN-M, Bybit and Deribit; CCXT states it after ``:``.
* ``1000PEPE`` is PEPE with multiplier 1000.  Only 1000, 10000, 1000000 and
  ``1M`` are multiplier prefixes, so ``1INCH`` and ``100X`` stay bases.
* Binance and Bybit spell spot and perpetual alike (``SOLUSDT``); pass ``kind=``.

Venue spelling tables and the lexer live in the private ``actors._venues``.
"""

from __future__ import annotations

import datetime as _dt
import re
import warnings
from typing import Any

import msgspec

from messages.errors import SymbolError

from . import _venues as _v
from ._venues import KNOWN_QUOTES, MULTIPLIERS, Kind, Venue

__all__ = [
    "FORMS",
    "KNOWN_QUOTES",
    "Instrument",
    "Kind",
    "SymbolError",
    "Venue",
    "bybit_category",
    "convert",
    "detect_form",
    "form_from_pattern",
    "format",
    "format_form",
    "instrument",
    "parse",
    "spot_symbol",
    "swap_symbol",
]


class Instrument(msgspec.Struct, frozen=True, kw_only=True):
    """One tradable market, independent of any venue's spelling.

    Validated on construction and on msgspec decode, so an Instrument in a
    message is always canonical (uppercase, BTC not XBT, PEPE + multiplier 1000
    not 1000PEPE).  Use :func:`instrument` to build one from loose parts.
    """

    base: str
    quote: str
    kind: Kind = Kind.SPOT
    settle: str | None = None  # derivatives only: quote (linear) or base (inverse)
    expiry: str | None = None  # futures only: YYMMDD
    multiplier: int = 1  # 1000 for 1000PEPEUSDT-style contracts

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def is_inverse(self) -> bool:
        """Settled in the base coin (BTC-USD-SWAP): PnL and margin are in BTC."""
        return self.kind is not Kind.SPOT and self.settle == self.base

    @property
    def is_linear(self) -> bool:
        """Settled in the quote currency (SOL-USDT-SWAP)."""
        return self.kind is not Kind.SPOT and self.settle == self.quote

    def __str__(self) -> str:
        return _v.render(self, Venue.CCXT)  # unambiguous, used in error messages


def _check_code(what: str, code: object) -> None:
    if not isinstance(code, str) or not code:
        raise SymbolError(f"{what} must be a non-empty string, got {code!r}")
    if not _v.CODE.fullmatch(code):
        raise SymbolError(f"{what} {code!r} must be 1-20 uppercase ASCII letters/digits")
    if code.isdigit():
        raise SymbolError(f"{what} {code!r} has no letters")
    if code in _v.ALIASES:
        raise SymbolError(f"{what} {code!r} is an alias; use {_v.ALIASES[code]!r}")


def _check_expiry(expiry: object) -> None:
    if not isinstance(expiry, str) or not _v.YYMMDD.fullmatch(expiry):
        raise SymbolError(f"expiry {expiry!r} must be 6 digits YYMMDD")
    try:  # not strptime: its %m would read "1311" as month 1, day 31
        _dt.date(2000 + int(expiry[:2]), int(expiry[2:4]), int(expiry[4:]))
    except ValueError:
        raise SymbolError(f"expiry {expiry!r} is not a calendar date (YYMMDD)") from None


def _validate(i: Instrument) -> None:
    _check_code("base", i.base)
    _check_code("quote", i.quote)
    if i.base == i.quote:
        raise SymbolError(f"base and quote are both {i.base!r}")
    if m := _v.MULT_PREFIX.match(i.base):
        raise SymbolError(
            f"base {i.base!r} carries a multiplier prefix; use "
            f"base={i.base[m.end() :]!r} with multiplier={_v.mult_value(m[1])}"
        )
    if not isinstance(i.kind, Kind):
        raise SymbolError(f"kind must be a Kind, got {i.kind!r}")
    if type(i.multiplier) is not int or i.multiplier not in (1, *MULTIPLIERS):
        raise SymbolError(f"multiplier {i.multiplier!r} must be one of 1, {MULTIPLIERS}")
    if i.multiplier != 1 and not i.base[0].isalpha():
        raise SymbolError(
            f"multiplier {i.multiplier} needs a base starting with a letter: {i.multiplier}{i.base} would not read back"
        )
    if i.kind is Kind.SPOT and i.settle is not None:
        raise SymbolError(f"spot {i.base}/{i.quote} cannot have settle {i.settle!r}")
    if i.kind is not Kind.SPOT and i.settle not in (i.base, i.quote):
        raise SymbolError(
            f"{i.kind.value} {i.base}/{i.quote} needs settle {i.quote!r} "
            f"(linear) or {i.base!r} (inverse), got {i.settle!r}"
        )
    if i.kind is Kind.FUTURE:
        _check_expiry(i.expiry)
    elif i.expiry is not None:
        raise SymbolError(f"only futures have an expiry; {i.kind.value} got {i.expiry!r}")


def _kind(kind: Kind | str) -> Kind:
    try:
        return Kind(kind.lower() if isinstance(kind, str) else kind)
    except (ValueError, TypeError):
        raise SymbolError(f"unknown kind {kind!r}; expected one of {[k.value for k in Kind]}") from None


def _venue(venue: Venue | str) -> Venue:
    try:
        return Venue(venue.lower() if isinstance(venue, str) else venue)
    except (ValueError, TypeError):
        raise SymbolError(f"unknown venue {venue!r}; expected one of {[v.value for v in Venue]}") from None


def _canonical_code(code: Any) -> Any:
    """Upper-case and de-alias a currency code; anything else is left for validation to reject."""
    return _v.ALIASES.get(code.upper(), code.upper()) if isinstance(code, str) else code


def instrument(
    base: str,
    quote: str = "USDT",
    kind: Kind | str = Kind.SPOT,
    *,
    settle: str | None = None,
    expiry: str | None = None,
    multiplier: int = 1,
) -> Instrument:
    """Build a validated Instrument from loose parts.

    Case-folds, maps Kraken aliases (XBT -> BTC), turns a ``1000PEPE`` base into
    PEPE x1000 and fills a derivative's settle by the USD-is-inverse rule, so
    callers need not know the canonical conventions.
    """
    k = _kind(kind)
    b, q, s = (_canonical_code(c) for c in (base, quote, settle))
    if isinstance(b, str) and (m := _v.MULT_PREFIX.match(b)):
        if multiplier != 1:
            raise SymbolError(f"base {base!r} has a multiplier prefix and multiplier={multiplier}")
        b, multiplier = b[m.end() :], _v.mult_value(m[1])
    if k is not Kind.SPOT and s is None and isinstance(b, str) and isinstance(q, str):
        s = _v.implied_settle(b, q)
    return Instrument(base=b, quote=q, kind=k, settle=s, expiry=expiry, multiplier=multiplier)


# ---------------------------------------------------------------- parsing


def parse(
    text: str, *, venue: Venue | str | None = None, kind: Kind | str | None = None, default_quote: str = "USDT"
) -> Instrument:
    """Read any common spelling into an Instrument.

    Case and separators (``/ - _ :`` and space) are free; an ``@stream`` tail is
    dropped.  The text itself decides the kind when it can: ``:SETTLE`` (CCXT),
    ``-SWAP``/``_PERP``/``-PERPETUAL`` (perp), ``YYMMDD`` or Deribit ``28MAR25``
    (future).  ``venue`` resolves what the text cannot say (Binance/Bybit spot
    vs perp, Bybit USD = inverse, COIN-M = derivative) and checks the result is
    expressible there; ``kind`` picks spot/swap where the text is silent and
    must agree with it otherwise.  A bare asset gets ``default_quote``.
    """
    v = _venue(venue) if venue is not None else None
    want = _kind(kind) if kind is not None else None
    s = _v.clean(text)
    dq = _v.ALIASES.get(default_quote.upper(), default_quote.upper()) if isinstance(default_quote, str) else ""
    if v is Venue.BASE:
        if not _v.TOKEN.fullmatch(s):
            raise SymbolError(f"{text!r}: venue 'base' expects a bare asset such as 'SOL'")
        inst = _resolve(text, s, dq, None, None, None, want, v)
    else:
        inst = _parse_text(text, s, dq, want, v)
    if v is not None:
        try:
            _v.render(inst, v)
        except SymbolError as e:
            raise SymbolError(f"{text!r} is not a {v.value} symbol: {e}") from None
    return inst


def _parse_text(text: str, s: str, dq: str, want: Kind | None, v: Venue | None) -> Instrument:
    settle = expiry = marker = None
    deribit = False
    if ":" in s:  # CCXT: BASE/QUOTE:SETTLE[-YYMMDD]
        left, _, right = s.partition(":")
        rt = _v.tokens(right, text)
        if len(rt) == 1:
            settle, marker = rt[0], Kind.SWAP
        elif len(rt) == 2 and _v.YYMMDD.fullmatch(rt[1]):
            settle, expiry, marker = rt[0], rt[1], Kind.FUTURE
        else:
            raise SymbolError(f"{text!r}: expected SETTLE or SETTLE-YYMMDD after ':' (options unsupported)")
        toks = _v.tokens(left, text)
    else:
        toks = _v.tokens(s, text)
        last = toks[-1]
        if len(toks) > 1:
            if last in ("SWAP", "PERP", "PERPETUAL"):
                marker, deribit = Kind.SWAP, last == "PERPETUAL"
                toks.pop()
            elif _v.YYMMDD.fullmatch(last):
                marker, expiry = Kind.FUTURE, toks.pop()
            elif m := _v.DERIBIT_DATE.fullmatch(last):
                marker, expiry, deribit = Kind.FUTURE, _v.deribit_expiry(m), True
                toks.pop()
    if len(toks) == 2:
        base, quote = toks
    elif len(toks) == 1 and deribit:  # BTC-PERPETUAL, BTC-28MAR25: inverse on USD
        base, quote = toks[0], "USD"
    elif len(toks) == 1:
        base, single_quote = _v.split_single(toks[0])
        quote = single_quote or dq
    else:
        raise SymbolError(f"{text!r}: expected BASE and QUOTE, found {len(toks)} parts {toks}")
    return _resolve(text, base, quote or dq, settle, expiry, marker, want, v)


def _resolve(
    text: str,
    base_tok: str,
    quote: str,
    settle: str | None,
    expiry: str | None,
    marker: Kind | None,
    want: Kind | None,
    v: Venue | None,
) -> Instrument:
    """Settle kind/settle/multiplier/aliases from what the text said and what the caller wants."""
    if want is not None and marker is not None and want is not marker:
        raise SymbolError(f"{text!r} names a {marker.value} but kind={want.value!r} was requested")
    m = _v.MULT_PREFIX.match(base_tok)
    mult, base = (_v.mult_value(m[1]), base_tok[m.end() :]) if m else (1, base_tok)
    base, quote = _v.ALIASES.get(base, base), _v.ALIASES.get(quote, quote)
    k = marker or want
    if k is None:
        bybit_inverse = v is Venue.BYBIT and quote == "USD"
        k = Kind.SWAP if v is Venue.BINANCE_COINM or bybit_inverse else Kind.SPOT
    if k is Kind.FUTURE and expiry is None:
        raise SymbolError(f"{text!r}: a future needs an expiry date (YYMMDD) in the symbol")
    if k is not Kind.SPOT:
        settle = _v.ALIASES.get(settle, settle) if settle else _v.implied_settle(base, quote)
    try:
        return Instrument(base=base, quote=quote, kind=k, settle=settle, expiry=expiry, multiplier=mult)
    except SymbolError as e:
        raise SymbolError(f"{text!r}: {e}") from None


# ---------------------------------------------------------------- formatting


def _need(inst: object) -> None:
    if not isinstance(inst, Instrument):
        raise SymbolError(f"expected an Instrument, got {type(inst).__name__}")


def format(inst: Instrument, venue: Venue | str) -> str:
    """Spell ``inst`` for ``venue``; SymbolError if the venue has no such market shape."""
    _need(inst)
    return _v.render(inst, _venue(venue))


def convert(
    text: str, to_venue: Venue | str, *, from_venue: Venue | str | None = None, kind: Kind | str | None = None
) -> str:
    """``format(parse(text, venue=from_venue, kind=kind), to_venue)``."""
    return format(parse(text, venue=from_venue, kind=kind), to_venue)


def spot_symbol(asset: str, venue: Venue | str = "binance", *, quote: str = "USDT") -> str:
    """Spot market of a bare asset for a venue: ``spot_symbol("SOL") == "SOLUSDT"``."""
    return format(parse(asset, venue=Venue.BASE, default_quote=quote), venue)


def swap_symbol(asset: str, venue: Venue | str = "okx", *, quote: str = "USDT") -> str:
    """Perpetual of a bare asset: ``swap_symbol("SOL") == "SOL-USDT-SWAP"``; quote USD means inverse."""
    return format(parse(asset, venue=Venue.BASE, kind=Kind.SWAP, default_quote=quote), venue)


def bybit_category(inst: Instrument) -> str:
    """Bybit v5 ``category`` parameter that goes with :func:`format` ``(inst, "bybit")``."""
    return "spot" if inst.kind is Kind.SPOT else ("inverse" if inst.is_inverse else "linear")


# ---------------------------------------------------------------- generic forms

FORMS: tuple[str, ...] = (
    "base",
    "concat",
    "dash",
    "underscore",
    "slash",
    "okx_swap",
    "ccxt_swap",
    "binance_coinm",
    "deribit",
)
_SIMPLE_SEP = {"concat": "", "dash": "-", "underscore": "_", "slash": "/"}
_DERIV_VENUE = {
    "okx_swap": Venue.OKX,
    "ccxt_swap": Venue.CCXT,
    "binance_coinm": Venue.BINANCE_COINM,
    "deribit": Venue.DERIBIT,
}


def format_form(inst: Instrument, form: str, *, lower: bool = False) -> str:
    """Render ``inst`` in a generic form named by :func:`detect_form`, for APIs we know only by example.

    Simple forms carry base and quote only: swaps render like spot (as most
    APIs spell perps), futures are refused since the expiry would be lost.
    Derivative forms render a spot instrument as its perpetual (USD-quoted ->
    inverse), because an API that wants ``SOL-USDT-SWAP`` wants the perp.
    """
    _need(inst)
    if form == "base":
        out = _v.mbase(inst)
    elif form in _SIMPLE_SEP:
        if inst.kind is Kind.FUTURE:
            _v.refuse(inst, f"form {form!r}", "the expiry would be lost")
        sep, b = _SIMPLE_SEP[form], _v.mbase(inst)
        out = f"{b}{sep}{inst.quote}" if sep else _v.concat(inst, f"form {form!r}", b, inst.quote)
    elif form in _DERIV_VENUE:
        if inst.kind is Kind.SPOT:
            inst = msgspec.structs.replace(inst, kind=Kind.SWAP, settle=_v.implied_settle(inst.base, inst.quote))
        out = _v.render(inst, _DERIV_VENUE[form])
    else:
        raise SymbolError(f"unknown form {form!r}; expected one of {FORMS}")
    return out.lower() if lower else out


def detect_form(example: str) -> str:
    """Name the form of an example symbol so we can spell others the same way.

    The answer is the first form whose rendering of ``parse(example)`` gives the
    example back (case-insensitively), so ``format_form`` is its exact inverse.
    """
    s = _v.clean(example)
    if _v.TOKEN.fullmatch(s) and _v.split_single(s)[1] is None:
        return "base"  # also covers bare quote assets such as USDT
    inst = parse(s)
    for form in FORMS:
        try:
            if format_form(inst, form) == s:
                return form
        except SymbolError:
            continue
    raise SymbolError(f"{example!r}: matches none of the forms {FORMS}")


_SAMPLES = tuple(instrument(b, q) for b, q in (("BTC", "USDT"), ("SOL", "USDT"), ("BTC", "USD"), ("ETH", "USDC")))


def form_from_pattern(regex: str) -> str | None:
    """Best-effort form for a parameter known only by its regex (e.g. ``^[A-Z]+USDT$``).

    Renders sample instruments in every form (upper and lower case) and returns
    the first form in :data:`FORMS` order that ``re.fullmatch``es.  None if the
    regex is invalid, matches nothing, or is so loose that it accepts forms with
    different separators (``.*`` says nothing about the shape).
    """
    try:
        with warnings.catch_warnings():  # e.g. FutureWarning "possible nested set" on "[[": still a regex
            warnings.simplefilter("ignore")
            rx = re.compile(regex)
    except (re.error, TypeError, OverflowError, RecursionError):
        return None
    hits: list[str] = []
    for form in FORMS:
        for inst in _SAMPLES:
            try:
                rendered = [format_form(inst, form), format_form(inst, form, lower=True)]
            except SymbolError:
                continue
            if any(rx.fullmatch(r) for r in rendered):
                hits.append(form)
                break
    if not hits or len({f for f in hits if f in ("dash", "underscore", "slash")}) > 1:
        return None
    return hits[0]
