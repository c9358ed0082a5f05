"""The schema on the PostgreSQL under test (plain, or TimescaleDB with ``PG_BINDIR``):
migrations idempotent and safe to run concurrently, the enum equal to the contract's,
``reading_buckets`` equal to a computation from the raw rows, ``ev_readings`` carrying
values forward."""

from __future__ import annotations

import asyncio
import math
import os
import random
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest
from prometheus_client import CollectorRegistry

from chargelift_contract import CATALOGUE, FieldType, OperationState, format_time
from chargelift_devstack.postgres import PostgresServer
from chargelift_ingest.metrics import IngestMetrics
from chargelift_ingest.migrate import discover, migrate
from chargelift_ingest.validate import Reading, validate
from chargelift_ingest.writer import Writer
from tests.support.db import fresh_database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


async def test_migrations_are_idempotent_and_concurrent_runs_take_turns(
    postgres: PostgresServer,
) -> None:
    dsn = await fresh_database(postgres)  # migrated once already
    again = await asyncio.gather(migrate(dsn), migrate(dsn), migrate(dsn))
    assert list(again) == [[], [], []]  # nothing left to apply, for any of them
    conn = await asyncpg.connect(dsn)
    try:
        names = [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")]
        assert sorted(names) == [m.name for m in discover()]
    finally:
        await conn.close()


async def test_a_fresh_database_migrated_concurrently_ends_up_migrated_once(
    postgres: PostgresServer,
) -> None:
    conn = await asyncpg.connect(postgres.dsn)
    try:
        await conn.execute('CREATE DATABASE "concurrent_migrate"')
    finally:
        await conn.close()
    dsn = postgres.dsn.rsplit("/", 1)[0] + "/concurrent_migrate"
    results = await asyncio.gather(migrate(dsn), migrate(dsn))
    assert sorted(len(r) for r in results) == [0, len(discover())]


async def test_the_migrate_command_is_a_one_shot_that_can_run_again(
    postgres: PostgresServer,
) -> None:
    conn = await asyncpg.connect(postgres.dsn)
    try:
        await conn.execute('CREATE DATABASE "migrate_cli"')
    finally:
        await conn.close()
    env = {**os.environ, "DATABASE_URL": postgres.dsn.rsplit("/", 1)[0] + "/migrate_cli"}
    outputs = []
    for _ in range(2):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chargelift_ingest.main",
            "migrate",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(30):
            out, _ = await proc.communicate()
        assert proc.returncode == 0, out
        outputs.append(out.decode())
    assert all(m.name in outputs[0] for m in discover())
    assert "none (up to date)" in outputs[1]


async def test_sql_enum_equals_the_contract_enum(db: str) -> None:
    conn = await asyncpg.connect(db)
    try:
        labels = await conn.fetchval("SELECT enum_range(NULL::operation_state)::text[]")
    finally:
        await conn.close()
    assert list(labels) == [s.value for s in OperationState]


async def test_timescaledb_is_used_exactly_when_it_is_preloaded(db: str) -> None:
    conn = await asyncpg.connect(db)
    try:
        preload = await conn.fetchval("SELECT current_setting('shared_preload_libraries')")
        ext = await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname='timescaledb'")
        if "timescaledb" in preload:
            assert ext == 1
            assert await conn.fetchval(
                "SELECT count(*) FROM timescaledb_information.hypertables "
                "WHERE hypertable_name = 'readings'"
            )
            caggs = await conn.fetch(
                "SELECT view_name FROM timescaledb_information.continuous_aggregates"
            )
            assert {r["view_name"] for r in caggs} == {"readings_1m", "readings_1h"}
            jobs = await conn.fetch("SELECT proc_name FROM timescaledb_information.jobs")
            procs = {r["proc_name"] for r in jobs}
            assert {"policy_compression", "policy_refresh_continuous_aggregate"} <= procs
            seg = await conn.fetch(
                "SELECT attname FROM timescaledb_information.compression_settings "
                "WHERE hypertable_name = 'readings' AND segmentby_column_index IS NOT NULL "
                "ORDER BY segmentby_column_index"
            )
            assert [r["attname"] for r in seg] == ["charger", "field"]
        else:
            assert ext == 0
    finally:
        await conn.close()


def _reading(charger: str, field: str, t: datetime, v: float | None) -> Reading:
    return Reading(charger, field, t, v, None, None)


async def test_reading_buckets_equal_a_computation_from_the_raw_rows(db: str) -> None:
    rnd = random.Random(5)
    rows = []
    t = T0
    while t < T0 + timedelta(hours=5):
        t += timedelta(seconds=rnd.randint(1, 40), microseconds=rnd.randint(0, 999_999))
        rows.append(_reading("amtron-1", "PowerOutput", t, float(rnd.randint(0, 11000))))
    rows.append(_reading("amtron-1", "PowerOutput", T0 + timedelta(hours=2, seconds=1), None))
    rows.append(_reading("amtron-2", "PowerOutput", T0 + timedelta(minutes=3), 5.0))
    pool = await asyncpg.create_pool(db, min_size=1, max_size=2)
    try:
        await Writer(pool, metrics=IngestMetrics(CollectorRegistry())).write(rows)
        async with pool.acquire() as conn:
            if await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname='timescaledb'"):
                # Materialise part of the range: the rest is aggregated in real time.
                for view in ("readings_1m", "readings_1h"):
                    await conn.execute(
                        f"CALL refresh_continuous_aggregate('{view}', "
                        "$1::timestamptz, $2::timestamptz)",
                        T0,
                        T0 + timedelta(hours=3),
                    )
            frm, to = T0 + timedelta(minutes=17, seconds=5), T0 + timedelta(hours=4, minutes=1)
            for bucket in (
                timedelta(minutes=1),
                timedelta(minutes=15),
                timedelta(hours=1),
                timedelta(seconds=45),
            ):
                got = await conn.fetch(
                    "SELECT * FROM reading_buckets('amtron-1', 'PowerOutput', $1, $2, $3)",
                    frm,
                    to,
                    bucket,
                )
                want = _expected(rows, frm, to, bucket)
                assert [r["bucket"] for r in got] == list(want), bucket
                for r in got:
                    w = want[r["bucket"]]
                    assert r["count"] == w["count"]
                    assert (r["min"], r["max"], r["first"], r["last"]) == (
                        w["min"],
                        w["max"],
                        w["first"],
                        w["last"],
                    )
                    assert w["sum"] is not None
                    assert w["avg"] is not None
                    assert math.isclose(r["sum"], w["sum"]), bucket
                    assert math.isclose(r["avg"], w["avg"]), bucket
    finally:
        await pool.close()


def _expected(
    rows: list[Reading], frm: datetime, to: datetime, bucket: timedelta
) -> dict[datetime, dict[str, float | None]]:
    origin = datetime(2000, 1, 3, tzinfo=UTC)

    def start(t: datetime) -> datetime:
        return origin + ((t - origin) // bucket) * bucket

    groups: dict[datetime, list[Reading]] = {}
    for r in sorted(rows, key=lambda r: r.time):
        if r.charger == "amtron-1" and start(frm) <= start(r.time) < to:
            groups.setdefault(start(r.time), []).append(r)
    out: dict[datetime, dict[str, float | None]] = {}
    for b, rs in sorted(groups.items()):
        nums = [r.value_num for r in rs if r.value_num is not None]
        out[b] = {
            "count": len(rs),
            "min": min(nums),
            "max": max(nums),
            "sum": sum(nums),
            "avg": sum(nums) / len(nums),
            "first": rs[0].value_num,
            "last": rs[-1].value_num,
        }
    return out


async def test_ev_readings_carries_values_forward(db: str) -> None:
    t = [T0 + timedelta(seconds=i) for i in range(4)]
    rows = [
        Reading("meter-1", "OperationState", t[0], None, "charging", None),
        Reading("meter-1", "PowerOutput", t[0], 11000.0, None, None),
        Reading("meter-1", "ConnectedVehicle", t[0], None, None, True),
        Reading("meter-1", "TotalEnergyConsumption", t[1], 1000.0, None, None),
        Reading("meter-1", "PowerOutput", t[2], 0.0, None, None),
        Reading("meter-1", "OperationState", t[3], None, "idle", None),
        Reading("meter-1", "EnergyPrice", t[3], 32.0, None, None),
        Reading("meter-1", "Tariff", t[3] + timedelta(seconds=1), None, "T1", None),
    ]
    pool = await asyncpg.create_pool(db, min_size=1, max_size=1)
    try:
        await Writer(pool, metrics=IngestMetrics(CollectorRegistry())).write(rows)
        got = await pool.fetch("SELECT * FROM ev_readings WHERE charger = 'meter-1' ORDER BY time")
        typ = await pool.fetchval(
            "SELECT atttypid::regtype::text FROM pg_attribute "
            "WHERE attrelid = 'ev_readings'::regclass AND attname = 'operationstate'"
        )
    finally:
        await pool.close()
    assert typ == "operation_state"
    assert [tuple(r.values()) for r in got] == [
        (t[0], "meter-1", "charging", None, 11000.0, None, None, True, None, None),
        (t[1], "meter-1", "charging", 1000.0, 11000.0, None, None, True, None, None),
        (t[2], "meter-1", "charging", 1000.0, 0.0, None, None, True, None, None),
        (t[3], "meter-1", "idle", 1000.0, 0.0, None, None, True, None, 32.0),
    ]


_SAMPLES = {
    FieldType.NUMBER: 7,
    FieldType.STRING: "x",
    FieldType.BOOLEAN: True,
    FieldType.STATE: OperationState.IDLE.value,
}


async def test_every_catalogue_field_is_stored_and_is_the_latest(db: str) -> None:
    # A new catalogue field (issue 17 added thirteen) needs no migration: readings and
    # latest hold any field name; this proves it on the real schema.
    now = T0 + timedelta(minutes=1)
    items = [
        validate(
            f"chargers/all-fields/{spec.name}",
            orjson.dumps({"SamplingTime": format_time(T0), "Value": _SAMPLES[spec.type]}),
            now=now,
            max_bytes=4096,
            max_future=timedelta(minutes=5),
        )
        for spec in CATALOGUE.values()
    ]
    readings = [i for i in items if isinstance(i, Reading)]
    assert len(readings) == len(CATALOGUE), items
    pool = await asyncpg.create_pool(db, min_size=1, max_size=2)
    try:
        await Writer(pool, metrics=IngestMetrics(CollectorRegistry())).write(readings)
        async with pool.acquire() as conn:
            stored = {
                r["field"]: (r["value_num"], r["value_text"], r["value_bool"])
                for r in await conn.fetch(
                    "SELECT field, value_num, value_text, value_bool FROM readings "
                    "WHERE charger = 'all-fields'"
                )
            }
            latest = {
                r["field"]
                for r in await conn.fetch("SELECT field FROM latest WHERE charger = 'all-fields'")
            }
    finally:
        await pool.close()
    assert stored == {r.field: (r.value_num, r.value_text, r.value_bool) for r in readings}
    assert latest == set(CATALOGUE)
