"""Prometheus metrics of one sniper process, in a registry of its own.

One registry per `Context` (not prometheus_client's global default) so two
pipelines in one test process never share counters. `sniper run
--metrics-port N` serves it on ``/metrics``.

``sniper_soft_fail_total{module}`` is the seed's ``sniper_soft_fail``: a module
failed in a cycle that was not a hard failure (an ETF 402 counts here, and
never towards the scheduler's consecutive failures).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    """The counters and gauges actors update."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.soft_fail = Counter(
            "sniper_soft_fail", "Module failures in cycles that were not hard failures", ["module"], registry=r
        )
        self.hard_fail = Counter("sniper_hard_fail", "Cycles in which every core module failed", ["asset"], registry=r)
        self.degraded = Counter(
            "sniper_degraded", "Degraded module answers by reason", ["module", "reason"], registry=r
        )
        self.upstream_requests = Counter(
            "sniper_upstream_requests",
            "Requests sent to the backend by outcome class",
            ["module", "error_class"],
            registry=r,
        )
        self.signals = Counter("sniper_signals", "Signals published", ["asset", "direction"], registry=r)
        self.late_reports = Counter(
            "sniper_late_reports", "Module reports that arrived after their window closed", registry=r
        )
        self.bad_messages = Counter("sniper_bad_messages", "Undecodable messages dropped", ["actor"], registry=r)
        self.actor_restarts = Counter(
            "sniper_actor_restarts", "Actor restarts by the supervisor", ["actor"], registry=r
        )
        self.circuit_transitions = Counter(
            "sniper_circuit_transitions", "Circuit breaker state changes", ["module", "state"], registry=r
        )
        self.circuit_open = Gauge(
            "sniper_circuit_open",
            "1 while a module breaker is open, half-open or quarantined",
            ["module", "scope"],
            registry=r,
        )
        self.consecutive_failures = Gauge(
            "sniper_consecutive_failures", "Consecutive hard failures per asset", ["asset"], registry=r
        )
        self.flag_enabled = Gauge("sniper_flag_enabled", "Feature flag state (1 on, 0 off)", ["flag"], registry=r)
