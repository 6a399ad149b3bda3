"""The JSON Schema other bots validate with: standard keywords, precise, and in step with what sniper decodes.

Python's `jsonschema` ignores keywords it does not know, so a schema full of
OpenAPI extras would pass here and fail in ajv: `TestStandardKeywords` checks
every keyword against the 2020-12 vocabulary, and `tests/interop` runs ajv in
strict mode over the same document.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from jsonschema import Draft202012Validator

from messages import CircuitReply, FlagCommand, FlagReply, Signal, StatusQuery, StatusReply, decode
from messages._base import snake_tag
from messages.errors import ContractError, DecodeError
from messages.schema import MESSAGES_ID, message_names, message_schema, one_message_schema
from sniper.recording import read_recording

from ..harness import Harness

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = sorted((ROOT / "tests" / "recordings").glob("*.jsonl"))
SCHEMA = message_schema()
VALIDATOR = Draft202012Validator(SCHEMA)

#: Every keyword of JSON Schema 2020-12 (core, applicator, validation, unevaluated, meta-data, format, content).
KEYWORDS = frozenset(
    """$schema $id $ref $defs $anchor $dynamicRef $dynamicAnchor $vocabulary $comment
    allOf anyOf oneOf not if then else dependentSchemas prefixItems items contains properties
    patternProperties additionalProperties propertyNames unevaluatedItems unevaluatedProperties
    type enum const multipleOf maximum exclusiveMaximum minimum exclusiveMinimum maxLength minLength
    pattern maxItems minItems uniqueItems maxContains minContains maxProperties minProperties required
    dependentRequired title description default deprecated readOnly writeOnly examples format
    contentEncoding contentMediaType contentSchema""".split()  # noqa: SIM905  # the vocabulary reads as a table
)
#: Keywords whose value maps names to schemas (their keys are names, not keywords).
NAMED = frozenset({"properties", "$defs", "patternProperties", "dependentSchemas", "dependentRequired"})


def keywords_of(node: Any) -> set[str]:
    if isinstance(node, list):
        return {k for item in node for k in keywords_of(item)}
    if not isinstance(node, dict):
        return set()
    found: set[str] = set()
    for key, value in node.items():
        found.add(key)
        if key in NAMED and isinstance(value, dict):
            found |= {k for sub in value.values() for k in keywords_of(sub)}
        elif key not in ("const", "enum", "default", "examples", "required"):
            found |= keywords_of(value)
    return found


def recorded() -> list[tuple[str, dict[str, Any]]]:
    """(file:line, message) of every JSON message in the shipped recordings: real pipeline output."""
    out = []
    for path in RECORDINGS:
        for number, line in enumerate(read_recording(path), 1):
            if line.msg:
                out.append((f"{path.name}:{number}", json.loads(bytes(line.msg))))
    return out


RECORDED = recorded()
#: The command examples the README documents (``#   {"flag": ...}  ->  ...``).
README_COMMANDS = re.findall(
    r'#\s+(\{"(?:flag|action)".*?\})\s+->\s+\{"ok": (true|false)', (ROOT / "README.md").read_text()
)


def errors(instance: Any, ref: str | None = None) -> list[jsonschema.ValidationError]:
    schema = SCHEMA if ref is None else {"$ref": f"{MESSAGES_ID}#/$defs/{ref}"}
    registry = jsonschema.validators.validator_for(SCHEMA)(SCHEMA).evolve(schema=schema)
    return list(registry.iter_errors(instance))


class TestStandardKeywords:
    def test_the_schema_is_a_valid_2020_12_schema(self) -> None:
        """The document passes the draft's own meta-schema."""
        Draft202012Validator.check_schema(SCHEMA)

    def test_only_standard_keywords(self) -> None:
        """No OpenAPI extras (discriminator, nullable, ...) anywhere: ajv's strict mode would refuse them."""
        assert keywords_of(SCHEMA) - KEYWORDS == set()

    def test_the_check_sees_a_foreign_keyword(self) -> None:
        """The keyword walk finds a discriminator nested in a property (so the check above can fail)."""
        assert "discriminator" in keywords_of({"properties": {"x": {"anyOf": [], "discriminator": {}}}})

    def test_root_id_and_one_definition_per_message(self) -> None:
        """`$id` names the document and every message is referencable as #/$defs/<Name>."""
        assert SCHEMA["$id"] == MESSAGES_ID
        assert set(message_names()) <= set(SCHEMA["$defs"])
        assert [b["$ref"] for b in SCHEMA["oneOf"]] == [f"#/$defs/{n}" for n in message_names()]
        assert [b.get("required") for b in SCHEMA["oneOf"] if b["$ref"].endswith("Command")] == [["type"]] * 3

    @pytest.mark.parametrize("name", message_names())
    def test_every_message_type_is_a_const(self, name: str) -> None:
        """Each branch of the union is keyed by a const `type`, so exactly one branch can match."""
        assert SCHEMA["$defs"][name]["properties"]["type"] == {"const": snake_tag(name)}


