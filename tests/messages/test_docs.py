"""The docs stay true: README commands, CI entry, upstream contract and schemas."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from messages import DEFAULT_ROUTES
from messages.asyncapi import asyncapi_document
from messages.schema import message_schema, normalise, upstream_schema
from sniper import __version__

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


class TestReadme:
    def test_two_setup_commands_exist_in_the_makefile(self) -> None:
        """`make demo` and `make test` from the README are real Makefile targets."""
        makefile = (ROOT / "Makefile").read_text()
        assert "make demo" in README and "make test" in README
        assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)

    def test_ci_runs_the_readme_test_command(self) -> None:
        """.ci/run calls the same `make test` the README gives."""
        assert "make test" in (ROOT / ".ci" / "run").read_text()

    def test_ci_runs_the_quality_gate(self) -> None:
        """.ci/run runs `make check`, and the Makefile's check runs ruff (lint and format) and mypy."""
        assert "make check" in (ROOT / ".ci" / "run").read_text()
        makefile = (ROOT / "Makefile").read_text()
        for command in ("ruff check", "ruff format --check", "mypy"):
            assert command in makefile and command in README


def _locked(path: Path) -> dict[str, str]:
    """`name -> version` of a compiled requirements file, checking that every pin carries hashes."""
    pins: dict[str, str] = {}
    for block in re.split(r"\n(?=[a-z0-9])", path.read_text()):
        if not re.match(r"[a-z0-9]", block):
            continue
        match = re.match(r"([a-z0-9][a-z0-9._-]*)==([^ ;\\]+)", block)
        assert match, f"{path.name}: not an exact pin: {block.splitlines()[0]}"
        assert "--hash=sha256:" in block, f"{path.name}: {match[1]} has no hash"
        pins[match[1]] = match[2]
    return pins


class TestLock:
    @pytest.mark.parametrize("lock, extras", [("runtime.txt", ()), ("dev.txt", ("dev",))])
    def test_every_declared_dependency_is_pinned_with_hashes(self, lock: str, extras: tuple[str, ...]) -> None:
        """Each dependency pyproject.toml declares appears in the lock as `==` with sha256 hashes."""
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        declared = list(project["dependencies"])
        for extra in extras:
            declared += project["optional-dependencies"][extra]
        pins = _locked(ROOT / "requirements" / lock)
        for requirement in declared:
            name = re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
            assert name in pins, f"{name} is declared in pyproject.toml but missing from requirements/{lock}"

    def test_installs_use_the_lock_with_hashes(self) -> None:
        """make and the Dockerfile install with --require-hashes from the lock, the project with --no-deps."""
        makefile = (ROOT / "Makefile").read_text()
        dockerfile = (ROOT / "Dockerfile").read_text()
        assert "--require-hashes" in makefile and "requirements/dev.txt" in makefile
        assert "--require-hashes" in dockerfile and "requirements/runtime.txt" in dockerfile
        assert makefile.count("--no-deps") >= 2 and "--no-build-isolation" in makefile

    @pytest.mark.parametrize("module", sorted(DEFAULT_ROUTES))
    def test_upstream_table_matches_default_routes(self, module: str) -> None:
        """Each module's README row names the route and every parameter the fetcher sends."""
        route = DEFAULT_ROUTES[module]
        (row,) = [ln for ln in README.splitlines() if ln.startswith(f"| `{module}` | `GET ")]
        assert f"`GET {route.path}`" in row
        for param in route.params:
            assert f"`{param.name}`" in row


SCHEMA_DOCS = [
    ("docs/upstream-schema.json", upstream_schema),
    ("docs/message-schema.json", message_schema),
    ("docs/asyncapi.yaml", lambda: asyncapi_document(version=__version__)),
]


def same_contract(committed: object, generated: object) -> bool:
    """What the docs test compares: both schemas as JSON, after the same normalisation."""
    as_json = [normalise(json.loads(json.dumps(schema))) for schema in (committed, generated)]
    return bool(as_json[0] == as_json[1])


class TestGeneratedDocs:
    @pytest.mark.parametrize("path, build", SCHEMA_DOCS)
    def test_schema_files_are_current(self, path: str, build: Callable[[], dict[str, Any]]) -> None:
        """The committed JSON Schemas state the contract the Structs generate."""
        committed = yaml.safe_load((ROOT / path).read_text())  # JSON is YAML too
        assert same_contract(committed, build()), f"{path} is stale: run `make docs`"

    def test_reindented_descriptions_are_the_same_contract(self) -> None:
        """Indentation inside descriptions (a dependency's formatting choice) is not a change."""
        generated = message_schema()
        reindented = copy.deepcopy(generated)
        signal = reindented["$defs"]["Signal"]
        signal["description"] = signal["description"].replace("\n", "\n    ")
        assert signal["description"] != generated["$defs"]["Signal"]["description"]
        assert same_contract(reindented, generated)

    @pytest.mark.parametrize(
        "change",
        [
            pytest.param(lambda s: s["$defs"]["Signal"]["properties"].pop("score"), id="field-removed"),
            pytest.param(
                lambda s: s["$defs"]["Signal"]["properties"]["cycle"].update(type="string"), id="type-changed"
            ),
            pytest.param(lambda s: s["$defs"]["Signal"]["required"].remove("asset"), id="now-optional"),
            pytest.param(lambda s: s["$defs"]["Signal"].update(description="Something else."), id="doc-reworded"),
        ],
    )
    def test_a_real_change_is_caught(self, change: Callable[[dict[str, Any]], object]) -> None:
        """Removing a field, changing a type, loosening `required` or rewording a description fails the check."""
        generated = message_schema()
        changed = copy.deepcopy(generated)
        change(changed)
        assert not same_contract(changed, generated)
