"""The migration files, read without a database: numbering, the enum, the reasons."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from chargelift_contract import OperationState
from chargelift_contract.commands import Command
from chargelift_ingest.config import DatabaseSettings, MigrateSettings, Settings
from chargelift_ingest.migrate import MIGRATIONS, discover
from chargelift_ingest.validate import REASONS


def test_migrations_are_numbered_consecutively_from_one() -> None:
    found = discover()
    assert [m.version for m in found] == list(range(1, len(found) + 1))


def test_a_misnamed_or_doubly_numbered_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "1_b.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match="NNNN_name"):
        discover(tmp_path)
    (tmp_path / "1_b.sql").unlink()
    (tmp_path / "0001_c.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match="share a number"):
        discover(tmp_path)


def test_a_missing_or_empty_migrations_directory_is_an_error_not_an_empty_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # INGEST_MIGRATIONS_DIR overrides the package's own files; a wrong path must fail
    # `migrate`, never report "up to date" with no schema.
    with pytest.raises(ValueError, match="does not exist"):
        discover(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no migrations"):
        discover(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@127.0.0.1/x")
    monkeypatch.setenv("INGEST_MIGRATIONS_DIR", str(tmp_path))
    assert DatabaseSettings().migrations_dir == tmp_path
    monkeypatch.delenv("INGEST_MIGRATIONS_DIR")
    assert DatabaseSettings().migrations_dir == MIGRATIONS


def test_the_sql_enum_has_the_contract_labels_in_order() -> None:
    sql = " ".join(m.sql for m in discover())
    m = re.search(r"CREATE TYPE operation_state AS ENUM \(([^)]*)\)", sql)
    assert m is not None
    labels = re.findall(r"'([a-z_]+)'", m.group(1))
    assert labels == [s.value for s in OperationState]


def test_the_dead_letter_reasons_of_the_table_are_the_validators() -> None:
    # The newest definition wins: 0001 created the CHECK, later migrations replace it.
    sql = " ".join(m.sql for m in discover())
    found = re.findall(r"CHECK \(reason IN \(([^)]*)\)\)", sql)
    assert found
    assert re.findall(r"'([a-z_]+)'", found[-1]) == list(REASONS)


def test_the_commands_of_the_audit_table_are_the_contract_s() -> None:
    # The newest definition wins: 0009 created the CHECK, later migrations replace it.
    sql = " ".join(m.sql for m in discover())
    found = re.findall(r"CHECK \(command IN \(([^)]*)\)\)", sql)
    assert found
    assert re.findall(r"'([A-Za-z]+)'", found[-1]) == [c.value for c in Command]


ENV = {
    "DATABASE_URL": "postgresql://u:hunter2@db:5432/x",
    "MQTT_CA_FILE": "/c/ca.crt",
    "MQTT_CERTS_DIR": "/c",
}


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    assert (s.batch_size, s.batch_age_ms) == (5000, 200)
    assert s.subscriptions == ("chargers/#", "edges/#")
    assert s.receive_maximum == 10000
    assert "hunter2" not in repr(s)
    monkeypatch.setenv("INGEST_SHARE_GROUP", "ingest")
    assert Settings().subscriptions == ("$share/ingest/chargers/#", "$share/ingest/edges/#")


def test_the_earliest_plausible_sampling_time(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    assert Settings().min_sampling_time == datetime(2000, 1, 1, tzinfo=UTC)
    monkeypatch.setenv("INGEST_MIN_SAMPLING_TIME", "2020-06-01T00:00:00+02:00")
    assert Settings().min_sampling_time == datetime(2020, 5, 31, 22, tzinfo=UTC)
    monkeypatch.setenv("INGEST_MIN_SAMPLING_TIME", "2020-06-01T00:00:00")  # no offset
    with pytest.raises(ValidationError):
        Settings()


def test_migrate_needs_only_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", ENV["DATABASE_URL"])
    monkeypatch.delenv("MQTT_CA_FILE", raising=False)
    assert DatabaseSettings().retention_days is None
    monkeypatch.setenv("INGEST_RETENTION_DAYS", "2")
    with pytest.raises(ValidationError):
        DatabaseSettings()


def test_migrate_takes_each_services_password_only_when_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", ENV["DATABASE_URL"])
    for name in ("INGEST_DB_PASSWORD", "READER_PASSWORD", "API_DB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert MigrateSettings().role_passwords() == {}
    monkeypatch.setenv("API_DB_PASSWORD", "api-pw")
    monkeypatch.setenv("READER_PASSWORD", "reader-pw")
    monkeypatch.setenv("INGEST_DB_PASSWORD", "ingest-pw")
    settings = MigrateSettings()
    assert settings.role_passwords() == {
        "chargelift_ingest": "ingest-pw",
        "chargelift_reader": "reader-pw",
        "chargelift_api": "api-pw",
    }
    assert "api-pw" not in repr(settings)
