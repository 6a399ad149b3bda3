"""The shared call: one upstream call per (module, key) across processes, and the cache they share."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from actors.shared_fetch import SharedCall
from actors.upstream import Outcome
from messages import EtfFlows, ModulePayload, SharedFetch, decode, encode
from runtime import MemoryBus, VirtualClock
from runtime.kv import KeyValue, KVUnavailable, MemoryKeyValue

from .. import samples
from ..harness import Harness

TTL = 60.0


class Upstream:
    """Counts calls; answers after `latency` seconds of the clock with a payload, or with `failure`."""

    def __init__(self, clock: VirtualClock, payload: ModulePayload | None, latency: float = 0.5) -> None:
        self.clock = clock
        self.payload = payload
        self.latency = latency
        self.calls = 0
        self.failure: Outcome | None = None

    async def __call__(self, key: str, budget: float) -> tuple[ModulePayload | None, Outcome]:
        self.calls += 1
        await self.clock.sleep(min(self.latency, budget))
        if self.failure is not None:
            return None, self.failure
        return self.payload, Outcome("ok", "ok", status=200, latency_ms=self.latency * 1000)


def process(bucket: KeyValue, clock: VirtualClock, holder: str) -> SharedCall:
    return SharedCall("etf", bucket, holder, clock, TTL)


@pytest.fixture
def flows() -> EtfFlows:
    return msgspec.convert(samples.ETF, EtfFlows)


class TestSharedCall:
    async def test_processes_asking_at_once_cost_one_call(self, vclock: VirtualClock, flows: EtfFlows) -> None:
        """Three processes ask for BTC in the same moment: one calls, the others get its answer."""
        bucket, upstream = MemoryKeyValue("cache"), Upstream(vclock, flows)
        answers = await asyncio.gather(*(process(bucket, vclock, f"p{i}").call("BTC", 3.0, upstream) for i in range(3)))
        assert upstream.calls == 1 and all(payload == flows for payload, _ in answers)
        assert all(outcome.ok for _, outcome in answers)

    async def test_a_fresh_answer_serves_every_process_until_it_expires(
        self, vclock: VirtualClock, flows: EtfFlows
    ) -> None:
        """Another process reuses the stored answer within the cache lifetime; after it, one new call."""
        bucket, upstream = MemoryKeyValue("cache"), Upstream(vclock, flows)
        await process(bucket, vclock, "a").call("BTC", 3.0, upstream)
        await vclock.sleep(TTL - 1)
        await process(bucket, vclock, "b").call("BTC", 3.0, upstream)
        assert upstream.calls == 1
        await vclock.sleep(2)
        await process(bucket, vclock, "b").call("BTC", 3.0, upstream)
        assert upstream.calls == 2

    async def test_a_failure_answers_those_waiting_and_is_not_kept(self, vclock: VirtualClock) -> None:
        """A 402 reaches the process that waited for the call; the next ask calls again (no cached failure)."""
        bucket, upstream = MemoryKeyValue("cache"), Upstream(vclock, None)
        upstream.failure = Outcome("entitlement", "payment_required", status=402, detail="plan")
        first, second = await asyncio.gather(
            process(bucket, vclock, "a").call("BTC", 3.0, upstream),
            process(bucket, vclock, "b").call("BTC", 3.0, upstream),
        )
        assert upstream.calls == 1
        assert [(p, o.reason, o.status) for p, o in (first, second)] == [(None, "payment_required", 402)] * 2
        await process(bucket, vclock, "b").call("BTC", 3.0, upstream)
        assert upstream.calls == 2

    async def test_a_dead_claimants_claim_lapses_and_another_calls(self, vclock: VirtualClock, flows: EtfFlows) -> None:
        """A claim whose process died is waited on only until it lapses; then the waiter calls itself."""
        bucket, upstream = MemoryKeyValue("cache"), Upstream(vclock, flows)
        now = vclock.now()
        dead = SharedFetch(module="etf", key="BTC", holder="dead", state="claimed", ts=now, until=now + 1.0)
        await bucket.put("etf.BTC", encode(dead))
        payload, _ = await process(bucket, vclock, "b").call("BTC", 3.0, upstream)
        assert payload == flows and upstream.calls == 1 and vclock.now() - now >= 1.0

    async def test_a_waiter_out_of_budget_says_timeout_without_calling(
        self, vclock: VirtualClock, flows: EtfFlows
    ) -> None:
        """Waiting on a live claim past its own budget: a timeout, and no call of its own."""
        bucket, upstream = MemoryKeyValue("cache"), Upstream(vclock, flows)
        now = vclock.now()
        busy = SharedFetch(module="etf", key="BTC", holder="slow", state="claimed", ts=now, until=now + 30)
        await bucket.put("etf.BTC", encode(busy))
        payload, outcome = await process(bucket, vclock, "b").call("BTC", 2.0, upstream)
        assert payload is None and outcome.reason == "timeout" and upstream.calls == 0

    @pytest.mark.parametrize("junk", [b"junk", b'{"type": "shared_fetch"}'], ids=["not-json", "incomplete"])
    async def test_junk_in_the_entry_is_overwritten(self, vclock: VirtualClock, flows: EtfFlows, junk: bytes) -> None:
        """An undecodable entry counts as absent: the process calls and stores a good answer."""
        bucket, upstream = MemoryKeyValue("cache"), Upstream(vclock, flows)
        await bucket.put("etf.BTC", junk)
        payload, _ = await process(bucket, vclock, "a").call("BTC", 3.0, upstream)
        stored = await bucket.get("etf.BTC")
        assert payload == flows and stored is not None and decode(stored.value or b"", SharedFetch).state == "answered"


class TestFetcherWithoutTheBucket:
    async def test_an_unreachable_cache_bucket_means_calling_alone(self, vclock: VirtualClock) -> None:
        """With the cache bucket unreachable the ETF fetcher still answers, from its own call."""

        class NoCache(MemoryBus):
            async def key_value(self, bucket: str) -> KeyValue:
                if bucket.endswith("_cache"):
                    raise KVUnavailable("no cache bucket (test)")
                return await super().key_value(bucket)

        bus = NoCache(clock=vclock)
        harness = await Harness(vclock, bus).record()
        async with harness.run():
            await vclock.sleep(6)
        etf = [s.modules["etf"].status for s in harness.signals.messages]
        assert etf and set(etf) == {"ok"} and harness.backend.count(samples.PATHS["etf"]) >= 1
        await bus.close()
