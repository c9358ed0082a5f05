"""Issue 14, finding 13: each service logs in with a least-privileged role of its own.

Every other ingest integration test already runs ingest as ``chargelift_ingest``
(``ingest_env``), so what it must do it can. This module checks what it must not do,
and that the API's role (``chargelift_reader``) only reads.
"""

from __future__ import annotations

import asyncpg
import pytest

from chargelift_devstack.postgres import PostgresServer
from chargelift_ingest.migrate import migrate
from tests.support.db import as_role

pytestmark = pytest.mark.integration

FORBIDDEN_TO_INGEST = [
    "CREATE TABLE intruder (x int)",
    "DROP TABLE readings",
    "TRUNCATE readings",
    "DELETE FROM readings",
    "ALTER TABLE readings ADD COLUMN x int",
    "DELETE FROM schema_migrations",
    "CREATE ROLE intruder",
]
FORBIDDEN_TO_READER = [
    "INSERT INTO chargers (charger) VALUES ('x')",
    "UPDATE latest SET value_num = 0",
    "DELETE FROM dead_letters",
    "CREATE TABLE intruder (x int)",
]


async def _refused(dsn: str, statement: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(statement)
    except asyncpg.InsufficientPrivilegeError:
        return True
    else:
        return False
    finally:
        await conn.close()


async def test_the_service_roles_are_not_superusers(db: str) -> None:
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname IN ('chargelift_ingest', 'chargelift_reader') ORDER BY 1"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        ("chargelift_ingest", False, False, False),
        ("chargelift_reader", False, False, False),
    ]


@pytest.mark.parametrize("statement", FORBIDDEN_TO_INGEST)
async def test_ingest_writes_data_but_cannot_change_the_schema(db: str, statement: str) -> None:
    assert await _refused(as_role(db, "chargelift_ingest"), statement), statement


@pytest.mark.parametrize("statement", FORBIDDEN_TO_READER)
async def test_the_readers_role_only_reads(db: str, statement: str) -> None:
    reader = as_role(db, "chargelift_reader")
    assert await _refused(reader, statement), statement
    conn = await asyncpg.connect(reader)
    try:
        assert await conn.fetchval("SELECT count(*) FROM readings") == 0
    finally:
        await conn.close()


async def test_a_password_set_by_migrate_is_the_roles(postgres: PostgresServer, db: str) -> None:
    # compose sets INGEST_DB_PASSWORD / READER_PASSWORD through `chargelift-ingest migrate`
    await migrate(db, role_passwords={"chargelift_ingest": "s3cr'et; DROP ROLE x"})
    conn = await asyncpg.connect(db)
    try:
        stored = await conn.fetchval(
            "SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'chargelift_ingest'"
        )
    finally:
        await conn.close()
    assert stored
