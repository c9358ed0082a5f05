"""Issue 19 on the real broker: what Home Assistant reads never goes back in time, and
the discovery documents come and go with Home Assistant and the chargers.

- must-show 2: a charger (a publisher with its own certificate, QoS 1, retained, as an
  edge's outbox sends) re-sends an older sample after a newer one: the output topic
  Home Assistant reads never carries it, neither while the bridge runs nor after the
  bridge restarts with the older sample now retained on the input topic;
- must-show 3: Home Assistant's birth message makes the documents re-appear; a retired
  charger's documents (and outputs) are removed (zero-length retained).
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from chargelift_contract.envelope import decode
from chargelift_devstack.mosquitto import MosquittoServer
from tests.integration.bridge.conftest import HA, dropped, running_bridge
from tests.integration.broker.test_mtls import Inbox, client
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration


def env(second: int, value: object) -> bytes:
    return orjson.dumps({"SamplingTime": f"2026-12-02T10:00:{second:02d}Z", "Value": value})


def values(inbox: Inbox, topic: str) -> list[object]:
    return [decode(m.payload).value for m in inbox.messages if m.topic == topic and m.payload]


async def wait_value(inbox: Inbox, topic: str, value: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while value not in values(inbox, topic):
            await asyncio.sleep(0.05)


async def test_a_retransmitted_older_sample_never_reaches_home_assistant(
    hass_broker: MosquittoServer, certs: TestCerts
) -> None:
    energy = "chargelift/ha/charger-a/SessionEnergy"
    power = "chargelift/ha/charger-a/PowerOutput"
    seen = Inbox()
    async with (
        client(hass_broker, certs.tls(HA), HA, subscribe=("chargelift/ha/#",), inbox=seen),
        client(hass_broker, certs.tls("charger-a"), "charger-a") as charger,
    ):
        async with running_bridge(hass_broker, certs) as bridge:
            await charger.publish("chargers/charger-a/SessionEnergy", env(20, 2000), retain=True)
            await wait_value(seen, energy, 2000)
            # The outbox re-sends an older sample after a reconnect: now the broker's
            # retained input is the older one.
            await charger.publish("chargers/charger-a/SessionEnergy", env(10, 1000), retain=True)
            await charger.publish("chargers/charger-a/PowerOutput", env(21, 7400), retain=True)
            await wait_value(seen, power, 7400)  # handled in order: 1000 came before it
            assert values(seen, energy) == [2000]
            assert dropped(bridge, "stale") == 1
        # The bridge restarts: the retained input (1000 at :10) is older than the
        # retained output (2000 at :20), which seeds the watermark first.
        async with running_bridge(hass_broker, certs) as bridge:
            await charger.publish("chargers/charger-a/PowerOutput", env(30, 3700), retain=True)
            await wait_value(seen, power, 3700)
            assert values(seen, energy) == [2000]
            assert dropped(bridge, "stale") >= 1
    # A new reader (Home Assistant restarting) gets the newest value retained.
    fresh = Inbox()
    async with client(hass_broker, certs.tls(HA), HA, subscribe=(energy,), inbox=fresh):
        await wait_value(fresh, energy, 2000)


async def test_birth_message_republishes_and_retiring_removes_the_documents(
    hass_broker: MosquittoServer, certs: TestCerts
) -> None:
    doc_a = "homeassistant/sensor/chargelift_charger-a/power/config"
    doc_b = "homeassistant/sensor/chargelift_charger-b/power/config"
    docs = Inbox()
    async with (
        client(hass_broker, certs.tls(HA), HA, subscribe=("homeassistant/#",), inbox=docs) as ha,
        client(hass_broker, certs.tls("charger-a"), "charger-a") as a,
        client(hass_broker, certs.tls("charger-b"), "charger-b") as b,
        running_bridge(hass_broker, certs),
    ):
        await a.publish("chargers/charger-a/availability", b"online", retain=True)
        await a.publish("chargers/charger-a/PowerOutput", env(1, 10), retain=True)
        await b.publish("chargers/charger-b/availability", b"online", retain=True)
        first_a = await docs.wait_for(doc_a)
        await docs.wait_for(doc_b)
        assert orjson.loads(first_a.payload)["state_topic"] == "chargelift/ha/charger-a/PowerOutput"
        mine = {m.topic for m in docs.messages if "chargelift_charger-a" in m.topic}
        assert "homeassistant/button/chargelift_charger-a/pause/config" in mine

        # Home Assistant restarts and announces itself: every document again.
        docs.messages.clear()
        await ha.publish("homeassistant/status", b"online")
        await docs.wait_for(doc_a)
        await docs.wait_for(doc_b)
        assert {m.topic for m in docs.messages if "chargelift_charger-a" in m.topic} == mine

        # charger-a is retired (docs/security.md): its retained values are deleted.
        docs.messages.clear()
        await a.publish("chargers/charger-a/PowerOutput", b"", retain=True)
        await a.publish("chargers/charger-a/availability", b"", retain=True)
        async with asyncio.timeout(10):
            while {m.topic for m in docs.messages if not m.payload} != mine:
                await asyncio.sleep(0.05)
    # On the broker: charger-b's documents are retained, charger-a's are gone.
    fresh = Inbox()
    async with client(
        hass_broker, certs.tls(HA), HA, subscribe=("homeassistant/#", "chargelift/ha/#"),
        inbox=fresh,
    ):  # fmt: skip
        await fresh.wait_for(doc_b)
        await asyncio.sleep(0.5)
    assert not [t for t in fresh.topics() if "charger-a" in t]


async def test_the_bridge_says_online_and_its_will_says_offline(
    hass_broker: MosquittoServer, certs: TestCerts
) -> None:
    # Every discovery document's availability includes chargelift/ha/status: a bridge
    # that is gone shows its chargers as unavailable, not frozen.
    status = Inbox()
    async with client(hass_broker, certs.tls(HA), HA, subscribe=("chargelift/ha/status",),
                      inbox=status):  # fmt: skip
        async with running_bridge(hass_broker, certs):
            async with asyncio.timeout(10):
                while [m.payload for m in status.messages][-1:] != [b"online"]:
                    await asyncio.sleep(0.05)
        async with asyncio.timeout(10):
            while [m.payload for m in status.messages][-1:] != [b"offline"]:
                await asyncio.sleep(0.05)
    fresh = Inbox()
    async with client(hass_broker, certs.tls(HA), HA, subscribe=("chargelift/ha/status",),
                      inbox=fresh):  # fmt: skip
        assert (await fresh.wait_for("chargelift/ha/status")).payload == b"offline"


async def test_a_charger_behind_a_dead_edge_is_unavailable_to_home_assistant(
    hass_broker: MosquittoServer, certs: TestCerts
) -> None:
    # An edge identity's will covers the edge's connection, not each charger's own
    # availability topic (docs/contract.md): the bridge combines them.
    edge_topic = "chargelift/ha/charger-a/edge"
    seen = Inbox()
    async with (
        client(hass_broker, certs.tls(HA), HA, subscribe=(edge_topic,), inbox=seen),
        running_bridge(hass_broker, certs),
        client(hass_broker, certs.tls("edge-ha"), "edge-ha") as edge,
    ):
        await edge.publish("edges/edge-ha/chargers", b'["charger-a"]', retain=True)
        await edge.publish("edges/edge-ha/availability", b"online", retain=True)
        await edge.publish("chargers/charger-a/availability", b"online", retain=True)
        await seen.wait_for(edge_topic)
        await edge.publish("edges/edge-ha/availability", b"offline", retain=True)
        async with asyncio.timeout(10):
            while [m.payload for m in seen.messages if m.topic == edge_topic][-1] != b"offline":
                await asyncio.sleep(0.05)
    assert [m.payload for m in seen.messages if m.topic == edge_topic] == [b"online", b"offline"]
