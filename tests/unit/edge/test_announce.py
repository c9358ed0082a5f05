"""The edge announcer: charger list, then online, on every connection."""

from __future__ import annotations

import asyncio

from chargelift_contract import decode_edge_chargers
from chargelift_edge.announce import EdgeAnnouncer
from chargelift_runtime.mqtt import PublishRefusedError
from tests.unit.edge.test_publisher import FakeClient, settle


async def test_the_edge_announces_its_chargers_then_online_on_every_connection() -> None:
    client = FakeClient()
    announcer = EdgeAnnouncer("site-1", ["amtron-2", "amtron-1"], client)
    task = asyncio.create_task(announcer.run())
    try:
        await settle()
        assert client.sent == []  # nothing while disconnected
        for connection in (1, 2):
            client.sent.clear()
            client.connect()
            await settle()
            assert [(t, retain) for t, _, retain in client.sent] == [
                ("edges/site-1/chargers", True),
                ("edges/site-1/availability", True),
            ]
            assert decode_edge_chargers(client.sent[0][1]) == ("amtron-1", "amtron-2")
            assert client.sent[1][1] == b"online"
            assert announcer.announced == connection
            client.drop()
            await settle()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_lost_or_refused_announcement_is_repeated_on_the_next_connection() -> None:
    client = FakeClient()
    client.auto_ack = False
    announcer = EdgeAnnouncer("site-1", ["amtron-1"], client)
    task = asyncio.create_task(announcer.run())
    try:
        client.connect()
        await settle()
        client.drop()  # both in flight: lost
        await settle()
        assert announcer.announced == 0
        client.connect()
        await settle()
        client.pending[0].set_exception(PublishRefusedError("edges/site-1/chargers", 0x87))
        client.pending[1].set_result(None)
        client.pending.clear()
        client.drop()
        await settle()
        assert announcer.announced == 0
        client.auto_ack = True
        client.sent.clear()
        client.connect()
        await settle()
        assert announcer.announced == 1
        assert [t for t, _, _ in client.sent][-2:] == [
            "edges/site-1/chargers",
            "edges/site-1/availability",
        ]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
