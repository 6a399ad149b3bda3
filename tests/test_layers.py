"""The packages import in one direction: messages <- runtime <- actors <- sniper.

``marketsim`` (the reference backend) stands alone, and production code never
imports it at import time (``sniper sim`` imports it inside the command).
The check reads every module's imports with `ast`, including imports inside
functions, so a lazy import cannot smuggle a wrong edge in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("messages", "runtime", "actors", "sniper", "marketsim")
#: Package -> the first-party packages it may import from (itself included).
ALLOWED: dict[str, frozenset[str]] = {
    "messages": frozenset({"messages"}),
    "runtime": frozenset({"messages", "runtime"}),
    "actors": frozenset({"messages", "runtime", "actors"}),
    "sniper": frozenset({"messages", "runtime", "actors", "sniper", "marketsim"}),
    "marketsim": frozenset({"marketsim"}),
}
#: Packages that may import marketsim only inside a function (at run time, never at import time).
LAZY_ONLY = {"sniper": frozenset({"marketsim"})}


def imports(source: str, package: str) -> list[tuple[int, str, bool]]:
    """(line, first-party package imported, at module level?) for every import in `source`."""
    tree = ast.parse(source)
    top_level = {id(node) for node in tree.body}
    found: list[tuple[int, str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package] if node.level else [node.module or ""]
        else:
            continue
        for name in names:
            root = name.split(".")[0]
            if root in FIRST_PARTY:
                found.append((node.lineno, root, id(node) in top_level))
    return found


def violations(source: str, package: str) -> list[str]:
    """Every import in `source` (a module of `package`) that breaks the layering, as 'line: reason'."""
    problems = []
    for line, imported, at_top in imports(source, package):
        if imported not in ALLOWED[package]:
            problems.append(f"{line}: {package} may not import {imported}")
        elif at_top and imported in LAZY_ONLY.get(package, ()):
            problems.append(f"{line}: {package} may import {imported} only inside a function")
    return problems


class TestLayers:
    @pytest.mark.parametrize("package", sorted(ALLOWED))
    def test_package_imports_follow_the_layers(self, package: str) -> None:
        """No module of the package imports a layer above it (or marketsim at import time)."""
        modules = sorted((ROOT / package).rglob("*.py"))
        assert modules
        found = {
            str(path.relative_to(ROOT)): problems
            for path in modules
            if (problems := violations(path.read_text(), package))
        }
        assert found == {}

    @pytest.mark.parametrize(
        ("package", "source", "expected"),
        [
            ("messages", "from runtime.bus import Bus\n", "1: messages may not import runtime"),
            ("runtime", "import actors.scoring\n", "1: runtime may not import actors"),
            ("runtime", "def f():\n    from sniper.app import run_pipeline\n", "2: runtime may not import sniper"),
            ("actors", "from sniper.config import Settings\n", "1: actors may not import sniper"),
            ("marketsim", "from messages import Signal\n", "1: marketsim may not import messages"),
            ("sniper", "from marketsim import serve\n", "1: sniper may import marketsim only inside a function"),
        ],
    )
    def test_a_wrong_import_is_caught(self, package: str, source: str, expected: str) -> None:
        """The checker itself: each kind of wrong edge is reported with its line."""
        assert violations(source, package) == [expected]

    @pytest.mark.parametrize(
        ("package", "source"),
        [
            ("runtime", "from . import bus\nfrom .actor import Actor\nfrom messages import encode\n"),
            ("sniper", "def sim():\n    from marketsim import serve\n"),
            ("actors", "import asyncio\nfrom runtime import Actor\n"),
        ],
    )
    def test_allowed_imports_pass(self, package: str, source: str) -> None:
        """Relative imports, lazy marketsim in sniper and third-party imports are fine."""
        assert violations(source, package) == []
