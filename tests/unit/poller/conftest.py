"""Helpers for the poller's unit tests: recorded responses, fake clocks, metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from chargelift_poller.metrics import PollerMetrics
from tests.support.clock import FakeClock

FIXTURES = Path(__file__).parent / "fixtures"
PIN = "4711-very-secret"


def fixture_json(driver: str, name: str) -> dict[str, Any]:
    payload = json.loads((FIXTURES / driver / f"{name}.json").read_text())
    assert isinstance(payload, dict)
    return payload


@dataclass
class Recorder:
    """An httpx transport that answers from a table and records the requests."""

    responses: dict[str, Callable[[httpx.Request], httpx.Response]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        endpoint = request.url.path.rsplit("/", 1)[-1]
        answer = self.responses.get(endpoint)
        if answer is None:
            return httpx.Response(404)
        return answer(request)

    def json(self, endpoint: str, doc: object, status: int = 200) -> None:
        body = json.dumps(doc).encode()
        self.responses[endpoint] = lambda _r: httpx.Response(status, content=body)

    def raw(self, endpoint: str, body: bytes, status: int = 200) -> None:
        self.responses[endpoint] = lambda _r: httpx.Response(status, content=body)

    def fail(self, endpoint: str, exc: Exception) -> None:
        def raise_(_r: httpx.Request) -> httpx.Response:
            raise exc

        self.responses[endpoint] = raise_

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))

    def endpoints(self) -> list[str]:
        return [r.url.path.rsplit("/", 1)[-1] for r in self.requests]


@pytest.fixture
def quiet_libraries() -> Iterator[None]:
    """The poller's logging policy for libraries (restored afterwards)."""
    from chargelift_runtime.logs import QUIET_LOGGERS, SILENCED_LOGGERS, quiet_libraries

    saved = {name: logging.getLogger(name).level for name in QUIET_LOGGERS + SILENCED_LOGGERS}
    quiet_libraries()
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics() -> PollerMetrics:
    return PollerMetrics(CollectorRegistry())


def sample(m: PollerMetrics, name: str, **labels: str) -> float:
    """The current value of one series of ``m`` (0 if it does not exist)."""
    value = m.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
