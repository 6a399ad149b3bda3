"""Hostile input to every actor handler: no actor crashes, bad input is counted, the next cycle is complete.

The real actors, started by `sniper.app.run_pipeline` exactly as `sniper run`
starts them (flags, circuits, discovery, one fetcher per module, assembler,
scheduler), run on the in-memory bus in virtual time against a FakeBackend
(the test `Harness`).
Hypothesis publishes random bytes, random JSON and well-shaped messages with
extreme values on every subject they subscribe to (and into the key-value
buckets they watch); afterwards every actor is still running without a
restart, every undecodable message was counted by each actor that received
it, everything sniper itself published decodes, and a normal cycle still
ends in a complete signal for every asset. `TestFindings` has one
regression test per finding of the hostile probe, at the handler level.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messages import (
    MAX_MESSAGE_BYTES,
    AnyMessage,
    Degraded,
    FlagChanged,
    FlagReply,
    ModuleData,
    decoder_for,
)
from messages.errors import DecodeError
from messages.subjects import CIRCUITS_BUCKET, FLAGS_BUCKET, ROUTES_BUCKET, ROUTES_KEY, BucketName
from runtime import Actor, ActorState, MemoryBus, VirtualClock
from runtime.bus import Envelope, subject_matches
from runtime.testing import Recorder
from sniper.app import actor_names
from sniper.config import MODULES

from ..harness import Harness
from ..messages.test_hostile_decode import DEEP, EXAMPLES, dump, json_values, shaped

ASSETS = ("SOL", "BTC")
INTERVAL = 5.0
EXAMPLE_OF = {type(x): x for x in EXAMPLES}
#: Where a request's answer goes when the junk is sent as a request.
INBOX = "_INBOX.hostile"
#: Key-value buckets the actors watch or read, with a key each: junk goes there too.
KV_TARGETS: tuple[tuple[BucketName, str], ...] = (
    (FLAGS_BUCKET, "ETF"),
    (FLAGS_BUCKET, "WHALE"),
    (CIRCUITS_BUCKET, "whale.all"),
    (ROUTES_BUCKET, ROUTES_KEY),
)


class Attacked(Harness):
    """The harness, with everything published on the bus kept and what an attack needs to aim and judge."""

    def __init__(self, clock: VirtualClock, bus: MemoryBus) -> None:
        super().__init__(clock, bus)
        self.published: list[Envelope] = []

    def targets(self) -> list[tuple[str, list[tuple[Actor, Any]]]]:
        """Every concrete subject an actor subscribes to ('*' filled in), with who decodes it as what."""
        subjects = []
        for actor in self.actors:
            for sub in actor.subscriptions():
                for filler in ("whale", "nope"):
                    subjects.append(sub.subject.replace("*", filler))
        return [
            (
                subject,
                [(a, s.type) for a in self.actors for s in a.subscriptions() if subject_matches(s.subject, subject)],
            )
            for subject in sorted(set(subjects))
        ]

    def all_running(self) -> bool:
        return all(a.state is ActorState.RUNNING and a.restarts == 0 for a in self.actors)

    def metric(self, actor: Actor) -> float | None:
        return self.metrics.registry.get_sample_value("sniper_bad_messages_total", {"actor": actor.name})

    async def complete_cycle_for_every_asset(self) -> bool:
        """Let two intervals pass; True if every asset got a complete signal in them."""
        before = len(self.signals.messages)
        await self.clock.sleep(2 * INTERVAL)
        fresh = self.signals.messages[before:]
        return all(any(s.asset == asset and s.complete for s in fresh) for asset in ASSETS)


@asynccontextmanager
async def pipeline() -> AsyncIterator[Attacked]:
    """Start every actor `sniper run` would, on a MemoryBus in virtual time; one cycle has run.

    A fresh clock and bus per call, not the `harness` fixture: Hypothesis runs many examples in one test.
    """
    clock = VirtualClock(autojump=True)
    bus = MemoryBus(clock=clock)
    try:
        attacked = Attacked(clock, bus)
        await attacked.record()

        async def keep(env: Envelope) -> None:
            attacked.published.append(env)

        await bus.subscribe(attacked.subjects.everything(), keep)
        await bus.subscribe(INBOX, keep)
        # All of `sniper run`'s actors, discovery too (the harness leaves it out by default).
        async with attacked.run(assets=ASSETS, interval=INTERVAL, window=3.0, actors=actor_names()):
            assert await attacked.complete_cycle_for_every_asset()
            yield attacked
    finally:
        clock.stop_autojump()
        await bus.close()


def undecodable(tp: Any, data: bytes) -> bool:
    try:
        decoder_for(tp).decode(data)
    except DecodeError:
        return True
    return False


def payloads(tp: Any) -> st.SearchStrategy[bytes]:
    """Junk for a subscription decoding `tp`: bytes, JSON, or its own message type made extreme."""
    own = EXAMPLE_OF.get(tp)
    return st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: dump(v).encode()),
        shaped((own,) if own is not None else EXAMPLES, huge=False),  # the 900 KB string: canned tests
    )


async def assert_unharmed(run: Attacked, expected_bad: Counter[str], junk: set[bytes]) -> None:
    """Nobody crashed, every undecodable delivery was counted, sniper's own output decodes, cycles complete."""
    assert run.all_running(), [(a.name, a.state, a.restarts) for a in run.actors]
    assert run.bus.stats.handler_errors == 0, run.bus.stats
    for actor in run.actors:
        assert actor.bad_messages >= expected_bad[actor.name], (actor.name, actor.bad_messages)
        assert (run.metric(actor) or 0) == actor.bad_messages
    assert await run.complete_cycle_for_every_asset()
    ours = [env for env in run.published if env.data not in junk]
    for env in ours:  # nothing an attack provokes makes sniper publish what its own decoders refuse
        decoder_for(AnyMessage).decode(env.data, subject=env.subject)


