"""Prometheus metrics of the edge machinery (outbox, publishers), registered on an
injected registry under the prefix of the service that uses it.

The service's own metrics class composes it: ``PollerMetrics`` builds
``EdgeMetrics(registry, "poller")`` (``poller_published_total``, ``poller_outbox_depth``,
…). Per-charger series use the label ``charger``; the histogram has no per-charger label
(1,000 chargers x 20 buckets would be 20,000 series for little use).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chargelift_edge.outbox import DROP_REASONS

#: Sample-to-PUBACK latency buckets (s): fine below a second (normal operation),
#: coarse above (replays after an outage).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
)  # fmt: skip


class EdgeMetrics:
    """The outbox's and the publishers' series, named ``<prefix>_…``."""

    def __init__(
        self, registry: CollectorRegistry, prefix: str, *, receipt_latency: bool = False
    ) -> None:
        self.registry = r = registry
        self.prefix = p = prefix
        self.published = Counter(
            f"{p}_published",
            "Outbox rows acknowledged by the broker (first delivery)",
            ["charger"],
            registry=r,
        )
        self.replayed = Counter(
            f"{p}_replayed",
            "Already acknowledged rows re-published after a reconnect (replay window)",
            ["charger"],
            registry=r,
        )
        self.publish_latency = Histogram(
            f"{p}_publish_latency_seconds",
            "From a value's SamplingTime to the broker's PUBACK of its first delivery",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        #: ``<prefix>_reading_publish_seconds`` (``receipt_latency``): from the receipt of
        #: the message that carried a row (``Entry.received_at``) to the broker's PUBACK of
        #: its first delivery. For an edge that is sent its values (the OCPP gateway),
        #: whose SamplingTime is the sender's clock, often in whole seconds.
        self.receipt_latency: Histogram | None = None
        if receipt_latency:
            self.receipt_latency = Histogram(
                f"{p}_reading_publish_seconds",
                "From the receipt of the message that carried a reading to the broker's "
                "PUBACK of its first delivery",
                buckets=LATENCY_BUCKETS,
                registry=r,
            )
        self.publish_errors = Counter(
            f"{p}_publish_errors",
            "Publishes not acknowledged: connection lost, or refused by the broker",
            ["charger", "reason"],
            registry=r,
        )
        self.mqtt_connected = Gauge(
            f"{p}_mqtt_connected", "1 while the charger's MQTT connection is up",
            ["charger"], registry=r,
        )  # fmt: skip
        self.outbox_depth = Gauge(
            f"{p}_outbox_depth", "Outbox rows not yet acknowledged by the broker", registry=r
        )
        self.outbox_rows = Gauge(
            f"{p}_outbox_rows",
            "All outbox rows, including acknowledged ones kept for the replay window",
            registry=r,
        )
        self.outbox_oldest_age = Gauge(
            f"{p}_outbox_oldest_unsent_age_seconds",
            "Age of the oldest unacknowledged row's SamplingTime (0 when empty)",
            registry=r,
        )
        self.outbox_dropped = Counter(
            f"{p}_outbox_dropped",
            "Outbox rows dropped unsent, by reason (max_rows, max_age, refused)",
            ["reason"],
            registry=r,
        )
        for reason in DROP_REASONS:
            self.outbox_dropped.labels(reason)

    def declare_charger(self, charger: str) -> None:
        """Create a charger's publishing series at 0."""
        self.published.labels(charger)
        self.replayed.labels(charger)
        self.mqtt_connected.labels(charger).set(0)
