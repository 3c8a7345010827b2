"""Prometheus metrics of one daemon (served by ``assetd.daemon.http``).

Per replica (``sum()`` them across replicas): events, decisions, batches, publishing, rules,
loops, ``assetd_lease_holder``, the process, the build. Cluster-wide, read from state every
replica shares (the ``ASSETD_DLQ`` stream, the inbound durable consumer, the registry's
outbox): exported by the scheduler-lease holder only, so that each is counted once.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    Metric,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily

import assetd

# ``*_created`` series double every counter and histogram for a value nobody graphs.
disable_created_metrics()  # type: ignore[no-untyped-call]


class LeaseHolderCollector:
    """Yields its gauges while this replica holds the scheduler lease, nothing otherwise."""

    def __init__(self, *gauges: Gauge) -> None:
        self.gauges = gauges
        self.holding = False

    def describe(self) -> Iterable[Metric]:
        """The names, so that the registry refuses a clash whoever holds the lease."""
        return [m for g in self.gauges for m in g.describe()]

    def collect(self) -> Iterator[Metric]:
        if self.holding:
            for gauge in self.gauges:
                yield from gauge.collect()


class AnswerCacheCollector:
    """``resolve`` answers served from the answer cache, and those read from the registry."""

    def __init__(self, counts: Callable[[], tuple[int, int]]) -> None:
        self.counts = counts

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        hits, misses = self.counts()
        for name, text, value in (("hits", "served from the answer cache", hits),
                                  ("misses", "read from the registry", misses)):
            yield CounterMetricFamily(f"assetd_query_cache_{name}",
                                      f"resolve answers {text}", value=value)


class Metrics:
    """The daemon's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("assetd_events", "Inbound events by type and outcome",
                              ["type", "outcome"], registry=r)
        self.decisions = Counter("assetd_decisions", "Rule decisions by outcome", ["outcome"],
                                 registry=r)
        self.batch_size = Histogram("assetd_batch_size", "Messages per pulled batch",
                                    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 5000),
                                    registry=r)
        self.batch_seconds = Histogram("assetd_batch_seconds",
                                       "Time to decode, apply and commit one batch", registry=r)
        self.published = Counter("assetd_outbound_published", "Outbound events published",
                                 registry=r)
        self.rules_loaded = Gauge("assetd_rules_loaded_timestamp_seconds",
                                  "When the rules in force were loaded (0: none)", registry=r)
        self.rules_count = Gauge("assetd_rules", "Rules in force", registry=r)
        self.loop_up = Gauge("assetd_loop_up",
                             "1 while a background loop runs, 0 while it is failing",
                             ["loop"], registry=r)
        self.loop_restarts = Counter("assetd_loop_restarts",
                                     "Background loop restarts after an unexpected error",
                                     ["loop"], registry=r)
        self.lease_holder = Gauge("assetd_lease_holder",
                                  "1 on the replica holding the scheduler lease (it alone "
                                  "exports the cluster-wide gauges), 0 elsewhere", registry=r)
        self._cluster_gauges()
        self._process_and_build()

    def _cluster_gauges(self) -> None:
        self.lag = Gauge("assetd_consumer_lag", "Inbound messages not yet acknowledged "
                         "(cluster-wide; exported by the lease holder)", registry=None)
        self.outbox = Gauge("assetd_outbox_pending", "Outbound events waiting for a relay "
                            "(cluster-wide; exported by the lease holder)", registry=None)
        self.dlq = Gauge("assetd_dlq_depth", "Messages in ASSETD_DLQ "
                         "(cluster-wide; exported by the lease holder)", registry=None)
        self.cluster = LeaseHolderCollector(self.lag, self.outbox, self.dlq)
        self.registry.register(self.cluster)

    def _process_and_build(self) -> None:
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build = Info("assetd_build", "The assetd build serving these metrics", registry=r)
        self.build.info({"version": assetd.__version__, "python": platform.python_version()})

    def track_answers(self, counts: Callable[[], tuple[int, int]]) -> None:
        """Export the answer cache's hits and misses (``counts`` returns both)."""
        self.registry.register(AnswerCacheCollector(counts))

    def update_shared(self, *, holder: bool, lag: int | None, outbox: int | None,
                      dlq: int | None) -> None:
        """Record whether this replica holds the lease and the cluster-wide values (a value
        that could not be read, None, leaves the gauge as it was)."""
        self.lease_holder.set(1 if holder else 0)
        self.cluster.holding = holder
        for gauge, value in ((self.lag, lag), (self.outbox, outbox), (self.dlq, dlq)):
            if value is not None:
                gauge.set(value)
