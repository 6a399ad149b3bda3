"""sniper on a NATS cluster: `LocalCluster`, ``sniper cluster``, ``--replicas`` and failover across nodes.

Real nats-server nodes from the wheel on loopback; killing a node is SIGKILL.
Interest crosses routes asynchronously, so a first publish may find no
subscriber yet: the tests publish again until the message arrives, waiting on
delivery events in between. After a JetStream leader is killed, the survivors
elect another in 4-9 s (measured here), so those waits are long, and bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.errors
import pytest

from messages.subjects import SIGNALS_STREAM
from runtime import NatsBus
from runtime.bus import Envelope
from runtime.stream import StreamSpec
from runtime.testing import POLL_INTERVAL, Collector, WaitTimeout, wait_until
from sniper import cli
from sniper.app import run_pipeline
from sniper.cluster import NODES_BOUNDS, LocalCluster
from sniper.config import Settings
from sniper.embedded import EmbeddedNats

pytestmark = pytest.mark.nats

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
#: Real seconds the survivors get to elect a new JetStream leader (measured 4-9 s).
ELECTION = 30.0


@pytest.fixture
async def cluster() -> AsyncIterator[LocalCluster]:
    """A three-node cluster of this test's own (about 0.4 s to form)."""
    async with LocalCluster(3) as local:
        yield local


@contextlib.asynccontextmanager
async def connected(url: str, **options: Any) -> AsyncIterator[NatsBus]:
    """A NatsBus to `url` (`NatsBus.connect` keywords), closed on exit."""
    bus = await NatsBus.connect(url, **options)
    try:
        yield bus
    finally:
        await bus.close()


def node_of(bus: NatsBus, cluster: LocalCluster) -> int:
    """The index of the node `bus` is connected to now."""
    where = bus.client.connected_url
    assert where is not None, "not connected"
    return [url.rsplit(":", 1)[1] for url in cluster.urls].index(str(where.port))


async def publish_until_delivered(
    publisher: NatsBus,
    subject: str,
    payload: bytes,
    got: Collector[Envelope],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109  # a test helper's bounded wait in real seconds
) -> None:
    """Publish `payload` until `got` has it: a subscription reaches the other nodes a moment after it is made."""

    def arrived() -> bool:
        return any(env.data == payload for env in got.items)

    async with asyncio.timeout(timeout):
        while not arrived():
            await publisher.publish(subject, payload)
            with contextlib.suppress(WaitTimeout):
                await wait_until(arrived, changed=got.changed, timeout=0.2)


