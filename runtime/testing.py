"""Fakes, helpers and conformance checks for code on this runtime, shipped with the package.

`Recorder` subscribes to a subject and keeps every decoded message, with
`wait_for` to await a condition without sleeping: on a `MemoryBus` with a
`VirtualClock` in autojump mode, a whole hour of ticks runs in milliseconds;
on a real `NatsBus`, `wait_for` waits on delivery events, bounded by a
real-time deadline so a broken test fails instead of hanging. `wait_until` is
the same wait for any condition, and `Collector` a handler that keeps what it
is given.

The conformance checks (trio's ``check_*`` habit) are the behavioural contract
of the two seams, as plain async functions that raise AssertionError: run
`check_bus` against your own `Bus`, `check_key_value` against your own
`KeyValue`, or one ``check_bus_*``/``check_kv_*`` at a time (`BUS_CHECKS`,
`KV_CHECKS`). sniper runs them against `MemoryBus` and `NatsBus` on a real
server (tests/runtime/test_bus_contract.py, tests/runtime/test_kv_contract.py). Each check
works under its own random subject root or bucket name, so a shared broker
does no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

from messages.codec import decoder_for
from messages.errors import DecodeError
from runtime.bus import Bus, Envelope, Subscription
from runtime.errors import BusClosedError, RequestTimeoutError
from runtime.kv import KeyValue, KVConflict, KVEntry
from runtime.stream import MSG_ID, StreamSpec, StreamUnavailable

T = TypeVar("T")

#: Real seconds between two looks at a `wait_until` condition that has no event to wait on.
POLL_INTERVAL = 0.01
#: Real seconds a conformance check waits for a delivery before it fails.
CHECK_TIMEOUT = 5.0


# -- waiting ------------------------------------------------------------------
class WaitTimeout(TimeoutError, AssertionError):
    """A condition did not hold in time: a TimeoutError, and a failed assertion to test runners."""


def describe(predicate: Callable[..., object]) -> str:
    """A readable name for `predicate`: a lambda's source line, else its qualified name."""
    name = getattr(predicate, "__qualname__", None) or repr(predicate)
    if getattr(predicate, "__name__", None) != "<lambda>":
        return name
    try:
        source = " ".join(inspect.getsource(predicate).split())
    except (OSError, TypeError):
        return name
    return source if len(source) <= 200 else source[:197] + "..."


async def _wait(
    check: Callable[[], T | None],
    timeout: float,  # noqa: ASYNC109  # a test helper's bounded wait in real seconds
    changed: asyncio.Event | None,
    what: Callable[[], str],
) -> T:
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            while not (value := check()):
                if changed is None:
                    await asyncio.sleep(POLL_INTERVAL)  # clock-ok: a real-time poll, so autojump may run meanwhile
                else:
                    changed.clear()
                    await changed.wait()
    except TimeoutError:
        if not deadline.expired():
            raise  # the condition itself raised it
        raise WaitTimeout(f"timed out after {timeout:g}s (real time) waiting for {what()}") from None
    return value


async def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109  # a test helper's bounded wait in real seconds
    changed: asyncio.Event | None = None,
    what: str | None = None,
) -> T:
    """Wait until `predicate()` is truthy and return its value; `WaitTimeout` after `timeout` real seconds.

    Without `changed` the predicate is polled every `POLL_INTERVAL` real
    seconds: for state written by callbacks that offer no event (nats-py's,
    logging's). With `changed`, an event whoever changes the state sets, it is
    looked at only after each change. Either way the deadline is real time,
    not a `Clock`'s: under a `VirtualClock` with autojump, the waiting leaves
    the loop idle, so virtual time runs on (an hour of timers in milliseconds)
    while a deadline in virtual time would expire at the first jump (so when
    polling, virtual time may be well past the moment the condition first
    held; pass `changed` to look at every change). Never a bare ``sleep(0)``
    spin, which would starve autojump. `what` names the
    condition in the timeout's message (default: the lambda's source line).
    """
    return await _wait(predicate, timeout, changed, lambda: what or describe(predicate))


