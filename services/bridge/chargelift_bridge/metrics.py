"""Prometheus metrics of the bridge, on an injected registry (names: services/bridge/README.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from chargelift_bridge.core import Dropped


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = r = registry
        self.received = Counter("bridge_messages_received_total", "MQTT messages received",
                                registry=r)  # fmt: skip
        self.published = Counter(
            "bridge_messages_published_total",
            "messages published (output values, discovery documents, deletions)",
            registry=r,
        )
        self.dropped = Counter(
            "bridge_messages_dropped_total",
            "incoming messages not republished, by reason (stale: older than what the "
            "output topic has)",
            ["reason"],
            registry=r,
        )
        for reason in Dropped:
            self.dropped.labels(reason.value)
        self.publish_failures = Counter(
            "bridge_publish_failures_total", "publishes the broker refused or lost", registry=r
        )
        self.chargers = Gauge("bridge_chargers", "chargers the bridge knows", registry=r)
        self.mqtt_connected = Gauge(
            "bridge_mqtt_connected", "1 while the MQTT connection is up", registry=r
        )
