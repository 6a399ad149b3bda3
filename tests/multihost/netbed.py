"""A test bed of several hosts on one machine: network namespaces, a bridge, one NATS node per host.

Why: issue 15 asks that sniper survive the loss of a host, of a NATS node and
of a link. On loopback every process shares one network stack, so "host 2 is
cut off" cannot happen there. Here each host is a Linux network namespace with
its own interface and address; a cut link drops every packet in and out of the
host while its processes keep running, as with a pulled cable.

Layout (``<tag>`` is ``<pid>-<seq>``, unique per live bed; every name starts with ``snpr``)::

    root namespace (this test process):  snpr<pid>r<seq>  10.X.0.254/24  <── veth ──>  up0 ─┐
    namespace snpr-<tag>-h0:             eth0             10.X.0.1/24    <── veth ──>  p0  ─┤
    namespace snpr-<tag>-h1:             eth0             10.X.0.2/24    <── veth ──>  p1  ─┼─ br0, a bridge
    namespace snpr-<tag>-h2:             eth0             10.X.0.3/24    <── veth ──>  p2  ─┘  (namespace snpr-<tag>-sw)

Choices, and why:

* **The bridge lives in a namespace of its own.** The root namespace may have
  ``br_netfilter`` loaded and a firewall with ``FORWARD DROP`` (any Docker
  host): bridged traffic there would be filtered. A fresh namespace has no
  rules, and deleting it removes the bridge and every port at once. The only
  interface in the root namespace is the uplink, so this test process (NATS
  observers, the backend, monitoring requests) reaches every host directly.
* **The subnet** is ``10.X.0.0/24`` with X in 200..249, chosen under a lock
  file so that it overlaps no route or address of the root namespace
  (parallel beds included).
* **A partition** sets the host's bridge port down (``ip link set pN down`` in
  the switch). The host's ``eth0`` loses carrier; packets both ways are
  dropped, never refused, so peers notice only by their own timeouts (NATS
  route pings here: 1 s, 2 missed). It also cuts the host off from the
  backend and from this test process, as a real cut link would.
* **The market-data backend** (`marketsim`) runs in this test process on the
  uplink address (`NetBed.start_backend`): it stands for the outside world
  that no host failure takes down, every host reaches it through its own
  link, and a test holds its `Simulator` to inject faults.
* **Every process** a host runs is ``ip netns exec <ns> argv...`` (iproute2
  execs the command, so the pid is the command's), gets SIGKILL if this
  process dies (``PR_SET_PDEATHSIG``), and has its stdout and stderr kept.
* **Cleanup** runs on exit, also after a failure: partitions healed, clients
  closed, processes killed (then anything else left in a namespace), every
  namespace deleted, temporary stores removed. Namespaces and directories
  named by a pid that no longer runs (a bed whose test process was killed)
  are removed when the next bed starts.
* **NATS without users** by default: the smoke tests prove the network, not
  the permissions. ``NetBed(users=deploy/nats-cluster/users.conf)`` runs the
  nodes with the deployment's users instead, with passwords made per bed
  (`password`), and `start_sniper` logs in as user ``sniper``.

Waiting is always on a condition with a deadline (`wait_until`, `poll_until`),
never a bare sleep. A scenario reads like this (fixtures in ``conftest.py``)::

    async def test_x(nats_cluster: NetBed) -> None:           # 3 hosts, a NATS node each, one cluster
        bed = nats_cluster
        await bed.start_backend()
        signals = await Recorder[Signal](await bed.bus(0), Subjects().signal_all(), Signal).start()
        snipers = [await bed.start_sniper(i, "--assets", "SOL", "--interval", "1") for i in range(3)]
        await bed.partition(2)                                  # or bed.host(1).kill(snipers[1]), bed.kill_nats(0)
        ...
        await bed.heal(2)
        audit = audit_cycles(signals.messages, assets=["SOL"])
        assert not audit.duplicates and audit.most_missing <= 2
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import ipaddress
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import nats
from nats.aio.client import Client

from marketsim import RunningServer, start_server
from messages import Signal
from runtime import NatsBus
from runtime.testing import WaitTimeout, wait_until
from sniper.embedded import find_nats_server

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "snpr"
#: A bed's namespaces (``snpr-<pid>-<seq>-<role>``) and temporary directory (``snpr-<pid>-<seq>-<random>``):
#: the pid says whether the bed's owner still runs.
BED_NAME = re.compile(rf"^{PREFIX}-(\d+)-(\d+)-(\w+)$")
SUBNET_OCTETS = range(200, 250)
UPLINK_HOST = 254
CLIENT_PORT = 4222
ROUTE_PORT = 6222
MONITOR_PORT = 8222
#: How a users file names a password: ``password: $NATS_BOT_PASSWORD`` is user ``bot``'s.
PASSWORD_VARIABLE = re.compile(r"\$(NATS_\w+?_PASSWORD)\b")
LOCK_FILE = Path(tempfile.gettempdir()) / f"{PREFIX}-netbed.lock"
_bed_numbers = itertools.count()
_probe_numbers = itertools.count()


class NetBedError(RuntimeError):
    """Building, driving or tearing down the bed failed (the message names the command and its stderr)."""


# -- iproute2 -----------------------------------------------------------------
def ip_binary() -> str:
    """The ``ip`` command (iproute2); NetBedError when it is not installed."""
    found = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if os.access(p, os.X_OK)), None)
    if not found:
        raise NetBedError("the 'ip' command (iproute2) is not installed")
    return found


async def ip(*args: str) -> str:
    """Run ``ip ARGS`` and return its stdout; NetBedError with its stderr when it fails."""
    proc = await asyncio.create_subprocess_exec(
        ip_binary(), *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode:
        raise NetBedError(f"ip {' '.join(args)} failed ({proc.returncode}): {err.decode().strip()}")
    return out.decode()


def namespaces_unavailable() -> str | None:
    """Why this machine cannot build a bed (None when it can): add a namespace, run a command in it, delete it."""
    name = f"{PREFIX}-{os.getpid()}-probe-x"
    try:
        binary = ip_binary()
        for argv in (["netns", "add", name], ["netns", "exec", name, "true"]):
            done = subprocess.run([binary, *argv], capture_output=True, text=True, timeout=10, check=False)
            if done.returncode:
                return f"ip {' '.join(argv)}: {done.stderr.strip() or f'exit status {done.returncode}'}"
        return None
    except (OSError, subprocess.SubprocessError, NetBedError) as exc:
        return str(exc)
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError, NetBedError):
            subprocess.run([ip_binary(), "netns", "del", name], capture_output=True, timeout=10, check=False)


async def bed_namespaces() -> list[str]:
    """Names of every bed namespace on this machine (any owner)."""
    listing = await ip("netns", "list")
    names = (line.split()[0] for line in listing.splitlines() if line.strip())
    return [name for name in names if BED_NAME.match(name)]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def destroy_namespace(name: str) -> None:
    """SIGKILL every process left in namespace `name`, then delete it (its interfaces go with it)."""
    with contextlib.suppress(NetBedError):
        for pid in (await ip("netns", "pids", name)).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    await ip("netns", "del", name)


async def remove_stale_beds() -> list[str]:
    """Delete the namespaces and work directories of beds whose test process no longer runs; returns them."""
    stale = []
    for name in await bed_namespaces():
        match = BED_NAME.match(name)
        if match and not _pid_alive(int(match.group(1))):
            with contextlib.suppress(NetBedError):  # another bed may be removing it right now
                await destroy_namespace(name)
                stale.append(name)
    return stale + _remove_stale_workdirs()


def _remove_stale_workdirs() -> list[str]:
    stale = []
    for workdir in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*-*-*"):
        match = BED_NAME.match(workdir.name)
        if match and workdir.is_dir() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(workdir, ignore_errors=True)
            stale.append(str(workdir))
    return stale


def _taken_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the root namespace routes or has an address in (not the default route)."""
    routes = json.loads(
        subprocess.run([ip_binary(), "-j", "-4", "route", "show"], capture_output=True, check=True).stdout
    )
    addrs = json.loads(
        subprocess.run([ip_binary(), "-j", "-4", "addr", "show"], capture_output=True, check=True).stdout
    )
    taken = [ipaddress.IPv4Network(r["dst"], strict=False) for r in routes if r.get("dst") not in (None, "default")]
    for link in addrs:
        for info in link.get("addr_info", []):
            taken.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    return taken


