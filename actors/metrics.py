"""Prometheus metrics of one sniper process, in a registry of its own.

One registry per `Context` (not prometheus_client's global default) so two
pipelines in one test process never share counters. `sniper run
--metrics-port N` serves it on ``/metrics``.

``sniper_soft_fail_total{module}`` is the seed's ``sniper_soft_fail``: a module
failed in a cycle that was not a hard failure (an ETF 402 counts here, and
never towards the scheduler's consecutive failures).

Three histograms time the pipeline: ``sniper_cycle_latency_seconds{asset}``
(a signal's ts minus its cycle's start, the tick's ts),
``sniper_upstream_latency_seconds{module}`` (one backend request, answered or
not) and ``sniper_actor_handler_seconds{actor}`` (one handler call, through
the runtime's `handler_finished` hook). The last is on the hot path of every
message, so it is kept as plain counts and exported at scrape time
(`_HandlerTimes`) rather than through prometheus_client's locked histogram.
``sniper_build_info{version,python}`` is 1, and the registry carries the
standard ``process_*`` metrics (``process_start_time_seconds`` shows a
restart: a supervisor that gave up on an actor makes the process exit).
"""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

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

#: Histogram bucket bounds, seconds. A cycle's signal comes at its window's close at the latest (3 s by default).
CYCLE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
#: An upstream request is bounded by the cycle's budget; 30 s is the transport's safety timeout.
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: A handler decodes nothing (the runtime did) and mostly publishes: tens of microseconds when well.
HANDLER_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)


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
        self.alerts_firing = Gauge(
            "sniper_alerts_firing", "Alerts firing now (inhibited ones not counted)", ["alertname"], registry=r
        )
        self.bad_stored = Counter(
            "sniper_bad_stored_values",
            "Values in a key-value bucket that were ignored (undecodable, or under a key that means nothing)",
            ["bucket"],
            registry=r,
        )
        self.fallback = Counter(
            "sniper_fallback",
            "Answers a module took from a venue after the backend failed it, by source and class (ok: data)",
            ["module", "source", "error_class"],
            registry=r,
        )
        self.leader = Gauge(
            "sniper_leader", "1 while this process holds the singleton's lease (runs it), else 0", ["role"], registry=r
        )
        self.leader_term = Gauge(
            "sniper_leader_term", "The lease term this process last held or saw", ["role"], registry=r
        )
        self.leader_changes = Counter(
            "sniper_leader_changes",
            "Times this process took (took=yes) or lost (took=no) a singleton's lease",
            ["role", "took"],
            registry=r,
        )
        self.cycle_latency = Histogram(
            "sniper_cycle_latency_seconds",
            "From a cycle's start (its tick) to its signal",
            ["asset"],
            buckets=CYCLE_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "sniper_upstream_latency_seconds",
            "Backend requests by module, from sending to a classified outcome (timeouts included)",
            ["module"],
            buckets=UPSTREAM_BUCKETS,
            registry=r,
        )
        self.handler_times = _HandlerTimes(
            "sniper_actor_handler_seconds",
            "Time an actor's message handler took: one call in 8 sampled (handlers that raised not counted)",
        )
        r.register(self.handler_times)
        self.build_info = Gauge("sniper_build_info", "Always 1: the version running", ["version", "python"], registry=r)
        ProcessCollector(registry=r)

    # -- the runtime's hooks -------------------------------------------------
    times_handlers = True
    #: One handler call in 8 is timed: the histogram's shape at an eighth of the clock reads (bus_throughput).
    handler_sample = 8

    def actor_started(self, actor: str) -> None:
        self.bad_messages.labels(actor)  # the series exist (at 0) before any junk arrives
        self.shed_messages.labels(actor)
        self.handler_times.series(actor)

    def handler_finished(self, actor: str, seconds: float) -> None:
        times = self.handler_times.by_actor.get(actor) or self.handler_times.series(actor)
        times.counts[bisect_left(HANDLER_BUCKETS, seconds)] += 1
        times.sum += seconds

    def message_refused(self, actor: str) -> None:
        self.bad_messages.labels(actor).inc()

    def message_shed(self, actor: str) -> None:
        self.shed_messages.labels(actor).inc()

    def publish_failed(self, actor: str, reason: str) -> None:
        self.publish_errors.labels(actor, reason).inc()

    def actor_restarted(self, actor: str) -> None:
        self.actor_restarts.labels(actor).inc()

    def leader_changed(self, role: str, leading: bool, term: int) -> None:
        self.leader.labels(role).set(1 if leading else 0)
        self.leader_term.labels(role).set(term)
        self.leader_changes.labels(role, "yes" if leading else "no").inc()

    def watch_bus(self, stats: BusStats) -> None:
        """Export a bus's own counters (`BUS_COUNTERS`), read from `stats` at every scrape."""
        self.registry.register(_BusCollector(stats))

    def declare(
        self,
        *,
        modules: Iterable[str],
        assets: Iterable[str],
        version: str | None = None,
        **label_values: Iterable[str],
    ) -> None:
        """Create every series of the configured modules and assets now, at zero.

        Dashboards and alerts then see a series before its first event, and
        the set of series is fixed by configuration: nothing on the bus can
        add one. `label_values` names the closed sets of the other labels:
        reasons, error_classes, directions, states, alertnames, buckets,
        actors. `version` sets ``sniper_build_info``.
        """
        modules, assets = list(modules), list(assets)
        values = {k: list(v) for k, v in label_values.items()}
        if version is not None:
            self.build_info.labels(version, platform.python_version()).set(1)
        for module in modules:
            self.soft_fail.labels(module)
            self.upstream_latency.labels(module)
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
            self.cycle_latency.labels(asset)
            for direction in values.get("directions", ()):
                self.signals.labels(asset, direction)
        for alertname in values.get("alertnames", ()):
            self.alerts_firing.labels(alertname)
        for bucket in values.get("buckets", ()):
            self.bad_stored.labels(bucket)
        for role in values.get("roles", ()):
            self.leader.labels(role)
            self.leader_term.labels(role)
            for took in ("yes", "no"):
                self.leader_changes.labels(role, took)
        for actor in values.get("actors", ()):
            self.bad_messages.labels(actor)
            self.shed_messages.labels(actor)
            self.actor_restarts.labels(actor)
            self.handler_times.series(actor)


