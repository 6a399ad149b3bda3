"""A broker outage costs a few log lines, not one per reconnect attempt.

A real nats-server is stopped and started again on the same port. While it is
away, nats-py retries every `reconnect_wait` and reports each failure to the
bus; the bus logs one line per state change (disconnected, reconnected,
closed) and in between at most one "still disconnected" summary per
`outage_summary_every` seconds (30 s in production, shortened here).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets

import pytest

from runtime import NatsBus
from runtime.nats_bus import OUTAGE_SUMMARY_EVERY
from runtime.testing import wait_until
from sniper.embedded import EmbeddedNats

pytestmark = pytest.mark.nats

LOGGER = "sniper.bus.nats"
EVERY = 0.3


def lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= level]


def matching(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in lines(caplog) if r.getMessage().startswith(start)]


def test_summary_interval_is_thirty_seconds() -> None:
    assert OUTAGE_SUMMARY_EVERY == 30.0


async def test_outage_logs_each_state_change_once_and_bounded_summaries(caplog: pytest.LogCaptureFixture) -> None:
    """Down, many failed attempts, up: one 'disconnected', one 'reconnected', summaries at most every EVERY s."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    secret = f"pw-{secrets.token_hex(8)}"
    first = EmbeddedNats()
    url = await first.start()
    port = int(url.rsplit(":", 1)[1])
    bus = await NatsBus.connect(url.replace("nats://", f"nats://sniper:{secret}@"), reconnect_wait=0.02)
    bus.outage_summary_every = EVERY
    loop = asyncio.get_running_loop()
    second = EmbeddedNats(port=port)
    try:
        await first.stop()
        down = loop.time()
        await wait_until(lambda: len(matching(caplog, "still disconnected")) >= 3, timeout=15)
        await second.start()
        await wait_until(lambda: bus.stats.reconnects >= 1, timeout=15)
        elapsed = loop.time() - down
    finally:
        await bus.close()
        await second.stop()
        await first.stop()

    (disconnected,) = matching(caplog, "disconnected from NATS nats://sniper:***@127.0.0.1:")
    (reconnected,) = matching(caplog, "reconnected to NATS")
    summaries = matching(caplog, "still disconnected")
    found = re.search(r"\((\d+) failed attempts\)", reconnected)
    assert found is not None, reconnected
    attempts = int(found.group(1))
    assert attempts >= 10, "the broker was down for several reconnect attempts"
    assert len(summaries) <= elapsed / EVERY + 1, (len(summaries), elapsed)
    assert len(lines(caplog)) <= len(summaries) + 4 < attempts, [r.getMessage() for r in lines(caplog)]
    assert all(re.search(r"for \d+ s, \d+ failed attempts \(last error: ", s) for s in summaries), summaries
    assert not lines(caplog, logging.ERROR), "an outage is a warning, not an error per attempt"
    assert secret not in caplog.text and "sniper:***@" in disconnected
    assert bus.stats.disconnects == 1 and bus.stats.reconnects == 1


async def test_connection_closed_by_the_client_library_is_one_error(caplog: pytest.LogCaptureFixture) -> None:
    """If nats-py gives up (reconnect attempts exhausted), one line says the connection is closed, and why."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    server = EmbeddedNats()
    url = await server.start()
    bus = await NatsBus.connect(url, reconnect_wait=0.02, max_reconnect_attempts=5)
    try:
        await server.stop()
        await wait_until(lambda: bus.connection.closed, timeout=15)
    finally:
        await bus.close()
        await server.stop()
    errors = [r.getMessage() for r in lines(caplog, logging.ERROR)]
    assert len(errors) == 1 and "closed after" in errors[0] and "failed attempts" in errors[0], errors
    assert len(matching(caplog, "disconnected from NATS")) == 1


async def test_close_by_the_owner_is_quiet(caplog: pytest.LogCaptureFixture, nats_server: EmbeddedNats) -> None:
    """Closing the bus ourselves logs nothing above debug after the 'connected' line."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    bus = await NatsBus.connect(nats_server.url)
    await bus.close()
    assert [r.getMessage() for r in lines(caplog)] == [f"connected to NATS {nats_server.url} as 'sniper'"]
