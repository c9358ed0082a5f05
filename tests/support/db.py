"""A fresh, migrated database per test (or per module) on a running PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from datetime import datetime

import asyncpg

from chargelift_devstack.postgres import PostgresServer
from chargelift_ingest.migrate import migrate


async def new_database(server: PostgresServer, prefix: str = "t") -> str:
    """Create a uniquely named, empty database on ``server``; its DSN."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server.dsn.rsplit("/", 1)[0] + f"/{name}"


async def fresh_database(server: PostgresServer, prefix: str = "t") -> str:
    """Create a uniquely named database on ``server``, apply the migrations; its DSN."""
    dsn = await new_database(server, prefix)
    await migrate(dsn)
    return dsn


def as_role(dsn: str, role: str) -> str:
    """The same database as ``dsn``, logged in as ``role`` (the test cluster trusts
    loopback: the role's privileges are what is tested, not its password)."""
    scheme, rest = dsn.split("://", 1)
    return f"{scheme}://{role}@{rest.split('@', 1)[1]}"


#: One stored reading: (time, charger, field, value_num, value_text, value_bool).
Row = tuple[datetime, str, str, float | None, str | None, bool | None]
ReadingValue = float | int | str | bool


def reading_row(time: datetime, charger: str, field: str, value: ReadingValue) -> Row:
    """The row of ``value`` in the column of its type."""
    if isinstance(value, bool):
        return (time, charger, field, None, None, value)
    if isinstance(value, str):
        return (time, charger, field, None, value, None)
    return (time, charger, field, float(value), None, None)


async def plant_readings(dsn: str, rows: Iterable[Row], latest_order: str = "time DESC") -> None:
    """Store ``rows`` as ingest would leave them: readings, chargers (first and last
    seen, online) and the shadow (``latest``: per charger and field, the first row by
    ``latest_order``, the newest by default)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "readings",
            records=rows,
            columns=["time", "charger", "field", "value_num", "value_text", "value_bool"],
        )
        await conn.execute(
            """INSERT INTO chargers (charger, first_seen, last_seen, availability)
               SELECT charger, min(time), max(time), 'online' FROM readings GROUP BY charger"""
        )
        await conn.execute(
            f"""INSERT INTO latest (charger, field, time, value_num, value_text, value_bool)
                SELECT DISTINCT ON (charger, field)
                       charger, field, time, value_num, value_text, value_bool
                  FROM readings ORDER BY charger, field, {latest_order}"""
        )
    finally:
        await conn.close()
