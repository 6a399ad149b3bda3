"""Smoke tests of the multi-host bed: that its hosts, links, NATS cluster and sniper processes are real.

The failure scenarios of issue 15 (leases, failover, split brain) build on this
bed; these tests make sure that what they will rely on holds: a cut link
really cuts, a killed node really dies and clients really move, signals of a
`sniper run` inside a host really reach an outside subscriber, and nothing is
left behind. Waiting is on conditions with deadlines, never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nats
import pytest

from messages import Signal, Subjects
from runtime.testing import Recorder, wait_until
from sniper.embedded import find_nats_server

from .netbed import (
    PASSWORD_VARIABLE,
    PREFIX,
    ROOT,
    CycleAudit,
    NetBed,
    NetBedError,
    audit_cycles,
    bed_namespaces,
    ip,
    ip_binary,
    nats_node_config,
    poll_until,
    probe_delivery,
)

#: The deployment's users and permissions (issue 15's cluster configs include it).
DEPLOYED_USERS = ROOT / "deploy" / "nats-cluster" / "users.conf"


def signal(asset: str, cycle: int, epoch: int = 1) -> Signal:
    return Signal(
        asset=asset,
        cycle=cycle,
        ts=1.0,
        started=1.0,
        direction="flat",
        score=0.0,
        confidence=1.0,
        modules={},
        etf_available=False,
        epoch=epoch,
    )


def audit(*keys: tuple[str, int], assets: tuple[str, ...] = ()) -> CycleAudit:
    return audit_cycles([signal(asset, cycle) for asset, cycle in keys], assets=assets)


async def ignore_error(_: Exception) -> None:
    """An ``error_cb`` for a client whose failure the test expects (nats-py logs it otherwise)."""


def dead_pid() -> int:
    """The pid of a process that has just ended."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(proc.stdout)