def claim_subnet(uplink: str, first_choice: int) -> int:
    """Give `uplink` the address 10.X.0.254/24 of a subnet nothing else uses; returns X.

    Runs under an exclusive lock file, so two beds starting at once never pick the same X.
    """
    with LOCK_FILE.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        taken = _taken_networks()
        for k in range(len(SUBNET_OCTETS)):
            octet = SUBNET_OCTETS[(first_choice + k) % len(SUBNET_OCTETS)]
            if not any(ipaddress.IPv4Network(f"10.{octet}.0.0/24").overlaps(net) for net in taken):
                address = f"10.{octet}.0.{UPLINK_HOST}/24"
                subprocess.run([ip_binary(), "addr", "add", address, "dev", uplink], capture_output=True, check=True)
                return octet
    raise NetBedError(f"no free subnet among 10.{SUBNET_OCTETS[0]}-{SUBNET_OCTETS[-1]}.0.0/24")


# -- processes ----------------------------------------------------------------
def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class BedProcess:
    """A process running in one host's namespace; its stdout and stderr, merged, kept line by line."""

    def __init__(self, name: str, host: int, argv: Sequence[str], process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.host = host
        self.argv = tuple(argv)
        self.process = process
        #: The newest output lines (at most 5,000), without line ends.
        self.lines: deque[str] = deque(maxlen=5000)
        #: Set at every new line and when the process ends (for `wait_until(..., changed=...)`).
        self.changed = asyncio.Event()
        self._total = 0
        self._reader = asyncio.get_running_loop().create_task(self._read(), name=f"output:{name}")

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """None while it runs; negative signal number when a signal ended it (-9 after `Host.kill`)."""
        return self.process.returncode

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def output(self) -> str:
        """Everything kept so far, one string."""
        return "\n".join(self.lines)

    def tail(self, n: int = 20) -> str:
        return "\n".join(list(self.lines)[-n:])

    async def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the reader's 64 KiB limit: dropped, so the pipe never fills
                line = b"[netbed: an output line over 64 KiB was dropped]\n"
            if not line:
                break
            self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))
            self._total += 1
            self.changed.set()
        await self.process.wait()
        self.changed.set()

    async def wait_for_output(self, pattern: str, *, timeout: float = 10.0) -> re.Match[str]:  # noqa: ASYNC109  # a bounded wait in real seconds
        """The first output line matching regex `pattern`, waiting for it; NetBedError if the process ends first."""
        regex = re.compile(pattern)
        scanned = 0

        def found() -> re.Match[str] | None:
            nonlocal scanned
            fresh = list(self.lines)[-min(self._total - scanned, len(self.lines)) :] if self._total > scanned else []
            scanned = self._total
            match = next((m for line in fresh if (m := regex.search(line))), None)
            if match is None and self._reader.done():
                raise NetBedError(f"{self.name} ended ({self.returncode}) without printing {pattern!r}:\n{self.tail()}")
            return match

        return await wait_until(found, timeout=timeout, changed=self.changed, what=f"{pattern!r} from {self.name}")

    async def wait_closed(self) -> int:
        """Wait until it has ended and its output is read to the end; returns its exit status."""
        await self._reader
        assert self.process.returncode is not None
        return self.process.returncode