class TestRecordedMessages:
    @pytest.mark.parametrize(("where", "msg"), RECORDED, ids=[w for w, _ in RECORDED])
    def test_real_messages_validate(self, where: str, msg: dict[str, Any]) -> None:
        """Every message the real pipeline recorded is valid against the root and against its own definition."""
        assert errors(msg) == []
        name = next(n for n in message_names() if SCHEMA["$defs"][n]["properties"]["type"]["const"] == msg["type"])
        assert errors(msg, name) == []

    def test_the_recordings_are_not_empty(self) -> None:
        """All three recordings contribute messages, signals among them."""
        assert len(RECORDED) > 150 and any(m["type"] == "signal" for _, m in RECORDED)


def a_signal() -> dict[str, Any]:
    return next(m for _, m in RECORDED if m["type"] == "signal")


class TestPrecision:
    def test_an_unsupported_version_fails_the_schema_as_it_fails_the_decoder(self) -> None:
        """`v: 2` is refused by both; `v: 1` is accepted by both."""
        future = {**a_signal(), "v": 2}
        assert errors(future, "Signal")
        with pytest.raises(DecodeError, match="schema version 2"):
            decode(json.dumps(future).encode(), Signal)
        assert errors(a_signal(), "Signal") == [] and decode(json.dumps(a_signal()).encode(), Signal)

    def test_a_bad_field_is_named_precisely(self) -> None:
        """A negative confidence in a Signal reports that one field, not the errors of every message type."""
        bad = {**a_signal(), "confidence": -1}
        (error,) = errors(bad, "Signal")
        assert list(error.absolute_path) == ["confidence"]

    def test_the_union_names_the_failing_branch(self) -> None:
        """Against the root, the best match for a bad Signal points into the Signal branch."""
        bad = {**a_signal(), "confidence": -1}
        best = jsonschema.exceptions.best_match(VALIDATOR.iter_errors(bad))
        assert best is not None and list(best.absolute_path) == ["confidence"]


#: Commands and whether sniper carries them out (the schema must agree, and so must the actors).
FLAG_COMMANDS: list[tuple[dict[str, Any], bool]] = [
    ({}, True),
    ({"flag": "ETF", "enabled": False}, True),
    ({"flag": "spot_ob", "enabled": True, "why": "back", "who": "ops"}, True),
    ({"type": "flag_command", "flag": "Funding", "enabled": True}, True),
    ({"flag": "NOPE", "enabled": True}, False),
    ({"flag": "ETF"}, False),
    ({"enabled": False}, False),
    ({"flag": "ETF", "enabled": "no"}, False),
    ({"flag": "ETF", "enabled": False, "extra": 1}, False),
    ({"flag": "ETF", "enabled": False, "v": 2}, False),
    ({"flag": "ETF", "enabled": False, "why": "x" * 201}, False),
]
CIRCUIT_COMMANDS: list[tuple[dict[str, Any], bool]] = [
    ({"action": "list"}, True),
    ({"action": "reset", "module": "etf"}, True),
    ({"action": "reset"}, False),
    ({"action": "reset", "module": "nope"}, False),
    ({"action": "reset", "module": None}, False),
    ({"action": "open"}, False),
    ({}, False),
]
#: The harness runs one asset, SOL: the schema cannot know which assets a deployment runs, so the
#: table names only SOL or no valid asset (an unconfigured one is `ok: false` by configuration, not contract).
STATUS_QUERIES: list[tuple[dict[str, Any], bool]] = [
    ({}, True),
    ({"asset": "SOL"}, True),
    ({"type": "status_query", "asset": "SOL"}, True),
    ({"asset": None}, True),
    ({"asset": "sol"}, False),
    ({"asset": "SOL.>"}, False),
    ({"asset": 5}, False),
    ({"asset": "SOL", "extra": 1}, False),
    ({"asset": "SOL", "v": 2}, False),
    ({"type": "flag_command"}, False),
]
REPLY_TYPES: dict[str, Any] = {"flags": FlagReply, "circuit": CircuitReply, "status": StatusReply}


