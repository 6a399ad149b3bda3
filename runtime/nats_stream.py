"""JetStream streams for `NatsBus`: create, read the newest per subject, follow (see `runtime.stream`)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy, StreamConfig

from .bus import Envelope, Handler, Subscription
from .stream import StreamSpec, StreamUnavailable

#: How long a JetStream API call may take before the stream counts as unavailable.
API_TIMEOUT = 5.0
#: JetStream's error code for "stream name already in use with a different configuration".
STREAM_NAME_IN_USE = 10058

log = logging.getLogger("sniper.bus.nats")


def _config(spec: StreamSpec) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        max_age=spec.max_age,
        max_bytes=spec.max_bytes,
        max_msgs_per_subject=spec.max_msgs_per_subject,
        duplicate_window=spec.duplicate_window,
        num_replicas=spec.replicas,
        allow_direct=True,
    )


def _unavailable(what: str, exc: BaseException) -> StreamUnavailable:
    return StreamUnavailable(f"{what}: {type(exc).__name__}: {exc} (is JetStream enabled, and allowed to this user?)")


async def ensure_stream(nc: Any, spec: StreamSpec) -> None:
    """Create the stream, or update it when it exists with another configuration.

    Except its replication: an existing stream keeps its own (changing it moves
    data between nodes, the operator's call, and two processes asking for
    different numbers would flip it back and forth); a difference is logged.
    """
    js = nc.jetstream(timeout=API_TIMEOUT)
    config = _config(spec)
    try:
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != STREAM_NAME_IN_USE:
                raise
            kept = (await js.stream_info(spec.name)).config.num_replicas
            if kept != spec.replicas:
                log.warning(
                    "stream %s has %s replica(s), not the %d this process asks for; keeping them",
                    spec.name,
                    kept,
                    spec.replicas,
                )
                config = dataclasses.replace(config, num_replicas=kept)
            await js.update_stream(config)
    except (TimeoutError, nats.errors.Error) as exc:
        raise _unavailable(f"stream {spec.name}", exc) from None


async def last_per_subject(nc: Any, stream: str, subject: str) -> list[Envelope]:
    """The newest message of each stored subject matching `subject` (one info call, then one get per subject)."""
    js = nc.jetstream(timeout=API_TIMEOUT)
    try:
        info = await js.stream_info(stream, subjects_filter=subject)
        found = []
        for name in sorted(info.state.subjects or {}):
            msg = await js.get_last_msg(stream, name)
            found.append(Envelope(msg.subject or name, msg.data or b"", None, msg.headers or None))
    except (TimeoutError, nats.errors.Error) as exc:
        raise _unavailable(f"stream {stream}", exc) from None
    return found


class _StreamSubscription(Subscription):
    def __init__(self, sub: Any, subject: str) -> None:
        self._sub = sub
        self.subject = subject

    async def unsubscribe(self) -> None:
        with contextlib.suppress(TimeoutError, nats.errors.Error):  # already gone with the connection
            await self._sub.unsubscribe()


async def follow_stream(nc: Any, stream: str, subject: str, handler: Handler) -> Subscription:
    """An ordered consumer from the newest message of each subject on (``DeliverPolicy.LAST_PER_SUBJECT``)."""
    js = nc.jetstream(timeout=API_TIMEOUT)

    async def on_msg(msg: Msg) -> None:
        await handler(Envelope(msg.subject, msg.data, None, msg.headers or None))

    try:
        sub = await js.subscribe(
            subject,
            stream=stream,
            cb=on_msg,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        )
    except (TimeoutError, nats.errors.Error) as exc:
        raise _unavailable(f"stream {stream}", exc) from None
    return _StreamSubscription(sub, subject)
