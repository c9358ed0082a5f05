"""A fresh, migrated database per test (or per module) on a running PostgreSQL."""

from __future__ import annotations

import os
import uuid

import asyncpg

from chargelift_devstack.postgres import PostgresServer
from chargelift_ingest.migrate import migrate


async def fresh_database(server: PostgresServer, prefix: str = "t") -> str:
    """Create a uniquely named database on ``server``, apply the migrations; its DSN."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = server.dsn.rsplit("/", 1)[0] + f"/{name}"
    await migrate(dsn)
    return dsn


def as_role(dsn: str, role: str) -> str:
    """The same database as ``dsn``, logged in as ``role`` (the test cluster trusts
    loopback: the role's privileges are what is tested, not its password)."""
    scheme, rest = dsn.split("://", 1)
    return f"{scheme}://{role}@{rest.split('@', 1)[1]}"
