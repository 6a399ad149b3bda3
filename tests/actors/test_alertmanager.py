"""AlertmanagerNotifier: the v2 payload, and the queue, backoff and drops.

The payload is checked over real HTTP against the fake Alertmanager on
loopback (SystemClock); retries, drops and the deadline in virtual time
through the fake's in-memory transport (the same request handling, no sockets).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from actors.alerter import Notifier
from actors.alertmanager import AlertmanagerNotifier, postable, rfc3339
from messages.alerts import Alert, fingerprint
from runtime.clock import SystemClock, VirtualClock
from runtime.logs import JsonFormatter
from runtime.testing import wait_until
from tests.fakes import Reply
from tests.fakes.alertmanager import FakeAlertmanager

EPOCH = VirtualClock.EPOCH


def alert(asset: str = "SOL", *, state: str = "firing", ends_at: float | None = None) -> Alert:
    labels = {"alertname": "core_down", "asset": asset}
    return Alert(
        name="core_down",
        state=state,  # type: ignore[arg-type]
        labels=labels,
        fingerprint=fingerprint(labels),
        starts_at=EPOCH,
        ends_at=ends_at,
        summary=f"{asset}: every core module is failing",
        ts=ends_at or EPOCH,
    )


NotifierFactory = Callable[..., AlertmanagerNotifier]


@pytest.fixture
def fake(vclock: VirtualClock) -> FakeAlertmanager:
    """The fake Alertmanager in memory, on the virtual clock."""
    return FakeAlertmanager(clock=vclock)


@pytest.fixture
async def make(fake: FakeAlertmanager, vclock: VirtualClock) -> AsyncIterator[NotifierFactory]:
    """Build notifiers on the in-memory fake (not started); all closed at teardown."""
    made: list[AlertmanagerNotifier] = []

    def factory(url: str = "http://am:9093", **options: Any) -> AlertmanagerNotifier:
        notifier = AlertmanagerNotifier(url, clock=vclock, transport=options.pop("transport", fake.post), **options)
        made.append(notifier)
        return notifier

    yield factory
    for notifier in made:
        await notifier.close()


class TestPayload:
    """Alerts in Alertmanager's postableAlert shape."""

    def test_rfc3339(self) -> None:
        """UTC with milliseconds and a Z."""
        assert rfc3339(EPOCH + 1.5) == "2026-01-01T00:00:01.500Z"

    async def test_payload_over_http(self) -> None:
        """A real POST to /api/v2/alerts: labels, summary, startsAt; endsAt only on the resolved alert."""
        async with (
            FakeAlertmanager() as am,
            AlertmanagerNotifier(
                am.url + "/", clock=SystemClock(), generator_url="http://sniper:9100/status"
            ) as notifier,
        ):
            await notifier.notify([alert("SOL"), alert("ETH", state="resolved", ends_at=EPOCH + 300)])
            await wait_until(lambda: notifier.sent == 1)
        (post,) = am.posts
        assert post.status == 200
        assert post.body == [
            {
                "labels": {"alertname": "core_down", "asset": "SOL"},
                "annotations": {"summary": "SOL: every core module is failing"},
                "startsAt": "2026-01-01T00:00:00.000Z",
                "generatorURL": "http://sniper:9100/status",
            },
            {
                "labels": {"alertname": "core_down", "asset": "ETH"},
                "annotations": {"summary": "ETH: every core module is failing"},
                "startsAt": "2026-01-01T00:00:00.000Z",
                "endsAt": "2026-01-01T00:05:00.000Z",
                "generatorURL": "http://sniper:9100/status",
            },
        ]
        assert notifier.alerts_sent == 2

    def test_firing_ttl_gives_firing_alerts_an_end(self) -> None:
        """With firing_ttl, a firing alert carries endsAt = now + ttl (Alertmanager's resolve_timeout is moot)."""
        item = postable(alert(), firing_ttl=5 * 3600, now=EPOCH + 60)
        assert item["endsAt"] == "2026-01-01T05:01:00.000Z"
        assert "endsAt" not in postable(alert(), now=EPOCH)


