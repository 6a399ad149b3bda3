"""Capability discovery: which backend route serves each module, and how to call it.

The seed's client guessed paths and symbol spellings and got 404s; its remedy
matched paths with one regex and then still tried three URL shapes in turn.
Here the contract is read:

1. Each GET operation of the backend's OpenAPI/Swagger document is matched
   to a module by meaning: words from its path, operationId, summary and
   tags against the words each module declares (`ModuleSpec.terms`:
   liquidation + heatmap; spot + orderbook / order-book / depth / book;
   etf + flow; whale; bias / sentiment / positioning; funding).
2. Each parameter is bound by role from its name, place, enum, pattern,
   examples and description: symbol (and the spelling it wants, detected
   from an example or the pattern and produced by actors.symbols),
   timeframe, depth, exchange. A required parameter with no role takes its
   default or example, or the route is unusable, with the reason.
3. Without a spec, or for modules the spec does not cover, known paths are
   probed in order (`ALIASES`) and the first that answers is remembered, so
   later cycles make one request.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from actors.symbols import FORMS, detect_form, form_from_pattern
from messages import PAYLOAD_TYPES, REGISTRY
from messages.errors import SymbolError
from messages.modules._kit import ModuleTerms
from messages.routes import ParamBinding, Route

from .openapi import Operation, SpecParam
from .routing import RequestSettings, RouteError, build_request
from .upstream import UpstreamClient

# -- words ----------------------------------------------------------------------

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")


def words(text: str) -> set[str]:
    """Lower-case words of `text`, camelCase split, plurals folded, adjacent pairs joined.

    ``/api/v2/market/depth/{venue}`` -> {api, v2, market, depth, venue, ...};
    ``getOrderBook`` and ``order-book`` both yield ``orderbook``.
    """
    parts = [p for p in _SPLIT.split(_CAMEL.sub(" ", text).lower()) if p]
    out = set(parts)
    out.update(a + b for a, b in itertools.pairwise(parts))
    out.update(p[:-1] for p in list(out) if len(p) > 3 and p.endswith("s"))
    return out


#: Module name -> the words its operation is recognised by (declared by each module).
TERMS: dict[str, ModuleTerms] = {name: spec.terms for name, spec in REGISTRY.items()}


def module_score(op: Operation, module: str) -> int:
    """0 if `op` cannot serve `module`, else higher for a better match."""
    terms = TERMS[module]
    found = words(op.words)
    if not all(group & found for group in terms.required):
        return 0
    return 10 * len(terms.required) + 2 * len(terms.bonus & found) - 5 * len(terms.penalty & found)


# -- parameter roles ------------------------------------------------------------

ROLE_NAMES: dict[str, frozenset[str]] = {
    "symbol": frozenset(
        {
            "symbol",
            "instid",
            "instrument",
            "inst",
            "pair",
            "coin",
            "asset",
            "ticker",
            "ccy",
            "currency",
            "sym",
            "base",
            "market",
            "product",
            "productid",
        }
    ),
    "timeframe": frozenset({"timeframe", "interval", "tf", "period", "range", "resolution", "granularity", "window"}),
    "depth": frozenset({"depth", "limit", "size", "sz", "levels", "level", "n"}),
    "exchange": frozenset({"exchange", "ex", "venue", "source", "exch"}),
}
_ROLE_WORDS = {
    "symbol": ("symbol", "instrument", "trading pair", "ticker"),
    "timeframe": ("timeframe", "time frame", "interval", "candle"),
    "depth": ("depth", "number of levels", "price levels"),
    "exchange": ("exchange", "venue"),
}
#: Spelling a module's symbol most likely wants when the spec says nothing.
MODULE_FORM: dict[str, str] = {name: spec.form for name, spec in REGISTRY.items()}
_TIMEFRAME_ALIASES = {"1h": ("1h", "60m", "60", "1hour", "h1", "hour")}
_SYMBOL_LIKE = re.compile(r"\b[A-Za-z0-9]{2,12}(?:[-_/:][A-Za-z0-9]{2,12}){0,3}\b")


def role_of(param: SpecParam) -> str | None:
    name = re.sub(r"[^a-z0-9]", "", param.name.lower())
    for role, names in ROLE_NAMES.items():
        if name in names:
            return role
    text = param.description.lower()
    for role, phrases in _ROLE_WORDS.items():
        if any(p in text for p in phrases):
            return role
    return None


def symbol_form(param: SpecParam, module: str) -> tuple[str, bool, str]:
    """(form, lower-case?, how it was decided) for a symbol parameter."""
    samples = [*param.examples, *(param.enum[:1]), *([param.default] if param.default else [])]
    for sample in samples:
        if isinstance(sample, str) and sample.strip():
            try:
                return detect_form(sample), sample == sample.lower() and sample != sample.upper(), f"example {sample!r}"
            except SymbolError:
                continue
    if param.pattern:
        form = form_from_pattern(param.pattern)
        if form:
            lower = bool(re.search(r"\[a-z", param.pattern)) and not re.search(r"\[A-Z", param.pattern)
            return form, lower, f"pattern {param.pattern!r}"
    for candidate in _SYMBOL_LIKE.findall(param.description):
        if any(c.isdigit() for c in candidate) and not any(c.isalpha() for c in candidate):
            continue
        if candidate.isupper() or "-" in candidate or "/" in candidate:
            try:
                form = detect_form(candidate)
            except SymbolError:
                continue
            if form != "base" or candidate.isupper():
                return form, False, f"description mentions {candidate!r}"
    return MODULE_FORM[module], False, "no example or pattern: module default (a guess)"


def _enum_pick(param: SpecParam, wanted: str, aliases: Sequence[str] = ()) -> tuple[str | None, str | None]:
    """(const value, note) when the enum lacks our value; (None, None) when ours fits."""
    if not param.enum:
        return None, None
    options = {str(o).lower(): str(o) for o in param.enum}
    for candidate in (wanted, *aliases):
        if candidate.lower() in options:
            spelled = options[candidate.lower()]
            return (None, None) if spelled == wanted else (spelled, f"{param.name}: using {spelled!r} for {wanted!r}")
    fallback = str(param.default) if param.default is not None else str(param.enum[0])
    return fallback, f"{param.name}: {wanted!r} is not offered {list(param.enum)}; using {fallback!r}"


@dataclass
class Binding:
    """A route for one module, or the reason there is none, with what was guessed."""

    module: str
    route: Route | None = None
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    score: int = 0
    #: Where the route came from: bound from the backend's spec, or a known path that answered a probe.
    origin: Literal["openapi", "alias"] = "openapi"


class _Unbindable(Exception):
    """A parameter no value can be found for: the operation is unusable, for this reason."""


def bind_operation(op: Operation, module: str, settings: RequestSettings) -> Binding:
    """Bind every parameter of `op` for `module`, or explain why it cannot be done."""
    notes: list[str] = []
    params: list[ParamBinding] = []
    for p in op.params:
        have_symbol = any(b.role == "symbol" for b in params)
        try:
            bound = _bind_param(p, module, settings, notes, have_symbol=have_symbol)
        except _Unbindable as exc:
            return Binding(module, reason=f"{op.path}: {exc}")
        if bound is not None:
            params.append(bound)
    if not any(b.role == "symbol" for b in params):
        return Binding(module, reason=f"{op.path}: no parameter takes the asset or symbol")
    route = Route(module=module, path=op.path, params=tuple(params))
    try:  # a binding that cannot build a request must fail here, not on every tick
        build_request(route, "BTC" if module == "etf" else "SOL", settings)
    except RouteError as exc:
        return Binding(module, reason=f"{op.path}: {exc}")
    return Binding(module, route=route, notes=notes, score=module_score(op, module))


def _bind_param(
    p: SpecParam, module: str, settings: RequestSettings, notes: list[str], *, have_symbol: bool
) -> ParamBinding | None:
    """One parameter by its role; None for an optional one we have nothing to send for.

    Only the first symbol-like parameter takes the symbol: a second one is
    treated like a parameter without a role. Every guess is added to `notes`,
    so `sniper discover` shows what to check.
    """
    if p.location not in ("path", "query"):
        if p.required:
            raise _Unbindable(f"required {p.location} parameter {p.name!r} is not supported")
        return None
    loc: Literal["path", "query"] = "path" if p.location == "path" else "query"
    role = role_of(p)
    if role == "symbol" and not have_symbol:
        form, lower, how = symbol_form(p, module)
        if how.endswith("(a guess)"):
            notes.append(f"{p.name}: {how} -> {form}")
        return ParamBinding(name=p.name, location=loc, role="symbol", form=form, lower=lower, required=p.required)
    if role == "timeframe":
        return _bind_choice(p, loc, "timeframe", settings.timeframe, notes)
    if role == "exchange":
        return _bind_choice(p, loc, "exchange", settings.exchange, notes)
    if role == "depth":
        return _bind_depth(p, loc, settings.depth, notes)
    if p.required:
        return _bind_fixed(p, loc, notes)
    return None


def _bind_choice(
    p: SpecParam, loc: Literal["path", "query"], role: Literal["timeframe", "exchange"], wanted: str, notes: list[str]
) -> ParamBinding:
    """Our value, or the spelling (or the fallback) the parameter's enum offers, sent as a constant."""
    aliases = _TIMEFRAME_ALIASES.get(wanted, ()) if role == "timeframe" else ()
    const, note = _enum_pick(p, wanted, aliases)
    if note:
        notes.append(note)
    return ParamBinding(name=p.name, location=loc, role="const" if const else role, value=const, required=p.required)


