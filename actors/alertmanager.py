"""Alerts to a Prometheus Alertmanager: ``POST <url>/api/v2/alerts``, queued and retried.

`AlertmanagerNotifier` is a `actors.alerter.Notifier`: `notify` turns the
batch into Alertmanager's postable alerts and queues it; one sender task posts
it. Each alert becomes::

    {"labels": {"alertname": "core_down", "asset": "SOL"},
     "annotations": {"summary": "SOL: every core module is failing"},
     "startsAt": "2026-01-01T00:00:00.000Z",
     "endsAt": "2026-01-01T00:05:00.000Z",      # resolved alerts (and firing ones with firing_ttl)
     "generatorURL": "http://..."}               # when generator_url is given

Alertmanager resolves an alert by itself `resolve_timeout` (default 5 min)
after the last post of it when no ``endsAt`` is given, and sniper's Alerter
re-sends a firing alert only every ``--alert-repeat`` (4 h): so give
``firing_ttl`` (e.g. the repeat interval plus a margin) to have firing alerts
carry ``endsAt = now + firing_ttl``, or set Alertmanager's resolve_timeout
above the repeat interval.

Failures (network, timeouts, 429 and 5xx) are retried with exponential
backoff (1, 2, 4 ... s, capped at 60) up to `max_attempts` attempts, then the
batch is dropped with a log line; another 4xx (a payload Alertmanager
refuses) is dropped at once. The queue holds `queue_size` batches (the oldest
goes when full) and a batch older than `deadline` when its turn comes is
dropped. Credentials in the URL (``http://user:pass@host``) are never logged.

Lifecycle (the wiring): ``await notifier.start()`` (or ``async with``), and
``await notifier.close()`` on shutdown (``close(drain=5)`` to let queued
batches go first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from messages.alerts import Alert
from runtime.clock import Clock
from runtime.logs import get_logger

from ._outbox import NETWORK_ERRORS, JsonPost, Outbox, backoff_delay


def rfc3339(ts: float) -> str:
    """``2026-01-01T00:00:00.000Z``: a timestamp as Alertmanager wants it."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def postable(
    alert: Alert, *, generator_url: str | None = None, firing_ttl: float | None = None, now: float
) -> dict[str, Any]:
    """One alert in Alertmanager's ``postableAlert`` shape (resolved ones carry ``endsAt``)."""
    item: dict[str, Any] = {
        "labels": {"alertname": alert.name, **alert.labels},
        "annotations": {"summary": alert.summary} if alert.summary else {},
        "startsAt": rfc3339(alert.starts_at),
    }
    if alert.state == "resolved":
        item["endsAt"] = rfc3339(alert.ends_at if alert.ends_at is not None else alert.ts)
    elif firing_ttl is not None:
        item["endsAt"] = rfc3339(now + firing_ttl)
    if generator_url:
        item["generatorURL"] = generator_url
    return item


@dataclass(slots=True, eq=False)
class _Batch:
    alerts: list[dict[str, Any]]
    enqueued_at: float
    attempts: int = 0


