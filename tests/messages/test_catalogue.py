"""The channel catalogue and the AsyncAPI document derived from it cover the whole contract."""

from __future__ import annotations

import pytest

from messages import ALL_MESSAGE_TYPES, Subjects
from messages.asyncapi import asyncapi_document
from messages.catalogue import CHANNELS, PARAMETERS, Channel
from messages.subjects import (
    ALERTS_BUCKET,
    CACHE_BUCKET,
    CIRCUITS_BUCKET,
    FLAGS_BUCKET,
    LEASES_BUCKET,
    ROUTES_BUCKET,
    ROUTES_KEY,
)

SUBJECTS = Subjects()
#: A concrete value per parameter, to fill an address in and compare it with the subject builder's result.
SAMPLE = {
    "asset": "SOL",
    "module": "spot_ob",
    "actor": "fetch-whale",
    "flag": "ETF",
    "scope": "all",
    "alertname": "core_down",
    "key": "mute",
    "role": "scheduler",
    "cachekey": "BTC",
}
BUILT = {
    "signal": SUBJECTS.signal("SOL"),
    "health": SUBJECTS.health("SOL"),
    "tick": SUBJECTS.tick("SOL"),
    "data": SUBJECTS.data("spot_ob", "SOL"),
    "degraded": SUBJECTS.degraded("spot_ob", "SOL"),
    "circuit": SUBJECTS.circuit("spot_ob"),
    "flagsChanged": SUBJECTS.flags_changed(),
    "routes": SUBJECTS.routes(),
    "heartbeat": SUBJECTS.heartbeat("fetch-whale"),
    "actorEvent": SUBJECTS.actor_event("fetch-whale"),
    "cmdFlags": SUBJECTS.command("flags"),
    "cmdCircuit": SUBJECTS.command("circuit"),
    "cmdStatus": SUBJECTS.command("status"),
    "kvFlags": f"$KV.{SUBJECTS.kv_bucket(FLAGS_BUCKET)}.ETF",
    "kvCircuits": f"$KV.{SUBJECTS.kv_bucket(CIRCUITS_BUCKET)}.spot_ob.all",
    "kvRoutes": f"$KV.{SUBJECTS.kv_bucket(ROUTES_BUCKET)}.{ROUTES_KEY}",
    "alert": SUBJECTS.alert("core_down"),
    "cmdAlerts": SUBJECTS.command("alerts"),
    "kvAlerts": f"$KV.{SUBJECTS.kv_bucket(ALERTS_BUCKET)}.mute",
    "leader": SUBJECTS.leader("scheduler"),
    "kvLeases": f"$KV.{SUBJECTS.kv_bucket(LEASES_BUCKET)}.scheduler",
    "kvCache": f"$KV.{SUBJECTS.kv_bucket(CACHE_BUCKET)}.spot_ob.BTC",
}


class TestCatalogue:
    def test_every_message_type_has_a_channel(self) -> None:
        """No wire message is left out of the catalogue (as a message or as a reply)."""
        listed = {tp for ch in CHANNELS for tp in (*ch.messages, ch.reply) if tp is not None}
        assert set(ALL_MESSAGE_TYPES.__args__) <= listed

    def test_every_channel_is_checked_below(self) -> None:
        """Each catalogue entry has a concrete subject to compare with (so a new one cannot slip by)."""
        assert {ch.name for ch in CHANNELS} == set(BUILT)

    @pytest.mark.parametrize("channel", CHANNELS, ids=lambda ch: ch.name)
    def test_address_filled_in_is_the_built_subject(self, channel: Channel) -> None:
        """Putting values for the parameters gives exactly what `Subjects` builds."""
        address = channel.address_of(SUBJECTS)
        assert address.format(**SAMPLE) == BUILT[channel.name]

    @pytest.mark.parametrize("channel", CHANNELS, ids=lambda ch: ch.name)
    def test_every_parameter_is_described(self, channel: Channel) -> None:
        """Parameters have one description each, and each appears in the address once."""
        for name in channel.parameters:
            assert name in PARAMETERS and channel.address_of(SUBJECTS).count(f"{{{name}}}") == 1

    def test_a_prefix_moves_every_address(self) -> None:
        """Under another prefix every subject channel starts with it (KV subjects use the bucket name)."""
        addresses = [ch.address_of(Subjects("desk.a")) for ch in CHANNELS]
        assert all(a.startswith(("desk.a.", "$KV.desk_a_")) for a in addresses)


class TestAsyncApi:
    def test_commands_are_request_reply_and_the_rest_is_published(self) -> None:
        """Commands are `receive` operations with a reply (most in a queue group); everything else is `send`."""
        ops = asyncapi_document()["operations"]
        assert {n for n, op in ops.items() if op["action"] == "receive"} == {
            "answerCmdFlags",
            "answerCmdCircuit",
            "answerCmdStatus",
            "answerCmdAlerts",
        }
        receive = {n: op for n, op in ops.items() if op["action"] == "receive"}
        assert all("reply" in op for op in receive.values())
        shared = {"answerCmdAlerts", "answerCmdCircuit"}  # every alerter, every circuit supervisor hears them
        assert all(op["bindings"]["nats"]["queue"] for n, op in receive.items() if n not in shared)
        assert all("bindings" not in receive[n] for n in shared), "no queue group"

    def test_schemas_are_draft_7_with_component_refs(self) -> None:
        """No 2020-12-only keyword or $defs reference is left in the components."""
        text = str(asyncapi_document()["components"])
        assert "#/$defs/" not in text and "prefixItems" not in text and "dependentRequired" not in text
        assert "#/components/schemas/ModuleStatus" in text