@dataclass
class Host:
    """One host of the bed: a network namespace with address `address` on ``eth0``, and what it runs."""

    index: int
    namespace: str
    address: str
    #: Its bridge port (the veth end in the switch namespace): `NetBed.partition` sets it down.
    port: str
    processes: list[BedProcess] = field(default_factory=list)

    async def run(
        self,
        *argv: str,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        name: str | None = None,
        inherit_env: bool = True,
    ) -> BedProcess:
        """Start ``argv`` inside this host (``ip netns exec``), tracked until the bed ends.

        `env` is laid over this process's environment (with `inherit_env`), or is the whole environment.
        """
        environment = {**os.environ, **(env or {})} if inherit_env else dict(env or {})
        process = await asyncio.create_subprocess_exec(
            ip_binary(),
            "netns",
            "exec",
            self.namespace,
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=cwd,
            preexec_fn=_die_with_parent,
        )
        proc = BedProcess(name or f"{Path(argv[0]).name}@h{self.index}", self.index, argv, process)
        self.processes.append(proc)
        return proc

    async def kill(self, proc: BedProcess) -> int:
        """SIGKILL `proc` (kill -9: no cleanup, no goodbye to its peers); returns its exit status (-9)."""
        with contextlib.suppress(ProcessLookupError):
            proc.process.kill()
        return await proc.wait_closed()

    async def terminate(self, proc: BedProcess, *, grace: float = 10.0) -> int:
        """SIGTERM `proc` (an orderly stop), SIGKILL after `grace` seconds; returns its exit status."""
        with contextlib.suppress(ProcessLookupError):
            proc.process.terminate()
        try:
            return await asyncio.wait_for(asyncio.shield(proc.wait_closed()), grace)
        except TimeoutError:
            return await self.kill(proc)

    async def kill_all(self) -> None:
        """SIGKILL every process this host started that still runs."""
        for proc in self.processes:
            await self.kill(proc)


