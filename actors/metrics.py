"""Prometheus metrics of one sniper process, in a registry of its own.

One registry per `Context` (not prometheus_client's global default) so two
pipelines in one test process never share counters. `sniper run
--metrics-port N` serves it on ``/metrics``.

``sniper_soft_fail_total{module}`` is the seed's ``sniper_soft_fail``: a module
failed in a cycle that was not a hard failure (an ETF 402 counts here, and
never towards the scheduler's consecutive failures).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, Metric

from runtime.actor import Context
from runtime.bus import BusStats
from runtime.hooks import RuntimeHooks

#: What a bus counts about itself, read at scrape time: name (after ``sniper_bus_``) -> (BusStats field, help).
BUS_COUNTERS = {
    "slow_consumer_drops": ("slow_consumer_drops", "Messages the NATS client dropped for a slow subscription"),
    "permission_violations": ("permission_violations", "Operations the broker refused (permissions)"),
    "disconnects": ("disconnects", "Times the link to the broker was lost"),
    "reconnects": ("reconnects", "Times the link to the broker came back"),
}


def metrics_of(ctx: Context) -> Metrics:
    """sniper's metrics in `ctx`.

    `sniper run` puts a `Metrics` in `Context.hooks`; a context built without
    one (a runtime-level test) gets a private set on first use, so an actor
    never needs to ask whether metrics exist.
    """
    hooks = ctx.hooks
    if not isinstance(hooks, Metrics):
        hooks = ctx.hooks = Metrics()
    return hooks


class Metrics(RuntimeHooks):
    """The counters and gauges actors update; also the runtime's hooks (`runtime.hooks`)."""

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
        self.shed_messages = Counter(
            "sniper_shed_messages",
            "Messages dropped unread because a control-plane subscription was over its rate budget",
            ["actor"],
            registry=r,
        )
        self.publish_errors = Counter(
            "sniper_publish_errors",
            "Messages an actor could not publish (too_large, buffer_full, BusClosedError, ...)",
            ["actor", "reason"],
            registry=r,
        )
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
        self.bad_stored = Counter(
            "sniper_bad_stored_values",
            "Values in a key-value bucket that were ignored (undecodable, or under a key that means nothing)",
            ["bucket"],
            registry=r,
        )

    # -- the runtime's hooks -------------------------------------------------
    def actor_started(self, actor: str) -> None:
        self.bad_messages.labels(actor)  # the series exist (at 0) before any junk arrives
        self.shed_messages.labels(actor)

    def message_refused(self, actor: str) -> None:
        self.bad_messages.labels(actor).inc()

    def message_shed(self, actor: str) -> None:
        self.shed_messages.labels(actor).inc()

    def publish_failed(self, actor: str, reason: str) -> None:
        self.publish_errors.labels(actor, reason).inc()

    def actor_restarted(self, actor: str) -> None:
        self.actor_restarts.labels(actor).inc()

    def watch_bus(self, stats: BusStats) -> None:
        """Export a bus's own counters (`BUS_COUNTERS`), read from `stats` at every scrape."""
        self.registry.register(_BusCollector(stats))

    def declare(self, *, modules: Iterable[str], assets: Iterable[str], **label_values: Iterable[str]) -> None:
        """Create every series of the configured modules and assets now, at zero.

        Dashboards and alerts then see a series before its first event, and
        the set of series is fixed by configuration: nothing on the bus can
        add one. `label_values` names the closed sets of the other labels:
        reasons, error_classes, directions, states, actors.
        """
        modules, assets = list(modules), list(assets)
        values = {k: list(v) for k, v in label_values.items()}
        for module in modules:
            self.soft_fail.labels(module)
            for reason in values.get("reasons", ()):
                self.degraded.labels(module, reason)
            for error_class in values.get("error_classes", ()):
                self.upstream_requests.labels(module, error_class)
            for state in values.get("states", ()):
                self.circuit_transitions.labels(module, state)
            for scope in ("all", *assets):
                self.circuit_open.labels(module, scope)
        for asset in assets:
            self.hard_fail.labels(asset)
            self.consecutive_failures.labels(asset)
            for direction in values.get("directions", ()):
                self.signals.labels(asset, direction)
        for bucket in values.get("buckets", ()):
            self.bad_stored.labels(bucket)
        for actor in values.get("actors", ()):
            self.bad_messages.labels(actor)
            self.shed_messages.labels(actor)
            self.actor_restarts.labels(actor)


class _BusCollector:
    """A prometheus_client collector over `BusStats` (the bus keeps the counts; nothing is copied)."""

    def __init__(self, stats: BusStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        for name, (attribute, documentation) in BUS_COUNTERS.items():
            family = CounterMetricFamily(f"sniper_bus_{name}", documentation)
            family.add_metric([], getattr(self.stats, attribute))
            yield family