class Collector(Generic[T]):
    """An async callback (a bus handler, a KV watch handler) that keeps everything it is called with."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self.changed = asyncio.Event()

    async def __call__(self, item: T) -> None:
        self.items.append(item)
        self.changed.set()

    async def wait(self, n: int, *, timeout: float = CHECK_TIMEOUT) -> list[T]:  # noqa: ASYNC109  # a test helper's bounded wait in real seconds
        """Wait until `n` items have arrived (without sleeping); `WaitTimeout` after `timeout` real seconds."""
        await _wait(
            lambda: len(self.items) >= n,
            timeout,
            self.changed,
            lambda: f"{n} item(s), {len(self.items)} arrived: {self.items!r:.300}",
        )
        return self.items


class Recorder(Generic[T]):
    """Collects messages of one type from one subject (wildcards allowed)."""

    def __init__(self, bus: Bus, subject: str, type: Any) -> None:
        self.bus = bus
        self.subject = subject
        self.messages: list[T] = []
        self.envelopes: list[Envelope] = []
        self.undecodable: list[DecodeError] = []
        self._decoder = decoder_for(type)
        self._changed = asyncio.Event()
        self._sub: Subscription | None = None

    async def start(self) -> Recorder[T]:
        self._sub = await self.bus.subscribe(self.subject, self._on)
        return self

    async def _on(self, env: Envelope) -> None:
        try:
            self.messages.append(self._decoder.decode(env.data, subject=env.subject))
            self.envelopes.append(env)
        except DecodeError as err:
            self.undecodable.append(err)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[list[T]], bool], *, timeout: float = 10.0) -> list[T]:  # noqa: ASYNC109  # a test helper's bounded wait in real seconds, as its docstring says
        """Wait until `predicate(messages)` holds; `WaitTimeout` (a TimeoutError, real seconds) otherwise."""
        await _wait(
            lambda: predicate(self.messages),
            timeout,
            self._changed,
            lambda: f"{describe(predicate)} on {self.subject} ({len(self.messages)} message(s) so far)",
        )
        return self.messages

    async def wait_count(self, n: int, *, timeout: float = 10.0) -> list[T]:  # noqa: ASYNC109  # a test helper's bounded wait in real seconds, as its docstring says
        return await self.wait_for(lambda msgs: len(msgs) >= n, timeout=timeout)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def __aenter__(self) -> Recorder[T]:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# -- conformance checks: shared helpers ---------------------------------------
def _expect(condition: object, message: str) -> None:
    """AssertionError(message) unless `condition` (an ``assert`` that ``python -O`` cannot remove)."""
    if not condition:
        raise AssertionError(message)


@contextlib.contextmanager
def _raises(expected: type[BaseException], action: str) -> Iterator[None]:
    """AssertionError unless the block raises `expected` (other exceptions pass through)."""
    try:
        yield
    except expected:
        return
    raise AssertionError(f"{action} should raise {expected.__name__}, but returned normally")


def _root() -> str:
    """A subject root of its own for one check (two tokens: ``check.<random>``)."""
    return f"check.{uuid.uuid4().hex[:12]}"


def _bucket(purpose: str) -> str:
    """A bucket name of its own for one check."""
    return f"check_{purpose}_{uuid.uuid4().hex[:12]}"


# -- conformance checks: Bus ---------------------------------------------------
BusFactory = Callable[[], Awaitable[Bus]]


async def check_bus_publish_subscribe(bus: Bus) -> None:
    """A message reaches exact and wildcard subscribers with subject and bytes intact."""
    root = _root()
    subject = f"{root}.a.b"
    inboxes = {pattern: Collector[Envelope]() for pattern in (subject, f"{root}.*.b", f"{root}.>")}
    for pattern, inbox in inboxes.items():
        await bus.subscribe(pattern, inbox)
    await bus.publish(subject, b"payload")
    for pattern, inbox in inboxes.items():
        got = [(env.subject, env.data) for env in await inbox.wait(1)]
        _expect(
            got == [(subject, b"payload")], f"subscriber of {pattern!r} got {got!r}, not one ({subject!r}, b'payload')"
        )


async def check_bus_keeps_order(bus: Bus) -> None:
    """One subscription sees one publisher's messages in order."""
    subject, inbox = _root(), Collector[Envelope]()
    await bus.subscribe(subject, inbox)
    for i in range(200):
        await bus.publish(subject, str(i).encode())
    got = [int(env.data) for env in await inbox.wait(200)]
    _expect(got == list(range(200)), f"200 messages arrived out of order or changed: {got!r:.300}")