class TestFuzzEveryHandler:
    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    async def test_junk_on_every_subject_harms_nothing(self, data: st.DataObject) -> None:
        """Random bytes, JSON and extreme messages on every subscribed subject and watched bucket."""
        async with pipeline() as run:
            targets = run.targets()
            expected_bad: Counter[str] = Counter()
            junk: set[bytes] = set()
            for _ in range(data.draw(st.integers(1, 25), label="messages")):
                if data.draw(st.integers(0, 9), label="into a bucket") == 0:
                    bucket, key = data.draw(st.sampled_from(KV_TARGETS), label="bucket")
                    payload = data.draw(payloads(None), label="payload")
                    await (await run.bus.key_value(run.subjects.kv_bucket(bucket))).put(key, payload)
                    continue
                subject, receivers = data.draw(st.sampled_from(targets), label="subject")
                payload = data.draw(payloads(receivers[0][1]), label="payload")
                if len(payload) > MAX_MESSAGE_BYTES:
                    continue  # the broker refuses it before any actor could see it
                reply = INBOX if data.draw(st.booleans(), label="as a request") else None
                junk.add(payload)
                await run.bus.publish(subject, payload, reply=reply)
                for actor, tp in receivers:
                    expected_bad[actor.name] += undecodable(tp, payload)
                await run.clock.sleep(0.01)  # a sender's pace: well inside every control-plane budget
            await assert_unharmed(run, expected_bad, junk)

    async def test_every_canned_attack_on_every_subject(self) -> None:
        """The probe's worst payloads on every subject: each delivery counted, nothing else changes."""
        attacks = [
            b"[" * DEEP,
            b'{"type":"tick","x":' + b"[" * DEEP + b"]" * DEEP + b"}",
            b"1e400",
            b"\xff" * 64,
            json.dumps({"type": "tick", "asset": "SOL", "cycle": 10**23, "ts": 1.0, "deadline": 2.0}).encode(),
            json.dumps({"flag": "ETF", "enabled": False, "why": "w" * 900_000}).encode(),
            b'{"type":"signal","asset":"SOL","cycle":1e400,"score":"NaN"}',
            b'{"type":"route_map","v":1,"ts":1e15,"source":"openapi","revision":9e18}',
        ]
        async with pipeline() as run:
            expected_bad: Counter[str] = Counter()
            for subject, receivers in run.targets():
                for payload in attacks:
                    await run.bus.publish(subject, payload, reply=INBOX)
                    for actor, _ in receivers:
                        expected_bad[actor.name] += 1
                await run.clock.sleep(0.01)
            assert all(expected_bad[a.name] > 0 for a in run.actors)
            await assert_unharmed(run, expected_bad, set(attacks))
            for actor in run.actors:
                assert actor.bad_messages >= expected_bad[actor.name]


