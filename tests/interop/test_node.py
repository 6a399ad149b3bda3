"""A bot in another language: Node.js with ajv (strict mode) and the official AsyncAPI parser.

The Node packages come from `interop/node/package-lock.json` (`make test`
installs them with `npm ci`). Python's `jsonschema` ignores keywords it does
not know; ajv in strict mode refuses them, so this is the check that the
schema is standard. The verdicts of both validators are compared message by
message.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from marketsim import serve
from messages import Signal, Subjects
from messages.schema import message_names, message_schema
from runtime import NatsBus
from runtime.testing import Recorder
from sniper.app import run_pipeline
from sniper.config import Settings
from sniper.embedded import EmbeddedNats

from ..messages.test_schema import RECORDED, a_signal, errors

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "interop" / "node"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


def node(script: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    if not (NODE_DIR / "node_modules").is_dir():
        pytest.fail("interop/node/node_modules is missing: run `make test` (it runs `npm ci` from the lock)")
    return subprocess.run(
        ["node", str(NODE_DIR / script), *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def ajv(schema: dict[str, Any], cases: list[tuple[str | None, Any]], tmp_path: Path) -> list[dict[str, Any]]:
    """ajv's verdict on each (definition name or None for the root, instance)."""
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    lines = "".join(json.dumps({"ref": ref, "instance": inst}) + "\n" for ref, inst in cases)
    done = node("validate.mjs", str(path), stdin=lines)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


class TestAjvStrict:
    def test_the_schema_compiles_and_real_messages_validate(self, tmp_path: Path) -> None:
        """ajv (strict) compiles `sniper schema` and accepts every recorded real message, at the root and by name."""
        by_type = {message_schema()["$defs"][n]["properties"]["type"]["const"]: n for n in message_names()}
        cases: list[tuple[str | None, Any]] = [(None, m) for _, m in RECORDED]
        cases += [(by_type[m["type"]], m) for _, m in RECORDED]
        results = ajv(message_schema(), cases, tmp_path)
        assert [r for r in results if not r["valid"]] == []

    def test_ajv_and_jsonschema_agree_on_bad_messages(self, tmp_path: Path) -> None:
        """Broken messages get the same verdict from both validators, and ajv names the bad field."""
        signal = a_signal()
        cases: list[tuple[str | None, Any]] = [
            ("Signal", {**signal, "v": 2}),
            ("Signal", {**signal, "confidence": -1}),
            ("Signal", {**signal, "asset": "sol"}),
            (None, {**signal, "type": "nope"}),
            ("FlagCommand", {"flag": "ETF"}),
            ("FlagCommand", {"flag": "etf", "enabled": False}),
            ("CircuitCommand", {"action": "reset"}),
            (None, {"action": "list"}),
            (None, {"type": "circuit_command", "action": "list"}),
        ]
        results = ajv(message_schema(), cases, tmp_path)
        assert [r["valid"] for r in results] == [errors(inst, ref) == [] for ref, inst in cases]
        assert [r["valid"] for r in results] == [False, False, False, False, False, True, False, False, True]
        assert results[1]["errors"][0]["path"] == "/confidence"

    def test_strict_mode_refuses_an_openapi_keyword(self, tmp_path: Path) -> None:
        """The old schema's `discriminator` is refused by ajv strict mode (so the compile above proves something)."""
        schema = message_schema()
        schema["discriminator"] = {"propertyName": "type"}
        path = tmp_path / "schema.json"
        path.write_text(json.dumps(schema))
        done = node("validate.mjs", str(path))
        assert done.returncode == 2 and "unknown keyword" in done.stderr


class TestAsyncApiParser:
    def test_the_committed_document_parses_without_errors(self) -> None:
        """The official @asyncapi/parser reads docs/asyncapi.yaml with no error and sees every channel."""
        done = node("asyncapi.mjs", str(ROOT / "docs" / "asyncapi.yaml"))
        result = json.loads(done.stdout)
        assert done.returncode == 0 and result["errors"] == []
        assert "sniper.signal.{asset}" in result["channels"] and "answerCmdFlags" in result["operations"]

    def test_a_broken_document_is_refused(self, tmp_path: Path) -> None:
        """An operation pointing at a missing channel is an error (the parser does check)."""
        document = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
        document["operations"]["publishSignal"]["channel"] = {"$ref": "#/channels/nope"}
        path = tmp_path / "asyncapi.yaml"
        path.write_text(yaml.safe_dump(document))
        done = node("asyncapi.mjs", str(path))
        assert done.returncode == 1 and json.loads(done.stdout)["errors"]


@pytest.mark.nats
class TestNodeBot:
    async def test_a_node_bot_catches_up_follows_commands_and_reads_the_bucket(
        self, nats_server: EmbeddedNats, tmp_path: Path
    ) -> None:
        """nats.js + ajv against a live pipeline: stream catch-up, live signals, the README command, the KV entry."""
        schema = tmp_path / "schema.json"
        schema.write_text(json.dumps(message_schema()))
        async with serve(port=0, seed=5) as backend:
            observer = await NatsBus.connect(nats_server.url, name="observer")
            signals = await Recorder[Signal](observer, Subjects().signal_all(), Signal).start()
            settings = Settings(
                nats=nats_server.url, backend=backend.url, assets=("SOL", "BTC"), interval=0.3, window=0.2
            )
            async with run_pipeline(settings):
                await signals.wait_for(lambda msgs: {s.asset for s in msgs} == {"SOL", "BTC"})
                bot = await asyncio.create_subprocess_exec(
                    "node",
                    str(NODE_DIR / "bot.mjs"),
                    nats_server.url,
                    str(schema),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                stdout, stderr = await asyncio.wait_for(bot.communicate(), 60)
            await observer.close()
        assert bot.returncode == 0, stderr.decode()
        seen = json.loads(stdout)
        assert seen["invalid"] == []
        assert set(seen["caught_up"]) == {"SOL", "BTC"} and seen["live"] >= 2
        assert seen["command"] == {"ok": True, "etf": False}
        assert seen["disabled_after_ms"] is not None
        assert seen["kv"]["enabled"] is False and seen["kv"]["who"] == "node-bot"
