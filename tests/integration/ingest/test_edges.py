"""Ingest and the edge identity: an edge's list and will become the chargers' availability;
bad payloads on edges/ topics are dead letters like any other."""

from __future__ import annotations

import asyncpg
import pytest

from chargelift_contract import availability_topic, edge_availability_topic, edge_chargers_topic
from chargelift_devstack.mosquitto import MosquittoServer
from tests.integration.ingest.conftest import IngestProcess, Publisher, messages, wait_rows
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration

EDGE = "edge-ingest"
CHARGERS = ("charger-a", "charger-b")
BAD = [
    (edge_availability_topic(EDGE), b"maybe", "bad_envelope"),
    (edge_chargers_topic(EDGE), b"not json", "bad_envelope"),
    (edge_chargers_topic(EDGE), b'["Not An Id"]', "bad_envelope"),
    (edge_chargers_topic(EDGE), b'{"chargers": ["charger-a"]}', "bad_envelope"),
    (f"edges/{EDGE}/extra", b"online", "bad_topic"),
]


async def test_an_edge_going_offline_takes_its_chargers_offline_and_bad_edge_messages_are_dead(
    ingest: IngestProcess,
    publisher: Publisher,
    db: str,
    own_broker: MosquittoServer,
    certs: TestCerts,
) -> None:
    certs.issue_edge(EDGE, CHARGERS)
    own_broker.reload()
    readings = [(EDGE, t, p) for _, t, p in messages(3, chargers=CHARGERS)]
    await publisher.publish(
        [
            (EDGE, edge_chargers_topic(EDGE), b'["charger-a", "charger-b"]'),
            (EDGE, edge_availability_topic(EDGE), b"online"),
            *[(EDGE, availability_topic(c), b"online") for c in CHARGERS],
            *readings,
            *[(EDGE, topic, payload) for topic, payload, _ in BAD],
        ]
    )
    assert await wait_rows(db, len(BAD), table="dead_letters") == len(BAD)
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch("SELECT topic, reason FROM dead_letters ORDER BY id")
        assert [(r["topic"], r["reason"]) for r in rows] == [(t, r) for t, _, r in BAD]
        online = await conn.fetch("SELECT charger, availability FROM chargers ORDER BY 1")
        assert [(r["charger"], r["availability"]) for r in online] == [
            ("charger-a", "online"),
            ("charger-b", "online"),
        ]

        await publisher.publish([(EDGE, edge_availability_topic(EDGE), b"offline")])
        # 2 x "online" + 2 x "offline" Availability readings next to the samples
        await wait_rows(db, len(readings) + 4)
        offline = await conn.fetch("SELECT charger, availability FROM chargers ORDER BY 1")
        assert [(r["charger"], r["availability"]) for r in offline] == [
            ("charger-a", "offline"),
            ("charger-b", "offline"),
        ]
        edge = await conn.fetchrow("SELECT chargers, availability FROM edges")
        # the bad lists did not replace the good one
        assert (list(edge["chargers"]), edge["availability"]) == (list(CHARGERS), "offline")
    finally:
        await conn.close()
    assert await ingest.metric("ingest_availability_messages_total") == 2 + 2
