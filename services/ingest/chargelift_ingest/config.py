"""Settings of ingest, from the environment (built in ``main()``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from chargelift_contract.topics import SUBSCRIBE_ALL, SUBSCRIBE_EDGES
from chargelift_ingest.migrate import MIGRATIONS


class DatabaseSettings(BaseSettings):
    """What ``chargelift-ingest migrate`` needs: ``DATABASE_URL``, ``INGEST_RETENTION_DAYS``,
    ``INGEST_MIGRATIONS_DIR``."""

    # An empty variable means "not set" (compose passes `${INGEST_RETENTION_DAYS:-}`).
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    database_url: SecretStr = Field(validation_alias="DATABASE_URL")
    # At least 4 days: the continuous aggregates refresh the last 3 days, and a refresh
    # must never see a window whose raw rows were dropped (0004_buckets.sql).
    retention_days: int | None = Field(None, ge=4, validation_alias="INGEST_RETENTION_DAYS")
    migrations_dir: Path = Field(MIGRATIONS, validation_alias="INGEST_MIGRATIONS_DIR")


class Settings(DatabaseSettings):
    """``DATABASE_URL``, ``MQTT_*`` and ``INGEST_*`` variables of ``chargelift-ingest run``."""

    mqtt_host: str = Field("127.0.0.1", validation_alias="MQTT_HOST")
    mqtt_port: int = Field(8883, validation_alias="MQTT_PORT")
    mqtt_ca_file: Path = Field(validation_alias="MQTT_CA_FILE")
    mqtt_certs_dir: Path = Field(validation_alias="MQTT_CERTS_DIR")
    mqtt_identity: str = Field("ingest", validation_alias="MQTT_IDENTITY")
    client_id: str = Field("ingest", validation_alias="INGEST_CLIENT_ID")
    share_group: str | None = Field(None, validation_alias="INGEST_SHARE_GROUP")
    batch_size: int = Field(5000, ge=1, le=30000, validation_alias="INGEST_BATCH_SIZE")
    batch_age_ms: int = Field(200, ge=1, validation_alias="INGEST_BATCH_AGE_MS")
    metrics_port: int = Field(9102, validation_alias="INGEST_METRICS_PORT")
    metrics_host: str = Field("127.0.0.1", validation_alias="INGEST_METRICS_HOST")
    max_payload_bytes: int = Field(4096, ge=64, validation_alias="INGEST_MAX_PAYLOAD_BYTES")
    max_future_seconds: float = Field(300.0, ge=0, validation_alias="INGEST_MAX_FUTURE_SECONDS")
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
