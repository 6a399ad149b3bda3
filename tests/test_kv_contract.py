"""One KV contract, two implementations: MemoryKeyValue and JetStream KV on a real server."""

from __future__ import annotations

import pytest

from runtime import Bus
from runtime.kv import KVConflict, KVEntry

from .helpers import Collector


def Changes() -> Collector[KVEntry]:
    return Collector()


class TestKeyValueContract:
    async def test_put_get_revisions_grow(self, any_bus: Bus) -> None:
        """put returns growing revisions and get returns the latest value."""
        kv = await any_bus.key_value("t_put")
        r1 = await kv.put("a", b"1")
        r2 = await kv.put("a", b"2")
        entry = await kv.get("a")
        assert r2 > r1 and entry is not None and (entry.value, entry.revision) == (b"2", r2)
        assert await kv.get("missing") is None

    async def test_update_is_compare_and_set(self, any_bus: Bus) -> None:
        """update succeeds at the current revision and raises KVConflict otherwise, changing nothing."""
        kv = await any_bus.key_value("t_cas")
        rev = await kv.update("flag", b"on", last=0)
        with pytest.raises(KVConflict):
            await kv.update("flag", b"x", last=0)
        rev2 = await kv.update("flag", b"off", last=rev)
        with pytest.raises(KVConflict):
            await kv.update("flag", b"stale", last=rev)
        entry = await kv.get("flag")
        assert entry is not None and (entry.value, entry.revision) == (b"off", rev2)

    async def test_delete_and_entries(self, any_bus: Bus) -> None:
        """entries lists live keys only; a deleted key is gone."""
        kv = await any_bus.key_value("t_del")
        await kv.put("a", b"1")
        await kv.put("b.c", b"2")
        await kv.delete("a")
        assert {k: e.value for k, e in (await kv.entries()).items()} == {"b.c": b"2"}
        assert await kv.get("a") is None

    async def test_watch_replays_then_follows(self, any_bus: Bus) -> None:
        """A watch gets current values first, then changes, deletes as None."""
        kv = await any_bus.key_value("t_watch")
        await kv.put("x", b"1")
        changes = Changes()
        sub = await kv.watch(changes)
        await changes.wait(1)
        await kv.put("y", b"2")
        await kv.delete("x")
        got = await changes.wait(3)
        assert [(e.key, e.value) for e in got] == [("x", b"1"), ("y", b"2"), ("x", None)]
        await sub.unsubscribe()

    async def test_same_bucket_is_shared_between_handles(self, any_bus: Bus) -> None:
        """Two handles on one bucket see each other's writes."""
        a = await any_bus.key_value("t_shared")
        await a.put("k", b"v")
        b = await any_bus.key_value("t_shared")
        entry = await b.get("k")
        assert entry is not None and entry.value == b"v"

    @pytest.mark.parametrize("bad", ["", "a b", "a*", ".a", "a."])
    async def test_bad_keys_are_rejected(self, any_bus: Bus, bad: str) -> None:
        """Keys outside the JetStream alphabet are refused before any I/O."""
        kv = await any_bus.key_value("t_keys")
        with pytest.raises(ValueError):
            await kv.put(bad, b"x")
