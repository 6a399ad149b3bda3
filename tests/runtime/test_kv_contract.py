"""One KV contract, two implementations: MemoryKeyValue and JetStream KV on a real server.

The contract's checks ship in `runtime.testing` (``check_kv_*``), so any
`KeyValue` implementation can run them; here they run against both of ours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from runtime import Bus
from runtime.kv import KeyValue, MemoryKeyValue
from runtime.testing import (
    BAD_KEYS,
    KV_CHECKS,
    BucketOpener,
    check_key_value,
    check_kv_compare_and_set,
    check_kv_rejects_bad_key,
)


class TestKeyValueContract:
    @pytest.mark.parametrize("check", KV_CHECKS, ids=lambda check: check.__name__)
    async def test_bucket_honours_the_contract(
        self, any_bus: Bus, check: Callable[[BucketOpener], Awaitable[None]]
    ) -> None:
        """Each `runtime.testing` KeyValue check passes on the bus's buckets (see the check's docstring)."""
        await check(any_bus.key_value)

    @pytest.mark.parametrize("bad", BAD_KEYS)
    async def test_bad_keys_are_rejected(self, any_bus: Bus, bad: str) -> None:
        """Keys outside the JetStream alphabet are refused before any I/O."""
        await check_kv_rejects_bad_key(any_bus.key_value, bad)


class NoCompareAndSet(MemoryKeyValue):
    """A broken bucket whose update ignores the revision: the checks must catch it."""

    async def update(self, key: str, value: bytes, *, last: int) -> int:
        return await self.put(key, value)


async def broken_buckets(name: str) -> KeyValue:
    return NoCompareAndSet(name)


class TestChecksCatchABrokenBucket:
    async def test_check_key_value_passes_on_memory_buckets(self) -> None:
        """`check_key_value`, the whole suite for a third party's KeyValue, passes on MemoryKeyValue."""
        buckets: dict[str, MemoryKeyValue] = {}

        async def open_bucket(name: str) -> KeyValue:
            return buckets.setdefault(name, MemoryKeyValue(name))

        await check_key_value(open_bucket)

    async def test_a_check_fails_with_an_assertion(self) -> None:
        """A bucket without compare-and-set fails `check_kv_compare_and_set` with AssertionError."""
        with pytest.raises(AssertionError, match=r"update\(last=0\) of an existing key should raise KVConflict"):
            await check_kv_compare_and_set(broken_buckets)

    async def test_check_key_value_names_the_failing_check(self) -> None:
        """`check_key_value` stops at the first failure, noting which check it was."""
        with pytest.raises(AssertionError) as info:
            await check_key_value(broken_buckets)
        assert info.value.__notes__ == ["in runtime.testing.check_kv_compare_and_set"]
