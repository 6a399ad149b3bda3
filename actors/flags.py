"""Feature flags: switch a module off (or on) at runtime, on every host at once.

Defaults come from the environment (``FEATURE_ETF=off``; parsed by
sniper.config). The truth lives in the ``flags`` key-value bucket: one key per
flag holding its last `FlagChanged`. Every fetcher watches the bucket, so a
change reaches all processes; writes are compare-and-set, so two operators
flipping one flag at once cannot lose an update silently.

`FlagKeeper` serves ``cmd.flags`` (request/reply, queue group ``flags`` so
exactly one process answers)::

    {"flag": "ETF", "enabled": false, "why": "plan expired"}
      -> {"ok": true, "flags": {"BIAS": true, "ETF": false, ...}}
    {"flag": "NOPE", "enabled": false}
      -> {"ok": false, "error": "unknown flag 'NOPE'; known: BIAS, ETF, ..."}   (nothing changed)
    {}  -> the current flags

The bucket is the one truth, whoever writes it: the keeper watches it and
announces every valid new value on ``flags.changed`` (with the writer's who,
when and why, and the revision), sets ``sniper_flag_enabled``, and the
circuit supervisor lifts breakers on a real off -> on. A value that does not
decode, or a key that is no flag, is ignored with a log line and
``sniper_bad_stored_values_total{bucket="flags"}``: every reader keeps the last
valid value, so fetchers, ``flags list`` and the metric agree.

Precedence at start (`FlagSource`): with ``bucket`` (the default) a stored
value wins over ``FEATURE_*``, which only seeds flags nobody has set; with
``environment`` the keeper writes every ``FEATURE_*`` value over the bucket.
Each flag's start line says which source won.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Literal

from messages import REGISTRY, FlagChanged, FlagCommand, FlagReply, decode, encode
from messages.errors import DecodeError
from messages.service import endpoint_metadata, reply_error
from messages.subjects import FLAGS_BUCKET
from runtime.actor import CONTROL_PENDING, CONTROL_RATE, Actor, Sub
from runtime.bus import Envelope
from runtime.errors import BusError
from runtime.kv import KeyValue, KVConflict, KVEntry
from runtime.micro import Endpoint

from .metrics import metrics_of


def flag_name(module: str) -> str:
    """The flag that switches a module, as its file declares it (``spot_ob`` -> ``SPOT_OB``)."""
    spec = REGISTRY.get(module)
    return spec.flag if spec is not None else module.upper()


def flag_module(flag: str) -> str:
    """The module a flag (a key of the flags bucket) switches: `flag_name` read backwards."""
    for module, spec in REGISTRY.items():
        if spec.flag == flag:
            return module
    return flag.lower()


def read_flag(entry: KVEntry, known: Collection[str]) -> FlagChanged | str | None:
    """A flags-bucket entry as every reader reads it: its `FlagChanged`, None if deleted, or why it is no valid value.

    Invalid: a key that is no known flag, a value that does not decode, or one
    that names another flag than its key. Readers keep their last valid value.
    """
    if entry.key not in known:
        return "not a flag"
    if entry.value is None:
        return None
    try:
        change = decode(entry.value, FlagChanged)
    except DecodeError as err:
        return err.reason
    return change if change.flag == entry.key else f"holds flag {change.flag!r}"


#: Which wins at start when the bucket holds a value: the bucket (operators' last word) or ``FEATURE_*``.
FlagSource = Literal["bucket", "environment"]


class FlagKeeper(Actor):
    """Seeds the flags bucket, follows it, announces its changes and serves ``cmd.flags``."""

    name = "flags"

    def __init__(self, defaults: Mapping[str, bool], *, source: FlagSource = "bucket", name: str | None = None) -> None:
        super().__init__(name=name)
        self.defaults = {flag_name(k): v for k, v in defaults.items()}
        self.source = source
        #: The last valid value of each flag, and the bucket revision it came from.
        self.flags: dict[str, bool] = dict(self.defaults)
        self._revisions: dict[str, int] = {}
        self._following = False  # whether the bucket answered (on_start, or a retry in run)

    def subscriptions(self) -> Iterable[Sub]:
        return [
            Sub(
                self.subjects.command("flags"),
                FlagCommand,
                self.on_command,
                queue="flags",
                on_bad=self.on_bad_command,
                pending=CONTROL_PENDING,
                max_rate=CONTROL_RATE,
                endpoint=Endpoint("flags", endpoint_metadata("flags"), failed=reply_error),
            )
        ]

    async def on_start(self) -> None:
        for flag, enabled in self.flags.items():
            metrics_of(self.ctx).flag_enabled.labels(flag).set(1 if enabled else 0)
        self._following = await self._follow_store()

    async def run(self) -> None:
        """Until the bucket has answered once, try again: a keeper that never follows it lists stale flags.

        (Three processes starting together on a fresh cluster: the bucket may have no stream leader yet.)
        """
        delay = 1.0
        while not self._following:
            await self.clock.sleep(delay)
            delay = min(2 * delay, 30.0)
            self._following = await self._follow_store()

    async def _follow_store(self) -> bool:
        """Seed, read and watch the bucket; False (logged) if it cannot be reached now."""
        try:
            store = await self.bucket(FLAGS_BUCKET)
            stored = await store.entries()
            for flag, enabled in self.defaults.items():
                await self._settle(store, flag, enabled, stored.get(flag))
            for entry in (await store.entries()).values():
                self._take(entry)
            self.own(await store.watch(self.on_flag_entry))
        except BusError as exc:  # commands will say so; fetchers run on their defaults meanwhile
            self.log.warning("flag_store_unavailable", error=str(exc))
            return False
        return True

    async def _settle(self, store: KeyValue, flag: str, enabled: bool, entry: KVEntry | None) -> None:
        """Seed `flag` if nobody set it (or overwrite it when the environment wins), and say which source won."""
        stored = self._decode(entry) if entry is not None else None
        env = "on" if enabled else "off"
        if stored is not None and (self.source == "bucket" or stored.enabled == enabled):
            self.log.info(
                "flag_source", flag=flag, enabled=stored.enabled, source="bucket", set_by=stored.who, environment=env
            )
            return
        why = "environment default" if stored is None else "FEATURE_* wins at start (--feature-source environment)"
        seed = FlagChanged(flag=flag, enabled=enabled, ts=self.clock.now(), who=f"environment@{self.ctx.host}", why=why)
        try:
            await store.update(flag, encode(seed), last=entry.revision if entry is not None else 0)
        except KVConflict:  # another process wrote first: its value stands, the watch brings it
            return
        self.log.info("flag_source", flag=flag, enabled=enabled, source="environment", environment=env)

    def _decode(self, entry: KVEntry) -> FlagChanged | None:
        """The entry's flag change, or None (logged and counted) if it is no valid value of a known flag."""
        read = read_flag(entry, self.defaults)
        if isinstance(read, str):
            self.log.warning("bad_stored_flag", flag=entry.key[:40], reason=read, revision=entry.revision)
            metrics_of(self.ctx).bad_stored.labels(FLAGS_BUCKET).inc()
            return None
        return read

    def _take(self, entry: KVEntry) -> FlagChanged | None:
        """Apply a stored value once per revision; the change if it was a new valid value."""
        if entry.revision <= self._revisions.get(entry.key, 0):
            return None
        if entry.value is None and entry.key in self.defaults:  # deleted: the default applies again
            self._revisions[entry.key] = entry.revision
            change = FlagChanged(
                flag=entry.key, enabled=self.defaults[entry.key], ts=self.clock.now(), why="key deleted: default"
            )
        else:
            decoded = self._decode(entry)
            if decoded is None:
                return None
            self._revisions[entry.key] = entry.revision
            change = decoded
        self.flags[entry.key] = change.enabled
        metrics_of(self.ctx).flag_enabled.labels(entry.key).set(1 if change.enabled else 0)
        return change

    async def on_flag_entry(self, entry: KVEntry) -> None:
        """A value written by anyone (a command, another keeper, any NATS client) takes effect and is announced."""
        change = self._take(entry)
        if change is None:
            return
        self.log.info("flag_changed", flag=change.flag, enabled=change.enabled, who=change.who, why=change.why)
        announced = FlagChanged(
            flag=change.flag,
            enabled=change.enabled,
            ts=change.ts,
            who=change.who,
            why=change.why,
            revision=entry.revision,
        )
        await self.publish(self.subjects.flags_changed(), announced)

    def current(self) -> dict[str, bool]:
        """Every flag's last valid value."""
        return dict(sorted(self.flags.items()))

    async def on_command(self, cmd: FlagCommand, env: Envelope) -> None:
        try:
            await self._apply(cmd, env)
        except BusError as exc:
            await self.reply(env, FlagReply(ok=False, error=f"flag store unavailable, nothing changed: {exc}"))

    async def _apply(self, cmd: FlagCommand, env: Envelope) -> None:
        if cmd.flag is None and cmd.enabled is None:
            await self.reply(env, FlagReply(ok=True, flags=self.current()))
            return
        flag = (cmd.flag or "").upper()
        if flag not in self.defaults:
            known = ", ".join(sorted(self.defaults))
            await self.reply(env, FlagReply(ok=False, error=f"unknown flag {cmd.flag!r}; known: {known}"))
            return
        if cmd.enabled is None:
            await self.reply(env, FlagReply(ok=False, error=f'set {flag} needs "enabled": true or false'))
            return
        change = FlagChanged(flag=flag, enabled=cmd.enabled, ts=self.clock.now(), who=cmd.who or "unknown", why=cmd.why)
        store = await self.bucket(FLAGS_BUCKET)
        for _ in range(5):  # compare-and-set: re-read and retry if someone wrote in between
            entry = await store.get(flag)
            try:
                revision = await store.update(flag, encode(change), last=entry.revision if entry else 0)
                break
            except KVConflict:
                continue
        else:
            await self.reply(env, FlagReply(ok=False, error=f"{flag}: concurrent writers; try again"))
            return
        # Applied here too, so the reply already shows it; the watch announces it (once per revision).
        await self.on_flag_entry(KVEntry(flag, encode(change), revision))
        await self.reply(env, FlagReply(ok=True, flags=self.current()))

    async def on_bad_command(self, err: DecodeError, env: Envelope) -> None:
        await self.reply(env, FlagReply(ok=False, error=f"bad command: {err.reason}"))