async def check_bus_queue_group(bus: Bus) -> None:
    """Members of one queue group split the messages; none is delivered twice."""
    subject, both = _root(), Collector[Envelope]()
    seen_by = {"a": 0, "b": 0}

    def member(name: str) -> Callable[[Envelope], Awaitable[None]]:
        async def handler(env: Envelope) -> None:
            seen_by[name] += 1
            await both(env)

        return handler

    await bus.subscribe(subject, member("a"), queue="workers")
    await bus.subscribe(subject, member("b"), queue="workers")
    await bus.flush()
    for i in range(40):
        await bus.publish(subject, str(i).encode())
    got = sorted(int(env.data) for env in await both.wait(40))
    await bus.flush()
    _expect(got == list(range(40)), f"the queue group got {got!r}, not each of 0..39 once")
    _expect(sum(seen_by.values()) == 40, f"40 messages were delivered {seen_by} times to the group's members")


async def check_bus_request_reply(bus: Bus) -> None:
    """request() returns the responder's answer."""
    subject = _root()

    async def responder(env: Envelope) -> None:
        await bus.respond(env, env.data.upper())

    await bus.subscribe(subject, responder)
    await bus.flush()
    answer = await bus.request(subject, b"ping", timeout=2)
    _expect(answer.data == b"PING", f"request() returned {answer.data!r}, not the responder's b'PING'")


async def check_bus_request_timeout(bus: Bus) -> None:
    """No responder gives RequestTimeoutError, not a hang or a library error."""
    with _raises(RequestTimeoutError, "a request nobody answers"):
        await bus.request(_root(), b"?", timeout=0.5)


async def check_bus_survives_handler_error(bus: Bus) -> None:
    """A raising handler is counted; later messages are still delivered."""
    subject, inbox = _root(), Collector[Envelope]()
    errors_before = bus.stats.handler_errors

    async def flaky(env: Envelope) -> None:
        if env.data == b"boom":
            raise RuntimeError("handler bug")
        await inbox(env)

    await bus.subscribe(subject, flaky)
    await bus.publish(subject, b"boom")
    await bus.publish(subject, b"ok")
    got = [env.data for env in await inbox.wait(1)]
    _expect(got == [b"ok"], f"after a handler error the subscription got {got!r}, not [b'ok']")
    counted = bus.stats.handler_errors - errors_before
    _expect(counted == 1, f"one handler error was counted {counted} times in stats.handler_errors")


async def check_bus_unsubscribe(bus: Bus) -> None:
    """After unsubscribe (idempotent) no more messages arrive."""
    subject, inbox, marker = _root(), Collector[Envelope](), Collector[Envelope]()
    sub = await bus.subscribe(subject, inbox)
    await bus.subscribe(subject, marker)
    await sub.unsubscribe()
    await sub.unsubscribe()
    await bus.publish(subject, b"x")
    await marker.wait(1)
    _expect(inbox.items == [], f"an unsubscribed handler still got {inbox.items!r}")


async def check_bus_refuses_work_when_closed(bus: Bus) -> None:
    """Using a bus after close() raises BusClosedError (closed by you). Closes `bus`."""
    subject = _root()
    await bus.close()
    _expect(bus.is_closed, "is_closed is False after close()")
    with _raises(BusClosedError, "publish() after close()"):
        await bus.publish(subject, b"")
    with _raises(BusClosedError, "subscribe() after close()"):
        await bus.subscribe(subject, Collector[Envelope]())


#: Every Bus check; each takes an open bus of its own (`check_bus` makes them).
BUS_CHECKS: tuple[Callable[[Bus], Awaitable[None]], ...] = (
    check_bus_publish_subscribe,
    check_bus_keeps_order,
    check_bus_queue_group,
    check_bus_request_reply,
    check_bus_request_timeout,
    check_bus_survives_handler_error,
    check_bus_unsubscribe,
    check_bus_refuses_work_when_closed,
)


async def check_bus(make_bus: BusFactory) -> None:
    """Run every Bus check, each on a fresh bus from `make_bus` (closed afterwards).

    The first failure propagates, with a note naming the check.
    """
    for check in BUS_CHECKS:
        bus = await make_bus()
        try:
            await _noted(check.__name__, check(bus))
        finally:
            await bus.close()


async def _noted(name: str, check: Awaitable[None]) -> None:
    """Await one check; its failure gets a note naming it."""
    try:
        await check
    except Exception as exc:
        exc.add_note(f"in runtime.testing.{name}")
        raise


# -- conformance checks: KeyValue ----------------------------------------------
#: Opens (creating it if need be) the bucket of that name; `Bus.key_value` is one.
BucketOpener = Callable[[str], Awaitable[KeyValue]]

