"""The edge identity at the broker: an edge certificate writes the topics of the chargers
it lists and its own edges/<edge>/ topics, nothing else; ingest reads edges/#."""

from __future__ import annotations

import asyncio

import pytest

from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_runtime.mqtt import MqttError, PublishRefusedError
from tests.integration.broker.test_mtls import Inbox, client
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration

EDGE = "edge-acl"
LISTED = ("charger-a", "amtron-2")


async def test_an_edge_writes_its_chargers_topics_and_no_others(
    own_broker: MosquittoServer, certs: TestCerts
) -> None:
    tls = certs.issue_edge(EDGE, LISTED)
    own_broker.reload()
    inbox = Inbox()
    async with client(
        own_broker, certs.tls("ingest"), "ingest", subscribe=("chargers/#", "edges/#"), inbox=inbox
    ) as ingest:
        async with client(own_broker, tls, EDGE) as edge:
            for charger in LISTED:
                await edge.publish(f"chargers/{charger}/PowerOutput", b"{}", retain=True)
                await edge.publish(f"chargers/{charger}/availability", b"online", retain=True)
            await edge.publish(f"edges/{EDGE}/chargers", b'["amtron-2", "charger-a"]', retain=True)
            await edge.publish(f"edges/{EDGE}/availability", b"online", retain=True)
        for topic in ("chargers/charger-a/PowerOutput", "chargers/amtron-2/availability"):
            await inbox.wait_for(topic)
        await inbox.wait_for(f"edges/{EDGE}/availability")

        # Not listed: another charger, another edge, anything else. Mosquitto answers
        # PUBACK 0x87 or, for a retained message, drops the connection.
        for topic in (
            "chargers/charger-b/PowerOutput",
            "chargers/amtron-1/availability",
            "edges/other-edge/availability",
            "chargers/edge-acl/PowerOutput",
            "edges/x",
        ):
            for retain in (False, True):
                async with client(own_broker, tls, EDGE) as edge:
                    with pytest.raises(MqttError) as err:
                        await edge.publish(topic, b"{}", retain=retain)
                    if isinstance(err.value, PublishRefusedError):
                        assert err.value.reason_code == 0x87
        # A marker after the refused ones: once it arrives, nothing refused is in flight.
        async with client(own_broker, tls, EDGE) as edge:
            await edge.publish("chargers/charger-a/OutputCurrent", b"{}")
        await inbox.wait_for("chargers/charger-a/OutputCurrent")
        await asyncio.sleep(0.2)
        assert ingest.is_connected
    topics = inbox.topics()
    assert not any("charger-b" in t or "amtron-1" in t or "other-edge" in t for t in topics)
    assert "chargers/edge-acl/PowerOutput" not in topics


async def test_an_edge_cannot_read_other_chargers(
    own_broker: MosquittoServer, certs: TestCerts
) -> None:
    tls = certs.issue_edge(EDGE, LISTED)
    own_broker.reload()
    async with client(own_broker, certs.tls("charger-b"), "charger-b") as b:
        await b.publish("chargers/charger-b/PowerOutput", b'{"retained": 1}', retain=True)
    inbox = Inbox()
    async with client(own_broker, tls, EDGE, inbox=inbox) as edge:
        for topic in ("chargers/#", "#", "edges/#"):
            await edge.subscribe(topic)
        await edge.publish("chargers/charger-a/PowerOutput", b"{}", retain=False)
        await inbox.wait_for("chargers/charger-a/PowerOutput")  # its own: delivered
    assert not any("charger-b" in t for t in inbox.topics())
