"""Where alert notifications go, from the settings: Telegram, Alertmanager, or nowhere but the log.

`open_notifiers` starts the notifiers `--telegram-token/--telegram-chat` and
`--alertmanager` ask for and stops them (giving queued messages a few seconds)
when the pipeline stops. `alert_test` is ``sniper alert test``: one message
through each configured sender, and what each answered.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from actors.alerter import Notifier
from actors.alertmanager import AlertmanagerNotifier
from actors.telegram import TelegramNotifier
from messages import Alert
from messages.alerts import fingerprint
from runtime.clock import Clock, SystemClock

from .config import AlertSettings

#: How long queued notifications may still go out while the pipeline stops.
DRAIN_SECONDS = 0.5
#: Alertmanager resolves an alert nobody re-posted within resolve_timeout; ours repeat every
#: `--alert-repeat`, so a firing alert carries an endsAt this much beyond it.
ALERTMANAGER_MARGIN = 300.0


@dataclass
class Notifiers:
    """The started notifiers, and the Telegram client the command poller shares."""

    all: list[Notifier] = field(default_factory=list)
    telegram: TelegramNotifier | None = None


@contextlib.asynccontextmanager
async def open_notifiers(alert: AlertSettings, clock: Clock) -> AsyncIterator[Notifiers]:
    found = Notifiers()
    async with contextlib.AsyncExitStack() as stack:
        if alert.telegram_token and alert.telegram_chats:
            telegram = TelegramNotifier(alert.telegram_token, alert.telegram_chats, clock=clock, api=alert.telegram_api)
            await telegram.start()
            stack.push_async_callback(telegram.close, drain=DRAIN_SECONDS)
            found.all.append(telegram)
            found.telegram = telegram
        if alert.alertmanager:
            manager = AlertmanagerNotifier(
                alert.alertmanager, clock=clock, firing_ttl=alert.repeat + ALERTMANAGER_MARGIN
            )
            await manager.start()
            stack.push_async_callback(manager.close, drain=DRAIN_SECONDS)
            found.all.append(manager)
        yield found


def test_alert(now: float) -> Alert:
    labels = {"alertname": "test"}
    return Alert(
        name="test",
        state="firing",
        labels=labels,
        fingerprint=fingerprint(labels),
        starts_at=now,
        summary="sniper alert test: if you read this, alerts reach you",
        ts=now,
    )


async def alert_test(alert: AlertSettings) -> int:
    """Send one test notification through each configured sender and say what happened (exit 1 if any failed)."""
    clock = SystemClock()
    if not (alert.telegram_token and alert.telegram_chats) and not alert.alertmanager:
        print(
            "sniper: alert test: no sender configured (--telegram-token and --telegram-chat, or --alertmanager); "
            "alerts would be logged and published on NATS only",
            file=sys.stderr,
        )
        return 1
    failed = 0
    if alert.telegram_token and alert.telegram_chats:
        telegram = TelegramNotifier(alert.telegram_token, alert.telegram_chats, clock=clock, api=alert.telegram_api)
        try:
            for chat in telegram.chats:
                result = await telegram.send_test(test_alert(clock.now()).summary, chat=chat)
                detail = f"message {result.message_id}" if result.ok else result.description
                if result.retry_after:
                    detail += f" (retry after {result.retry_after:g} s)"
                print(f"telegram {chat}: {'sent' if result.ok else 'FAILED'}: {detail}")
                failed += not result.ok
        finally:
            await telegram.close()
    if alert.alertmanager:
        manager = AlertmanagerNotifier(alert.alertmanager, clock=clock, max_attempts=1)
        try:
            await manager.start()
            await manager.notify([test_alert(clock.now())])
            await manager.close(drain=10.0)
        finally:
            await manager.close()
        ok = manager.sent == 1
        print(f"alertmanager {manager.redact(alert.alertmanager)}: {'sent' if ok else 'FAILED'}")
        failed += not ok
    return 1 if failed else 0
