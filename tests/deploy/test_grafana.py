"""deploy/grafana: the sniper dashboard and the provisioning that loads it (no Grafana needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dashboard() -> Any:
    return json.loads((GRAFANA / "dashboards" / "sniper.json").read_text())


def test_the_data_source_is_a_variable_of_type_prometheus(dashboard: Any) -> None:
    """No data source uid is baked in: the dashboard imports into any Grafana with a Prometheus."""
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    for panel in dashboard["panels"]:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["expr"].strip(), panel["title"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE


@pytest.mark.parametrize(
    ("title", "query"),
    [
        ("Signals per asset", "rate(sniper_signals_total"),
        ("Module status: degraded answers by module and reason", "sniper_degraded_total"),
        ("Breaker states (1 = open, half-open or quarantined)", "sniper_circuit_open"),
        ("Cycle latency p50 / p99", "histogram_quantile(0.99, sum by (asset, le) (rate(sniper_cycle_latency_seconds"),
        ("Upstream latency p99 per module", "histogram_quantile(0.99, sum by (module, le)"),
        ("Soft failures by module", "sniper_soft_fail_total"),
        ("Alerts firing", "sniper_alerts_firing"),
    ],
)
def test_the_panels_asked_for_are_there(dashboard: Any, title: str, query: str) -> None:
    (panel,) = [p for p in dashboard["panels"] if p["title"] == title]
    assert any(query in target["expr"] for target in panel["targets"])


def test_panels_do_not_overlap_and_ids_are_unique(dashboard: Any) -> None:
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine


def test_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "sniper.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"] == "/etc/grafana/dashboards"
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
