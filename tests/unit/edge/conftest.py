"""Helpers for the edge library's unit tests: fake clock, metrics under a test prefix."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from chargelift_edge.metrics import EdgeMetrics
from tests.support.clock import FakeClock

#: The metric prefix of the tests (the poller's is ``poller``, the gateway's ``ocpp``).
PREFIX = "edge"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics() -> EdgeMetrics:
    return EdgeMetrics(CollectorRegistry(), PREFIX)


def sample(m: EdgeMetrics, name: str, **labels: str) -> float:
    """The current value of one series of ``m`` (0 if it does not exist)."""
    value = m.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
