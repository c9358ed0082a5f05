"""The edge identity end to end: one poller connection for all chargers, against a real
Mosquitto, the simulator and (for the crash) ingest with a real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from chargelift_contract import (
    CATALOGUE,
    availability_topic,
    decode,
    decode_edge_chargers,
    edge_availability_topic,
    edge_chargers_topic,
)
from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_devstack.postgres import PostgresServer
from chargelift_poller.config import MqttIdentity
from chargelift_runtime.mqtt import Message, MqttClient
from chargelift_runtime.retry import Backoff
from tests.integration.ingest.conftest import IngestProcess, ingest_env
from tests.integration.poller.support import (
    PIN,
    PollerProcess,
    charger_config,
    eventually,
    metric,
    running_poller,
    settings,
    write_config,
)
from tests.support.certs import TestCerts
from tests.support.db import fresh_database

pytestmark = pytest.mark.integration

#: A snapshot of the MHCP driver has at least these fields.
SNAPSHOT_FIELDS = {"OperationState", "VendorState", "PowerOutput", "SessionEnergy", "Tariff"}


@dataclass
class Watch:
    """Everything on chargers/# and edges/#, as the ingest identity sees it."""

    messages: list[Message] = field(default_factory=list)

    async def handle(self, msg: Message) -> None:
        self.messages.append(msg)

    def latest(self, topic: str) -> Message | None:
        for m in reversed(self.messages):
            if m.topic == topic:
                return m
        return None

    def payload(self, topic: str) -> bytes | None:
        m = self.latest(topic)
        return None if m is None else m.payload

    def fields(self, charger: str) -> set[str]:
        prefix = f"chargers/{charger}/"
        return {
            m.topic.removeprefix(prefix)
            for m in self.messages
            if m.topic.startswith(prefix) and not m.topic.endswith("/availability")
        }


@asynccontextmanager
async def watching(broker: MosquittoServer, certs: TestCerts, name: str) -> AsyncIterator[Watch]:
    watch = Watch()
    async with MqttClient(
        host=broker.host,
        port=broker.port,
        client_id=f"{name}-{uuid.uuid4().hex[:6]}",
        tls=certs.tls("ingest"),
        subscriptions=("chargers/#", "edges/#"),
        on_message=watch.handle,
        backoff=Backoff(initial=0.2, maximum=1.0),
    ) as client:
        async with asyncio.timeout(10):
            await client.wait_connected()
        yield watch