def _bind_depth(p: SpecParam, loc: Literal["path", "query"], depth: int, notes: list[str]) -> ParamBinding:
    """Our depth, clamped to the parameter's range: an out-of-range depth is a 4xx on every call."""
    clamped = depth
    if p.maximum is not None and clamped > p.maximum:
        clamped = int(p.maximum)
    if p.minimum is not None and clamped < p.minimum:
        clamped = int(p.minimum)
    if clamped == depth:
        return ParamBinding(name=p.name, location=loc, role="depth", required=p.required)
    notes.append(f"{p.name}: depth {depth} outside [{p.minimum}, {p.maximum}]; using {clamped}")
    return ParamBinding(name=p.name, location=loc, role="const", value=str(clamped), required=p.required)


def _bind_fixed(p: SpecParam, loc: Literal["path", "query"], notes: list[str]) -> ParamBinding:
    """A required parameter without a role: its default or example is the best guess, else unusable."""
    value = p.default if p.default is not None else (p.examples[0] if p.examples else None)
    if value is None:
        raise _Unbindable(f"required {p.location} parameter {p.name!r} has no known role, default or example")
    notes.append(f"{p.name}: no known role; sending its {'default' if p.default is not None else 'example'} {value!r}")
    return ParamBinding(name=p.name, location=loc, role="const", value=str(value))


