"""The poller's metric names: the edge library's series keep the poller's names.

The outbox's and the publishers' series moved to ``chargelift_edge.metrics.EdgeMetrics``
(shared with the OCPP gateway); dashboards, alerts (deploy/prometheus) and docs/poller.md
name them, so the poller must export exactly what it exported before, no more, no less.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from chargelift_poller.metrics import PollerMetrics

#: (family, type, label names) of every poller series, as before the move.
POLLER_FAMILIES = {
    ("poller_polls_ok", "counter", ("charger",)),
    ("poller_polls_failed", "counter", ("charger", "error")),
    ("poller_charger_up", "gauge", ("charger",)),
    ("poller_poll_duration_seconds", "histogram", ()),
    ("poller_samples", "counter", ("charger",)),
    ("poller_published", "counter", ("charger",)),
    ("poller_replayed", "counter", ("charger",)),
    ("poller_publish_latency_seconds", "histogram", ()),
    ("poller_publish_errors", "counter", ("charger", "reason")),
    ("poller_mqtt_connected", "gauge", ("charger",)),
    ("poller_outbox_depth", "gauge", ()),
    ("poller_outbox_rows", "gauge", ()),
    ("poller_outbox_oldest_unsent_age_seconds", "gauge", ()),
    ("poller_stalled_seconds", "gauge", ()),
    ("poller_outbox_dropped", "counter", ("reason",)),
    ("poller_commands", "counter", ("command", "outcome")),
    ("poller_charger_writes", "counter", ("charger",)),
}


def _families(registry: CollectorRegistry) -> set[tuple[str, str, tuple[str, ...]]]:
    out = set()
    # Label names of series not yet created are known only to the collectors.
    for collector in registry._collector_to_names:
        labels = tuple(getattr(collector, "_labelnames", ()))
        for family in collector.collect():
            out.add((family.name, family.type, labels))
    return out


def test_the_poller_exports_the_same_series_as_before() -> None:
    assert _families(PollerMetrics(CollectorRegistry()).registry) == POLLER_FAMILIES


def test_a_charger_is_declared_in_the_edge_series_too() -> None:
    metrics = PollerMetrics(CollectorRegistry())
    metrics.declare_charger("c1")
    for name in ("poller_published_total", "poller_replayed_total", "poller_mqtt_connected"):
        assert metrics.registry.get_sample_value(name, {"charger": "c1"}) == 0.0
