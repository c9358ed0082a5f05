"""Issue 14, finding 13: each service logs in with a least-privileged role of its own.

Every other ingest integration test already runs ingest as ``chargelift_ingest``
(``ingest_env``), so what it must do it can. This module checks what it must not do,
that the readers' role (``chargelift_reader``) only reads, and that the API's
(``chargelift_api``, issue 16) reads and inserts commands, nothing else.
"""

from __future__ import annotations

import asyncpg
import pytest

from chargelift_devstack.postgres import PostgresServer
from chargelift_ingest.config import MigrateSettings
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
_COMMAND = (
    "INSERT INTO commands (charger, command_id, command, issued_at, expires_at, via)"
    " VALUES ('charger-a', '{id}', 'Pause', now(), now() + interval '1 minute', 'api')"
)
FORBIDDEN_TO_API = [
    "UPDATE commands SET issuer = 'forged'",
    "DELETE FROM commands",
    "TRUNCATE commands",
    "INSERT INTO commands (charger, command_id, command, issued_at, expires_at, via)"
    " VALUES ('charger-a', 'c', 'Pause', now(), now(), 'api')"
    " ON CONFLICT (charger, command_id) DO UPDATE SET issuer = 'forged'",
    "INSERT INTO command_results (charger, command_id, outcome, reason, at)"
    " VALUES ('charger-a', 'c', 'applied', '', now())",
    "UPDATE command_results SET reason = 'forged'",
    "DELETE FROM command_results",
    "INSERT INTO readings (time, charger, field, value_num)"
    " VALUES (now(), 'charger-a', 'PowerOutput', 1)",
    "INSERT INTO chargers (charger) VALUES ('x')",
    "UPDATE latest SET value_num = 0",
    "DELETE FROM dead_letters",
    "CREATE TABLE intruder (x int)",
    "DROP TABLE commands",
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
            " WHERE rolname IN ('chargelift_ingest', 'chargelift_reader', 'chargelift_api')"
            " ORDER BY 1"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        ("chargelift_api", False, False, False),
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


@pytest.mark.parametrize("statement", FORBIDDEN_TO_API)
async def test_the_apis_role_inserts_commands_and_writes_nothing_else(
    db: str, statement: str
) -> None:
    api = as_role(db, "chargelift_api")  # a real login as that role
    conn = await asyncpg.connect(api)
    try:
        # What it may do: read, and record a command it accepted (also idempotently).
        await conn.execute(_COMMAND.format(id="c"))
        await conn.execute(_COMMAND.format(id="c") + " ON CONFLICT DO NOTHING")
        assert await conn.fetchval("SELECT count(*) FROM commands") == 1
        assert await conn.fetchval("SELECT count(*) FROM command_results") == 0
        assert await conn.fetchval("SELECT count(*) FROM readings") == 0
    finally:
        await conn.close()
    assert await _refused(api, statement), statement
    conn = await asyncpg.connect(db)
    try:
        assert await conn.fetchval("SELECT issuer FROM commands") is None  # not forged
    finally:
        await conn.close()


async def test_migrate_sets_the_apis_password_from_api_db_password(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("API_DB_PASSWORD", "api-s3cret")
    passwords = MigrateSettings().role_passwords()
    assert passwords == {"chargelift_api": "api-s3cret"}
    conn = await asyncpg.connect(db)
    try:
        before = await conn.fetchval(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'chargelift_api'"
        )
        await migrate(db, role_passwords=passwords)
        after = await conn.fetchval(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'chargelift_api'"
        )
    finally:
        await conn.close()
    assert after is not None
    assert after != before


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