class AlertmanagerNotifier(Outbox[_Batch]):
    """Posts alert batches to Alertmanager's v2 API (see the module doc).

    Counters: `sent` (batches), `alerts_sent`, `dropped_full`, `dropped_stale`,
    `dropped_failed` (retries exhausted), `dropped_rejected` (4xx), `retries`.
    """

    kind = "alertmanager"
    mask = "<password>"

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        session: aiohttp.ClientSession | None = None,
        transport: JsonPost | None = None,
        queue_size: int = 100,
        deadline: float = 3600.0,
        max_attempts: int = 8,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        request_timeout: float = 15.0,
        generator_url: str | None = None,
        firing_ttl: float | None = None,
        name: str = "alertmanager",
    ) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(  # the URL itself is not echoed: it may carry a password
                f"bad Alertmanager URL (scheme {parts.scheme!r}, host {parts.hostname!r}):"
                " expected http(s)://host[:port]"
            )
        if parts.query or parts.fragment:
            raise ValueError("bad Alertmanager URL: expected no query or fragment")
        path = parts.path.rstrip("/") + "/api/v2/alerts"
        self.url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        self.safe_url = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], path, "", ""))  # for logs
        super().__init__(
            name=name,
            clock=clock,
            log=get_logger("alertmanager", notifier=name, url=self.safe_url),
            secrets=(parts.password or "", unquote(parts.password or "")),
            session=session,
            transport=transport,
            queue_size=queue_size,
            deadline=deadline,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            request_timeout=request_timeout,
        )
        self.generator_url = generator_url
        self.firing_ttl = firing_ttl
        self.alerts_sent = 0

    def __repr__(self) -> str:
        return f"AlertmanagerNotifier(name={self.name!r}, url={self.safe_url!r})"

    def counters(self) -> dict[str, int]:
        """Every counter by name (for metrics)."""
        return {
            "sent": self.sent,
            "alerts_sent": self.alerts_sent,
            "dropped_full": self.dropped_full,
            "dropped_stale": self.dropped_stale,
            "dropped_failed": self.dropped_failed,
            "dropped_rejected": self.dropped_rejected,
            "retries": self.retries,
        }

    # -- Notifier -----------------------------------------------------------------------------------------------
    async def notify(self, alerts: Sequence[Alert]) -> None:
        """Queue the batch as one POST and return at once (never raises)."""
        try:
            if not alerts:
                return
            if self._closed:
                self.log.warning("alertmanager_closed_dropped", alerts=len(alerts))
                return
            now = self.clock.now()
            items = [postable(a, generator_url=self.generator_url, firing_ttl=self.firing_ttl, now=now) for a in alerts]
            for _ in self._enqueue(_Batch(items, self.clock.monotonic())):
                self.log.warning("alertmanager_queue_full_dropped", queue_size=self.queue_size)
        except Exception as exc:  # a bug here must not reach the alerter
            self.log.error("alertmanager_notify_failed", error=self.redact(repr(exc)))

    # -- sending ----------------------------------------------------------------------------------------------------
    async def post(self, alerts: list[dict[str, Any]]) -> tuple[int | None, str]:
        """One POST: (HTTP status, short detail); status None when nothing answered. Never raises."""
        try:
            status, body = await self.clock.timeout(self.request_timeout, self._post(self.url, alerts))
        except asyncio.CancelledError:
            raise
        except NETWORK_ERRORS as exc:
            return None, self.redact(f"{type(exc).__name__}: {exc}")[:300]
        except Exception as exc:
            return None, self.redact(repr(exc))[:300]
        return status, self.redact(body[:300].decode("utf-8", "replace"))

    async def _deliver(self, batch: _Batch) -> None:
        while True:
            age = self.clock.monotonic() - batch.enqueued_at
            if age > self.deadline:
                self.dropped_stale += 1
                self.log.warning("alertmanager_stale_dropped", alerts=len(batch.alerts), age=round(age, 3))
                return
            status, detail = await self.post(batch.alerts)
            if status is not None and 200 <= status < 300:
                self.sent += 1
                self.alerts_sent += len(batch.alerts)
                self.log.info("alertmanager_sent", alerts=len(batch.alerts))
                return
            if status is not None and status < 500 and status != 429:
                self.dropped_rejected += 1
                self.log.error("alertmanager_rejected", status=status, detail=detail, alerts=len(batch.alerts))
                return
            batch.attempts += 1
            if batch.attempts >= self.max_attempts:
                self.dropped_failed += 1
                self.log.error(
                    "alertmanager_dropped",
                    attempts=batch.attempts,
                    status=status,
                    error=detail,
                    alerts=len(batch.alerts),
                )
                return
            delay = backoff_delay(batch.attempts, base=self.backoff_base, cap=self.backoff_cap)
            self.retries += 1
            self.log.warning("alertmanager_retry", attempt=batch.attempts, delay=delay, status=status, error=detail)
            await self.clock.sleep(delay)