class TestAlertmanagerNotifier:
    """Queue, backoff and drops in virtual time."""

    async def test_errors_are_retried_with_backoff(self, fake: FakeAlertmanager, make: NotifierFactory) -> None:
        """A 503, a dropped connection, then 200: attempts 1 s and then 2 s apart, one batch sent."""
        notifier = make()
        await notifier.start()
        fake.script.push(Reply(503), Reply.dropped())
        await notifier.notify([alert()])
        await wait_until(lambda: notifier.sent == 1)
        times = [p.at - fake.posts[0].at for p in fake.posts]
        assert times == pytest.approx([0.0, 1.0, 3.0])
        assert [p.status for p in fake.posts] == [503, None, 200]
        assert (notifier.retries, len(fake.alerts)) == (2, 1)

    async def test_network_failure_drops_after_max_attempts_with_a_log_line(
        self, fake: FakeAlertmanager, make: NotifierFactory, vclock: VirtualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Alertmanager unreachable: max_attempts tries, then one error line; notify() never blocks or raises."""
        notifier = make(max_attempts=3)
        await notifier.start()
        fake.script.default = Reply.dropped()
        with caplog.at_level(logging.INFO, logger="sniper"):
            before = vclock.monotonic()
            await notifier.notify([alert()])
            assert vclock.monotonic() == before
            await wait_until(lambda: notifier.dropped_failed == 1)
        assert len(fake.posts) == 3
        assert [r.getMessage() for r in caplog.records].count("alertmanager_dropped") == 1

    async def test_a_refused_payload_is_dropped_at_once(
        self, fake: FakeAlertmanager, make: NotifierFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A 400 is never retried: one attempt, counted, logged."""
        notifier = make()
        await notifier.start()
        fake.script.push(Reply(400, "bad alert"))
        with caplog.at_level(logging.INFO, logger="sniper"):
            await notifier.notify([alert()])
            await wait_until(lambda: notifier.dropped_rejected == 1)
        assert len(fake.posts) == 1 and notifier.retries == 0
        assert "alertmanager_rejected" in [r.getMessage() for r in caplog.records]

    async def test_queue_full_drops_the_oldest(self, fake: FakeAlertmanager, make: NotifierFactory) -> None:
        """With room for 2, four batches leave the newest two."""
        notifier = make(queue_size=2)
        for asset in "ABCD":
            await notifier.notify([alert(asset)])
        assert notifier.dropped_full == 2
        await notifier.start()
        await wait_until(lambda: notifier.sent == 2)
        assert [a["labels"]["asset"] for a in fake.alerts] == ["C", "D"]

    async def test_stale_batches_are_dropped(
        self, fake: FakeAlertmanager, make: NotifierFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A batch still failing past the deadline is dropped with a log line, not posted an hour late."""
        notifier = make(deadline=10.0, max_attempts=100)
        await notifier.start()
        fake.script.default = Reply(502)
        with caplog.at_level(logging.WARNING, logger="sniper"):
            await notifier.notify([alert()])
            await wait_until(lambda: notifier.dropped_stale == 1)
        assert [p.at - fake.posts[0].at for p in fake.posts] == pytest.approx([0.0, 1.0, 3.0, 7.0])
        assert "alertmanager_stale_dropped" in [r.getMessage() for r in caplog.records]

    async def test_credentials_in_the_url_are_never_logged(
        self, make: NotifierFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A password in the URL stays out of logs, even when an error message carries the URL."""

        async def leaky(url: str, payload: Any) -> tuple[int, bytes]:
            raise aiohttp.ClientConnectionError(f"Cannot connect to {url}")

        notifier = make("http://sniper:s3cr3t-pw@am:9093", transport=leaky, max_attempts=2)
        assert notifier.url == "http://sniper:s3cr3t-pw@am:9093/api/v2/alerts"
        with caplog.at_level(logging.DEBUG, logger="sniper"):
            await notifier.start()
            await notifier.notify([alert()])
            await wait_until(lambda: notifier.dropped_failed == 1)
        lines = [JsonFormatter().format(r) for r in caplog.records]
        assert lines and not [line for line in lines if "s3cr3t-pw" in line]
        assert "s3cr3t-pw" not in repr(notifier)

    def test_fits_the_alerters_notifier_protocol(self, vclock: VirtualClock) -> None:
        """An AlertmanagerNotifier is a Notifier (mypy checks the assignment); the path is appended to the URL."""
        notifier: Notifier = AlertmanagerNotifier("https://am.example/prefix/", clock=vclock)
        assert notifier.name == "alertmanager"
        assert isinstance(notifier, AlertmanagerNotifier) and notifier.url == "https://am.example/prefix/api/v2/alerts"

    @pytest.mark.parametrize("url", ["am:9093", "ftp://am", "http://", "http://am?x=1"])
    def test_bad_url_is_refused(self, url: str, vclock: VirtualClock) -> None:
        """Only http(s) URLs with a host."""
        with pytest.raises(ValueError, match="bad Alertmanager URL"):
            AlertmanagerNotifier(url, clock=vclock)

    async def test_close_drains_and_notify_after_close_is_harmless(
        self, fake: FakeAlertmanager, make: NotifierFactory
    ) -> None:
        """close(drain=...) lets the queue go out; later notify() calls return quietly."""
        notifier = make()
        await notifier.start()
        await notifier.notify([alert("A")])
        await notifier.notify([alert("B")])
        await notifier.close(drain=10.0)
        assert notifier.sent == 2
        await asyncio.wait_for(notifier.notify([alert("C")]), 1)
        assert len(fake.posts) == 2