# -- NATS ---------------------------------------------------------------------
def nats_node_config(
    *,
    server_name: str,
    cluster_name: str,
    address: str,
    peers: Iterable[str],
    store_dir: Path,
    include: str | None = None,
) -> str:
    """A nats-server config for one node of the bed's cluster: JetStream, routes to `peers`, no auth by default.

    Clients on ``address:4222``, routes on ``address:6222``, monitoring on
    ``address:8222``. Pings every second, two missed close a connection, for
    clients and routes alike: a cut link is noticed in ~3 s, not minutes.
    `include` names a file with an ``authorization`` block (the deployment's
    ``deploy/nats-cluster/users.conf``), relative to the config's directory:
    nats-server resolves every include path, even an absolute one, from
    there. Routes carry no login either way.
    """
    routes = ", ".join(f'"nats-route://{peer}:{ROUTE_PORT}"' for peer in peers)
    users = f'include "{include}"\n' if include is not None else ""
    return f"""\
server_name: "{server_name}"
listen: "{address}:{CLIENT_PORT}"
http: "{address}:{MONITOR_PORT}"
ping_interval: "1s"
ping_max: 2
max_payload: 1MB
jetstream {{
  store_dir: "{store_dir}"
  max_memory_store: 64MB
  max_file_store: 1GB
}}
cluster {{
  name: "{cluster_name}"
  listen: "{address}:{ROUTE_PORT}"
  ping_interval: "1s"
  ping_max: 2
  routes: [{routes}]
}}
{users}"""


@dataclass
class NatsNode:
    """The NATS node of one host: its config and store persist across restarts for the bed's lifetime."""

    host: int
    server_name: str
    address: str
    config: Path
    store_dir: Path
    process: BedProcess | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.address}:{CLIENT_PORT}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.address}:{MONITOR_PORT}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running


async def poll_until(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109  # a bounded wait in real seconds
    interval: float = 0.1,
    what: str = "a condition",
) -> T:
    """Await `check()` every `interval` seconds until it returns a truthy value; `WaitTimeout` after `timeout`.

    For conditions only an async call can see (a monitoring endpoint); `wait_until` for the rest.
    """
    deadline = time.monotonic() + timeout
    while True:
        if value := await check():
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g}s (real time) waiting for {what}")
        await asyncio.sleep(interval)  # clock-ok: a real-time poll of another process's state


async def probe_delivery(
    publisher: Client,
    subscriber: Client,
    *,
    subject: str | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109  # a bounded wait in real seconds
) -> float:
    """Publish on `publisher` until a message reaches `subscriber`; returns the seconds it took.

    Probes go to `subject` (default a fresh ``snpr.probe.*`` subject per call:
    name one that users' permissions allow on a bed with `users`) and are re-sent
    every 0.1 s, since interest crosses a route a moment after the subscription
    (and after a route heals).
    """
    subject = subject or f"{PREFIX}.probe.{os.getpid()}.{next(_probe_numbers)}"
    arrived = asyncio.Event()

    async def on_probe(_: Any) -> None:
        arrived.set()

    started = time.monotonic()
    sub = await subscriber.subscribe(subject, cb=on_probe)
    try:

        async def delivered() -> bool:
            with contextlib.suppress(nats.errors.Error):
                await publisher.publish(subject, b"probe")
            return arrived.is_set()

        await poll_until(delivered, timeout=timeout, what=f"a probe on {subject} to arrive")
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
    return time.monotonic() - started


