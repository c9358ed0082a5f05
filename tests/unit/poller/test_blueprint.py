"""The blueprint driver stays a working example (it is not registered)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from pydantic import SecretStr

from chargelift_poller.drivers import REGISTRY
from chargelift_poller.drivers._blueprint import BlueprintDriver
from chargelift_poller.errors import AuthError
from chargelift_poller.models import DriverSpec
from tests.support.clock import FakeClock
from tests.unit.poller.conftest import PIN


def driver(clock: FakeClock, status: int, doc: object) -> BlueprintDriver:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"Bearer {PIN}"
        return httpx.Response(status, content=json.dumps(doc).encode())

    spec = DriverSpec("example-1", "http://192.0.2.30", pin=SecretStr(PIN), clock=clock.now)
    return BlueprintDriver(spec, httpx.AsyncClient(transport=httpx.MockTransport(handle)))


def test_the_blueprint_is_not_registered() -> None:
    assert "blueprint" not in REGISTRY.names()


async def test_blueprint_reads_and_maps(clock: FakeClock) -> None:
    reading = await driver(
        clock, 200, {"state": "charging", "power_w": 7200, "energy_wh": 5120}
    ).read(full=True)
    assert reading.values == {
        "OperationState": "charging",
        "VendorState": "charging",
        "PowerOutput": 7200,
        "TotalEnergyConsumption": 5120,
    }


async def test_blueprint_unknown_state_and_auth(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    reading = await driver(clock, 200, {"state": "sleeping"}).read(full=False)
    assert reading.values["OperationState"] == "unknown"
    assert "unknown state 'sleeping'" in caplog.text
    with pytest.raises(AuthError):
        await driver(clock, 401, {}).read(full=False)
