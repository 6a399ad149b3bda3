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

and publishes every change as `FlagChanged` (who, when, why) on
``flags.changed``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

from messages import REGISTRY, FlagChanged, FlagCommand, FlagReply, decode, encode
from messages.errors import DecodeError
from runtime.actor import CONTROL_PENDING, CONTROL_RATE, Actor, Sub
from runtime.bus import Envelope
from runtime.errors import BusError
from runtime.kv import KVConflict

from .metrics import metrics_of


def flag_name(module: str) -> str:
    """The flag that switches a module, as its file declares it (``spot_ob`` -> ``SPOT_OB``)."""
    spec = REGISTRY.get(module)
    return spec.flag if spec is not None else module.upper()


class FlagKeeper(Actor):
    """Seeds the flags bucket with the defaults and serves ``cmd.flags``."""

    name = "flags"

    def __init__(self, defaults: Mapping[str, bool], *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.defaults = {flag_name(k): v for k, v in defaults.items()}

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
            )
        ]

    async def on_start(self) -> None:
        try:
            store = await self.bucket("flags")
            for flag, enabled in self.defaults.items():
                seed = FlagChanged(
                    flag=flag,
                    enabled=enabled,
                    ts=self.clock.now(),
                    who=f"defaults@{self.ctx.host}",
                    why="environment default",
                )
                with contextlib.suppress(KVConflict):  # only where nobody has set it yet
                    await store.update(flag, encode(seed), last=0)
        except BusError as exc:  # commands will say so; fetchers run on their defaults
            self.log.warning("flag_store_unavailable", error=str(exc))

    async def current(self) -> dict[str, bool]:
        flags = dict(self.defaults)
        for key, entry in (await (await self.bucket("flags")).entries()).items():
            if key not in self.defaults:  # a key nobody configured is not a flag (and would not fit a reply)
                self.log.warning("bad_stored_flag", flag=key[:40], reason="unknown flag")
                continue
            try:
                flags[key] = decode(entry.value or b"", FlagChanged).enabled
            except DecodeError as err:
                self.log.warning("bad_stored_flag", flag=key, reason=err.reason)
        return dict(sorted(flags.items()))

    async def on_command(self, cmd: FlagCommand, env: Envelope) -> None:
        try:
            await self._apply(cmd, env)
        except BusError as exc:
            await self.reply(env, FlagReply(ok=False, error=f"flag store unavailable, nothing changed: {exc}"))

    async def _apply(self, cmd: FlagCommand, env: Envelope) -> None:
        store = await self.bucket("flags")
        if cmd.flag is None and cmd.enabled is None:
            await self.reply(env, FlagReply(ok=True, flags=await self.current()))
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
        metrics_of(self.ctx).flag_enabled.labels(flag).set(1 if cmd.enabled else 0)
        self.log.info("flag_changed", flag=flag, enabled=cmd.enabled, who=change.who, why=change.why)
        await self.publish(
            self.subjects.flags_changed(),
            FlagChanged(
                flag=flag, enabled=cmd.enabled, ts=change.ts, who=change.who, why=change.why, revision=revision
            ),
        )
        await self.reply(env, FlagReply(ok=True, flags=await self.current()))

    async def on_bad_command(self, err: DecodeError, env: Envelope) -> None:
        await self.reply(env, FlagReply(ok=False, error=f"bad command: {err.reason}"))