# -- the bed ------------------------------------------------------------------
class NetBed:
    """Hosts in network namespaces on one bridge; ``async with NetBed(3) as bed: ...``.

    Build and drive: `host(i)` (its `run`, `kill`, `terminate`), `partition(i)`
    and `heal(i)`, `start_nats(i)` / `start_nats_cluster()` / `kill_nats(i)`,
    `start_backend()`, `start_sniper(i, ...)`; observe: `connect(...)` (a
    nats-py client), `bus(...)` (sniper's `NatsBus`), `monitor(i, ...)`,
    `route_peers(i)`. Everything started is stopped on exit.
    """

    def __init__(self, hosts: int = 3, *, users: Path | None = None) -> None:
        """`hosts` namespaces; `users`: run the NATS nodes with that file's users (see `password`), else no auth."""
        if not 1 <= hosts <= 200:
            raise ValueError(f"hosts must be 1..200, not {hosts}")
        self.size = hosts
        self.number = next(_bed_numbers) % 1000
        #: ``<pid>-<seq>``: in every namespace name, so parallel and leftover beds never collide.
        self.tag = f"{os.getpid()}-{self.number}"
        self.switch = f"{PREFIX}-{self.tag}-sw"
        self.uplink = f"{PREFIX}{os.getpid()}r{self.number}"  # at most 15 characters, an interface name's limit
        self.octet = 0
        self.hosts: list[Host] = []
        self.nats: dict[int, NatsNode] = {}
        self.partitioned: set[int] = set()
        self.backend: RunningServer | None = None
        self.users = users
        #: ``NATS_<USER>_PASSWORD`` -> a password made for this bed, for every such variable `users` names.
        self.password_variables: dict[str, str] = {}
        if users is not None:
            found = dict.fromkeys(PASSWORD_VARIABLE.findall(users.read_text()))
            # nats-server parses a variable's value as a config value: "12" is a number, "true" a boolean and
            # "-x..." an error (token_urlsafe makes those). Letters, then hex digits, are always a string.
            self.password_variables = {variable: f"pw{secrets.token_hex(16)}" for variable in found}
        self.workdir = Path()
        self._namespaces: list[str] = []
        self._clients: list[Client] = []
        self._buses: list[NatsBus] = []
        self._uplink_added = False

    # -- lifecycle ----------------------------------------------------------
    async def __aenter__(self) -> NetBed:
        try:
            await remove_stale_beds()
            await self._build()
        except BaseException:
            await asyncio.shield(self._teardown())
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        problems = await asyncio.shield(self._teardown())
        if problems and exc_type is None:
            raise NetBedError("teardown left work undone:\n" + "\n".join(problems))

    async def _add_namespace(self, name: str) -> None:
        await ip("netns", "add", name)
        self._namespaces.append(name)
        await ip("-n", name, "link", "set", "lo", "up")

    async def _build(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{self.tag}-"))
        if self.users is not None:  # beside the node directories: each config includes ../users.conf
            shutil.copyfile(self.users, self.workdir / "users.conf")
        await self._add_namespace(self.switch)
        await ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        await ip("-n", self.switch, "link", "set", "br0", "up")
        await ip("link", "add", self.uplink, "type", "veth", "peer", "name", "up0", "netns", self.switch)
        self._uplink_added = True
        await ip("-n", self.switch, "link", "set", "up0", "master", "br0", "up")
        await ip("link", "set", self.uplink, "up")
        first_choice = (os.getpid() + self.number) % len(SUBNET_OCTETS)
        self.octet = await asyncio.to_thread(claim_subnet, self.uplink, first_choice)
        for index in range(self.size):
            self.hosts.append(await self._add_host(index))

    async def _add_host(self, index: int) -> Host:
        host = Host(index, f"{PREFIX}-{self.tag}-h{index}", f"10.{self.octet}.0.{index + 1}", f"p{index}")
        await self._add_namespace(host.namespace)
        await ip(
            "-n", self.switch, "link", "add", host.port, "type", "veth", "peer", "name", "eth0", "netns", host.namespace
        )
        await ip("-n", self.switch, "link", "set", host.port, "master", "br0", "up")
        await ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        await ip("-n", host.namespace, "link", "set", "eth0", "up")
        return host

    async def _teardown(self) -> list[str]:
        """Undo everything, as far as it goes; returns what could not be undone."""
        problems: list[str] = []
        for index in sorted(self.partitioned):  # healed first, so clients close cleanly
            with contextlib.suppress(NetBedError):
                await self.heal(index)
        for client in self._clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 3)
        for bus in self._buses:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bus.close(), 5)
        if self.backend is not None:
            await self.backend.close()
        for host in self.hosts:
            await host.kill_all()
        if self._uplink_added:  # now, not whenever the kernel frees the switch namespace
            try:
                await ip("link", "del", self.uplink)
                self._uplink_added = False
            except NetBedError as exc:
                problems.append(str(exc))
        for name in reversed(self._namespaces):
            try:
                await destroy_namespace(name)
            except NetBedError as exc:
                problems.append(str(exc))
        self._namespaces.clear()
        if self.workdir != Path():
            shutil.rmtree(self.workdir, ignore_errors=True)
        return problems

    # -- hosts and links ----------------------------------------------------
    def host(self, index: int) -> Host:
        return self.hosts[index]

    @property
    def uplink_address(self) -> str:
        """This test process's address on the bed's network (the backend listens here)."""
        return f"10.{self.octet}.0.{UPLINK_HOST}"

    async def partition(self, index: int) -> None:
        """Cut host `index`'s link: every packet to or from it is dropped until `heal(index)`."""
        await ip("-n", self.switch, "link", "set", self.host(index).port, "down")
        self.partitioned.add(index)

    async def heal(self, index: int) -> None:
        """Restore host `index`'s link (connections that have not timed out meanwhile carry on)."""
        await ip("-n", self.switch, "link", "set", self.host(index).port, "up")
        self.partitioned.discard(index)

    async def reachable(self, index: int, port: int = CLIENT_PORT, *, timeout: float = 0.5) -> bool:  # noqa: ASYNC109  # a connect deadline in real seconds
        """Whether a TCP connection from this test process to host `index`'s `port` succeeds within `timeout`."""
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.host(index).address, port), timeout)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    # -- NATS ---------------------------------------------------------------
    def nats_node(self, index: int) -> NatsNode:
        """Host `index`'s NATS node (its config is written on first use; it runs after `start_nats`)."""
        if index not in self.nats:
            host = self.host(index)
            home = self.workdir / f"h{index}"
            home.mkdir(parents=True, exist_ok=True)
            node = NatsNode(index, f"{PREFIX}-{self.tag}-n{index}", host.address, home / "nats.conf", home / "js")
            peers = [other.address for other in self.hosts if other is not host]
            node.config.write_text(
                nats_node_config(
                    server_name=node.server_name,
                    cluster_name=f"{PREFIX}-{self.tag}",
                    address=host.address,
                    peers=peers,
                    store_dir=node.store_dir,
                    include="../users.conf" if self.users is not None else None,
                )
            )
            self.nats[index] = node
        return self.nats[index]

    def nats_url(self, index: int) -> str:
        """Host `index`'s NATS client URL, ``nats://10.X.0.<index+1>:4222``."""
        return self.nats_node(index).url

    @property
    def nats_urls(self) -> str:
        """Every host's NATS URL in host order, comma-separated (for ``--nats``)."""
        return ",".join(self.nats_url(i) for i in range(self.size))

    async def start_nats(self, index: int, *, timeout: float = 15.0) -> str:  # noqa: ASYNC109  # a bounded wait in real seconds
        """Start host `index`'s NATS node (again, after a kill: same config and store); returns its client URL.

        Returns once the server says "Server is ready" (it listens; the routes
        and the JetStream meta leader come a moment later: `wait_cluster`).
        """
        node = self.nats_node(index)
        if node.running:
            raise NetBedError(f"the NATS node of host {index} already runs")
        node.process = await self.host(index).run(
            find_nats_server(), "-c", str(node.config), env=self.password_variables, name=f"nats@h{index}"
        )
        await node.process.wait_for_output("Server is ready", timeout=timeout)
        return node.url

    async def start_nats_cluster(self, *, timeout: float = 30.0) -> str:  # noqa: ASYNC109  # a bounded wait in real seconds
        """Start every host's NATS node and wait until they form one cluster; returns `nats_urls`."""
        await asyncio.gather(*(self.start_nats(i) for i in range(self.size)))
        await self.wait_cluster(timeout=timeout)
        return self.nats_urls

    async def kill_nats(self, index: int) -> None:
        """kill -9 host `index`'s NATS node."""
        node = self.nats_node(index)
        if node.process is not None:
            await self.host(index).kill(node.process)

    async def monitor(self, index: int, endpoint: str, *, timeout: float = 1.0) -> dict[str, Any] | None:  # noqa: ASYNC109  # a request deadline in real seconds
        """GET a monitoring endpoint of host `index`'s node (``routez``, ``jsz``, ``varz``, ...), None if it fails."""
        url = f"{self.nats_node(index).monitor_url}/{endpoint.lstrip('/')}"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.get(url) as response,
            ):
                if response.status != 200:
                    return None
                body: dict[str, Any] = await response.json(content_type=None)
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def route_peers(self, index: int) -> set[int] | None:
        """The hosts whose nodes host `index`'s node has a route to (None if its monitor does not answer)."""
        routez = await self.monitor(index, "routez")
        if routez is None:
            return None
        by_name = {node.server_name: node.host for node in self.nats.values()}
        return {by_name[r["remote_name"]] for r in routez.get("routes") or [] if r.get("remote_name") in by_name}

    async def wait_cluster(self, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109  # a bounded wait in real seconds
        """Wait until every running, reachable node routes to all the others and its JetStream is healthy."""
        live = {i for i, node in self.nats.items() if node.running and i not in self.partitioned}

        async def formed() -> bool:
            for index in live:
                if await self.route_peers(index) != live - {index}:
                    return False
                if await self.monitor(index, "healthz") is None:  # 503 until JetStream has a meta leader
                    return False
            return True

        await poll_until(formed, timeout=timeout, what=f"NATS nodes {sorted(live)} to form a cluster")

    # -- clients --------------------------------------------------------------
    def password(self, user: str) -> str:
        """The password of `user` (``sniper``, ``operator``, ``bot``) on a bed started with `users`."""
        variable = f"NATS_{user.upper()}_PASSWORD"
        if variable not in self.password_variables:
            raise NetBedError(f"no password for {user!r}: the bed's users file names no ${variable}")
        return self.password_variables[variable]

    async def connect(
        self,
        *hosts: int,
        user: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109  # a connect deadline in real seconds
        **options: Any,
    ) -> Client:
        """A nats-py client in this test process, to the nodes of `hosts` (default all, in that order); closed on exit.

        `user` logs in as that user of the bed's `users` file. `options` go to
        ``Client.connect`` (reconnect every 0.2 s, forever, unless they say otherwise); a
        failed connect raises nats-py's error, its socket closed.
        """
        servers = [self.nats_url(i) for i in hosts or range(self.size)]
        if user is not None:
            options.update(user=user, password=self.password(user))
        options.setdefault("name", f"netbed-{self.tag}")
        options.setdefault("reconnect_time_wait", 0.2)
        options.setdefault("max_reconnect_attempts", -1)
        options.setdefault("connect_timeout", 2)
        client = Client()
        try:
            await asyncio.wait_for(client.connect(servers=servers, **options), timeout)
        except BaseException:  # nats-py leaves a refused client's socket open (a ResourceWarning later)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2)
            raise
        self._clients.append(client)
        return client

    async def bus(self, *hosts: int, user: str | None = None, name: str = "netbed-observer") -> NatsBus:
        """sniper's own `NatsBus` in this test process, to `hosts` (default all), as `user` if given; closed on exit."""
        urls = ",".join(self.nats_url(i) for i in hosts or range(self.size))
        password = self.password(user) if user is not None else None
        bus = await NatsBus.connect(urls, name=name, user=user, password=password)
        self._buses.append(bus)
        return bus

    # -- backend and sniper -------------------------------------------------
    async def start_backend(self, **simulator: Any) -> RunningServer:
        """The reference backend (`marketsim`), in this test process on the uplink address; stopped on exit.

        `simulator` goes to `marketsim.Simulator` (``seed=``, ``faults=``, ...); the
        returned server's ``sim`` injects faults while the bed runs.
        """
        if self.backend is not None:
            raise NetBedError("the backend already runs")
        self.backend = await start_server(self.uplink_address, 0, **simulator)
        return self.backend

    async def start_sniper(self, index: int, *args: str, env: Mapping[str, str] | None = None) -> BedProcess:
        """``python -m sniper run --nats <all nodes> --backend <backend> ARGS`` in host `index`, cwd the repo root.

        The node URLs start with the host's own node, and sniper's `NatsBus`
        tries them in that order (``dont_randomize``), so a sniper talks to its
        own host's node while it runs and moves to the next only when it is
        gone (tests/multihost/test_failover.py relies on it). `args` come last, so they
        may override ``--nats`` or ``--backend`` (argparse keeps the last). No
        ``SNIPER_*`` variable of this process leaks in; `env` adds variables. On
        a bed with `users`, it logs in as user ``sniper`` (``SNIPER_NATS_USER``/``_PASSWORD``).
        """
        defaults = ["--nats", ",".join(self.nats_url(i) for i in [index, *(j for j in range(self.size) if j != index)])]
        if self.backend is not None:
            defaults += ["--backend", self.backend.url]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("SNIPER_")}
        environment["PYTHONUNBUFFERED"] = "1"
        if self.users is not None:
            environment.update(SNIPER_NATS_USER="sniper", SNIPER_NATS_PASSWORD=self.password("sniper"))
        environment.update(env or {})
        return await self.host(index).run(
            *(sys.executable, "-m", "sniper", "run", *defaults, *args),
            env=environment,
            inherit_env=False,
            cwd=ROOT,
            name=f"sniper@h{index}",
        )


