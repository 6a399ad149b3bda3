"""StatusKeeper: the read-only ``cmd.status`` query, per configured asset.

What an operator or a bot asks first when something looks wrong: for each
configured asset, its last signal (cycle, time, direction, score, confidence
and every module's status) and the breakers holding it back, and the value of
every feature flag. Served on ``cmd.status`` in queue group ``status`` (one
process answers), an endpoint of the process's micro service (``$SRV.INFO``)::

    {}                 -> {"ok": true, "ts": ..., "assets": {"SOL": {"signal": {...}, "circuits": [...]}},
                           "flags": {"BIAS": true, "ETF": false, ...}, "omitted": 0}
    {"asset": "SOL"}   -> the same for SOL alone
    {"asset": "DOGE"}  -> {"ok": false, "error": "unknown asset 'DOGE'; configured: SOL"}

It changes nothing and learns what any bot could: signals on
``signal.<ASSET>``, breaker transitions on ``circuit.<module>`` (and the
circuits bucket at start), flags from the flags bucket (the one truth, watched
as the flag keeper does: the last valid value of each flag stands, a bad one
is ignored). Only configured assets and modules are kept: a signal for another
asset, naming an unknown module or dated off this clock, and a breaker state
the circuit checks refuse (`circuit_problem`), are counted as bad messages and
forgotten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from messages import CircuitState, Signal, StatusQuery, StatusReply, decode, encode
from messages._base import MAX_ERROR, MAX_STATUS_ASSETS
from messages.control import AssetStatus
from messages.errors import DecodeError
from messages.service import endpoint_metadata, reply_error
from messages.subjects import CIRCUITS_BUCKET, FLAGS_BUCKET
from runtime.actor import CONTROL_PENDING, CONTROL_RATE, Actor, Sub, subs_for
from runtime.bus import Envelope
from runtime.errors import BusError
from runtime.kv import KVEntry
from runtime.micro import Endpoint

from .circuit import ALL, CircuitPolicy, CircuitView, circuit_problem, kv_key
from .flags import flag_name, read_flag

#: Bytes a status reply leaves free under the broker's message limit (headers, the reply subject).
REPLY_MARGIN = 4096


class StatusKeeper(Actor):
    """Follows signals, breakers and flags for the configured assets and modules; answers ``cmd.status``."""

    name = "status"

    def __init__(
        self,
        *,
        assets: Iterable[str],
        modules: Iterable[str],
        flags: Mapping[str, bool],
        max_hold: float | None = None,
        name: str | None = None,
    ) -> None:
        """`flags` maps each module (and fallback venue) to its flag's default, as the flag keeper takes them."""
        super().__init__(name=name)
        self.assets = frozenset(assets)
        self.modules = frozenset(modules)
        #: Longest a breaker may stay open under the policy: a longer hold is forged or stale.
        self.max_hold = CircuitPolicy().max_hold if max_hold is None else max_hold
        self.defaults = {flag_name(module): enabled for module, enabled in flags.items()}
        #: The last valid value of each flag, and the bucket revision it came from.
        self.flags: dict[str, bool] = dict(self.defaults)
        self._revisions: dict[str, int] = {}
        #: The newest signal of each configured asset.
        self.signals: dict[str, Signal] = {}
        #: The breakers of each configured module, as a fetcher sees them (resets clear every scope).
        self.circuits = {module: CircuitView(module) for module in sorted(self.modules)}

    def subscriptions(self) -> Iterable[Sub]:
        s = self.subjects
        breakers = [
            Sub(
                s.circuit(module),
                CircuitState,
                self.on_circuit,
                accept=self.accept_circuit,
                pending=CONTROL_PENDING,
                max_rate=CONTROL_RATE,
            )
            for module in self.circuits
        ]
        return [
            *subs_for(s.signals_for(self.assets), Signal, self.on_signal, accept=self.accept_signal),
            *breakers,
            Sub(
                s.command("status"),
                StatusQuery,
                self.on_query,
                queue="status",
                on_bad=self.on_bad_query,
                pending=CONTROL_PENDING,
                max_rate=CONTROL_RATE,
                endpoint=Endpoint("status", endpoint_metadata("status"), failed=reply_error),
            ),
        ]

    # -- what is accepted ---------------------------------------------------------
    def accept_signal(self, sig: Signal) -> str | None:
        if sig.asset not in self.assets:
            return f"unknown_asset: {sig.asset} is not configured here"
        unknown = set(sig.modules) - self.modules
        if unknown:
            return f"unknown_module: {sorted(unknown)[:3]} not configured here"
        return self.off_clock(sig.ts, "signal ts")

    def accept_circuit(self, state: CircuitState, *, live: bool = True) -> str | None:
        return circuit_problem(
            state,
            now=self.clock.now(),
            skew=self.ctx.max_clock_skew,
            max_hold=self.max_hold,
            modules=self.modules,
            assets=self.assets,
            live=live,
        )

    # -- following the pipeline ---------------------------------------------------------
    async def on_start(self) -> None:
        """Breakers from the circuits bucket, flags from the flags bucket (watched); each best-effort."""
        try:
            stored = await (await self.bucket(CIRCUITS_BUCKET)).entries()
            self.own(await (await self.bucket(FLAGS_BUCKET)).watch(self.on_flag_entry))
        except BusError as exc:  # events still come; flags stay at their last known values
            self.log.warning("shared_state_unavailable", error=str(exc))
            return
        for entry in stored.values():
            self._restore(entry)

    def _restore(self, entry: KVEntry) -> None:
        try:
            state = decode(entry.value or b"", CircuitState)
        except DecodeError as err:
            self.log.warning("bad_stored_circuit", key=entry.key[:80], reason=err.reason)
            return
        refusal = self.accept_circuit(state, live=False)
        if refusal is None and entry.key != kv_key(state.module, state.scope):
            refusal = f"stored under {entry.key[:80]!r}, not {kv_key(state.module, state.scope)!r}"
        if refusal is not None:
            self.log.warning("bad_stored_circuit", key=entry.key[:80], reason=refusal)
            return
        self.circuits[state.module].update(state)

    async def on_signal(self, sig: Signal) -> None:
        current = self.signals.get(sig.asset)
        if current is None or sig.ts >= current.ts:
            self.signals[sig.asset] = sig

    async def on_circuit(self, state: CircuitState) -> None:
        self.circuits[state.module].update(state)

    async def on_flag_entry(self, entry: KVEntry) -> None:
        """A flag's new value, once per revision; a bad one changes nothing (the flag keeper counts it)."""
        if entry.revision <= self._revisions.get(entry.key, 0):
            return
        read = read_flag(entry, self.defaults)
        if isinstance(read, str):
            self.log.warning("bad_stored_flag", flag=entry.key[:40], reason=read, revision=entry.revision)
            return
        self._revisions[entry.key] = entry.revision
        self.flags[entry.key] = self.defaults[entry.key] if read is None else read.enabled

    # -- the query ------------------------------------------------------------------------
    def asset_status(self, asset: str) -> AssetStatus:
        """`asset`'s last signal and its breakers that are not closed (module-wide ones first)."""
        held = [
            st
            for view in self.circuits.values()
            for st in view.states.values()
            if st.state != "closed" and st.scope in (ALL, asset)
        ]
        held.sort(key=lambda st: (st.module, st.scope != ALL))
        return AssetStatus(signal=self.signals.get(asset), circuits=held)

    def status(self, assets: list[str]) -> StatusReply:
        """The reply for `assets`: at most `MAX_STATUS_ASSETS`, and fewer if the broker could not carry them."""
        shown = assets[:MAX_STATUS_ASSETS]
        while True:
            reply = StatusReply(
                ok=True,
                ts=self.clock.now(),
                assets={asset: self.asset_status(asset) for asset in shown},
                flags=dict(sorted(self.flags.items())),
                omitted=len(assets) - len(shown),
            )
            if len(shown) <= 1 or len(encode(reply)) <= self.bus.max_payload - REPLY_MARGIN:
                return reply
            shown = shown[: len(shown) // 2]

    async def on_query(self, query: StatusQuery, env: Envelope) -> None:
        if query.asset is not None and query.asset not in self.assets:
            known = ", ".join(sorted(self.assets))
            error = f"unknown asset {query.asset!r}; configured: {known}"
            await self.reply(env, StatusReply(ok=False, error=error[:MAX_ERROR]))
            return
        await self.reply(env, self.status([query.asset] if query.asset else sorted(self.assets)))

    async def on_bad_query(self, err: DecodeError, env: Envelope) -> None:
        await self.reply(env, StatusReply(ok=False, error=f"bad query: {err.reason}"[:MAX_ERROR]))
