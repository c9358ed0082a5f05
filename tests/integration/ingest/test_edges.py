"""Ingest and the edge identity: an edge's list and will become the chargers' availability;
bad payloads on edges/ topics are dead letters like any other."""

from __future__ import annotations

import asyncpg
import pytest

from chargelift_contract import availability_topic, edge_availability_topic, edge_chargers_topic
from chargelift_devstack.mosquitto import MosquittoServer
from tests.integration.ingest.conftest import (
    IngestProcess,
    Publisher,
    count_rows,
    messages,
    wait_rows,
)
from tests.integration.poller.support import eventually
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


async def _edge_lists(conn: asyncpg.Connection) -> dict[str, list[str]]:
    return {r["edge"]: list(r["chargers"]) for r in await conn.fetch("SELECT * FROM edges")}


async def test_a_charger_moved_to_another_edge_is_not_taken_offline_by_the_old_one(
    ingest: IngestProcess,
    publisher: Publisher,
    db: str,
    own_broker: MosquittoServer,
    certs: TestCerts,
) -> None:
    # charger-b moves from edge-old to edge-new; edge-old is then unplugged (its will) or
    # retired (its retained list deleted with a zero-length message).
    certs.issue_edge("edge-old", CHARGERS)
    certs.issue_edge("edge-new", ("charger-b",))
    own_broker.reload()
    await publisher.publish(
        [
            ("edge-old", edge_chargers_topic("edge-old"), b'["charger-a", "charger-b"]'),
            ("edge-old", edge_availability_topic("edge-old"), b"online"),
            *[("edge-old", availability_topic(c), b"online") for c in CHARGERS],
        ]
    )
    conn = await asyncpg.connect(db)
    try:

        async def lists_are(want: dict[str, list[str]]) -> bool:
            return await _edge_lists(conn) == want

        async def both_online() -> bool:
            return await count_rows(db, "chargers", "WHERE availability = 'online'") == 2

        await eventually(both_online, 10, "charger-a and charger-b online")
        await publisher.publish(
            [
                ("edge-new", edge_chargers_topic("edge-new"), b'["charger-b"]'),
                ("edge-new", edge_availability_topic("edge-new"), b"online"),
                ("edge-new", availability_topic("charger-b"), b"online"),
            ]
        )
        # The newest list that names a charger wins: it leaves edge-old's list.
        want = {"edge-old": ["charger-a"], "edge-new": ["charger-b"]}
        await eventually(lambda: lists_are(want), 10, f"edge lists {want}")

        await publisher.publish([("edge-old", edge_availability_topic("edge-old"), b"offline")])

        async def only_a_offline() -> bool:
            rows = await conn.fetch("SELECT charger, availability FROM chargers ORDER BY 1")
            return [(r["charger"], r["availability"]) for r in rows] == [
                ("charger-a", "offline"),
                ("charger-b", "online"),
            ]

        await eventually(only_a_offline, 10, "charger-a offline, charger-b still online")

        # Retiring edge-old: delete its retained list, availability and a charger's value.
        before = await count_rows(db)
        await publisher.publish(
            [
                ("edge-old", edge_chargers_topic("edge-old"), b""),
                ("edge-old", edge_availability_topic("edge-old"), b""),
                ("edge-old", "chargers/charger-a/PowerOutput", b""),
                ("edge-old", availability_topic("charger-a"), b""),
            ]
        )
        want = {"edge-old": [], "edge-new": ["charger-b"]}
        await eventually(lambda: lists_are(want), 10, f"edge lists {want}")

        async def three_cleared() -> bool:
            return await ingest.metric("ingest_retained_cleared_total") == 3

        await eventually(three_cleared, 10, "3 deleted retained values counted")
        # Nothing stored for a deleted value, and no dead letter either.
        assert await count_rows(db) == before
        assert await count_rows(db, "dead_letters") == 0
    finally:
        await conn.close()


async def test_an_edge_affects_only_the_chargers_its_certificate_lists(
    ingest: IngestProcess,
    publisher: Publisher,
    db: str,
    own_broker: MosquittoServer,
    certs: TestCerts,
) -> None:
    # Issue 14, finding 7: edge-narrow's certificate lists charger-a only; its payload
    # names charger-b too (the broker cannot check payloads). charger-b is edge-wide's.
    certs.issue_edge("edge-narrow", ("charger-a",))
    certs.issue_edge("edge-wide", ("charger-b",))
    own_broker.reload()
    await publisher.publish(
        [
            ("edge-wide", edge_chargers_topic("edge-wide"), b'["charger-b"]'),
            ("edge-wide", edge_availability_topic("edge-wide"), b"online"),
            ("edge-wide", availability_topic("charger-b"), b"online"),
            ("edge-narrow", edge_chargers_topic("edge-narrow"), b'["charger-a", "charger-b"]'),
            ("edge-narrow", edge_availability_topic("edge-narrow"), b"online"),
            ("edge-narrow", availability_topic("charger-a"), b"online"),
        ]
    )
    conn = await asyncpg.connect(db)
    try:
        want = {"edge-wide": ["charger-b"], "edge-narrow": ["charger-a"]}

        async def lists_are() -> bool:
            return await _edge_lists(conn) == want

        await eventually(lists_are, 10, f"edge lists {want}")
        await publisher.publish(
            [("edge-narrow", edge_availability_topic("edge-narrow"), b"offline")]
        )

        async def only_a_offline() -> bool:
            rows = await conn.fetch("SELECT charger, availability FROM chargers ORDER BY 1")
            return [(r["charger"], r["availability"]) for r in rows] == [
                ("charger-a", "offline"),
                ("charger-b", "online"),
            ]

        await eventually(only_a_offline, 10, "charger-a offline, charger-b still online")
        assert await _edge_lists(conn) == want
        assert await ingest.metric("ingest_edge_chargers_refused_total") == 1
    finally:
        await conn.close()
