"""Synthetic but plausible market data, deterministic for a seed.

Prices follow one geometric Brownian motion per asset, advanced lazily: a
price is only moved when somebody asks for it, by one exact GBM step over the
elapsed time. Time comes from an injected ``now`` callable so tests can move
the clock instead of sleeping.

Everything else (whale transfers, ETF flows, liquidation clusters, order
books, positioning, funding) is drawn from a RNG keyed by ``(seed, module, asset,
time bucket, ...)``. Repeated calls inside one bucket therefore return the same
snapshot, which is what real caching backends do and what lets tests compare
answers across route flavors.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from ._payloads import (
    EtfFlows,
    EtfIssuerFlow,
    FundingRate,
    InstitutionalBias,
    LiquidationHeatmap,
    LiquidationLevel,
    SpotOrderBook,
    Timeframe,
    WhaleAlert,
    WhaleAlerts,
)
from ._symbols import BINANCE_SPOT, OKX_SWAP

__all__ = ["DEFAULT_PRICE", "KNOWN_PRICES", "Market", "NoEtfError"]

KNOWN_PRICES: dict[str, float] = {
    "BTC": 95_000.0,
    "ETH": 3_500.0,
    "SOL": 180.0,
    "BNB": 650.0,
    "XRP": 2.3,
    "DOGE": 0.38,
}
DEFAULT_PRICE = 1.0
ANNUAL_VOLATILITY = 0.65
_SECONDS_PER_YEAR = 365.0 * 86_400.0
_MAX_ASSETS = 4_096  # unknown bases are accepted, so bound the state

# Notional scale per asset: BTC whales and books are bigger than altcoins'.
_SIZE = {"BTC": 4.0, "ETH": 2.0, "SOL": 1.0}
_ETF_ISSUERS: dict[str, tuple[tuple[str, float, float], ...]] = {
    # ticker, typical daily flow in USD, drift (GBTC/ETHE bleed outflows)
    "BTC": (
        ("IBIT", 250e6, 0.1),
        ("FBTC", 120e6, 0.05),
        ("GBTC", 60e6, -0.6),
        ("ARKB", 40e6, 0.0),
        ("BITB", 30e6, 0.0),
    ),
    "ETH": (("ETHA", 60e6, 0.1), ("FETH", 25e6, 0.0), ("ETHE", 15e6, -0.6)),
}
_EXCHANGE_WALLETS = ("binance", "coinbase", "okx", "bybit", "kraken")
_EXCHANGE_BASIS = {"binance": 0.0, "okx": -0.0001, "bybit": 0.00005, "coinbase": 0.0003}
_TIMEFRAME_SCALE = {"15m": 0.3, "1h": 1.0, "4h": 2.2, "12h": 4.0, "24h": 6.0}
_WHALE_WINDOW = 3_600.0
_WHALE_BUCKET = 900.0
_MAX_ALERTS = 8
_HEATMAP_SPAN = 0.08
_FUNDING_INTERVAL = 8 * 3_600.0  # fundings at 00:00, 08:00 and 16:00 UTC
_FUNDING_CAP = 0.003  # per interval; real venues clamp about there
_OI_CHANGE_CAP = 20.0


class NoEtfError(LookupError):
    """The asset has no spot ETF (only BTC and ETH do)."""


def price_digits(price: float) -> int:
    """Decimals that keep six significant digits (the tick size)."""
    return 5 - math.floor(math.log10(price))


def round_sig(value: float, digits: int) -> float:
    """Round ``value`` to ``digits`` significant digits."""
    if value == 0:
        return 0.0
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


class _Walk:
    """Lazily advanced GBM state of one asset."""

    __slots__ = ("price", "rng", "t")

    def __init__(self, price: float, t: float, rng: random.Random) -> None:
        self.price = price
        self.t = t
        self.rng = rng

    def advance(self, now: float) -> float:
        dt = now - self.t
        if dt > 0:
            var = ANNUAL_VOLATILITY**2 * dt / _SECONDS_PER_YEAR
            # One exact GBM step: splitting dt changes the path, not the law.
            self.price *= math.exp(-0.5 * var + math.sqrt(var) * self.rng.gauss(0.0, 1.0))
            self.t = now
        return self.price


class Market:
    """Deterministic market model; every method reads time via ``now``."""

    def __init__(self, seed: int = 0, now: Callable[[], float] = time.time) -> None:
        self.seed = seed
        self.now = now
        self._walks: dict[str, _Walk] = {}

    def _rng(self, *key: object) -> random.Random:
        return random.Random(":".join(map(str, (self.seed, *key))))

    def price(self, base: str) -> float:
        """Current price of ``base`` in USDT, moving its walk forward."""
        walk = self._walks.get(base)
        if walk is None:
            if len(self._walks) >= _MAX_ASSETS:
                self._walks.pop(next(iter(self._walks)))
            start = KNOWN_PRICES.get(base, DEFAULT_PRICE)
            walk = self._walks[base] = _Walk(start, self.now(), self._rng("walk", base))
        return walk.advance(self.now())

    def _quoted_price(self, base: str) -> tuple[float, int]:
        price = self.price(base)
        digits = price_digits(price)
        return round(price, digits), digits

    def whale_alerts(self, base: str) -> WhaleAlerts:
        """Transfers of the last hour; stable between calls, newest first."""
        now = self.now()
        price = self.price(base)
        size = _SIZE.get(base, 0.5)
        alerts: list[WhaleAlert] = []
        first = math.floor((now - _WHALE_WINDOW) / _WHALE_BUCKET)
        for bucket in range(first, math.floor(now / _WHALE_BUCKET) + 1):
            rng = self._rng("whale", base, bucket)
            for _ in range(rng.choices((0, 1, 2), weights=(0.45, 0.35, 0.2))[0]):
                ts = round(bucket * _WHALE_BUCKET + rng.uniform(0, _WHALE_BUCKET), 3)
                usd = size * math.exp(rng.gauss(math.log(5e6), 0.8))
                direction = rng.choices(("exchange_inflow", "exchange_outflow", "transfer"), (0.4, 0.4, 0.2))[0]
                exchange = rng.choice(_EXCHANGE_WALLETS)
                src, dst = {
                    "exchange_inflow": ("unknown wallet", exchange),
                    "exchange_outflow": (exchange, "unknown wallet"),
                    "transfer": ("unknown wallet", "unknown wallet"),
                }[direction]
                ident = f"wh-{rng.getrandbits(48):012x}"
                tx = f"0x{rng.getrandbits(256):064x}"
                if not now - _WHALE_WINDOW <= ts <= now:
                    continue
                amount = round_sig(usd / price, 6)
                alerts.append(
                    WhaleAlert(
                        id=ident,
                        ts=ts,
                        amount=amount,
                        amount_usd=round(amount * price, 2),
                        from_=src,
                        to=dst,
                        direction=direction,  # type: ignore[arg-type]
                        tx=tx,
                    )
                )
        alerts.sort(key=lambda a: a.ts, reverse=True)
        return WhaleAlerts(symbol=base, window="1h", alerts=alerts[:_MAX_ALERTS])

    def etf_flows(self, base: str) -> EtfFlows:
        """Flows of the current UTC day; raise ``NoEtfError`` for other assets."""
        issuers = _ETF_ISSUERS.get(base)
        if issuers is None:
            raise NoEtfError(f"no ETF for asset {base}")
        day = datetime.fromtimestamp(self.now(), tz=UTC).date().isoformat()
        rng = self._rng("etf", base, day)
        regime = rng.gauss(0.0, 1.0)  # one market mood shared by all issuers
        flows = []
        for ticker, scale, drift in issuers:
            raw = scale * (drift + 0.7 * regime + 0.5 * rng.gauss(0.0, 1.0))
            # Whole multiples of 100k keep the float sum exact.
            flows.append(EtfIssuerFlow(ticker=ticker, flow_usd=float(round(raw / 1e5) * 100_000)))
        net = float(sum(int(f.flow_usd) for f in flows))
        return EtfFlows(asset=base, as_of=day, net_flow_usd=net, issuers=flows)  # type: ignore[arg-type]

    def heatmap(self, base: str, timeframe: Timeframe) -> LiquidationHeatmap:
        """10-40 clusters within 8% of price; shorts above, longs below."""
        price, digits = self._quoted_price(base)
        rng = self._rng("heatmap", base, timeframe, math.floor(self.now() / 60))
        scale = 1.5e6 * _SIZE.get(base, 0.5) ** 2 * _TIMEFRAME_SCALE[timeframe]
        wanted = rng.randint(10, 40)
        levels: dict[float, LiquidationLevel] = {}
        for _ in range(wanted * 20):
            if len(levels) == wanted:
                break
            offset = rng.uniform(0.002, _HEATMAP_SPAN) * rng.choice((-1, 1))
            level = round(price * (1 + offset), digits)
            if level == price or level in levels or abs(level / price - 1) > _HEATMAP_SPAN:
                continue
            closeness = 2 - abs(offset) / _HEATMAP_SPAN  # more leverage near price
            usd = round(scale * closeness * math.exp(rng.gauss(0.0, 0.8)), -3) or 1_000.0
            side = "short" if level > price else "long"
            levels[level] = LiquidationLevel(price=level, side=side, usd=usd)  # type: ignore[arg-type]
        ordered = [levels[p] for p in sorted(levels)]
        return LiquidationHeatmap(
            symbol=OKX_SWAP.format(base),
            timeframe=timeframe,
            price=price,
            levels=ordered,
        )

    def order_book(self, base: str, exchange: str, depth: int) -> SpotOrderBook:
        """``depth`` levels per side around a per-exchange mid, in whole ticks."""
        mid = self.price(base) * (1 + _EXCHANGE_BASIS[exchange])
        digits = price_digits(mid)
        scale = 10.0**digits
        mid_ticks = mid * scale
        now = self.now()
        rng = self._rng("book", base, exchange, math.floor(now))
        notional = 20_000.0 * _SIZE.get(base, 0.5) ** 2

        def side(start: int, step: int) -> list[tuple[float, float]]:
            ticks, rows = start, []
            for i in range(depth):
                usd = notional * (1 + i / 10) * math.exp(rng.gauss(0.0, 0.7))
                level = round(ticks / scale, max(digits, 0))
                rows.append((level, round_sig(usd / level, 5)))
                ticks += step * rng.randint(1, 3)
            return rows

        best_bid = math.ceil(mid_ticks) - 1 - rng.randint(0, 1)
        best_ask = math.floor(mid_ticks) + 1 + rng.randint(0, 1)
        return SpotOrderBook(
            symbol=BINANCE_SPOT.format(base),
            exchange=exchange,  # type: ignore[arg-type]
            ts=round(now, 3),
            bids=side(best_bid, -1),
            asks=side(best_ask, 1),
        )

    def bias(self, base: str) -> InstitutionalBias:
        """Positioning that agrees with itself: score drives every field."""
        rng = self._rng("bias", base, math.floor(self.now() / 300))
        score = round(math.tanh(rng.gauss(0.0, 0.5)), 3)
        label = "bullish" if score > 0.15 else "bearish" if score < -0.15 else "neutral"
        return InstitutionalBias(
            symbol=OKX_SWAP.format(base),
            bias=label,  # type: ignore[arg-type]
            score=score,
            long_short_ratio=round(math.exp(0.6 * score + rng.gauss(0.0, 0.08)), 3),
            funding_rate=round(0.0001 + 0.0004 * score + rng.gauss(0.0, 0.00005), 6),
            oi_change_pct=round(8 * score + rng.gauss(0.0, 2.0), 2),
        )

    def funding(self, base: str) -> FundingRate:
        """Funding of the perpetual swap: one crowding mood drives rate, prediction and open interest."""
        now = self.now()
        rng = self._rng("funding", base, math.floor(now / 300))
        mood = rng.gauss(0.0, 1.0)  # > 0: longs crowded, they pay shorts

        def rate(value: float) -> float:
            return round(min(max(value, -_FUNDING_CAP), _FUNDING_CAP), 6)

        current = rate(0.0001 + 0.0003 * mood)
        change = 6.0 * mood + rng.gauss(0.0, 3.0)
        return FundingRate(
            symbol=OKX_SWAP.format(base),
            funding_rate=current,
            predicted_rate=rate(current + rng.gauss(0.0, 0.00005)),
            interval_hours=_FUNDING_INTERVAL / 3_600.0,
            next_funding_time=(math.floor(now / _FUNDING_INTERVAL) + 1) * _FUNDING_INTERVAL,
            open_interest_usd=round(1.5e9 * _SIZE.get(base, 0.5) ** 2 * math.exp(rng.gauss(0.0, 0.1)), -5),
            oi_change_pct=round(min(max(change, -_OI_CHANGE_CAP), _OI_CHANGE_CAP), 2),
        )