def match_spec(
    operations: Iterable[Operation], modules: Iterable[str], settings: RequestSettings
) -> dict[str, Binding]:
    """The best usable operation per module; unusable ones keep the best reason found."""
    ops = list(operations)
    result: dict[str, Binding] = {}
    for module in modules:
        ranked = sorted(((module_score(op, module), op) for op in ops), key=lambda x: (-x[0], len(x[1].path)))
        best: Binding | None = None
        for score, op in ranked:
            if score <= 0:
                break
            binding = bind_operation(op, module, settings)
            if binding.route is not None:
                best = binding
                break
            best = best or binding
        result[module] = best or Binding(module, reason="no operation in the spec looks like this module")
    return result


# -- without a spec: known paths, probed in order ------------------------------------


#: Known namings per module, most common first (declared by each module): the
#: seed's suggested paths, the paths its client guessed, and a v2-style API.
ALIASES: dict[str, tuple[Route, ...]] = {name: spec.aliases for name, spec in REGISTRY.items()}
assert all(p.form in FORMS for routes in ALIASES.values() for r in routes for p in r.params if p.form)

#: An answer that proves the route exists even though it carries no data.
_EXISTS = frozenset({"payment_required", "rate_limited"})


async def probe_aliases(
    upstream: UpstreamClient, module: str, key: str, settings: RequestSettings, *, budget: float = 3.0
) -> Binding:
    """Try the known paths for `module` in order; the first that answers wins."""
    decoder = msgspec.json.Decoder(PAYLOAD_TYPES[module])
    tried: list[str] = []
    for route in ALIASES[module]:
        path, query = build_request(route, key, settings)
        outcome = await upstream.get(module, path, query, budget=budget)
        if outcome.ok:
            try:
                decoder.decode(outcome.body)
            except (msgspec.DecodeError, msgspec.ValidationError):
                tried.append(f"{route.path}: answered, but not a {module} payload")
                continue
            return Binding(module, route=route, notes=[f"probed: {route.path} answered"], origin="alias")
        if outcome.reason in _EXISTS:
            return Binding(
                module, route=route, notes=[f"probed: {route.path} exists ({outcome.reason})"], origin="alias"
            )
        tried.append(f"{route.path}: {outcome.reason}{f' {outcome.status}' if outcome.status else ''}")
    return Binding(module, reason="no known path answered: " + "; ".join(tried))


def describe(binding: Binding) -> dict[str, Any]:
    """A plain-dict view for `sniper discover` output."""
    if binding.route is None:
        return {"module": binding.module, "usable": False, "reason": binding.reason}
    return {
        "module": binding.module,
        "usable": True,
        "path": binding.route.path,
        "params": [
            {
                "name": p.name,
                "in": p.location,
                "role": p.role,
                **({"form": p.form} if p.form else {}),
                **({"value": p.value} if p.value is not None else {}),
            }
            for p in binding.route.params
        ],
        "notes": binding.notes,
    }
