"""Every metric the dashboard and the alerting rules query is one sniper exports.

The exported names come from the registry of a pipeline started by `sniper run`'s own wiring
(`run_pipeline`, through the harness): every family declared, with the sample names
prometheus-client gives each type (``_total``/``_created`` for counters; ``_bucket``/``_sum``/
``_count``/``_created`` for histograms), the bus collector's ``sniper_bus_*`` and the process
collector's ``process_*``. A renamed metric, or a typo in a panel or a rule, fails here instead of
drawing an empty panel or never firing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ..harness import Harness

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "sniper.json"
RULES = DEPLOY / "prometheus" / "rules.yml"

#: The metric names this check owns; others (up, ALERTS) are Prometheus's own.
PREFIXES = ("sniper_", "process_")
_NAME = re.compile(r"(?<![A-Za-z0-9_:])((?:sniper|process)_[a-z0-9_]+)(?=[\s{\[),]|$)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
#: What prometheus-client appends to a family's name, by type (as Prometheus stores the samples).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "untyped": ("",),
}


def metric_names(expr: str) -> set[str]:
    """The sniper_* and process_* metric names a PromQL expression (or Grafana query) refers to.

    Quoted strings (label values, regexes) are dropped first, so ``{reason=~"sniper_x"}`` names nothing.
    """
    return set(_NAME.findall(_STRING.sub('""', expr)))


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield f"variable {variable['name']}", query["query"] if isinstance(query, dict) else query


def rule_expressions() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]


EXPRESSIONS = [*dashboard_expressions(), *rule_expressions()]
_exported: set[str] = set()


@pytest.fixture
async def exported(harness: Harness) -> set[str]:
    """Every metric name a running pipeline exports (computed once per test session)."""
    if not _exported:
        async with harness.run():
            registry = harness.metrics.registry
            for family in registry.collect():
                _exported.update(family.name + suffix for suffix in _SUFFIXES[family.type])
                _exported.update(sample.name for sample in family.samples)
    return _exported


def test_there_is_something_to_check() -> None:
    """Each panel queries something, and dashboard and rules together name the metrics they are about."""
    assert len(EXPRESSIONS) >= 20
    named = set().union(*(metric_names(expr) for _, expr in EXPRESSIONS))
    assert {
        "sniper_signals_total",
        "sniper_degraded_total",
        "sniper_circuit_open",
        "sniper_cycle_latency_seconds_bucket",
        "sniper_upstream_latency_seconds_bucket",
        "sniper_soft_fail_total",
        "sniper_alerts_firing",
        "sniper_consecutive_failures",
        "sniper_actor_restarts_total",
        "process_start_time_seconds",
    } <= named


@pytest.mark.parametrize(("where", "expr"), EXPRESSIONS, ids=[where for where, _ in EXPRESSIONS])
async def test_every_metric_queried_is_exported(exported: set[str], where: str, expr: str) -> None:
    assert metric_names(expr) <= exported, f"{where}: {sorted(metric_names(expr) - exported)} not exported"


@pytest.mark.parametrize(
    "expr",
    [
        "rate(sniper_made_up_total[5m])",  # no such metric
        "sum(sniper_signals)",  # a counter's family name: Prometheus stores sniper_signals_total
        "histogram_quantile(0.99, sum by (le) (rate(sniper_cycle_latency_bucket[5m])))",  # the unit is missing
        "sniper_circuit_open_total > 0",  # a gauge has no _total
        "sniper_build_info_created",  # a gauge has no _created
    ],
)
async def test_a_name_that_is_not_exported_is_caught(exported: set[str], expr: str) -> None:
    assert metric_names(expr) - exported


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sniper_a{x="1"}', {"sniper_a"}),
        ("rate(sniper_b_total[5m])", {"sniper_b_total"}),
        ("max(sniper_c)", {"sniper_c"}),
        ("sniper_d > 0", {"sniper_d"}),
        ("sniper_e", {"sniper_e"}),
        ("label_values(sniper_f, asset)", {"sniper_f"}),
        ("sum by (asset) (sniper_g)\n  / on () group_left\nsniper_h", {"sniper_g", "sniper_h"}),
        ('count(ALERTS{alertname=~"sniper_rule"}) + up{job="sniper_job"}', set()),
        ("my_sniper_metric + sniper:recorded:rate5m", set()),
        ("changes(process_start_time_seconds[15m])", {"process_start_time_seconds"}),
    ],
)
def test_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
