"""The Alerter: tell people when every core module of an asset is down, not when an optional one is.

The seed's rule: "alert Telegram only when all core modules fail (whale +
heatmap + orderbook), not on ETF 402". The scheduler already judges each cycle
(`Health.state == "hard_fail"` when every enabled core module failed); the
alerter turns those verdicts into alerts the way Alertmanager does:

* **for**: ``core_down{asset}`` fires once an asset has been hard-failing for
  `AlertPolicy.alert_for` seconds (one bad cycle is noise);
* **group_wait**: what starts firing within `group_wait` of the first goes out
  in one notification (three assets down together: one message);
* **repeat**: an unresolved alert is sent again every `repeat` seconds;
* **resolved**: when a core module answers again, one resolved notification;
* **inhibition**: when every asset is down and every core failure is a
  connection failure (`CONNECTION_REASONS`), one ``backend_down`` replaces the
  per-asset alerts;
* **notification log**: every notification is claimed compare-and-set in the
  ``alerts`` bucket (`AlertLog`), so a restarted alerter neither repeats nor
  forgets, and of two alerters exactly one sends.

Every alert is also published on ``alert.<name>`` (firing, resolved) for
other bots. Notifiers (Telegram, Alertmanager, the log) get batches; they
must queue and return at once, so a slow or dead notifier never slows the
pipeline. ``mute(seconds)`` silences notifiers (not the NATS events).

Several processes may run an alerter: every one follows health and signals,
only the one holding the lease (`runtime.lease`) evaluates, publishes (its
term as each alert's `fence`) and notifies. One that takes over first reads
the notification log again, so it goes on with the incidents already told.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from messages import DecodeError, Health, Signal, decode, encode
from messages.alerts import Alert, AlertCommand, AlertLog, AlertName, AlertReply, Mute, fingerprint
from messages.modules import DEFAULT_CORE
from messages.subjects import ALERTS_BUCKET
from runtime.actor import CONTROL_PENDING, CONTROL_RATE, Actor, Sub, subs_for
from runtime.bus import Envelope
from runtime.errors import BusError
from runtime.kv import KeyValue, KVConflict
from runtime.lease import Leadership

from .metrics import metrics_of

#: The notification log's key that holds the mute (fingerprints are 16 hex digits: no clash).
MUTE_KEY = "mute"
#: Failure reasons that mean "could not talk to the backend at all".
CONNECTION_REASONS = frozenset({"unreachable", "timeout"})
#: Reasons that say nothing about the backend (no call was made).
_NOT_CALLED = frozenset({"circuit_open", "disabled"})


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """Alertmanager's timings, with sniper's defaults (``--alert-for``, ``--alert-group-wait``, ``--alert-repeat``)."""

    alert_for: float = 60.0
    group_wait: float = 10.0
    repeat: float = 4 * 3600.0
    evaluate_every: float = 1.0


class Notifier(Protocol):
    """Where notifications go. `notify` must return quickly (queue, don't send inline)."""

    name: str

    async def notify(self, alerts: Sequence[Alert]) -> None: ...


@dataclass(slots=True)
class _Active:
    alert: Alert  # its firing form
    notified_at: float | None = None
    inhibited: bool = False


@dataclass(slots=True)
class _Outbox:
    firing: dict[str, Alert] = field(default_factory=dict)
    resolved: dict[str, Alert] = field(default_factory=dict)
    due: float | None = None  # when the current group goes out


class Alerter(Actor):
    """Evaluates asset health every `evaluate_every` seconds; publishes alerts and hands notifications out."""

    name = "alerter"

    def __init__(
        self,
        assets: Iterable[str],
        *,
        core: Iterable[str] = DEFAULT_CORE,
        policy: AlertPolicy | None = None,
        notifiers: Sequence[Notifier] = (),
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.assets = tuple(dict.fromkeys(assets))
        self.core = frozenset(core)
        self.policy = policy or AlertPolicy()
        self.notifiers = tuple(notifiers)
        self.muted_until = 0.0
        self._down_since: dict[str, float] = {}
        self._reasons: dict[str, dict[str, str]] = {}  # asset -> module -> last reason of a real call
        self._active: dict[str, _Active] = {}
        self._outbox = _Outbox()
        self.notifications_sent = 0
        self.leadership: Leadership = Leadership(self.name)

    def subscriptions(self) -> Iterable[Sub]:
        s = self.subjects
        return [
            *subs_for(s.health_for(self.assets), Health, self.on_health),
            *subs_for(s.signals_for(self.assets), Signal, self.on_signal),
            # No queue group: every alerter applies a mute; the requester takes the first answer.
            Sub(
                s.command("alerts"),
                AlertCommand,
                self.on_command,
                on_bad=self.on_bad_command,
                pending=CONTROL_PENDING,
                max_rate=CONTROL_RATE,
            ),
        ]

    # -- inputs -------------------------------------------------------------------
    async def on_health(self, health: Health) -> None:
        if health.asset not in self.assets:
            return
        if health.state == "hard_fail":
            self._down_since.setdefault(health.asset, health.ts)
        else:
            self._down_since.pop(health.asset, None)

    async def on_signal(self, signal: Signal) -> None:
        if signal.asset not in self.assets:
            return
        reasons = self._reasons.setdefault(signal.asset, {})
        for module, status in signal.modules.items():
            if module not in self.core:
                continue
            if status.status == "ok":
                reasons.pop(module, None)
            elif status.reason and status.reason not in _NOT_CALLED:
                reasons[module] = status.reason

    async def on_alert(self, alert: Alert) -> None:
        """Alerts of any alerter: their terms (a lease taken later is above every one of them)."""
        self.leadership.observe(alert.fence)

    # -- the loop -------------------------------------------------------------------
    async def on_start(self) -> None:
        self._outbox = _Outbox()
        await self._restore()

    async def run(self) -> None:
        leader = Sub(self.subjects.alert_all(), Alert, self.on_alert, pending=CONTROL_PENDING, max_rate=CONTROL_RATE)
        await self.leadership.hold(self, self._evaluate_while_leading, follow=[leader])

    async def _evaluate_while_leading(self, term: int) -> None:
        if self.leadership.elections > 1:  # a takeover: the log says what the last leader told
            await self._restore()
        while True:
            await self.evaluate()
            await self.clock.sleep(self.policy.evaluate_every)

    async def evaluate(self) -> None:
        """Compare what should fire with what does; publish changes; send what is due."""
        now = self.clock.now()
        desired = self._desired(now)
        for fp, alert in desired.items():
            if fp not in self._active:
                await self._start(fp, alert)
        for fp in [fp for fp in self._active if fp not in desired]:
            await self._resolve(fp, now)
        backend_down = any(a.alert.name == "backend_down" for a in self._active.values())
        for active in self._active.values():
            active.inhibited = backend_down and active.alert.name == "core_down"
        await self._send_due(now)
        metrics = metrics_of(self.ctx)
        for name in ("core_down", "backend_down"):
            firing = sum(1 for a in self._active.values() if a.alert.name == name and not a.inhibited)
            metrics.alerts_firing.labels(name).set(firing)

    def _desired(self, now: float) -> dict[str, Alert]:
        """The alerts whose condition holds now, by fingerprint."""
        down = {a: t for a, t in self._down_since.items() if now - t >= self.policy.alert_for}
        wanted = {}
        for asset, since in down.items():
            alert = self._alert("core_down", {"asset": asset}, since, now, f"{asset}: every core module is failing")
            wanted[alert.fingerprint] = alert
        failing = [r for a in down for r in self._reasons.get(a, {}).values()]
        if down and set(down) == set(self.assets) and failing and set(failing) <= CONNECTION_REASONS:
            since = min(down.values())
            alert = self._alert("backend_down", {}, since, now, "the backend is unreachable: every asset is down")
            wanted[alert.fingerprint] = alert
        return wanted

    def _alert(self, name: AlertName, labels: dict[str, str], since: float, now: float, summary: str) -> Alert:
        labels = {"alertname": name, **labels}
        return Alert(
            name=name,
            state="firing",
            labels=labels,
            fingerprint=fingerprint(labels),
            starts_at=since,
            summary=summary,
            ts=now,
            fence=self.leadership.fence,
        )

    async def _start(self, fp: str, alert: Alert) -> None:
        self._active[fp] = _Active(alert)
        self.log.warning("alert_firing", alert=alert.name, fingerprint=fp, **alert.labels)
        await self.publish(self.subjects.alert(alert.name), alert)

    async def _resolve(self, fp: str, now: float) -> None:
        active = self._active.pop(fp)
        resolved = Alert(
            name=active.alert.name,
            state="resolved",
            labels=active.alert.labels,
            fingerprint=fp,
            starts_at=active.alert.starts_at,
            ends_at=now,
            summary=active.alert.summary,
            ts=now,
            fence=self.leadership.fence,
        )
        self.log.info("alert_resolved", alert=resolved.name, fingerprint=fp, **resolved.labels)
        await self.publish(self.subjects.alert(resolved.name), resolved)
        self._outbox.firing.pop(fp, None)
        if active.notified_at is not None:
            self._outbox.resolved[fp] = resolved
            self._outbox.due = self._outbox.due or now + self.policy.group_wait
        else:  # nobody was told it fired: nothing to take back (the log forgets it)
            await self._forget(fp)

    # -- notifications -----------------------------------------------------------------
    async def _send_due(self, now: float) -> None:
        for fp, active in self._active.items():
            if active.inhibited or fp in self._outbox.firing:
                continue
            if active.notified_at is None or now - active.notified_at >= self.policy.repeat:
                self._outbox.firing[fp] = active.alert
                self._outbox.due = self._outbox.due or now + (
                    self.policy.group_wait if active.notified_at is None else 0.0
                )
        if self._outbox.due is None or now < self._outbox.due or now < self.muted_until:
            return
        batch = [a for fp, a in self._outbox.firing.items() if await self._claim(fp, a, now)]
        batch += [a for fp, a in self._outbox.resolved.items() if await self._claim(fp, a, now)]
        self._outbox = _Outbox()
        if batch:
            await self._hand_out(batch)

    async def _hand_out(self, batch: list[Alert]) -> None:
        self.notifications_sent += 1
        self.log.info("alert_notification", alerts=len(batch), firing=sum(a.state == "firing" for a in batch))
        for notifier in self.notifiers:
            try:
                await notifier.notify(batch)
            except Exception as exc:  # a notifier's bug must not stop alerting through the others
                self.log.error("notifier_failed", notifier=notifier.name, error=repr(exc))

    async def _store(self) -> KeyValue | None:
        try:
            return await self.bucket(ALERTS_BUCKET)
        except BusError as exc:
            self.log.warning("alert_log_unavailable", error=str(exc))
            return None

    async def _claim(self, fp: str, alert: Alert, now: float) -> bool:
        """Record this notification compare-and-set; False if another alerter already sent it."""
        store = await self._store()
        active = self._active.get(fp)
        if store is None:  # no shared log: send (a duplicate beats silence)
            if active is not None:
                active.notified_at = now
            return True
        entry = await store.get(fp)
        log = _decode_log(entry.value if entry else None)
        if log is not None and log.alert.starts_at == alert.starts_at:
            if alert.state == "resolved" and log.resolved_notified:
                return False
            if alert.state == "firing" and log.notified_at is not None and now - log.notified_at < self.policy.repeat:
                if active is not None:
                    active.notified_at = log.notified_at  # told already (another alerter, or before a restart)
                return False
        record = AlertLog(
            alert=alert,
            notified_at=now if alert.state == "firing" else (log.notified_at if log else None),
            notifications=(log.notifications if log else 0) + 1,
            resolved_notified=alert.state == "resolved",
        )
        try:
            await store.update(fp, encode(record), last=entry.revision if entry else 0)
        except KVConflict:
            return False
        except BusError as exc:
            self.log.warning("alert_log_unavailable", error=str(exc))
        if active is not None and alert.state == "firing":
            active.notified_at = now
        return True

    async def _forget(self, fp: str) -> None:
        store = await self._store()
        if store is not None:
            with contextlib.suppress(BusError):
                await store.delete(fp)

    async def _restore(self) -> None:
        """Take up the incidents the log says were notified and not resolved (after a restart)."""
        store = await self._store()
        if store is None:
            return
        try:
            entries = await store.entries()
        except BusError as exc:
            self.log.warning("alert_log_unavailable", error=str(exc))
            return
        mute = entries.pop(MUTE_KEY, None)
        if mute is not None and mute.value:
            with contextlib.suppress(DecodeError):
                self.muted_until = max(self.muted_until, decode(mute.value, Mute).until)
        for fp, entry in entries.items():
            log = _decode_log(entry.value)
            if log is None or log.resolved_notified or log.alert.fingerprint != fp:
                continue
            asset = log.alert.labels.get("asset")
            if log.alert.name == "core_down" and asset in self.assets and asset is not None:
                self._down_since.setdefault(asset, log.alert.starts_at)
                self._active[fp] = _Active(log.alert, notified_at=log.notified_at)
            elif log.alert.name == "backend_down":
                self._active[fp] = _Active(log.alert, notified_at=log.notified_at)
        if self._active:
            self.log.info("alerts_restored", count=len(self._active))

    # -- operator control ---------------------------------------------------------------
    def mute(self, seconds: float) -> float:
        """Silence notifiers for `seconds` (NATS alerts still go out); returns when it ends."""
        self.muted_until = self.clock.now() + seconds
        return self.muted_until

    async def on_command(self, cmd: AlertCommand, env: Envelope) -> None:
        match cmd.action:
            case "mute":
                until = self.mute(cmd.seconds or 3600.0)
                await self._keep_mute(until)
                self.log.info("alerts_muted", until=until)
            case "unmute":
                self.muted_until = 0.0
                await self._keep_mute(0.0)
                self.log.info("alerts_unmuted")
        firing = [a.alert for a in self._active.values()][:64]
        await self.reply(env, AlertReply(ok=True, firing=firing, muted_until=self.muted_until))

    async def on_bad_command(self, err: DecodeError, env: Envelope) -> None:
        await self.reply(env, AlertReply(ok=False, error=f"bad command: {err.reason}"))

    async def _keep_mute(self, until: float) -> None:
        store = await self._store()
        if store is not None:
            with contextlib.suppress(BusError):
                await store.put(MUTE_KEY, encode(Mute(until=until)))


def _decode_log(value: bytes | None) -> AlertLog | None:
    if not value:
        return None
    try:
        return decode(value, AlertLog)
    except DecodeError:
        return None