class _Times:
    """One histogram series as plain numbers: a count per bucket (not cumulative; the last is +Inf) and the sum."""

    __slots__ = ("counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)
        self.sum = 0.0


class _HandlerTimes:
    """``sniper_actor_handler_seconds{actor}``, kept without locks and made cumulative at scrape time.

    Written by `Metrics.handler_finished` for every message, so it is a list
    index and an addition (prometheus_client's histogram takes a lock per
    bucket). One event loop both writes it and serves the scrape, so a scrape
    never sees half an update. Series are made by `series` for actors this
    process runs (names from code, never from the bus).
    """

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.by_actor: dict[str, _Times] = {}
        self._bounds = [*(repr(float(b)) for b in HANDLER_BUCKETS), "+Inf"]  # as prometheus_client writes `le`

    def series(self, actor: str) -> _Times:
        times = self.by_actor.get(actor)
        if times is None:
            times = self.by_actor[actor] = _Times(len(HANDLER_BUCKETS))
        return times

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["actor"])
        for actor, times in sorted(self.by_actor.items()):
            family.add_metric([actor], list(zip(self._bounds, accumulate(times.counts), strict=True)), times.sum)
        yield family


class _BusCollector:
    """A prometheus_client collector over `BusStats` (the bus keeps the counts; nothing is copied)."""

    def __init__(self, stats: BusStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        for name, (attribute, documentation) in BUS_COUNTERS.items():
            family = CounterMetricFamily(f"sniper_bus_{name}", documentation)
            family.add_metric([], getattr(self.stats, attribute))
            yield family
