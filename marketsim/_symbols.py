"""Symbol forms accepted by the simulated routes.

Real market-data APIs each insist on one spelling of an instrument: a bare
base (``SOL``), Binance spot (``SOLUSDT``), an OKX perpetual swap
(``SOL-USDT-SWAP``) or OKX spot (``SOL-USDT``). Clients that send the wrong
spelling are the most common production failure, so every route declares the
form it expects and rejects the others. One regular expression per form serves
both the request validator and the OpenAPI ``pattern``, so the published
contract and the behaviour can never drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["BASE", "BINANCE_SPOT", "OKX_SPOT", "OKX_SWAP", "SymbolForm"]

# A base that itself ends in a quote currency ("SOLUSDT", "ETHUSDC") is a pair
# sent to a base-only route; accepting it would silently invent an asset.
_BASE = r"(?![A-Z0-9]+(?:USDT|USDC|BUSD|FDUSD)$)[A-Z0-9]{2,10}"
_BASE_IN_PAIR = r"[A-Z0-9]{2,10}"


@dataclass(frozen=True, slots=True)
class SymbolForm:
    """One spelling of an instrument, able to parse and format it."""

    name: str
    pattern: str
    template: str
    description: str

    def parse(self, text: str) -> str | None:
        """Return the base asset of ``text``, or ``None`` if not in this form."""
        match = re.fullmatch(self.pattern, text)
        return match.group("base") if match else None

    def format(self, base: str) -> str:
        """Spell ``base`` in this form (``SOL`` -> ``SOL-USDT-SWAP``)."""
        return self.template.format(base=base)

    @property
    def example(self) -> str:
        """The form's spelling of SOL, used as the documented example."""
        return self.format("SOL")

    @property
    def public_pattern(self) -> str:
        """The pattern without named groups (ECMA-262 compatible)."""
        return self.pattern.replace("(?P<base>", "(")


BASE = SymbolForm(
    name="base",
    pattern=rf"^(?P<base>{_BASE})$",
    template="{base}",
    description="Base asset ticker, e.g. SOL",
)
BINANCE_SPOT = SymbolForm(
    name="binance_spot",
    pattern=rf"^(?P<base>{_BASE_IN_PAIR})USDT$",
    template="{base}USDT",
    description="Binance spot pair against USDT, e.g. SOLUSDT",
)
OKX_SWAP = SymbolForm(
    name="okx_swap",
    pattern=rf"^(?P<base>{_BASE_IN_PAIR})-USDT-SWAP$",
    template="{base}-USDT-SWAP",
    description="OKX USDT-margined perpetual swap instrument id, e.g. SOL-USDT-SWAP",
)
OKX_SPOT = SymbolForm(
    name="okx_spot",
    pattern=rf"^(?P<base>{_BASE_IN_PAIR})-USDT$",
    template="{base}-USDT",
    description="OKX spot instrument id against USDT, e.g. SOL-USDT",
)
