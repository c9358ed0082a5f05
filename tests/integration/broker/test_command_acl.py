"""Who may command a charger, at the broker (issue 16, must-show 2).

Only a controller publishes on ``chargers/{id}/set/+``: a controller certificate for the
chargers it lists (or all), and the API's own identity (a controller of all). A charger
or an edge reads its own chargers' commands and writes their results, nothing more; a
charger publishing a command, its own or another's, is refused (PUBACK 0x87, or for a
retained message a dropped connection) and nobody receives it.
"""

from __future__ import annotations

import asyncio

import pytest

from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_runtime.mqtt import MqttClient, MqttError, PublishRefusedError
from tests.integration.broker.test_mtls import Inbox, client
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration

COMMAND = b'{"Value": 10, "CommandId": "acl-1"}'


async def refused(broker: MosquittoServer, certs: TestCerts, identity: str, topic: str) -> None:
    for retain in (False, True):
        async with client(broker, certs.tls(identity), identity) as c:
            with pytest.raises(MqttError) as err:
                await c.publish(topic, COMMAND, retain=retain)
            if isinstance(err.value, PublishRefusedError):
                assert err.value.reason_code == 0x87


async def test_a_charger_cannot_publish_a_command_its_own_or_another_s(
    own_broker: MosquittoServer, certs: TestCerts
) -> None:
    inbox = Inbox()
    async with client(
        own_broker, certs.tls("ingest"), "ingest", subscribe=("chargers/#",), inbox=inbox
    ):
        for topic in (
            "chargers/charger-a/set/CurrentLimit",
            "chargers/charger-b/set/CurrentLimit",
            "chargers/charger-a/set/Stop",
            "chargers/charger-b/result/Stop",
        ):
            await refused(own_broker, certs, "charger-a", topic)
        # An edge is refused too, for its own chargers' commands.
        certs.issue_edge("edge-acl-cmd", ("charger-a",))
        own_broker.reload()
        await refused(own_broker, certs, "edge-acl-cmd", "chargers/charger-a/set/Pause")
        # A marker: once it arrives, nothing refused is in flight.
        async with client(own_broker, certs.tls("charger-a"), "charger-a") as a:
            await a.publish("chargers/charger-a/PowerOutput", b"{}")
        await inbox.wait_for("chargers/charger-a/PowerOutput")
        await asyncio.sleep(0.2)
    assert not [t for t in inbox.topics() if "/set/" in t or "/result/" in t]


async def test_a_controller_commands_the_chargers_it_lists_and_the_charger_answers(
    own_broker: MosquittoServer, certs: TestCerts
) -> None:
    certs.issue_controller("ctl-acl", ("charger-a",))
    own_broker.reload()
    to_a, results = Inbox(), Inbox()
    async with (
        client(
            own_broker,
            certs.tls("charger-a"),
            "charger-a",
            subscribe=("chargers/charger-a/set/+",),
            inbox=to_a,
        ) as a,
        client(
            own_broker,
            certs.tls("ctl-acl"),
            "ctl-acl",
            subscribe=("chargers/charger-a/result/+",),
            inbox=results,
        ) as ctl,
    ):
        await ctl.publish("chargers/charger-a/set/CurrentLimit", COMMAND)
        await to_a.wait_for("chargers/charger-a/set/CurrentLimit")
        await a.publish("chargers/charger-a/result/CurrentLimit", b'{"CommandId": "acl-1"}')
        await results.wait_for("chargers/charger-a/result/CurrentLimit")
    # Not listed: another charger. Nor may a controller forge a reading or a result.
    for topic in (
        "chargers/charger-b/set/CurrentLimit",
        "chargers/charger-a/PowerOutput",
        "chargers/charger-a/result/CurrentLimit",
    ):
        await refused(own_broker, certs, "ctl-acl", topic)


async def test_a_charger_reads_only_its_own_commands(
    own_broker: MosquittoServer, certs: TestCerts
) -> None:
    inbox = Inbox()
    async with client(own_broker, certs.tls("charger-b"), "charger-b", inbox=inbox) as b:
        for topic in ("chargers/+/set/+", "chargers/charger-a/set/+", "#"):
            await b.subscribe(topic)
        await b.subscribe("chargers/charger-b/set/+")
        async with client(own_broker, certs.tls("api"), "api") as api:
            await api.publish("chargers/charger-a/set/Stop", b'{"Value": null}')
            await api.publish("chargers/charger-b/set/Stop", b'{"Value": null}')
        await inbox.wait_for("chargers/charger-b/set/Stop")
        await asyncio.sleep(0.2)
    assert "chargers/charger-a/set/Stop" not in inbox.topics()


async def test_an_edge_of_250_chargers_subscribes_all_their_commands_on_connect(
    own_broker: MosquittoServer, certs: TestCerts
) -> None:
    # The client subscribes in batches (SUBSCRIBE_BATCH filters per packet): every
    # filter is granted, in order, and a command to the last charger arrives.
    chargers = tuple(f"site-big-{i:03d}" for i in range(250))
    certs.issue_edge("edge-big", chargers)
    own_broker.reload()
    inbox = Inbox()
    async with MqttClient(
        host=own_broker.host,
        port=own_broker.port,
        client_id="edge-big",
        tls=certs.tls("edge-big"),
        subscriptions=tuple(f"chargers/{c}/set/+" for c in chargers),
        on_message=inbox.handle,
    ) as edge:
        async with asyncio.timeout(10):
            await edge.wait_connected()
        async with client(own_broker, certs.tls("api"), "api") as api:
            for c in (chargers[0], chargers[-1]):
                await api.publish(f"chargers/{c}/set/Stop", b'{"Value": null}')
        await inbox.wait_for(f"chargers/{chargers[0]}/set/Stop")
        await inbox.wait_for(f"chargers/{chargers[-1]}/set/Stop")