# -- what the signals say -----------------------------------------------------
@dataclass(frozen=True)
class CycleAudit:
    """What a list of signals says per asset: cycles published more than once, cycles never published.

    Keys are (asset, cycle), as issue 15 states its guarantees ("no duplicate
    (asset, cycle)"): two schedulers both active after a heal publish the same
    cycle twice, whatever their epochs. `epochs` lists each asset's epochs in
    order of arrival, so a test can tell a renumbering scheduler (a new epoch
    restarting at cycle 0) from double publishing.
    """

    #: (asset, cycle) -> how many signals carried it.
    counts: dict[tuple[str, int], int]
    #: The entries of `counts` above 1.
    duplicates: dict[tuple[str, int], int]
    #: Per asset, the cycles between its first and its last seen that no signal carried.
    missing: dict[str, list[int]]
    #: Per asset, its epochs in order of first arrival.
    epochs: dict[str, list[int]]
    #: Expected assets without a single signal.
    silent: tuple[str, ...]

    @property
    def clean(self) -> bool:
        """No duplicate, no gap, no silent asset."""
        return not (self.duplicates or any(self.missing.values()) or self.silent)

    @property
    def most_missing(self) -> int:
        """The largest number of missing cycles of any one asset (issue 15 allows at most two per scenario)."""
        return max((len(cycles) for cycles in self.missing.values()), default=0)

    def cycles(self, asset: str) -> list[int]:
        """The distinct cycles seen for `asset`, in order."""
        return sorted(cycle for (a, cycle) in self.counts if a == asset)


