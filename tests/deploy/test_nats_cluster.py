"""deploy/nats-cluster: three node configs that nats-server accepts, with exactly the users of nats.conf.

The nodes include ``users.conf``, a copy of ``nats.conf``'s ``authorization``
block. The copy is compared with the original as parsed values (comments and
layout may differ, users and permissions may not), and so are the limits the
nodes share with ``nats.conf``: a change to one file that misses the other
fails here. The last test starts the three nodes from these files on loopback
(`sniper.cluster.LocalCluster`) and uses them as the ``sniper`` user.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runtime import NatsBus
from runtime.errors import BusConnectError
from sniper.cluster import LocalCluster
from sniper.embedded import find_nats_server

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "deploy" / "nats-cluster"
NODES = [CLUSTER / f"node{n}.conf" for n in (1, 2, 3)]
#: The users' passwords, from the environment as in production (nats.conf reads the same three).
PASSWORDS = {"NATS_SNIPER_PASSWORD": "s-pw", "NATS_OPERATOR_PASSWORD": "o-pw", "NATS_BOT_PASSWORD": "b-pw"}
#: What differs between a node and the single-node nats.conf (everything else must be equal).
PER_NODE = {"server_name", "listen", "cluster", "include", "authorization", "jetstream"}


# -- a small reader of nats-server's config format (maps, arrays, strings, bare words) ---------------------------
def _without_comments(text: str) -> str:
    lines = []
    for line in text.splitlines():
        quote = None
        for i, char in enumerate(line):
            if quote:
                quote = None if char == quote else quote
            elif char in "\"'":
                quote = char
            elif char == "#" or line.startswith("//", i):
                line = line[:i]
                break
        lines.append(line)
    return "\n".join(lines)


class ConfReader:
    """Parses a config to dicts, lists and strings: ``key: value``, ``key = value``, ``key value``, ``key {...}``."""

    def __init__(self, text: str) -> None:
        self.text = _without_comments(text)
        self.at = 0

    def _skip(self, chars: str = " \t\r\n,;") -> str:
        while self.at < len(self.text) and self.text[self.at] in chars:
            self.at += 1
        return self.text[self.at : self.at + 1]

    def mapping(self, end: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        while (char := self._skip()) != end:
            assert char, f"unexpected end of config, expected {end!r}"
            key = self._scalar(" \t\r\n:={")
            if self._skip(" \t") in (":", "="):
                self.at += 1
            assert key not in out, f"duplicate key {key!r}"
            out[key] = self.value()
        self.at += len(end)
        return out

    def value(self) -> Any:
        char = self._skip()
        if char in ("{", "["):
            self.at += 1
            if char == "{":
                return self.mapping("}")
            items = []
            while self._skip() != "]":
                items.append(self.value())
            self.at += 1
            return items
        return self._scalar("\r\n,;}]")

    def _scalar(self, stop: str) -> str:
        char = self._skip()
        if char in "\"'":
            end = self.text.index(char, self.at + 1)
            word, self.at = self.text[self.at + 1 : end], end + 1
            return word
        start = self.at
        while self.at < len(self.text) and self.text[self.at] not in stop:
            self.at += 1
        return self.text[start : self.at].strip()


def parse(path: Path) -> dict[str, Any]:
    return ConfReader(path.read_text()).mapping()


def check(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``nats-server -t -c config`` with exactly the NATS_* variables of `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
    return subprocess.run(
        [find_nats_server(), "-t", "-c", str(config)], capture_output=True, text=True, timeout=30, env={**base, **env}
    )


# -- the tests ------------------------------------------------------------------------------------------------------
class TestConfReader:
    def test_reads_the_forms_the_configs_use(self) -> None:
        """Colons, equals, bare separation, nested maps, arrays over lines, quotes and comments."""
        text = 'a: 1MB\nb = "x # y" # c\ninclude ./u.conf\nm { l: [ "p", q\n r ] n: { o: true } }\nh: 1.2.3.4:5\n'
        assert ConfReader(text).mapping() == {
            "a": "1MB",
            "b": "x # y",
            "include": "./u.conf",
            "m": {"l": ["p", "q", "r"], "n": {"o": "true"}},
            "h": "1.2.3.4:5",
        }


class TestNodeConfigs:
    @pytest.mark.parametrize("config", NODES, ids=lambda p: p.name)
    def test_passes_the_server_check(self, config: Path) -> None:
        """`nats-server -t -c nodeN.conf` accepts each node's config, with the users' passwords set."""
        result = check(config, PASSWORDS)
        assert result.returncode == 0 and "is valid" in result.stdout + result.stderr, result.stderr

    def test_passwords_come_from_the_environment(self) -> None:
        """Without a user's password variable the check fails, naming the variable: no password is in the files."""
        result = check(NODES[0], {k: v for k, v in PASSWORDS.items() if k != "NATS_BOT_PASSWORD"})
        assert result.returncode != 0 and "NATS_BOT_PASSWORD" in result.stdout + result.stderr

    def test_unique_names_and_stores_and_routes_to_the_other_two(self) -> None:
        """Each node has its own server_name and store_dir, one cluster name, and routes to the other nodes only."""
        nodes = [parse(path) for path in NODES]
        names = [node["server_name"] for node in nodes]
        assert len(set(names)) == 3 and len({node["jetstream"]["store_dir"] for node in nodes}) == 3
        assert {node["cluster"]["name"] for node in nodes} == {"sniper"}
        for n, node in enumerate(nodes, start=1):
            hosts = {re.sub(r"^nats-route://([^:/]+):6222$", r"\1", route) for route in node["cluster"]["routes"]}
            assert hosts == {f"nats-{m}" for m in (1, 2, 3) if m != n}, node["cluster"]["routes"]

    def test_limits_are_those_of_nats_conf(self) -> None:
        """Payload, connection, ping, lame-duck and JetStream limits equal the single-node nats.conf's."""
        single = parse(ROOT / "nats.conf")
        shared = {key: value for key, value in single.items() if key not in PER_NODE}
        single_js = {k: v for k, v in single["jetstream"].items() if k != "store_dir"}
        for path in NODES:
            node = parse(path)
            assert {key: value for key, value in node.items() if key not in PER_NODE} == shared, path.name
            assert {k: v for k, v in node["jetstream"].items() if k != "store_dir"} == single_js, path.name


