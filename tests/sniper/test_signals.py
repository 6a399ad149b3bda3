"""Late joiners over a real nats-server: `sniper signals last | tail`, and the README's nats-py snippet."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest

from marketsim import serve
from messages import Signal, Subjects, decode, encode
from messages.subjects import SIGNALS_STREAM
from runtime import NatsBus
from runtime.stream import MSG_ID
from runtime.testing import Recorder, wait_until
from sniper.app import run_pipeline
from sniper.config import Settings
from sniper.embedded import EmbeddedNats

ROOT = Path(__file__).resolve().parents[2]
SNIPER = [sys.executable, "-m", "sniper"]
SUBJECTS = Subjects()
pytestmark = pytest.mark.nats


@dataclass
class Finished:
    """A pipeline that ran a few cycles for SOL and BTC and stopped; its broker still up."""

    nats: EmbeddedNats
    last: dict[str, Signal]


@pytest.fixture
async def finished(nats_server: EmbeddedNats) -> AsyncIterator[Finished]:
    async with serve(port=0, seed=5) as backend:
        observer = await NatsBus.connect(nats_server.url, name="observer")
        signals = await Recorder[Signal](observer, SUBJECTS.signal_all(), Signal).start()
        settings = Settings(nats=nats_server.url, backend=backend.url, assets=("SOL", "BTC"), interval=0.3, window=0.2)
        async with run_pipeline(settings):
            await signals.wait_for(lambda msgs: {s.asset for s in msgs if s.cycle >= 1} == {"SOL", "BTC"})
        await observer.flush()
        last = {s.asset: s for s in sorted(signals.messages, key=lambda s: s.cycle)}
        await observer.close()
        yield Finished(nats_server, last)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SNIPER, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ}
    )


class TestSignalsCommand:
    async def test_last_prints_the_newest_signal_of_every_asset(self, finished: Finished) -> None:
        """After the pipeline stopped, `signals last` still shows each asset's last cycle."""
        done = await asyncio.to_thread(cli, "signals", "last", "--nats", finished.nats.url)
        assert done.returncode == 0, done.stderr
        cycles = dict(re.findall(r"^(\w+)\s+cycle=(\d+)", done.stdout, re.M))
        assert cycles == {a: str(s.cycle) for a, s in finished.last.items()}

    async def test_one_asset_as_json_is_the_signal_itself(self, finished: Finished) -> None:
        """`--asset sol --json` prints the stored Signal, decodable and equal to the one bots received."""
        done = await asyncio.to_thread(cli, "signals", "last", "--asset", "sol", "--json", "--nats", finished.nats.url)
        assert done.returncode == 0, done.stderr
        assert decode(done.stdout.strip().encode(), Signal) == finished.last["SOL"]

    async def test_an_asset_never_seen_exits_1_with_a_reason(self, finished: Finished) -> None:
        """Nothing stored for XRP: exit 1 and one line naming the stream and subject."""
        done = await asyncio.to_thread(cli, "signals", "last", "--asset", "XRP", "--nats", finished.nats.url)
        assert done.returncode == 1
        assert "sniper_signals holds no signal on sniper.signal.XRP" in done.stderr

    async def test_tail_starts_with_the_newest_of_each_asset(self, finished: Finished) -> None:
        """`signals tail --for 1` prints the stored newest per asset (no pipeline runs, so nothing more)."""
        done = await asyncio.to_thread(cli, "signals", "tail", "--for", "1", "--nats", finished.nats.url)
        assert done.returncode == 0, done.stderr
        assert sorted(re.findall(r"^(\w+)\s+cycle=", done.stdout, re.M)) == ["BTC", "SOL"]


class TestLateJoiner:
    async def test_the_readme_snippet_gets_the_last_signal_per_asset(self, finished: Finished) -> None:
        """The README's nats-py code, run as written, receives SOL's and BTC's newest signals at once."""
        readme = (ROOT / "README.md").read_text()
        snippet = re.search(r"From nats-py.*?```python\n(.*?)```", readme, re.S)
        assert snippet is not None
        received: list[Signal] = []
        nc = await nats.connect(finished.nats.url)
        try:
            scope: dict[str, object] = {"nc": nc, "print": lambda subject, data: received.append(decode(data, Signal))}
            code = "async def _late_joiner():\n" + "".join(f"    {line}\n" for line in snippet.group(1).splitlines())
            exec(compile(code, "README.md", "exec"), scope)  # the documented snippet, as documented
            await scope["_late_joiner"]()  # type: ignore[operator]
            await wait_until(lambda: len(received) >= 2, timeout=10)
        finally:
            await nc.close()
        assert {s.asset: s for s in received} == finished.last

    async def test_a_republished_signal_is_a_duplicate(self, finished: Finished) -> None:
        """Publishing SOL's last signal again with its Nats-Msg-Id: JetStream reports a duplicate, stores nothing."""
        nc = await nats.connect(finished.nats.url)
        try:
            js = nc.jetstream()
            before = await js.stream_info(SUBJECTS.stream(SIGNALS_STREAM))
            sol = finished.last["SOL"]
            ack = await js.publish(SUBJECTS.signal("SOL"), encode(sol), headers={MSG_ID: sol.msg_id})
            after = await js.stream_info(SUBJECTS.stream(SIGNALS_STREAM))
        finally:
            await nc.close()
        assert ack.duplicate and after.state.messages == before.state.messages