async def eventually(
    attempt: Callable[[], Awaitable[T]],
    *,
    timeout: float = ELECTION,  # noqa: ASYNC109  # a test helper's bounded wait in real seconds
) -> T:
    """`attempt()`'s result once it succeeds: JetStream calls fail while a stream has no leader or no data yet."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await attempt()
            except (nats.errors.Error, TimeoutError):
                await asyncio.sleep(POLL_INTERVAL)  # clock-ok: a real-time poll of the cluster


class TestLocalCluster:
    async def test_forms_one_cluster(self, cluster: LocalCluster) -> None:
        """A message published on node 1 reaches a subscriber on node 3; three distinct URLs, comma-joined in url."""
        assert len(set(cluster.urls)) == 3 and cluster.url == ",".join(cluster.urls)
        got: Collector[Envelope] = Collector()
        async with connected(cluster.urls[2]) as on_third, connected(cluster.urls[0]) as on_first:
            await on_third.subscribe("cluster.hello", got)
            await on_third.flush()
            await publish_until_delivered(on_first, "cluster.hello", b"from node 1", got)
        assert [node.name for node in cluster.nodes] == ["sniper-local-1", "sniper-local-2", "sniper-local-3"]

    @pytest.mark.slow  # a restarted node takes 2-6 s to hear from the JetStream meta leader again
    async def test_a_killed_node_restarts_on_its_url_and_rejoins(self, cluster: LocalCluster) -> None:
        """After SIGKILL and restart, node 2 serves on the same URL and gets messages published on node 1."""
        url = cluster.urls[1]
        await cluster.kill_node(1)
        assert cluster.nodes[1].process is None  # killed and cleaned up
        await cluster.restart_node(1)
        assert cluster.urls[1] == url and cluster.nodes[1].running
        got: Collector[Envelope] = Collector()
        async with connected(url) as on_second, connected(cluster.urls[0]) as on_first:
            await on_second.subscribe("cluster.back", got)
            await on_second.flush()
            await publish_until_delivered(on_first, "cluster.back", b"welcome back", got)

    @pytest.mark.parametrize("nodes", [NODES_BOUNDS[0] - 1, NODES_BOUNDS[1] + 1])
    def test_node_count_is_bounded(self, nodes: int) -> None:
        """Fewer than one or more than five nodes is refused before anything starts."""
        with pytest.raises(ValueError, match="1 to 5 nodes"):
            LocalCluster(nodes)


@pytest.mark.slow
class TestReplicas:
    async def test_pipeline_buckets_and_stream_have_three_replicas_and_outlive_their_leader(
        self, cluster: LocalCluster
    ) -> None:
        """With --replicas 3 the flags bucket and the signal stream have 3 replicas, and a flag sniper wrote is
        read through another node after the bucket's leader node is killed."""
        settings = Settings(
            nats=cluster.url, backend="http://127.0.0.1:9", replicas=3, actors=("flags", "assembler"), assets=("SOL",)
        )
        async with run_pipeline(settings), connected(cluster.urls[0]) as observer:
            js = observer.client.jetstream()
            flags = await js.stream_info("KV_sniper_flags")
            signals = await js.stream_info(settings.subjects.stream(SIGNALS_STREAM))
            flags_kv = await js.key_value("sniper_flags")

            async def seeded() -> bytes | None:  # the flag keeper seeds every flag once it has started
                return (await flags_kv.get("ETF")).value

            written = await eventually(seeded, timeout=10.0)
        assert (flags.config.num_replicas, signals.config.num_replicas) == (3, 3)
        assert flags.cluster is not None and len(flags.cluster.replicas or []) == 2
        leader = [cluster.node_name(i) for i in range(3)].index(flags.cluster.leader or "")
        await cluster.kill_node(leader)
        survivor = await nats.connect(cluster.urls[(leader + 1) % 3])
        try:
            survivor_js = survivor.jetstream(timeout=1.0)

            async def read() -> bytes | None:
                return (await (await survivor_js.key_value("sniper_flags")).get("ETF")).value

            assert await eventually(read) == written
        finally:
            await survivor.close()

    async def test_existing_bucket_keeps_its_replication_with_one_warning(
        self, nats_server: EmbeddedNats, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A bucket made with 1 replica is used as it is by a bus asking for 3: one warning with both numbers."""
        caplog.set_level(logging.WARNING, logger="sniper.bus.nats")
        async with connected(nats_server.url) as first, connected(nats_server.url, replicas=3) as second:
            await (await first.key_value("sniper_flags")).put("k", b"v")
            bucket = await second.key_value("sniper_flags")
            await second.key_value("sniper_flags")
            entry = await bucket.get("k")
        assert entry is not None and entry.value == b"v"
        warnings = [r.getMessage() for r in caplog.records if "replica" in r.getMessage()]
        assert warnings == [
            "KV bucket sniper_flags has 1 replica(s), not the 3 this process asks for; using it as it is"
        ]

    async def test_existing_stream_keeps_its_replication_with_a_warning(
        self, cluster: LocalCluster, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A stream made with 3 replicas is not scaled down by a process asking for 1 (its other settings apply)."""
        caplog.set_level(logging.WARNING, logger="sniper.bus.nats")
        spec = StreamSpec("replicated", ("replicated.>",), max_age=3600, max_bytes=1 << 20, max_msgs_per_subject=5)
        async with connected(cluster.url) as bus:
            await bus.ensure_stream(dataclasses.replace(spec, replicas=3))
            await bus.ensure_stream(dataclasses.replace(spec, max_msgs_per_subject=7))
            info = await bus.client.jetstream().stream_info("replicated")
        assert (info.config.num_replicas, info.config.max_msgs_per_subject) == (3, 7)
        assert any("stream replicated has 3 replica(s), not the 1" in r.getMessage() for r in caplog.records)

    def test_settings_reach_the_signal_stream(self) -> None:
        """--replicas is the replication of the signal stream sniper creates."""
        from sniper.app import signal_stream

        spec = signal_stream(Settings(replicas=3))
        assert spec is not None and spec.replicas == 3


@pytest.mark.slow
class TestFailover:
    async def test_bus_moves_to_another_node_when_its_node_dies(self, cluster: LocalCluster) -> None:
        """A NatsBus given all three URLs reconnects to a surviving node after SIGKILL and keeps receiving."""
        got: Collector[Envelope] = Collector()
        async with connected(cluster.url, reconnect_wait=0.1) as bus:
            await bus.subscribe("failover.x", got)
            victim = node_of(bus, cluster)
            async with connected(cluster.urls[(victim + 1) % 3]) as publisher:
                await bus.flush()
                await publish_until_delivered(publisher, "failover.x", b"before", got)
                await cluster.kill_node(victim)
                await wait_until(lambda: bus.stats.reconnects >= 1 and bus.connected, timeout=15)
                assert node_of(bus, cluster) != victim
                await publish_until_delivered(publisher, "failover.x", b"after", got)
            assert bus.stats.disconnects == 1

    @pytest.mark.parametrize("first", [0, 1, 2])
    async def test_the_servers_are_tried_in_the_order_given(self, cluster: LocalCluster, first: int) -> None:
        """The first URL of the list is the node a bus connects to (its own host's), never a shuffled one."""
        order = [cluster.urls[(first + i) % 3] for i in range(3)]
        async with connected(",".join(order)) as bus:
            assert node_of(bus, cluster) == first

    async def test_a_dead_first_server_is_skipped(self, cluster: LocalCluster) -> None:
        """With the first node of the list down, the bus connects to the next one in order."""
        await cluster.kill_node(0)
        async with connected(",".join(cluster.urls)) as bus:
            assert node_of(bus, cluster) == 1


class TestClusterCommand:
    @pytest.mark.slow
    def test_prints_three_urls_and_exits_0(self) -> None:
        """`sniper cluster --duration 3`: a line per node, then NATS: with three URLs, then exit status 0."""
        result = subprocess.run(
            [sys.executable, "-m", "sniper", "cluster", "--duration", "3"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert [line.split(":")[0] for line in lines] == ["node 1", "node 2", "node 3", "NATS"], result.stdout
        urls = lines[-1].removeprefix("NATS: ").split(",")
        assert len(set(urls)) == 3 and all(url.startswith("nats://127.0.0.1:") for url in urls)
        assert all(url in line for url, line in zip(urls, lines, strict=False))

    @pytest.mark.parametrize("nodes", ["0", "6", "x"])
    def test_bad_node_count_exits_2(self, nodes: str, capsys: pytest.CaptureFixture[str]) -> None:
        """--nodes outside 1..5 is a usage error, one line, before anything starts."""
        with pytest.raises(SystemExit) as exited:
            cli.main(["cluster", "--nodes", nodes])
        assert exited.value.code == 2 and "--nodes" in capsys.readouterr().err