async def test_an_edge_poller_publishes_every_chargers_fields_on_one_connection(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    edge = "edge-poll"
    ids = sorted(c.id for c in fleet.chargers)
    certs.issue_edge(edge, tuple(ids))
    own_broker.reload()
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite")
    chargers = [charger_config(c.id, c.url, interval=0.5) for c in fleet.chargers]
    async with watching(own_broker, certs, "edge-live") as live:
        async with running_poller(s, chargers, MqttIdentity("edge", edge)) as poller:
            assert len(poller.clients) == 1  # one connection for all chargers
            await eventually(
                lambda: all(live.fields(i) >= SNAPSHOT_FIELDS for i in ids),
                15,
                "every charger's fields",
            )
            await eventually(
                lambda: live.payload(edge_availability_topic(edge)) == b"online",
                5,
                "the edge online",
            )
            chargers_list = live.payload(edge_chargers_topic(edge))
            assert chargers_list is not None
            assert decode_edge_chargers(chargers_list) == tuple(ids)
            for i in ids:
                assert live.payload(availability_topic(i)) == b"online"
                assert metric(poller, "poller_mqtt_connected", charger=i) == 1
            await asyncio.sleep(1.5)  # a few more polls each
            assert metric(poller, "poller_publish_errors_total") == 0
            published = {i: metric(poller, "poller_published_total", charger=i) for i in ids}
            assert all(n >= len(SNAPSHOT_FIELDS) for n in published.values()), published
        # Clean shutdown: every charger's own "offline", then the edge's will.
        await eventually(
            lambda: live.payload(edge_availability_topic(edge)) == b"offline",
            10,
            "the edge offline",
        )
        for i in ids:
            assert live.payload(availability_topic(i)) == b"offline"
    # Same fields for every charger (the full snapshot), each a valid envelope.
    full = live.fields(ids[0])
    for i in ids:
        assert live.fields(i) == full
        for name in full:
            message = live.latest(f"chargers/{i}/{name}")
            assert message is not None
            CATALOGUE[name].check(decode(message.payload).value)

    # A late consumer sees the same in the retained shadow.
    async with watching(own_broker, certs, "edge-late") as late:
        await eventually(
            lambda: all(late.payload(availability_topic(i)) is not None for i in ids),
            5,
            "retained values",
        )
        await eventually(
            lambda: late.payload(edge_availability_topic(edge)) == b"offline",
            5,
            "the edge's retained will",
        )
        assert late.payload(edge_chargers_topic(edge)) is not None
        assert all(late.payload(availability_topic(i)) == b"offline" for i in ids)
        assert all(m.retain for m in late.messages)


async def availability(dsn: str) -> dict[str, str | None]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT charger, availability FROM chargers")
        return {r["charger"]: r["availability"] for r in rows}
    finally:
        await conn.close()


async def test_sigkill_of_an_edge_poller_makes_ingest_store_every_charger_offline(
    own_broker: MosquittoServer,
    certs: TestCerts,
    postgres: PostgresServer,
    fleet: Any,
    tmp_path: Path,
) -> None:
    edge = "edge-kill"
    ids = sorted(c.id for c in fleet.chargers)
    certs.issue_edge(edge, tuple(ids))
    own_broker.reload()
    dsn = await fresh_database(postgres)
    ingest = IngestProcess(ingest_env(own_broker, certs, dsn), tmp_path / "ingest.log")
    ingest.start()
    try:
        await ingest.ready()
        config = write_config(
            tmp_path / "chargers.toml",
            [(c.id, c.url, "TEST_PIN") for c in fleet.chargers],
            0.5,
            edge_id=edge,
        )
        env = {
            "POLLER_CONFIG": str(config),
            "POLLER_OUTBOX": str(tmp_path / "outbox.sqlite"),
            "MQTT_HOST": own_broker.host,
            "MQTT_PORT": str(own_broker.port),
            "MQTT_CA_FILE": str(certs.ca_file),
            "MQTT_CERTS_DIR": str(certs.dir),
            "POLLER_MQTT_MAX_BACKOFF": "1",
            "TEST_PIN": PIN,
        }
        poller = PollerProcess(env, tmp_path / "poller.log")
        await poller.start()

        async def all_are(state: str) -> bool:
            found = await availability(dsn)
            return all(found.get(i) == state for i in ids)

        await eventually(lambda: all_are("online"), 20, "every charger online in the database")
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow(
                "SELECT chargers, availability FROM edges WHERE edge = $1", edge
            )
        finally:
            await conn.close()
        assert row is not None
        assert (list(row["chargers"]), row["availability"]) == (ids, "online")

        killed = time.monotonic()
        await poller.kill()  # SIGKILL: only the broker's will speaks for the edge now
        await eventually(lambda: all_are("offline"), 60, "every charger offline in the database")
        print(
            f"all chargers offline in the database {time.monotonic() - killed:.1f} s after SIGKILL"
        )
        conn = await asyncpg.connect(dsn)
        try:
            history = await conn.fetch(
                "SELECT charger, value_text FROM readings WHERE field = 'Availability' "
                "ORDER BY time"
            )
            edge_state = await conn.fetchval("SELECT availability FROM edges WHERE edge = $1", edge)
            dead = await conn.fetchval("SELECT count(*) FROM dead_letters")
        finally:
            await conn.close()
        for i in ids:
            states = [r["value_text"] for r in history if r["charger"] == i]
            assert states[-2:] == ["online", "offline"], (i, states)
        assert edge_state == "offline"
        assert dead == 0
        assert PIN not in poller.text()
    finally:
        ingest.kill()
