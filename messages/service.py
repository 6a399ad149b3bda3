"""sniper's commands as a NATS micro service: what ``$SRV.INFO`` says about each endpoint.

The runtime answers the micro protocol (`runtime.micro`) for whatever
endpoints actors declare; this module supplies what the contract knows about
sniper's: each command's description and the JSON Schemas of its request and
its reply (what ``sniper schema --message NAME`` prints, as JSON text: micro
metadata values are strings), from the channel catalogue.
"""

from __future__ import annotations

import functools
import json

from .catalogue import CHANNELS, Channel
from .control import CircuitReply, FlagReply, StatusReply
from .errors import ContractError
from .schema import one_message_schema
from .subjects import Subjects

#: What `$SRV.INFO` says the service is.
SERVICE_DESCRIPTION = (
    "sniper's control plane: feature flags, circuit breakers and a read-only status, "
    "as request/reply on <prefix>.cmd.<name>"
)


def _command_channel(command: str) -> Channel:
    subjects = Subjects()
    for channel in CHANNELS:
        if channel.reply is not None and channel.address(subjects) == subjects.command(command):
            return channel
    raise ContractError(f"no command channel for {command!r}")


@functools.cache
def _metadata(command: str) -> tuple[tuple[str, str], ...]:
    channel = _command_channel(command)
    (request,) = channel.messages
    assert channel.reply is not None
    return (
        ("description", channel.description),
        ("request_schema", json.dumps(one_message_schema(request.__name__), separators=(",", ":"))),
        ("response_schema", json.dumps(one_message_schema(channel.reply.__name__), separators=(",", ":"))),
    )


def endpoint_metadata(command: str) -> dict[str, str]:
    """The micro endpoint metadata of ``cmd.<command>``: description, request_schema, response_schema."""
    return dict(_metadata(command))


def reply_error(reply: FlagReply | CircuitReply | StatusReply) -> str | None:
    """What a command's reply reports as failed (an endpoint error in ``$SRV.STATS``), or None if it succeeded."""
    return None if reply.ok else (reply.error or "refused")
