"""The status page: its files and event stream over HTTP, then the page itself in headless Chromium.

The browser test runs a real pipeline on an embedded nats-server, `LiveState`
and the status routes on loopback, and Debian's ``chromium`` driven by
Playwright (``executable_path``, no browser download). It skips, saying why,
only where the browser or the Playwright package is not installed (``.ci/run``
installs Chromium; Playwright comes with the dev dependencies).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession, ClientTimeout, web

from marketsim import serve
from messages import FlagCommand, FlagReply, ModuleStatus, Signal, Subjects, decode, encode
from runtime import MemoryBus, NatsBus
from runtime.testing import wait_until
from sniper.app import run_pipeline
from sniper.config import Settings
from sniper.embedded import EmbeddedNats
from sniper.gateway.live import LiveState
from sniper.gateway.status import add_status_routes

SUBJECTS = Subjects()
STATIC = Path(__file__).resolve().parents[3] / "sniper" / "gateway" / "static"
#: Debian's chromium (NOTES.md, "Browsers"): these flags keep it off the network and quiet.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Served:
    url: str
    live: LiveState
    bus: Any


@contextlib.asynccontextmanager
async def serve_status(live: LiveState, **options: Any) -> AsyncIterator[str]:
    """The status routes of `live` on a free loopback port; the state is stopped on exit."""
    app = web.Application()
    add_status_routes(app, live, **options)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await live.stop()
        await runner.cleanup()


@pytest.fixture
async def memory() -> AsyncIterator[Served]:
    """The status routes over a memory bus (no stream, no status keeper), real HTTP on loopback."""
    bus = MemoryBus()
    live = LiveState(refresh=3600)
    await live.start(bus, SUBJECTS)
    async with serve_status(live, heartbeat=0.2) as url:
        yield Served(url, live, bus)
    await bus.close()


def sample(asset: str = "SOL", cycle: int = 1) -> Signal:
    return Signal(
        asset=asset,
        cycle=cycle,
        ts=time.time(),
        started=time.time() - 1,
        direction="short",
        score=-0.3,
        confidence=0.9,
        etf_available=False,
        modules={"whale": ModuleStatus(status="ok"), "etf": ModuleStatus(status="disabled")},
    )


async def next_event(response: ClientResponse) -> bytes:
    return await response.content.readuntil(b"\n\n")


async def next_data(response: ClientResponse) -> dict[str, Any]:
    while True:
        chunk = await next_event(response)
        if chunk.startswith(b"data: "):
            found: dict[str, Any] = json.loads(chunk[len(b"data: ") :])
            return found


class TestFiles:
    def test_nothing_is_loaded_from_elsewhere(self) -> None:
        """No absolute URL, no CDN, no web font in the page, its script or its style."""
        for name in ("status.html", "status.js", "status.css"):
            text = (STATIC / name).read_text()
            assert not re.search(r"(https?:)?//[a-z0-9]", text, re.I), name
            assert "@import" not in text and "@font-face" not in text, name

    def test_the_files_are_package_data(self) -> None:
        """pyproject ships sniper/gateway/static/* with the package (a wheel install serves the page too)."""
        text = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
        assert re.search(r'\[tool\.setuptools\.package-data\][^\[]*"sniper\.gateway"\s*=\s*\[[^\]]*"static/\*"', text)

    async def test_page_and_files_are_served_with_a_strict_policy(self, memory: Served) -> None:
        async with ClientSession(timeout=ClientTimeout(total=10)) as http:
            for path, kind in [
                ("", "text/html"),
                ("static/status.js", "text/javascript"),
                ("static/status.css", "text/css"),
            ]:
                async with http.get(memory.url + path) as resp:
                    assert resp.status == 200 and resp.content_type == kind, path
                    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
                    assert resp.headers["Cache-Control"] == "no-store"
            async with http.get(memory.url + "static/other.js") as resp:
                assert resp.status == 404


class TestEvents:
    async def test_a_snapshot_first_then_changes_and_heartbeats(self, memory: Served) -> None:
        """text/event-stream: retry, the snapshot, a signal change, a heartbeat comment while idle."""
        async with (
            ClientSession(timeout=ClientTimeout(total=10)) as http,
            http.get(memory.url + "events") as resp,
        ):
            assert resp.status == 200 and resp.content_type == "text/event-stream"
            assert await next_event(resp) == b"retry: 2000\n\n"
            snapshot = await next_data(resp)
            assert snapshot["type"] == "snapshot" and snapshot["assets"] == {} and snapshot["source"] == "live"
            await memory.bus.publish(SUBJECTS.signal("SOL"), encode(sample()))
            change = await next_data(resp)
            assert change["type"] == "signal" and change["entry"]["direction"] == "short"
            assert await next_event(resp) == b": heartbeat\n\n"

    async def test_a_client_that_goes_is_unsubscribed(self, memory: Served) -> None:
        """Closing the connection frees the listener within about a second, without a write."""
        async with ClientSession(timeout=ClientTimeout(total=10)) as http:
            resp = await http.get(memory.url + "events")
            await next_data(resp)
            assert memory.live.listeners == 1
            resp.close()
        await wait_until(lambda: memory.live.listeners == 0, timeout=5)

    async def test_stopping_the_state_ends_the_stream(self, memory: Served) -> None:
        """`LiveState.stop` ends every event stream (the server can shut down at once)."""
        async with (
            ClientSession(timeout=ClientTimeout(total=10)) as http,
            http.get(memory.url + "events") as resp,
        ):
            await next_data(resp)
            await memory.live.stop()
            assert await resp.content.read() == b""
        assert memory.live.listeners == 0

    async def test_shutting_the_server_down_ends_open_streams(self) -> None:
        """The app's shutdown ends each event stream at once, while the live state goes on (owned elsewhere)."""
        bus = MemoryBus()
        live = LiveState(refresh=3600)
        await live.start(bus, SUBJECTS)
        app = web.Application()
        add_status_routes(app, live)
        runner = web.AppRunner(app, shutdown_timeout=30)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            async with (
                ClientSession(timeout=ClientTimeout(total=10)) as http,
                http.get(f"http://127.0.0.1:{runner.addresses[0][1]}/events") as resp,
            ):
                await next_data(resp)
                started = time.monotonic()
                await runner.cleanup()
                assert time.monotonic() - started < 5
                assert live.listeners == 0
        finally:
            await runner.cleanup()
            await live.stop()
            await bus.close()


# -- the page in a real browser -------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
INTERVAL = 1.5


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium: install Debian's 'chromium' package (.ci/run does)")
    try:
        import playwright.async_api  # noqa: F401  # only to know whether it is there
    except ImportError:
        pytest.skip("no Playwright: install the 'playwright' Python package (a dev dependency)")
    return CHROMIUM


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_the_page_shows_signals_live_and_a_disabled_module(
    chromium: str, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """Page open before the pipeline: a signal row within two intervals; WHALE off, then `disabled` in its cell."""
    from playwright.async_api import async_playwright

    observer = await NatsBus.connect(nats_server.url, name="status-page")
    live = LiveState(refresh=INTERVAL)
    await live.start(observer, SUBJECTS)
    try:
        async with serve_status(live) as url, async_playwright() as pw:
            with tempfile.TemporaryDirectory() as profile:
                browser = await pw.chromium.launch_persistent_context(
                    profile, executable_path=chromium, args=CHROMIUM_ARGS, headless=True
                )
                try:
                    await drive(browser, url, nats_server, observer, tmp_path / "status-page.png")
                finally:
                    await browser.close()
    finally:
        await observer.close()


async def drive(browser: Any, url: str, nats_server: EmbeddedNats, observer: NatsBus, screenshot: Path) -> None:
    """Open the page, start the pipeline, switch WHALE off; a screenshot of the end is left in `screenshot`."""
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    outside: list[str] = []
    page.on(
        "request",
        lambda req: None if req.url.startswith(url) or req.url.startswith("data:") else outside.append(req.url),
    )
    await page.goto(url)
    await page.wait_for_selector("#link.up", timeout=10_000)
    assert await page.is_visible("#empty")
    async with serve(port=0, seed=5) as backend:
        settings = Settings(
            nats=nats_server.url, backend=backend.url, assets=("SOL",), interval=INTERVAL, window=INTERVAL / 2
        )
        started = time.monotonic()
        async with run_pipeline(settings):
            await page.wait_for_selector('tr[data-asset="SOL"] td[data-field="direction"]', timeout=2 * INTERVAL * 1000)
            shown_after = time.monotonic() - started
            whale = 'td[data-asset="SOL"][data-module="whale"]'
            assert await page.get_attribute(whale, "data-status") == "ok"
            assert await page.is_hidden("#empty")
            assert re.fullmatch(r"\d+s", (await page.text_content('tr[data-asset="SOL"] td[data-field="age"]')) or "")

            env = await observer.request(
                SUBJECTS.command("flags"), encode(FlagCommand(flag="WHALE", enabled=False, who="test")), timeout=5
            )
            assert decode(env.data, FlagReply).ok
            flipped = time.monotonic()
            await page.wait_for_selector(f'{whale}[data-status="disabled"]', timeout=3 * INTERVAL * 1000)
            disabled_after = time.monotonic() - flipped
            await page.wait_for_selector('#flags li[data-flag="WHALE"].off', timeout=3 * INTERVAL * 1000)
            await page.screenshot(path=str(screenshot), full_page=True)
    timings = f"signal shown after {shown_after:.2f} s, disabled after {disabled_after:.2f} s"
    assert shown_after <= 2 * INTERVAL and disabled_after <= 3 * INTERVAL, timings
    assert errors == [] and outside == []
