"""The docs stay true: README commands, CI entry, upstream contract and schemas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from messages import DEFAULT_ROUTES
from messages.schema import message_schema, upstream_schema

ROOT = Path(__file__).resolve().parent.parent
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

    @pytest.mark.parametrize("module", sorted(DEFAULT_ROUTES))
    def test_upstream_table_matches_default_routes(self, module: str) -> None:
        """Each module's README row names the route and every parameter the fetcher sends."""
        route = DEFAULT_ROUTES[module]
        (row,) = [ln for ln in README.splitlines() if ln.startswith(f"| `{module}` | `GET ")]
        assert f"`GET {route.path}`" in row
        for param in route.params:
            assert f"`{param.name}`" in row


class TestGeneratedDocs:
    @pytest.mark.parametrize(
        "path, build", [("docs/upstream-schema.json", upstream_schema), ("docs/message-schema.json", message_schema)]
    )
    def test_schema_files_are_current(self, path: str, build) -> None:
        """The committed JSON Schemas equal what the Structs generate."""
        current = json.loads(json.dumps(build()))
        assert json.loads((ROOT / path).read_text()) == current, f"{path} is stale: run `make docs`"