#: Keys outside the JetStream alphabet, which every bucket must refuse.
BAD_KEYS: tuple[str, ...] = ("", "a b", "a*", ".a", "a.")


async def check_kv_put_get(open_bucket: BucketOpener) -> None:
    """put returns growing revisions and get returns the latest value."""
    kv = await open_bucket(_bucket("put"))
    r1 = await kv.put("a", b"1")
    r2 = await kv.put("a", b"2")
    _expect(r2 > r1, f"the second put's revision {r2} is not above the first's {r1}")
    entry = await kv.get("a")
    _expect(
        entry is not None and (entry.value, entry.revision) == (b"2", r2),
        f"get after two puts returned {entry!r}, not value b'2' at revision {r2}",
    )
    missing = await kv.get("missing")
    _expect(missing is None, f"get of a key never written returned {missing!r}, not None")


async def check_kv_compare_and_set(open_bucket: BucketOpener) -> None:
    """update succeeds at the current revision and raises KVConflict otherwise, changing nothing."""
    kv = await open_bucket(_bucket("cas"))
    rev = await kv.update("flag", b"on", last=0)
    with _raises(KVConflict, "update(last=0) of an existing key"):
        await kv.update("flag", b"x", last=0)
    rev2 = await kv.update("flag", b"off", last=rev)
    with _raises(KVConflict, "update(last=) at a stale revision"):
        await kv.update("flag", b"stale", last=rev)
    entry = await kv.get("flag")
    _expect(
        entry is not None and (entry.value, entry.revision) == (b"off", rev2),
        f"after refused updates get returned {entry!r}, not value b'off' at revision {rev2}",
    )


async def check_kv_delete_and_entries(open_bucket: BucketOpener) -> None:
    """entries lists live keys only; a deleted key is gone."""
    kv = await open_bucket(_bucket("del"))
    await kv.put("a", b"1")
    await kv.put("b.c", b"2")
    await kv.delete("a")
    live = {k: e.value for k, e in (await kv.entries()).items()}
    _expect(live == {"b.c": b"2"}, f"entries() after deleting 'a' returned {live!r}, not {{'b.c': b'2'}}")
    gone = await kv.get("a")
    _expect(gone is None, f"get of a deleted key returned {gone!r}, not None")


async def check_kv_watch(open_bucket: BucketOpener) -> None:
    """A watch gets current values first, then changes, deletes as None."""
    kv = await open_bucket(_bucket("watch"))
    await kv.put("x", b"1")
    changes = Collector[KVEntry]()
    sub = await kv.watch(changes)
    try:
        await changes.wait(1)
        await kv.put("y", b"2")
        await kv.delete("x")
        got = [(e.key, e.value) for e in await changes.wait(3)]
        expected = [("x", b"1"), ("y", b"2"), ("x", None)]
        _expect(got == expected, f"the watch delivered {got!r}, not {expected!r}")
    finally:
        await sub.unsubscribe()


async def check_kv_shared_bucket(open_bucket: BucketOpener) -> None:
    """Two handles on one bucket see each other's writes."""
    name = _bucket("shared")
    a = await open_bucket(name)
    await a.put("k", b"v")
    b = await open_bucket(name)
    entry = await b.get("k")
    _expect(entry is not None and entry.value == b"v", f"a second handle on {name} read {entry!r}, not b'v'")


async def check_kv_rejects_bad_key(open_bucket: BucketOpener, key: str) -> None:
    """A key outside the JetStream alphabet (see `BAD_KEYS`) is refused with ValueError before any I/O."""
    kv = await open_bucket(_bucket("keys"))
    with _raises(ValueError, f"put of the key {key!r}"):
        await kv.put(key, b"x")


#: Every KeyValue check but `check_kv_rejects_bad_key` (which takes a key too).
KV_CHECKS: tuple[Callable[[BucketOpener], Awaitable[None]], ...] = (
    check_kv_put_get,
    check_kv_compare_and_set,
    check_kv_delete_and_entries,
    check_kv_watch,
    check_kv_shared_bucket,
)


async def check_key_value(open_bucket: BucketOpener) -> None:
    """Run every KeyValue check (and the bad-key one for each of `BAD_KEYS`) against `open_bucket`.

    Every check opens buckets of its own, under fresh names. The first
    failure propagates, with a note naming the check.
    """
    for check in KV_CHECKS:
        await _noted(check.__name__, check(open_bucket))
    for key in BAD_KEYS:
        await _noted(f"check_kv_rejects_bad_key(key={key!r})", check_kv_rejects_bad_key(open_bucket, key))


