"""Issue 14, finding 9, "No quota or retention on junk": a flood of junk from one identity
stores at most its budget (the rest counted, acknowledged, not stored), old dead letters
are deleted, and a redelivered dead letter is stored once."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_devstack.postgres import PostgresServer
from chargelift_ingest.deadletters import dead_letter_key
from chargelift_ingest.migrate import discover, migrate
from tests.integration.ingest.conftest import (
    IngestProcess,
    PubackProxy,
    Publisher,
    count_rows,
    ingest_env,
    messages,
    wait_rows,
)
from tests.support.certs import TestCerts
from tests.support.db import new_database

pytestmark = pytest.mark.integration

JUNK = 3000
BURST = 50
RATE = 1.0  # per second and identity


async def _metrics(proc: IngestProcess) -> str:
    async with httpx.AsyncClient(timeout=2) as http:
        return (await http.get(proc.metrics_url)).text


async def _sample(proc: IngestProcess, name: str) -> float:
    """The value of one sample (labels included in ``name``), 0 if absent."""
    for line in (await _metrics(proc)).splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    return 0.0


async def test_a_flood_of_junk_from_one_identity_stores_only_its_budget(
    own_broker: MosquittoServer,
    certs: TestCerts,
    publisher: Publisher,
    db: str,
    tmp_path: Path,
) -> None:
    env = ingest_env(
        own_broker,
        certs,
        db,
        INGEST_DEAD_LETTER_RATE=str(RATE),
        INGEST_DEAD_LETTER_BURST=str(BURST),
    )
    proc = IngestProcess(env, tmp_path / "ingest.log")
    proc.start()
    await proc.ready()
    try:
        conn = await asyncpg.connect(db)
        try:
            size_before = await conn.fetchval("SELECT pg_total_relation_size('dead_letters')")
        finally:
            await conn.close()
        # 3,000 distinct junk messages of ~4 KB (just under INGEST_MAX_PAYLOAD_BYTES,
        # random: TOAST cannot compress them) from charger-a; meanwhile charger-b, well
        # behaved, sends readings and two bad ones.
        rnd = random.Random(14)
        junk = [
            ("charger-a", "chargers/charger-a/PowerOutput", b"junk %05d " % i + rnd.randbytes(4000))
            for i in range(JUNK)
        ]
        good = messages(10, chargers=("charger-b",))  # 60 readings
        b_bad = [
            ("charger-b", "chargers/charger-b/PowerOutput", b"{not json"),
            ("charger-b", "chargers/charger-b/Bogus", b'{"SamplingTime":"2026-11-24T10:00:00Z"}'),
        ]
        started = time.monotonic()
        await asyncio.gather(
            publisher.publish(junk, retain=False),
            publisher.publish(good[:30] + b_bad[:1] + good[30:] + b_bad[1:], window=10),
        )
        total = JUNK + len(good) + len(b_bad)
        async with asyncio.timeout(60):
            while (
                await proc.metric("ingest_messages_received_total") < total
                or await proc.metric("ingest_pending_messages") > 0
            ):
                await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.3)
        conn = await asyncpg.connect(db)
        try:
            stored_a = await conn.fetchval(
                "SELECT count(*) FROM dead_letters WHERE topic LIKE 'chargers/charger-a/%'"
            )
            b_letters = await conn.fetch(
                "SELECT topic, reason FROM dead_letters "
                "WHERE topic LIKE 'chargers/charger-b/%' ORDER BY id"
            )
            size_after = await conn.fetchval("SELECT pg_total_relation_size('dead_letters')")
        finally:
            await conn.close()
        print(
            f"{JUNK} junk messages in {elapsed:.1f} s: {stored_a} stored, "
            f"dead_letters grew by {size_after - size_before:,} bytes"
        )
        budget = BURST + RATE * elapsed + 1
        assert stored_a <= budget
        assert stored_a >= BURST
        limited = await _sample(proc, 'ingest_dead_letters_rate_limited_total{limit="identity"}')
        assert limited + stored_a == JUNK  # every one counted, stored or limited
        # The well-behaved charger meanwhile: every reading and both dead letters stored.
        assert await count_rows(db, where="WHERE charger = 'charger-b'") == len(good)
        assert [(r["topic"], r["reason"]) for r in b_letters] == [
            ("chargers/charger-b/PowerOutput", "bad_json"),
            ("chargers/charger-b/Bogus", "unknown_field"),
        ]
        # Still acknowledged: nothing is held or waiting to be redelivered.
        assert await proc.metric("ingest_pending_messages") == 0
    finally:
        proc.kill()


async def test_retention_deletes_old_dead_letters_and_keeps_new_ones(
    own_broker: MosquittoServer, certs: TestCerts, db: str, tmp_path: Path
) -> None:
    plant = (
        "INSERT INTO dead_letters (received_at, topic, payload, reason, detail) "
        "SELECT now() - make_interval(days => $1), 'chargers/charger-a/PowerOutput', "
        "convert_to('old ' || i, 'UTF8'), 'bad_json', 'planted' FROM generate_series(1, $2) i"
    )
    conn = await asyncpg.connect(db)
    try:
        await conn.execute(plant, 40, 3)  # older than 30 days
        await conn.execute(plant, 29, 2)  # younger
    finally:
        await conn.close()
    env = ingest_env(
        own_broker,
        certs,
        db,
        INGEST_DEAD_LETTER_RETENTION_DAYS="30",
        INGEST_DEAD_LETTER_PRUNE_INTERVAL_S="1",
    )
    proc = IngestProcess(env, tmp_path / "ingest.log")
    proc.start()
    await proc.ready()
    try:
        old = "WHERE received_at < now() - interval '30 days'"
        await _wait_count(db, old, 0)  # deleted at start-up
        assert await count_rows(db, "dead_letters") == 2
        # And periodically afterwards.
        conn = await asyncpg.connect(db)
        try:
            await conn.execute(plant, 31, 4)
        finally:
            await conn.close()
        await _wait_count(db, old, 0)
        assert await count_rows(db, "dead_letters") == 2
    finally:
        proc.kill()


async def _wait_count(dsn: str, where: str, expected: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (n := await count_rows(dsn, "dead_letters", where)) != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"dead_letters {where}: {n} rows after {timeout}s, expected {expected}")
        await asyncio.sleep(0.1)


async def test_a_dead_letter_redelivered_after_a_kill_before_its_puback_is_stored_once(
    own_broker: MosquittoServer,
    certs: TestCerts,
    publisher: Publisher,
    db: str,
    tmp_path: Path,
) -> None:
    env = ingest_env(own_broker, certs, db)
    junk = ("charger-a", "chargers/charger-a/PowerOutput", b"{not json")
    async with PubackProxy(own_broker.port) as proxy:
        first = IngestProcess({**env, "MQTT_PORT": str(proxy.port)}, tmp_path / "first.log")
        first.start()
        try:
            await first.ready()
            proxy.upstream_open = False  # from now on ingest's PUBACKs are lost
            await publisher.publish([junk], retain=False)
            assert await wait_rows(db, 1, table="dead_letters", timeout=20) == 1
            await asyncio.sleep(0.3)  # committed, and its PUBACK swallowed
        finally:
            first.kill()  # SIGKILL after the commit, before the broker got the PUBACK
    # The same session (client id) again, straight to the broker: it redelivers.
    second = IngestProcess(env, tmp_path / "second.log")
    second.start()
    try:
        await second.ready()
        async with asyncio.timeout(20):
            while await second.metric("ingest_messages_received_total") < 1:
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # its batch committed
        assert await second.metric("ingest_pending_messages") == 0
        conn = await asyncpg.connect(db)
        try:
            rows = await conn.fetch(
                "SELECT topic, payload, reason, times_seen, received_at, last_received_at "
                "FROM dead_letters"
            )
        finally:
            await conn.close()
        assert [(r["topic"], bytes(r["payload"]), r["reason"]) for r in rows] == [
            (junk[1], junk[2], "bad_json")
        ]
        # The redelivery is counted on the one row.
        assert rows[0]["times_seen"] == 2
        assert rows[0]["last_received_at"] > rows[0]["received_at"]
    finally:
        second.kill()


async def test_migration_0006_keys_and_merges_the_dead_letters_stored_before(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    before = tmp_path / "migrations"
    before.mkdir()
    for m in discover():
        if m.version < 6:
            (before / m.name).write_text(m.sql)
    dsn = await new_database(postgres, "m0006")
    await migrate(dsn, directory=before)
    letters = [
        ("chargers/a/X", b"{bad", "-1 hour"),
        ("chargers/a/X", b"{bad", "-1 minute"),  # the duplicate of an earlier crash
        ("chargers/a/X", b"{bad", "-2 hours"),
        ("chargers/\u00e9/X", b"\xff\x00", "-1 day"),
    ]
    conn = await asyncpg.connect(dsn)
    try:
        for topic, payload, ago in letters:
            await conn.execute(
                "INSERT INTO dead_letters (received_at, topic, payload, reason, detail) "
                "VALUES (now() + $3::text::interval, $1, $2, 'bad_json', 'x')",
                topic,
                payload,
                ago,
            )
        await migrate(dsn)
        rows = await conn.fetch(
            "SELECT key, topic, payload, times_seen, received_at, last_received_at "
            "FROM dead_letters ORDER BY topic"
        )
        first, last = await conn.fetchrow(
            "SELECT now() - interval '2 hours', now() - interval '1 minute'"
        )
    finally:
        await conn.close()
    assert [(r["topic"], r["times_seen"]) for r in rows] == [
        ("chargers/a/X", 3),
        ("chargers/\u00e9/X", 1),
    ]
    # The key computed by SQL is the one ingest computes.
    assert [bytes(r["key"]) for r in rows] == [
        dead_letter_key(r["topic"], bytes(r["payload"])) for r in rows
    ]
    # It spans the first and the last arrival (each INSERT had its own now()).
    span = rows[0]["last_received_at"] - rows[0]["received_at"]
    assert abs((span - (last - first)).total_seconds()) < 5