class TestUsers:
    def test_users_conf_is_the_authorization_of_nats_conf(self) -> None:
        """users.conf holds nats.conf's authorization block and nothing else: same users, passwords, permissions."""
        users = parse(CLUSTER / "users.conf")
        assert list(users) == ["authorization"]
        assert users["authorization"] == parse(ROOT / "nats.conf")["authorization"]

    @pytest.mark.parametrize("config", NODES, ids=lambda p: p.name)
    def test_every_node_includes_it_and_has_no_users_of_its_own(self, config: Path) -> None:
        """Each node takes its users from users.conf only, so the three cannot differ."""
        node = parse(config)
        assert node["include"] == "./users.conf" and "authorization" not in node


@pytest.mark.nats
@pytest.mark.slow
class TestRunningCluster:
    async def test_the_nodes_form_a_cluster_with_these_users(self) -> None:
        """Three nodes from node1.conf (ports and routes on loopback): the sniper user creates an R3 bucket; no
        anonymous client gets in."""
        async with LocalCluster(3, config=NODES[0], env=PASSWORDS) as cluster:
            with pytest.raises(BusConnectError):
                await NatsBus.connect(cluster.urls[0], connect_deadline=2.0)
            bus = await NatsBus.connect(cluster.url, user="sniper", password="s-pw", replicas=3)
            try:
                await (await bus.key_value("sniper_flags")).put("probe", b"1")
                info = await bus.client.jetstream().stream_info("KV_sniper_flags")
                assert info.config.num_replicas == 3 and info.cluster is not None
                assert len(info.cluster.replicas or []) == 2
            finally:
                await bus.close()
