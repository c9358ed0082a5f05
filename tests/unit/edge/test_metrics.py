"""EdgeMetrics: the outbox's and the publishers' series under the service's prefix."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from chargelift_edge.metrics import EdgeMetrics


def _families(registry: CollectorRegistry) -> set[str]:
    return {family.name for family in registry.collect()}


def test_the_edge_series_take_the_prefix_they_are_given() -> None:
    edge = EdgeMetrics(CollectorRegistry(), "ocpp")
    names = _families(edge.registry)
    assert names == {
        f"ocpp_{n}"
        for n in (
            "published", "replayed", "publish_latency_seconds", "publish_errors",
            "mqtt_connected", "outbox_depth", "outbox_rows",
            "outbox_oldest_unsent_age_seconds", "outbox_dropped",
        )
    }  # fmt: skip
    for reason in ("max_rows", "max_age", "refused", "too_large"):
        assert edge.registry.get_sample_value("ocpp_outbox_dropped_total", {"reason": reason}) == 0


def test_declaring_a_charger_creates_its_series_at_zero() -> None:
    edge = EdgeMetrics(CollectorRegistry(), "ocpp")
    edge.declare_charger("cp1-1")
    for name in ("ocpp_published_total", "ocpp_replayed_total", "ocpp_mqtt_connected"):
        assert edge.registry.get_sample_value(name, {"charger": "cp1-1"}) == 0.0