def audit_cycles(signals: Iterable[Signal], *, assets: Iterable[str] = ()) -> CycleAudit:
    """Count duplicate and missing (asset, cycle)s in `signals` (e.g. a `Recorder[Signal]`'s ``messages``).

    Missing means absent between the asset's first and last cycle seen: an
    observer that subscribed late does not see gaps before its first signal.
    `assets` names assets that must appear at all (otherwise listed as `silent`).
    """
    counts: dict[tuple[str, int], int] = {}
    epochs: dict[str, list[int]] = {}
    for sig in signals:
        counts[(sig.asset, sig.cycle)] = counts.get((sig.asset, sig.cycle), 0) + 1
        seen = epochs.setdefault(sig.asset, [])
        if sig.epoch not in seen:
            seen.append(sig.epoch)
    missing: dict[str, list[int]] = {}
    for asset in epochs:
        cycles = {cycle for (a, cycle) in counts if a == asset}
        missing[asset] = sorted(set(range(min(cycles), max(cycles) + 1)) - cycles)
    return CycleAudit(
        counts=counts,
        duplicates={key: n for key, n in counts.items() if n > 1},
        missing=missing,
        epochs=epochs,
        silent=tuple(asset for asset in dict.fromkeys(assets) if asset not in epochs),
    )
