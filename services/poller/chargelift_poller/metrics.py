"""Prometheus metrics of the poller, registered on an injected registry.

The outbox's and the publishers' series are :class:`chargelift_edge.metrics.EdgeMetrics`
under the prefix ``poller`` (:attr:`PollerMetrics.edge`); the rest are the poller's own.
Per-charger series use the label ``charger``; histograms have no per-charger label
(1,000 chargers x 20 buckets would be 20,000 series for little use).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chargelift_edge.metrics import EdgeMetrics

POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PollerMetrics:
    """Every metric of the poller (names are documented in docs/poller.md)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = r = registry
        #: The outbox's and the publishers' series (``poller_published_total``, …).
        self.edge = EdgeMetrics(r, "poller")
        self.polls_ok = Counter("poller_polls_ok", "Successful polls", ["charger"], registry=r)
        self.polls_failed = Counter(
            "poller_polls_failed",
            "Failed polls by error class (timeout, connection, http, device, protocol, "
            "driver_fault, auth, config)",
            ["charger", "error"],
            registry=r,
        )
        self.charger_up = Gauge(
            "poller_charger_up", "1 if the charger's last poll succeeded, else 0",
            ["charger"], registry=r,
        )  # fmt: skip
        self.poll_duration = Histogram(
            "poller_poll_duration_seconds", "Duration of successful polls",
            buckets=POLL_BUCKETS, registry=r,
        )  # fmt: skip
        self.samples = Counter(
            "poller_samples", "Field values written to the outbox", ["charger"], registry=r
        )
        self.stalled = Gauge(
            "poller_stalled_seconds",
            "Seconds that publishes have been in flight without any PUBACK (0 while none are)",
            registry=r,
        )
        self.commands = Counter(
            "poller_commands",
            "Commands to the chargers by command and outcome (applied, rejected, expired, "
            "failed, reverted; duplicate: an id seen before, not applied again)",
            ["command", "outcome"],
            registry=r,
        )
        self.charger_writes = Counter(
            "poller_charger_writes",
            "Writes to a charger (commands and lease reverts; attempts, also failed ones)",
            ["charger"],
            registry=r,
        )

    def declare_charger(self, charger: str) -> None:
        """Create a charger's main series at 0 (failure series appear at the first one)."""
        self.polls_ok.labels(charger)
        self.samples.labels(charger)
        self.edge.declare_charger(charger)
