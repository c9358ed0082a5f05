"""``chargelift-ingest`` — ``run`` (default): MQTT → database; ``migrate``: apply the schema."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

import asyncpg

from chargelift_ingest.config import MigrateSettings, MqttSettings, Settings
from chargelift_ingest.migrate import migrate
from chargelift_ingest.service import IngestService
from chargelift_runtime.logs import configure_logging
from chargelift_runtime.service import run_until_signal, settings_failed
from chargelift_runtime.settings import SettingsError, load_settings

PROG = "chargelift-ingest"


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: ``chargelift-ingest [run|migrate]``."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("cmd", nargs="?", choices=["run", "migrate"], default="run")
    args = parser.parse_args(argv)
    if args.cmd == "migrate":
        try:
            db = load_settings(MigrateSettings)
        except SettingsError as exc:
            return settings_failed(PROG, exc)
        configure_logging("INFO", _secrets(db))
        return _migrate(db)
    try:
        settings, mqtt = load_settings(Settings, MqttSettings)
    except SettingsError as exc:
        return settings_failed(PROG, exc)
    configure_logging("INFO", _secrets(settings))
    run_until_signal(IngestService(settings, mqtt))
    return 0


def _secrets(settings: Settings | MigrateSettings) -> list[str]:
    """The secrets kept out of the log: the database passwords."""
    found = [urlsplit(settings.database_url.get_secret_value()).password or ""]
    if isinstance(settings, MigrateSettings):
        found += settings.role_passwords().values()
    return found


def _migrate(settings: MigrateSettings) -> int:
    try:
        applied = asyncio.run(
            migrate(
                settings.database_url.get_secret_value(),
                directory=settings.migrations_dir,
                retention_days=settings.retention_days,
                role_passwords=settings.role_passwords(),
            )
        )
    except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"{PROG}: migration failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