class TestCommands:
    def test_the_readme_documents_commands(self) -> None:
        """The README's command examples are found (so the next test checks something)."""
        assert len(README_COMMANDS) >= 2

    @pytest.mark.parametrize(("example", "ok"), README_COMMANDS)
    def test_readme_examples_validate_as_documented(self, example: str, ok: str) -> None:
        """A documented command answered ok is valid without a `type` by its definition, and at the root with it."""
        data = json.loads(example)
        assert "type" not in data
        name = "FlagCommand" if "flag" in data else "CircuitCommand"
        typed = {"type": snake_tag(name), **data}
        assert (errors(data, name) == [] and errors(typed) == []) is (ok == "true")

    @pytest.mark.parametrize("name", ["FlagCommand", "CircuitCommand", "StatusQuery", "AlertCommand"])
    def test_at_the_root_a_command_names_its_type(self, name: str) -> None:
        """`{"action": "list"}` could be two commands: the root wants `type`; the definition does not."""
        assert errors({}, name) == [] or name in ("CircuitCommand", "AlertCommand")
        assert errors({"action": "list"} if "action" in SCHEMA["$defs"][name]["properties"] else {}) != []

    @pytest.mark.parametrize(("command", "valid"), FLAG_COMMANDS)
    def test_flag_commands(self, command: dict[str, Any], valid: bool) -> None:
        """The FlagCommand schema accepts exactly the commands the flag keeper carries out."""
        assert (errors(command, "FlagCommand") == []) is valid

    @pytest.mark.parametrize(("command", "valid"), CIRCUIT_COMMANDS)
    def test_circuit_commands(self, command: dict[str, Any], valid: bool) -> None:
        """The CircuitCommand schema accepts exactly the commands the circuit supervisor carries out."""
        assert (errors(command, "CircuitCommand") == []) is valid

    @pytest.mark.parametrize(("query", "valid"), STATUS_QUERIES)
    def test_status_queries(self, query: dict[str, Any], valid: bool) -> None:
        """The StatusQuery schema accepts exactly the queries the status keeper answers (for its assets)."""
        assert (errors(query, "StatusQuery") == []) is valid

    @pytest.mark.parametrize(
        ("command", "valid", "name"),
        [(c, v, "flags") for c, v in FLAG_COMMANDS]
        + [(c, v, "circuit") for c, v in CIRCUIT_COMMANDS]
        + [(c, v, "status") for c, v in STATUS_QUERIES],
    )
    async def test_the_actors_agree(self, harness: Harness, command: dict[str, Any], valid: bool, name: str) -> None:
        """Sent to the real flag keeper, circuit supervisor and status keeper, a command succeeds when it is valid."""
        async with harness.run(actors=("flags", "circuits", "status")):
            env = await harness.bus.request(harness.subjects.command(name), json.dumps(command).encode(), timeout=1)
        reply = decode(env.data, REPLY_TYPES[name])
        assert reply.ok is valid, reply.error

    def test_a_command_without_type_decodes(self) -> None:
        """The decoder agrees that `type` is optional on commands."""
        assert decode(b'{"flag": "etf", "enabled": false}', FlagCommand).enabled is False
        assert decode(b'{"asset": "SOL"}', StatusQuery).asset == "SOL"


class TestOneMessage:
    def test_a_standalone_signal_schema_validates_a_real_signal(self) -> None:
        """`sniper schema --message Signal` is self-contained and validates a recorded signal."""
        schema = one_message_schema("Signal")
        Draft202012Validator.check_schema(schema)
        assert list(Draft202012Validator(schema).iter_errors(a_signal())) == []
        assert {"Signal", "ModuleStatus"} <= set(schema["$defs"]) and "Tick" not in schema["$defs"]

    def test_an_unknown_name_is_a_clear_error(self) -> None:
        """A misspelt message name lists the names there are."""
        with pytest.raises(ContractError, match=r"choose from .*Signal"):
            one_message_schema("Signall")
