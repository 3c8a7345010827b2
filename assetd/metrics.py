"""Prometheus metrics of one daemon (served by ``assetd.daemon.http``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.lag = Gauge("assetd_consumer_lag", "Inbound messages not yet acknowledged",
                         registry=r)
        self.outbox = Gauge("assetd_outbox_pending", "Outbound events waiting for the relay",
                            registry=r)
        self.dlq = Gauge("assetd_dlq_depth", "Messages in ASSETD_DLQ", registry=r)
        self.rules_loaded = Gauge("assetd_rules_loaded_timestamp_seconds",
                                  "When the rules in force were loaded (0: none)", registry=r)
        self.rules_count = Gauge("assetd_rules", "Rules in force", registry=r)
        self.loop_up = Gauge("assetd_loop_up",
                             "1 while a background loop runs, 0 while it is failing",
                             ["loop"], registry=r)
        self.loop_restarts = Counter("assetd_loop_restarts",
                                     "Background loop restarts after an unexpected error",
                                     ["loop"], registry=r)
