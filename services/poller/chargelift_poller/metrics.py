"""Prometheus metrics of the poller, registered on an injected registry.

Per-charger series use the label ``charger``; histograms have no per-charger label
(1,000 chargers x 20 buckets would be 20,000 series for little use).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chargelift_poller.outbox import DROP_REASONS

#: Sample-to-PUBACK latency buckets (s): fine below a second (normal operation),
#: coarse above (replays after an outage).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
)  # fmt: skip
POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PollerMetrics:
    """Every metric of the poller (names are documented in docs/poller.md)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = r = registry
        self.polls_ok = Counter("poller_polls_ok", "Successful polls", ["charger"], registry=r)
        self.polls_failed = Counter(
            "poller_polls_failed",
            "Failed polls by error class (timeout, connection, http, protocol, driver_fault, "
            "auth, config)",
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
        self.published = Counter(
            "poller_published",
            "Outbox rows acknowledged by the broker (first delivery)",
            ["charger"],
            registry=r,
        )
        self.replayed = Counter(
            "poller_replayed",
            "Already acknowledged rows re-published after a reconnect (replay window)",
            ["charger"],
            registry=r,
        )
        self.publish_latency = Histogram(
            "poller_publish_latency_seconds",
            "From a value's SamplingTime to the broker's PUBACK of its first delivery",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.publish_errors = Counter(
            "poller_publish_errors",
            "Publishes not acknowledged: connection lost, or refused by the broker",
            ["charger", "reason"],
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "poller_mqtt_connected", "1 while the charger's MQTT connection is up",
            ["charger"], registry=r,
        )  # fmt: skip
        self.outbox_depth = Gauge(
            "poller_outbox_depth", "Outbox rows not yet acknowledged by the broker", registry=r
        )
        self.outbox_rows = Gauge(
            "poller_outbox_rows",
            "All outbox rows, including acknowledged ones kept for the replay window",
            registry=r,
        )
        self.outbox_oldest_age = Gauge(
            "poller_outbox_oldest_unsent_age_seconds",
            "Age of the oldest unacknowledged row's SamplingTime (0 when empty)",
            registry=r,
        )
        self.stalled = Gauge(
            "poller_stalled_seconds",
            "Seconds that publishes have been in flight without any PUBACK (0 while none are)",
            registry=r,
        )
        self.outbox_dropped = Counter(
            "poller_outbox_dropped",
            "Outbox rows dropped unsent, by reason (max_rows, max_age, refused)",
            ["reason"],
            registry=r,
        )
        for reason in DROP_REASONS:
            self.outbox_dropped.labels(reason)
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
        self.published.labels(charger)
        self.replayed.labels(charger)
        self.mqtt_connected.labels(charger).set(0)
