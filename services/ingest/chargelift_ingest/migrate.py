"""The migration runner: numbered SQL files, applied once each, in order.

``schema_migrations`` records what was applied; a session-level advisory lock makes
concurrent runners (two containers starting at once) take turns. Each file runs in
its own transaction. Retention (TimescaleDB only) is configuration and is applied
after the migrations from ``INGEST_RETENTION_DAYS``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

#: The migrations ship inside the package (package data: a checkout, a wheel and the
#: container image all have them here); INGEST_MIGRATIONS_DIR may point elsewhere.
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x63686C6D  # "chlm"
_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
#: Run after the migrations on every ``migrate`` (idempotent): the services' roles and
#: their grants, which a restore into a new server does not bring (roles are global).
PRIVILEGES = "privileges.sql"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def discover(directory: Path = MIGRATIONS) -> list[Migration]:
    found = []
    if not directory.is_dir():
        raise ValueError(f"migrations directory {directory} does not exist (INGEST_MIGRATIONS_DIR)")
    for path in sorted(directory.glob("*.sql")):
        if path.name == PRIVILEGES:
            continue
        m = _NAME.fullmatch(path.name)
        if m is None:
            raise ValueError(f"migration file {path.name} is not NNNN_name.sql")
        found.append(Migration(int(m.group(1)), path.name, path.read_text()))
    if not found:
        raise ValueError(f"no migrations in {directory} (INGEST_MIGRATIONS_DIR)")
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migrations share a number")
    return found


async def migrate(
    dsn: str,
    *,
    directory: Path = MIGRATIONS,
    retention_days: int | None = None,
    role_passwords: Mapping[str, str] | None = None,
) -> list[str]:
    """Apply what is missing; return the names applied (empty when up to date).

    ``role_passwords`` (role → password) are set afterwards: the services' login roles
    (0007_service_roles.sql) have none until then.
    """
    migrations = discover(directory)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            applied = []
            for mig in migrations:
                if mig.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(mig.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        mig.version,
                        mig.name,
                    )
                log.info("applied migration %s", mig.name)
                applied.append(mig.name)
            await apply_retention(conn, retention_days)
            privileges = directory / PRIVILEGES
            if privileges.is_file():
                async with conn.transaction():
                    await conn.execute(privileges.read_text())
            for role, password in (role_passwords or {}).items():
                await set_password(conn, role, password)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
    return applied


async def set_password(conn: asyncpg.Connection, role: str, password: str) -> None:
    """Let a service's role log in with ``password`` (quoted by the server, never logged)."""
    statement = await conn.fetchval(
        "SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', $1::text, $2::text)", role, password
    )
    await conn.execute(statement)
    log.info("password of role %s set", role)


async def has_timescaledb(conn: asyncpg.Connection) -> bool:
    return bool(
        await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
    )


#: The shortest retention of raw readings (days): the continuous aggregates refresh the
#: last 3 days, and a refresh must never see a window whose raw rows were dropped
#: (0004_buckets.sql). INGEST_RETENTION_DAYS is checked against it.
MIN_RETENTION_DAYS = 4


async def apply_retention(conn: asyncpg.Connection, days: int | None) -> None:
    """Drop raw readings older than ``days`` (TimescaleDB policy); None removes the policy.

    The continuous aggregates are kept: history beyond the retention stays available
    per minute and per hour (``reading_buckets``).
    """
    if days is not None and days < MIN_RETENTION_DAYS:
        # The aggregates' refresh window is 3 days; a shorter retention would let a
        # refresh recompute buckets from raw rows that are already gone.
        raise ValueError(f"retention must be at least {MIN_RETENTION_DAYS} days, not {days}")
    if not await has_timescaledb(conn):
        if days is not None:
            log.warning("INGEST_RETENTION_DAYS needs TimescaleDB; ignored on plain PostgreSQL")
        return
    await conn.execute("SELECT remove_retention_policy('readings', if_exists => true)")
    if days is not None:
        await conn.execute(
            "SELECT add_retention_policy('readings', make_interval(days => $1))", days
        )
