"""Issue 19 must-show 5, on the real broker: Home Assistant's identity (role
``homeassistant``) publishes its birth message and, only for the chargers its certificate
lists, commands; it reads the bridge's output, the discovery documents and the chargers'
availability, and nothing else. The bridge's identity writes only its own trees."""

from __future__ import annotations

import asyncio

import pytest

from chargelift_devstack.mosquitto import MosquittoServer
from tests.integration.bridge.conftest import BRIDGE, HA, HA_READONLY
from tests.integration.broker.test_command_acl import refused
from tests.integration.broker.test_mtls import Inbox, client
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration

READING = b'{"SamplingTime": "2026-12-02T10:00:00Z", "Value": 1}'


async def test_home_assistant_publishes_only_its_birth_and_its_listed_chargers_commands(
    hass_broker: MosquittoServer, certs: TestCerts
) -> None:
    to_a, to_b, status = Inbox(), Inbox(), Inbox()
    async with (
        client(hass_broker, certs.tls("charger-a"), "charger-a",
               subscribe=("chargers/charger-a/set/+",), inbox=to_a),
        client(hass_broker, certs.tls("charger-b"), "charger-b",
               subscribe=("chargers/charger-b/set/+",), inbox=to_b),
        client(hass_broker, certs.tls(BRIDGE), BRIDGE, subscribe=("homeassistant/status",),
               inbox=status),
        client(hass_broker, certs.tls(HA), HA) as ha,
    ):  # fmt: skip
        await ha.publish("homeassistant/status", b"online")
        await ha.publish("chargers/charger-a/set/Pause", b'{"Value": null}')
        await status.wait_for("homeassistant/status")
        await to_a.wait_for("chargers/charger-a/set/Pause")
        for topic in (
            "chargers/charger-b/set/Pause",  # not listed in its certificate
            "chargers/charger-a/PowerOutput",  # a forged reading
            "chargers/charger-a/availability",
            "chargers/charger-a/result/Pause",  # a forged result
            "chargelift/ha/charger-a/PowerOutput",  # a forged output of the bridge
            "chargelift/ha/status",
            "homeassistant/sensor/chargelift_charger-a/power/config",  # forged discovery
            "edges/site-1/availability",
            "anything/else",
        ):
            await refused(hass_broker, certs, HA, topic)
        # Without listed chargers it commands nothing.
        for topic in ("chargers/charger-a/set/Pause", "chargers/charger-b/set/CurrentLimit"):
            await refused(hass_broker, certs, HA_READONLY, topic)
        async with client(hass_broker, certs.tls(HA_READONLY), HA_READONLY) as ro:
            await ro.publish("homeassistant/status", b"online")  # its birth is allowed
        # A marker: once it arrives, nothing refused is in flight.
        async with client(hass_broker, certs.tls("api"), "api") as api:
            await api.publish("chargers/charger-b/set/Stop", b'{"Value": null}')
        await to_b.wait_for("chargers/charger-b/set/Stop")
        await asyncio.sleep(0.2)
    assert to_b.topics() == {"chargers/charger-b/set/Stop"}
    assert [m.topic for m in to_a.messages] == ["chargers/charger-a/set/Pause"]


async def test_home_assistant_reads_only_the_bridge_discovery_and_availability(
    hass_broker: MosquittoServer, certs: TestCerts
) -> None:
    allowed = (
        "chargelift/ha/charger-a/PowerOutput",
        "homeassistant/sensor/chargelift_charger-a/power/config",
        "chargers/charger-a/availability",
    )
    inbox = Inbox()
    async with client(hass_broker, certs.tls(HA), HA, inbox=inbox) as ha:
        for topic in ("#", "chargers/#", "edges/#", "$SYS/#", "chargers/charger-b/set/+"):
            await ha.subscribe(topic)
        async with (
            client(hass_broker, certs.tls("charger-a"), "charger-a") as a,
            client(hass_broker, certs.tls(BRIDGE), BRIDGE) as bridge,
            client(hass_broker, certs.tls("api"), "api") as api,
        ):
            await a.publish("chargers/charger-a/PowerOutput", READING)
            await a.publish("chargers/charger-a/IdTag", READING)
            await api.publish("chargers/charger-b/set/Stop", b'{"Value": null}')
            await api.publish("chargers/charger-a/set/Stop", b'{"Value": null}')
            await a.publish("chargers/charger-a/availability", b"online")
            await bridge.publish("homeassistant/sensor/chargelift_charger-a/power/config", b"{}")
            await bridge.publish("chargelift/ha/charger-a/PowerOutput", READING)
        for topic in allowed:
            await inbox.wait_for(topic)
        await asyncio.sleep(0.3)
    assert inbox.topics() == set(allowed)


async def test_the_bridge_writes_only_its_output_and_the_discovery_documents(
    hass_broker: MosquittoServer, certs: TestCerts
) -> None:
    for topic in (
        "chargers/charger-a/PowerOutput",
        "chargers/charger-a/set/Pause",
        "homeassistant/status",  # Home Assistant's, not the bridge's
        "edges/site-1/chargers",
        "anything/else",
    ):
        await refused(hass_broker, certs, BRIDGE, topic)
    async with client(hass_broker, certs.tls(BRIDGE), BRIDGE) as bridge:
        await bridge.publish("chargelift/ha/charger-a/PowerOutput", READING)
        await bridge.publish("homeassistant/sensor/chargelift_charger-a/power/config", b"{}")