# -- Stream conformance: the same rules on every bus that keeps streams -------------------------
def _stream(root: str, *, per_subject: int = 2) -> StreamSpec:
    return StreamSpec(
        name=root.replace(".", "_"),
        subjects=(f"{root}.>",),
        max_age=3600,
        max_bytes=1 << 20,
        max_msgs_per_subject=per_subject,
    )


async def _stored(bus: Bus, spec: StreamSpec, want: list[bytes], *, timeout: float = CHECK_TIMEOUT) -> list[Envelope]:  # noqa: ASYNC109  # a bounded wait in real seconds
    """The newest message per subject, once it is `want` (JetStream stores asynchronously)."""
    found: list[Envelope] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                found = await bus.last_per_subject(spec.name, spec.subjects[0])
                if [e.data for e in found] == want:
                    break
                await asyncio.sleep(POLL_INTERVAL)  # clock-ok: a real-time poll of the broker's store
    except TimeoutError:
        raise WaitTimeout(f"stream {spec.name} holds {[e.data for e in found]}, not {want}") from None
    return found


async def check_stream_keeps_the_newest_per_subject(bus: Bus) -> None:
    """Three messages on one subject and one on another: the newest of each is read back, by subject."""
    root = _root()
    spec = _stream(root)
    await bus.ensure_stream(spec)
    for i in range(3):
        await bus.publish(f"{root}.a", f"a{i}".encode())
    await bus.publish(f"{root}.b", b"b0")
    found = await _stored(bus, spec, [b"a2", b"b0"])
    assert [e.subject for e in found] == [f"{root}.a", f"{root}.b"]


async def check_stream_stores_a_msg_id_once(bus: Bus) -> None:
    """A message published twice with one ``Nats-Msg-Id`` is stored once: the second copy is dropped."""
    root = _root()
    spec = _stream(root)
    await bus.ensure_stream(spec)
    await bus.publish(f"{root}.a", b"first", headers={MSG_ID: "x.1"})
    await bus.publish(f"{root}.a", b"again", headers={MSG_ID: "x.1"})
    await bus.publish(f"{root}.b", b"marker", headers={MSG_ID: "x.2"})
    await _stored(bus, spec, [b"first", b"marker"])


async def check_stream_follow_from_last_then_live(bus: Bus) -> None:
    """A follower gets the newest message of each subject, then each new stored one (duplicates not)."""
    root = _root()
    spec = _stream(root)
    await bus.ensure_stream(spec)
    for subject, data in ((f"{root}.a", b"a0"), (f"{root}.a", b"a1"), (f"{root}.b", b"b0")):
        await bus.publish(subject, data, headers={MSG_ID: data.decode()})
    await _stored(bus, spec, [b"a1", b"b0"])
    inbox = Collector[Envelope]()
    sub = await bus.follow_stream(spec.name, spec.subjects[0], inbox)
    await inbox.wait(2)
    await bus.publish(f"{root}.b", b"b0", headers={MSG_ID: "b0"})  # a duplicate: not stored, not delivered
    await bus.publish(f"{root}.a", b"a2", headers={MSG_ID: "a2"})
    await inbox.wait(3)
    await sub.unsubscribe()
    assert sorted(e.data for e in inbox.items[:2]) == [b"a1", b"b0"]
    assert [e.data for e in inbox.items[2:]] == [b"a2"]


async def check_stream_unknown_is_unavailable(bus: Bus) -> None:
    """Reading a stream that does not exist is a StreamUnavailable, not a hang or another error."""
    name = _root().replace(".", "_")
    try:
        await bus.last_per_subject(name, "nothing.>")
    except StreamUnavailable:
        return
    raise AssertionError(f"reading the missing stream {name} did not raise StreamUnavailable")


STREAM_CHECKS: tuple[Callable[[Bus], Awaitable[None]], ...] = (
    check_stream_keeps_the_newest_per_subject,
    check_stream_stores_a_msg_id_once,
    check_stream_follow_from_last_then_live,
    check_stream_unknown_is_unavailable,
)


async def check_streams(make_bus: BusFactory) -> None:
    """Run every stream check, each on a fresh bus from `make_bus` (closed afterwards)."""
    for check in STREAM_CHECKS:
        bus = await make_bus()
        try:
            await _noted(check.__name__, check(bus))
        finally:
            await bus.close()
