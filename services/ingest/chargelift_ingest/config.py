"""Settings of ingest, from the environment (built in ``main()``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AwareDatetime, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from chargelift_contract.topics import SUBSCRIBE_ALL, SUBSCRIBE_EDGES
from chargelift_ingest.migrate import MIGRATIONS, MIN_RETENTION_DAYS
from chargelift_ingest.validate import MIN_SAMPLING_TIME


class DatabaseSettings(BaseSettings):
    """What ``chargelift-ingest migrate`` needs: ``DATABASE_URL``, ``INGEST_RETENTION_DAYS``,
    ``INGEST_MIGRATIONS_DIR``."""

    # An empty variable means "not set" (compose passes `${INGEST_RETENTION_DAYS:-}`).
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    database_url: SecretStr = Field(validation_alias="DATABASE_URL")
    # At least MIN_RETENTION_DAYS: the continuous aggregates refresh the last 3 days,
    # and a refresh must never see a window whose raw rows were dropped (0004_buckets.sql).
    retention_days: int | None = Field(
        None, ge=MIN_RETENTION_DAYS, validation_alias="INGEST_RETENTION_DAYS"
    )
    migrations_dir: Path = Field(MIGRATIONS, validation_alias="INGEST_MIGRATIONS_DIR")


class MigrateSettings(DatabaseSettings):
    """``chargelift-ingest migrate`` also sets the services' database passwords:
    ``INGEST_DB_PASSWORD`` (role ``chargelift_ingest``) and ``READER_PASSWORD``
    (``chargelift_reader``), each only when given."""

    ingest_db_password: SecretStr | None = Field(None, validation_alias="INGEST_DB_PASSWORD")
    reader_password: SecretStr | None = Field(None, validation_alias="READER_PASSWORD")

    def role_passwords(self) -> dict[str, str]:
        given = {
            "chargelift_ingest": self.ingest_db_password,
            "chargelift_reader": self.reader_password,
        }
        return {role: pw.get_secret_value() for role, pw in given.items() if pw is not None}


class Settings(DatabaseSettings):
    """``DATABASE_URL``, ``MQTT_*`` and ``INGEST_*`` variables of ``chargelift-ingest run``."""

    mqtt_host: str = Field("127.0.0.1", validation_alias="MQTT_HOST")
    mqtt_port: int = Field(8883, validation_alias="MQTT_PORT")
    mqtt_ca_file: Path = Field(validation_alias="MQTT_CA_FILE")
    mqtt_certs_dir: Path = Field(validation_alias="MQTT_CERTS_DIR")
    # Also the MQTT client id (the broker binds them: one session per identity), so each
    # ingest process of a $share group has an identity of its own (role ingest).
    mqtt_identity: str = Field("ingest", validation_alias="MQTT_IDENTITY")
    share_group: str | None = Field(None, validation_alias="INGEST_SHARE_GROUP")
    batch_size: int = Field(5000, ge=1, le=30000, validation_alias="INGEST_BATCH_SIZE")
    batch_age_ms: int = Field(200, ge=1, validation_alias="INGEST_BATCH_AGE_MS")
    metrics_port: int = Field(9102, validation_alias="INGEST_METRICS_PORT")
    metrics_host: str = Field("127.0.0.1", validation_alias="INGEST_METRICS_HOST")
    max_payload_bytes: int = Field(4096, ge=64, validation_alias="INGEST_MAX_PAYLOAD_BYTES")
    max_future_seconds: float = Field(300.0, ge=0, validation_alias="INGEST_MAX_FUTURE_SECONDS")
    # Dead letters (docs/ingest.md, "Dead letters: quota, retention, stored once").
    dead_letter_rate: float = Field(0.2, ge=0, validation_alias="INGEST_DEAD_LETTER_RATE")
    dead_letter_burst: int = Field(100, ge=1, validation_alias="INGEST_DEAD_LETTER_BURST")
    dead_letter_global_rate: float = Field(
        5.0, ge=0, validation_alias="INGEST_DEAD_LETTER_GLOBAL_RATE"
    )
    dead_letter_global_burst: int = Field(
        1000, ge=1, validation_alias="INGEST_DEAD_LETTER_GLOBAL_BURST"
    )
    dead_letter_max_bytes: int = Field(1024, ge=64, validation_alias="INGEST_DEAD_LETTER_MAX_BYTES")
    # 0: keep dead letters for ever.
    dead_letter_retention_days: int = Field(
        30, ge=0, validation_alias="INGEST_DEAD_LETTER_RETENTION_DAYS"
    )
    dead_letter_prune_interval_s: float = Field(
        3600.0, gt=0, validation_alias="INGEST_DEAD_LETTER_PRUNE_INTERVAL_S"
    )
    #: An earlier SamplingTime is a dead letter (``implausible_time``); needs an offset.
    min_sampling_time: AwareDatetime = Field(
        MIN_SAMPLING_TIME, validation_alias="INGEST_MIN_SAMPLING_TIME"
    )
    shutdown_timeout_s: float = Field(15.0, gt=0, validation_alias="INGEST_SHUTDOWN_TIMEOUT_S")
    # Every database call is bounded: a connection attempt, and one batch's whole
    # transaction (docs/reliability.md, "No silent stall").
    db_connect_timeout_s: float = Field(10.0, gt=0, validation_alias="INGEST_DB_CONNECT_TIMEOUT_S")
    db_write_timeout_s: float = Field(30.0, gt=0, validation_alias="INGEST_DB_WRITE_TIMEOUT_S")
    # Messages held and no batch committed for this long: /healthz says 503; this
    # much longer again (0: at once): the process exits and its supervisor restarts it.
    liveness_s: float = Field(120.0, gt=0, validation_alias="INGEST_LIVENESS_S")
    watchdog_exit_s: float = Field(30.0, ge=0, validation_alias="INGEST_WATCHDOG_EXIT_S")

    @property
    def subscription(self) -> str:
        return self._shared(SUBSCRIBE_ALL)

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The chargers' topics, then the edges' (their will comes after the chargers'
        retained availability when a new session gets the retained messages)."""
        return (self._shared(SUBSCRIBE_ALL), self._shared(SUBSCRIBE_EDGES))

    def _shared(self, topic_filter: str) -> str:
        if self.share_group:
            return f"$share/{self.share_group}/{topic_filter}"
        return topic_filter

    @property
    def receive_maximum(self) -> int:
        # Two batches in flight: one being written, one filling (max 65535 in MQTT 5).
        return min(65535, 2 * self.batch_size)