def pids_in(namespace: str) -> set[int]:
    listing = subprocess.run([ip_binary(), "netns", "pids", namespace], capture_output=True, text=True, check=False)
    return {int(pid) for pid in listing.stdout.split()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class TestCycleAudit:
    def test_a_clean_run_has_no_duplicates_and_no_gaps(self) -> None:
        """Cycles 0..3 once each: clean, nothing missing."""
        result = audit(("SOL", 0), ("SOL", 1), ("SOL", 2), ("SOL", 3), assets=("SOL",))
        assert result.clean and result.most_missing == 0 and result.cycles("SOL") == [0, 1, 2, 3]

    def test_a_cycle_published_twice_is_a_duplicate(self) -> None:
        """(SOL, 1) twice and (SOL, 2) three times are reported with their counts."""
        result = audit(("SOL", 0), ("SOL", 1), ("SOL", 1), ("SOL", 2), ("SOL", 2), ("SOL", 2))
        assert result.duplicates == {("SOL", 1): 2, ("SOL", 2): 3} and not result.clean

    def test_gaps_between_first_and_last_cycle_are_missing(self) -> None:
        """Cycles 3, 4, 7: 5 and 6 are missing; nothing before the first signal seen counts."""
        result = audit(("SOL", 3), ("SOL", 4), ("SOL", 7))
        assert result.missing == {"SOL": [5, 6]} and result.most_missing == 2 and not result.clean

    def test_assets_are_audited_independently_and_in_any_order(self) -> None:
        """SOL complete out of order, BTC with a gap: only BTC has a missing cycle."""
        result = audit(("SOL", 2), ("BTC", 0), ("SOL", 0), ("BTC", 2), ("SOL", 1))
        assert result.missing == {"SOL": [], "BTC": [1]} and not result.duplicates

    def test_an_expected_asset_without_signals_is_silent(self) -> None:
        """ETH was expected and never signalled."""
        result = audit(("SOL", 0), assets=("SOL", "ETH"))
        assert result.silent == ("ETH",) and not result.clean

    def test_epochs_are_listed_in_order_of_arrival(self) -> None:
        """A second scheduler (epoch 9) restarting at cycle 0 shows up as duplicates, with both epochs listed."""
        signals = [signal("SOL", 0, epoch=5), signal("SOL", 1, epoch=5), signal("SOL", 0, epoch=9)]
        result = audit_cycles(signals)
        assert result.epochs == {"SOL": [5, 9]} and result.duplicates == {("SOL", 0): 2}


class TestNatsNodeConfig:
    @pytest.mark.parametrize("users", [False, True], ids=["no-auth", "deployed-users"])
    def test_the_generated_config_passes_nats_server_check(self, tmp_path: Path, users: bool) -> None:
        """`nats-server -t` accepts a node config (cluster, routes, JetStream, pings), also with the deployed users."""
        (tmp_path / "h0").mkdir()
        config = tmp_path / "h0" / "nats.conf"
        config.write_text(
            nats_node_config(
                server_name="n0",
                cluster_name="c",
                address="10.200.0.1",
                peers=["10.200.0.2", "10.200.0.3"],
                store_dir=tmp_path / "js",
                include="../users.conf" if users else None,
            )
        )
        shutil.copyfile(DEPLOYED_USERS, tmp_path / "users.conf")
        passwords = {name: "x" for name in PASSWORD_VARIABLE.findall(DEPLOYED_USERS.read_text())}
        check = subprocess.run(
            [find_nats_server(), "-t", "-c", str(config)],
            capture_output=True,
            text=True,
            env={**os.environ, **passwords},
        )
        assert check.returncode == 0, check.stderr


@pytest.mark.usefixtures("netns")
class TestNetBedLifecycle:
    async def test_exit_removes_namespaces_processes_and_uplink(self) -> None:
        """After the bed, none of its namespaces, processes, uplink or files remain."""
        async with NetBed(2) as bed:
            sleeper = await bed.host(1).run("sleep", "60")
            names = {bed.switch, *(host.namespace for host in bed.hosts)}
            assert names <= set(await bed_namespaces())
            assert (await ip("netns", "identify", str(sleeper.pid))).strip() == bed.host(1).namespace
        assert not names & set(await bed_namespaces())
        assert not alive(sleeper.pid) and sleeper.returncode == -9
        assert bed.uplink not in await ip("-br", "link") and not bed.workdir.exists()

    async def test_exit_after_a_failure_cleans_up_too(self) -> None:
        """An exception inside the bed propagates, and the bed is gone anyway."""
        with pytest.raises(RuntimeError, match="boom"):
            async with NetBed(1) as bed:
                await bed.host(0).run("sleep", "60")
                raise RuntimeError("boom")
        assert bed.host(0).namespace not in await bed_namespaces()
        assert all(not proc.running for proc in bed.host(0).processes)

    async def test_leftovers_of_dead_owners_are_removed_at_start(self) -> None:
        """A namespace and a directory named by a pid that no longer runs are deleted, with what ran in it."""
        owner = dead_pid()
        stale, workdir = f"{PREFIX}-{owner}-0-h0", tempfile.mkdtemp(prefix=f"{PREFIX}-{owner}-0-")
        await ip("netns", "add", stale)
        orphan = await asyncio.create_subprocess_exec(ip_binary(), "netns", "exec", stale, "sleep", "60")
        try:
            await wait_until(lambda: orphan.pid in pids_in(stale), timeout=5)
            async with NetBed(1):
                assert stale not in await bed_namespaces() and Path(workdir).name not in os.listdir(
                    tempfile.gettempdir()
                )
            assert await asyncio.wait_for(orphan.wait(), 5) == -9
        finally:
            with contextlib.suppress(ProcessLookupError):
                orphan.kill()
            with contextlib.suppress(NetBedError):
                await ip("netns", "del", stale)
            shutil.rmtree(workdir, ignore_errors=True)

    async def test_a_host_process_keeps_its_output(self) -> None:
        """`run` captures stdout and stderr, and `wait_for_output` fails when the process ends without the line."""
        async with NetBed(1) as bed:
            proc = await bed.host(0).run("sh", "-c", "echo out; echo err >&2; ip -br addr show eth0")
            match = await proc.wait_for_output(r"^eth0\S*\s+UP\s+(\S+)/24")
            assert match.group(1) == bed.host(0).address and list(proc.lines)[:2] == ["out", "err"]
            with pytest.raises(NetBedError, match="without printing"):
                await proc.wait_for_output("never printed")


@pytest.mark.slow
@pytest.mark.nats
class TestNatsCluster:
    async def test_three_nodes_in_three_namespaces_form_one_cluster(self, nats_cluster: NetBed) -> None:
        """A message published via host 2's node reaches a subscriber on host 0's node."""
        bed = nats_cluster
        assert [await bed.route_peers(i) for i in range(3)] == [{1, 2}, {0, 2}, {0, 1}]
        subscriber, publisher = await bed.connect(0), await bed.connect(2)
        assert publisher.connected_url is not None and publisher.connected_url.hostname == bed.host(2).address
        await probe_delivery(publisher, subscriber, timeout=5)

    async def test_a_partition_cuts_the_host_and_a_heal_restores_its_routes(self, nats_cluster: NetBed) -> None:
        """partition(2): hosts 0 and 1 lose their routes to it, it is unreachable; heal(2): routes and traffic back."""
        bed = nats_cluster
        subscriber, publisher = await bed.connect(0), await bed.connect(1)
        await bed.partition(2)

        async def cut_off() -> bool:
            return await bed.route_peers(0) == {1} and await bed.route_peers(1) == {0}

        await poll_until(cut_off, timeout=10, what="hosts 0 and 1 to drop their routes to host 2")
        assert not await bed.reachable(2)
        await probe_delivery(publisher, subscriber, timeout=5)  # the rest of the cluster carries on
        await bed.heal(2)

        async def healed() -> bool:
            return await bed.route_peers(0) == {1, 2} and await bed.route_peers(2) == {0, 1}

        await poll_until(healed, timeout=10, what="host 2's routes to come back")
        await probe_delivery(await bed.connect(2), subscriber, timeout=5)
        node = bed.nats_node(2).process
        assert node is not None and "Stale Connection" in node.output(), "host 2 heard nothing either (both ways cut)"

    async def test_a_client_moves_to_another_node_when_its_node_is_killed(self, nats_cluster: NetBed) -> None:
        """kill -9 of host 0's node: a client given all three URLs reconnects elsewhere and keeps receiving."""
        bed = nats_cluster
        subscriber = await bed.connect(0, 1, 2, dont_randomize=True)
        publisher = await bed.connect(1)
        assert subscriber.connected_url is not None and subscriber.connected_url.hostname == bed.host(0).address
        await probe_delivery(publisher, subscriber, timeout=5)
        await bed.kill_nats(0)
        node = bed.nats_node(0)
        assert node.process is not None and node.process.returncode == -9

        def moved() -> bool:
            url = subscriber.connected_url
            return subscriber.is_connected and url is not None and url.hostname != bed.host(0).address

        await wait_until(moved, timeout=10)
        await probe_delivery(publisher, subscriber, timeout=5)

    @pytest.mark.usefixtures("netns")
    async def test_the_deployed_users_apply_across_the_cluster(self) -> None:
        """With deploy/nats-cluster/users.conf: no anonymous login; user sniper reaches a bot on another node."""
        async with NetBed(3, users=DEPLOYED_USERS) as bed:
            await bed.start_nats_cluster()
            with pytest.raises(nats.errors.Error, match="Authorization Violation"):
                await bed.connect(0, allow_reconnect=False, error_cb=ignore_error)
            sniper, bot = await bed.connect(2, user="sniper"), await bed.connect(0, user="bot")
            await probe_delivery(sniper, bot, subject="sniper.signal.PROBE", timeout=5)


@pytest.mark.slow
@pytest.mark.nats
class TestSniperOnTheBed:
    async def test_signals_of_a_sniper_in_one_host_reach_an_outside_subscriber(self, nats_cluster: NetBed) -> None:
        """`sniper run` in host 1 against the backend: a subscriber on host 0's node gets every SOL cycle once."""
        bed = nats_cluster
        backend = await bed.start_backend(seed=5)
        bus = await bed.bus(0)
        signals = await Recorder[Signal](bus, Subjects().signal_all(), Signal).start()
        sniper = await bed.start_sniper(1, "--assets", "SOL", "--interval", "1")

        def three_signals() -> bool:
            assert sniper.running, f"sniper ended ({sniper.returncode}):\n{sniper.tail()}"
            return len(signals.messages) >= 3

        await wait_until(three_signals, timeout=30)
        result = audit_cycles(signals.messages, assets=("SOL",))
        assert result.clean and len(result.cycles("SOL")) >= 3, result
        assert {sig.modules["whale"].status for sig in signals.messages} == {"ok"}
        assert backend.sim.counters()["whale"]["requests"] >= 3
