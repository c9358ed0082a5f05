"""Issue 14, finding 1: a client's id is bound to its certificate identity.

Without the binding, any certificate of our CA could connect with the client id
``ingest``: the broker disconnects the real ingest and, with a clean start, discards
its persistent session with the messages it had already acknowledged to publishers.
"""

from __future__ import annotations

import asyncio

import pytest

from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_runtime.mqtt import MqttClient
from tests.integration.broker.test_mtls import Inbox
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration

N = 50


def _ingest(broker: MosquittoServer, certs: TestCerts, inbox: Inbox) -> MqttClient:
    return MqttClient(
        host=broker.host,
        port=broker.port,
        client_id="ingest",
        tls=certs.tls("ingest"),
        persistent_session=True,
        subscriptions=("chargers/#",),
        on_message=inbox.handle,
    )


def _intruder(broker: MosquittoServer, certs: TestCerts) -> MqttClient:
    """A charger's certificate asking for ingest's client id, with a clean start."""
    return MqttClient(
        host=broker.host, port=broker.port, client_id="ingest", tls=certs.tls("charger-a")
    )


async def _connected(client: MqttClient) -> None:
    async with asyncio.timeout(5):
        await client.wait_connected()


async def test_another_identity_cannot_discard_ingests_queued_messages(
    own_broker: MosquittoServer, certs: TestCerts
) -> None:
    inbox = Inbox()
    async with _ingest(own_broker, certs, inbox) as ingest:  # the session and its subscription
        await _connected(ingest)
    # ingest is away; the broker acknowledges N readings and queues them in its session
    async with MqttClient(
        host=own_broker.host, port=own_broker.port, client_id="pub", tls=certs.tls("charger-b")
    ) as pub:
        await _connected(pub)
        for i in range(N):
            await pub.publish(f"chargers/charger-b/PowerOutput{i}", b"{}", qos=1)
    async with _intruder(own_broker, certs) as intruder:
        await _connected(intruder)
    async with _ingest(own_broker, certs, inbox) as ingest:
        await _connected(ingest)
        async with asyncio.timeout(10):
            while len(inbox.messages) < N:
                await asyncio.sleep(0.05)
        assert ingest.session_present
    assert len(inbox.topics()) == N


async def test_another_identity_cannot_disconnect_ingest(
    own_broker: MosquittoServer, certs: TestCerts
) -> None:
    async with _ingest(own_broker, certs, Inbox()) as ingest:
        await _connected(ingest)
        async with _intruder(own_broker, certs) as intruder:
            await _connected(intruder)
            await asyncio.sleep(1.0)  # a takeover would have disconnected ingest by now
            assert ingest.is_connected
            assert ingest.connections == 1


def test_the_broker_listens_on_its_one_tls_port_only(own_broker: MosquittoServer) -> None:
    # A listener option written before the first `listener` line (as
    # use_username_as_clientid once was) makes Mosquitto open a default plaintext
    # listener on 1883 as well.
    opened = [
        line
        for line in own_broker.log_path.read_text().splitlines()
        if "listen socket on port" in line
    ]
    assert opened, "no listener in the broker's log"
    assert all(line.endswith(f"on port {own_broker.port}.") for line in opened), opened
