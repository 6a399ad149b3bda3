"""The embedded nats-server: starts, serves, cleans up; nats.conf is a real config."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from messages import EmbeddedServerError
from runtime import NatsBus
from runtime.errors import BusConnectError
from runtime.testing import wait_until
from sniper.embedded import EmbeddedNats, find_nats_server

ROOT = Path(__file__).resolve().parents[2]
#: nats.conf reads its users' passwords from the environment (see tests/sniper/test_auth.py).
PASSWORDS = {"NATS_SNIPER_PASSWORD": "s-pw", "NATS_OPERATOR_PASSWORD": "o-pw", "NATS_BOT_PASSWORD": "b-pw"}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); check its state.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


class TestEmbeddedNats:
    async def test_starts_serves_and_cleans_up(self) -> None:
        """It starts on a free port with JetStream, serves pub/sub and KV, then removes process and store."""
        server = EmbeddedNats()
        url = await server.start()
        assert url.startswith("nats://127.0.0.1:") and server.running
        assert server.process is not None
        pid, store = server.process.pid, server.store_dir
        bus = await NatsBus.connect(url)
        kv = await bus.client.jetstream().create_key_value(bucket="probe")
        assert await kv.put("k", b"v") == 1
        reply = asyncio.get_running_loop().create_future()

        async def on(env) -> None:
            reply.set_result(env.data)

        await bus.subscribe("probe", on)
        await bus.publish("probe", b"hello")
        assert await asyncio.wait_for(reply, 5) == b"hello"
        await bus.close()
        assert store is not None and store.is_dir()
        await server.stop()
        assert not store.exists() and not pid_alive(pid) and not server.running

    async def test_two_servers_get_different_ports(self) -> None:
        """Free ports are chosen by the server, so parallel instances never collide."""
        async with EmbeddedNats() as a, EmbeddedNats() as b:
            assert a.url != b.url

    async def test_stop_is_idempotent_and_cleans_on_error(self) -> None:
        """Leaving the context through an exception still stops the server."""
        with pytest.raises(RuntimeError):
            async with EmbeddedNats() as server:
                assert server.process is not None and server.store_dir is not None
                pid, store = server.process.pid, server.store_dir
                raise RuntimeError("boom")
        assert not pid_alive(pid) and not store.exists()
        await server.stop()

    async def test_starts_from_the_repository_nats_conf(self) -> None:
        """The root nats.conf is accepted by a real server (port and store overridden)."""
        async with EmbeddedNats(config=ROOT / "nats.conf", monitor=False, env=PASSWORDS) as server:
            bus = await NatsBus.connect(server.url, user="sniper", password=PASSWORDS["NATS_SNIPER_PASSWORD"])
            assert bus.client.max_payload == 1024 * 1024
            await bus.close()

    async def test_monitoring_port_when_asked(self) -> None:
        """With monitor=True the server also exposes its HTTP monitoring endpoint."""
        import aiohttp

        async with (
            EmbeddedNats(monitor=True) as server,
            aiohttp.ClientSession() as http,
            http.get(server.monitor_url + "/healthz") as resp,
        ):
            assert resp.status == 200

    async def test_bad_config_is_a_clear_error(self, tmp_path: Path) -> None:
        """A config the server rejects raises EmbeddedServerError with the server's words."""
        bad = tmp_path / "bad.conf"
        bad.write_text("max_payload: [unterminated\n")
        with pytest.raises(EmbeddedServerError, match="exited with code"):
            await EmbeddedNats(config=bad).start()

    async def test_missing_config_file_is_a_clear_error(self, tmp_path: Path) -> None:
        """A config path that does not exist is named in the error."""
        with pytest.raises(EmbeddedServerError, match="does not exist"):
            await EmbeddedNats(config=tmp_path / "nope.conf").start()

    async def test_cancelled_start_leaves_nothing_behind(self, tmp_path: Path) -> None:
        """Ctrl-C (cancellation) while the server is still starting stops the process and removes the store."""
        never_ready = tmp_path / "fake-nats-server"
        never_ready.write_text("#!/bin/sh\nexec sleep 60\n")
        never_ready.chmod(0o755)
        server = EmbeddedNats(binary=str(never_ready), ready_timeout=60)
        task = asyncio.create_task(server.start())
        process = await wait_until(lambda: server.process, timeout=10)  # spawned, not ready
        pid, store = process.pid, server.store_dir
        assert store is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not pid_alive(pid) and not store.exists()

    async def test_missing_binary_is_a_clear_error(self) -> None:
        """A binary that cannot run raises EmbeddedServerError, not OSError."""
        with pytest.raises(EmbeddedServerError, match="could not run"):
            await EmbeddedNats(binary="/nonexistent/nats-server").start()


class TestNatsConf:
    def test_config_passes_the_server_check(self) -> None:
        """`nats-server -t -c nats.conf` accepts the shipped config (with the users' passwords set)."""
        result = subprocess.run(
            [find_nats_server(), "-t", "-c", str(ROOT / "nats.conf")],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **PASSWORDS},
        )
        assert result.returncode == 0, result.stderr
        assert "is valid" in result.stdout + result.stderr


class TestNatsConnect:
    async def test_closed_port_fails_fast_with_clear_error(self) -> None:
        """Connecting to a closed port fails within the deadline, naming the URL and the cause."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(BusConnectError, match=r"nats://127\.0\.0\.1:1 within 1s.*(refused|Connect call failed)"):
            await NatsBus.connect("nats://127.0.0.1:1", connect_deadline=1.0)
        assert loop.time() - started < 3

    async def test_reconnects_after_broker_restart(self) -> None:
        """After the broker restarts on the same port, the bus reconnects and delivers again."""
        first = EmbeddedNats()
        url = await first.start()
        port = int(url.rsplit(":", 1)[1])
        bus = await NatsBus.connect(url, reconnect_wait=0.05)
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def on(env) -> None:
            await got.put(env.data)

        await bus.subscribe("r", on)
        await first.stop()
        second = EmbeddedNats(port=port)
        await second.start()
        try:

            async def delivered() -> bytes:
                while True:
                    try:
                        await bus.publish("r", b"again")
                        return await asyncio.wait_for(got.get(), 0.2)
                    except TimeoutError:
                        continue

            assert await asyncio.wait_for(delivered(), 10) == b"again"
            assert bus.stats.reconnects >= 1
        finally:
            await bus.close()
            await second.stop()

    async def test_close_drains_pending_handlers(self, nats_server: EmbeddedNats) -> None:
        """close() lets delivered messages finish their handlers (drain), then closes."""
        bus = await NatsBus.connect(nats_server.url)
        seen: list[bytes] = []

        async def on(env) -> None:
            seen.append(env.data)

        await bus.subscribe("d", on)
        for i in range(100):
            await bus.publish("d", str(i).encode())
        await bus.flush()
        await bus.close()
        assert len(seen) == 100 and bus.is_closed