class TestFindings:
    """One regression test per finding of the hostile probe, where the actors meet it."""

    async def test_cycle_1e23_tick_is_counted_and_never_answered(self) -> None:
        """Finding: "cycle 99999999999999999999999 accepted and published"."""
        async with pipeline() as run:
            now = run.clock.now()
            tick = dump({"type": "tick", "asset": "SOL", "cycle": 10**23, "ts": now, "deadline": now + 3}).encode()
            await run.bus.publish(run.subjects.tick("SOL"), tick)
            await run.clock.sleep(0.01)
            receivers = [a for a in run.actors if any(s.subject.startswith("sniper.tick") for s in a.subscriptions())]
            assert len(receivers) == len(MODULES) + 1 and all(a.bad_messages == 1 for a in receivers)
            answers = [decoder_for(AnyMessage).decode(env.data) for env in run.published if env.data != tick]
            assert not any(getattr(msg, "cycle", 0) >= 2**53 for msg in answers)
            await assert_unharmed(run, Counter({a.name: 1 for a in receivers}), {tick})

    async def test_deep_nesting_is_counted_and_logged_with_its_subject(self, caplog: pytest.LogCaptureFixture) -> None:
        """Finding: "deep nesting raises RecursionError (logged without subject, not counted)"."""
        # In a field the type does not know, which msgspec skips by recursing: where RecursionError came from.
        deep = b'{"type":"module_data","later":' + b"[" * DEEP + b"]" * DEEP + b"}"
        subject = "sniper.data.whale.SOL"
        async with pipeline() as run:
            with caplog.at_level(logging.WARNING, logger="sniper"):
                await run.bus.publish(subject, deep)
                await run.clock.sleep(0.01)
            receivers = [a for a in run.actors if any(subject_matches(s.subject, subject) for s in a.subscriptions())]
            assert {a.name for a in receivers} == {"assembler", "circuits"}
            assert all(a.bad_messages == 1 for a in receivers)
            logged = [r for r in caplog.records if r.getMessage() == "bad_message"]
            assert {r.name for r in logged} == {f"sniper.actor.{a.name}" for a in receivers}
            assert all(r.fields["subject"] == subject for r in logged)  # type: ignore[attr-defined]  # StructLogger's extra
            assert not any(r.exc_info for r in caplog.records)  # nothing escaped as a traceback
            await assert_unharmed(run, Counter({a.name: 1 for a in receivers}), {deep})

    async def test_tick_with_deadline_before_ts_is_counted_and_never_answered(self) -> None:
        """Finding: "a tick with deadline < ts accepted"."""
        async with pipeline() as run:
            now = run.clock.now()
            degraded = await Recorder[Degraded](run.bus, run.subjects.degraded_all(), Degraded).start()
            data = await Recorder[ModuleData](run.bus, run.subjects.data_all(), ModuleData).start()
            tick = dump({"type": "tick", "asset": "SOL", "cycle": 1000, "ts": now, "deadline": now - 1}).encode()
            await run.bus.publish(run.subjects.tick("SOL"), tick)
            await run.clock.sleep(0.5)
            receivers = [a for a in run.actors if any(s.subject.startswith("sniper.tick") for s in a.subscriptions())]
            assert len(receivers) == len(MODULES) + 1 and all(a.bad_messages == 1 for a in receivers)
            assert not any(d.cycle == 1000 for d in degraded.messages) and not any(
                d.cycle == 1000 for d in data.messages
            )
            await assert_unharmed(run, Counter({a.name: 1 for a in receivers}), {tick})

    async def test_900kb_why_is_neither_stored_published_nor_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """Finding: "a 900 KB `why` stored, published and logged"."""
        command = json.dumps({"flag": "ETF", "enabled": False, "why": "w" * 900_000}).encode()
        async with pipeline() as run:
            changes = await Recorder[FlagChanged](run.bus, run.subjects.flags_changed(), FlagChanged).start()
            store = await run.bus.key_value(run.subjects.kv_bucket("flags"))
            before = await store.entries()
            with caplog.at_level(logging.DEBUG, logger="sniper"):
                env = await run.bus.request(run.subjects.command("flags"), command, timeout=1)
                reply = decoder_for(FlagReply).decode(env.data)
                # A FlagChanged with such a `why`, written straight into the bucket, is not applied either.
                forged = json.dumps({"type": "flag_changed", "flag": "WHALE", "enabled": False, "ts": run.clock.now()})
                await store.put("WHALE", forged[:-1].encode() + b',"why":"' + b"w" * 900_000 + b'"}')
                await run.clock.sleep(0.01)
            assert not reply.ok and "bad command" in (reply.error or "") and "$.why" in (reply.error or "")
            assert len(env.data) < 1000
            assert changes.messages == [] and (await store.entries())["ETF"] == before["ETF"]
            flags = next(a for a in run.actors if a.name == "flags")
            assert flags.bad_messages == 1
            for record in caplog.records:  # nothing logged carries the 900 KB
                assert len(record.getMessage()) + len(repr(getattr(record, "fields", {}))) < 2000
            assert await run.complete_cycle_for_every_asset()
            last = run.signals.messages[-1]
            assert last.modules["whale"].status == "ok" and last.modules["etf"].status == "ok"
