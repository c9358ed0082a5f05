"""A bridge process in the test's event loop, on a real broker, with the identities of
the bridge and of Home Assistant issued by chargelift-certs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from prometheus_client import CollectorRegistry

from chargelift_bridge.config import MqttSettings, Settings
from chargelift_bridge.service import BridgeService
from chargelift_devstack.mosquitto import MosquittoServer
from tests.support.certs import TestCerts

#: Home Assistant with control of charger-a only; one without control; the bridge.
HA = "ha-test"
HA_READONLY = "ha-readonly"
BRIDGE = "bridge-test"


@pytest.fixture
def hass_certs(certs: TestCerts) -> TestCerts:
    certs.issue_role(BRIDGE, "bridge")
    certs.issue_role(HA, "homeassistant", ("charger-a",))
    certs.issue_role(HA_READONLY, "homeassistant")
    certs.issue_edge("edge-ha", ("charger-a",))
    return certs


@pytest.fixture
def hass_broker(hass_certs: TestCerts, own_broker: MosquittoServer) -> MosquittoServer:
    """A broker of this test alone, started after the identities were issued (its ACL
    has them: no reload, whose SIGHUP could reach a broker still starting)."""
    return own_broker


@asynccontextmanager
async def running_bridge(
    broker: MosquittoServer, certs: TestCerts, *, control: bool = True
) -> AsyncIterator[BridgeService]:
    settings = Settings(control=control, metrics_port=0)
    mqtt = MqttSettings(
        host=broker.host,
        port=broker.port,
        ca_file=certs.ca_file,
        certs_dir=certs.dir,
        identity=BRIDGE,
    )
    service = BridgeService(settings, mqtt, registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        async with asyncio.timeout(10):
            while not service.mqtt_connected:
                await asyncio.sleep(0.05)
        yield service
    finally:
        stop.set()
        await task


def dropped(service: BridgeService, reason: str) -> float:
    value = service.registry.get_sample_value("bridge_messages_dropped_total", {"reason": reason})
    return value or 0.0
