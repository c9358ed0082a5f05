"""Settings of ingest, from the environment (built in ``main()``).

The scheme of every service (:mod:`chargelift_runtime.settings`): ``INGEST_*`` variables
are the unprefixed fields of :class:`Settings` (``INGEST_BATCH_SIZE`` is ``batch_size``),
``DATABASE_URL`` keeps its name, and the broker block ``MQTT_*`` is the shared
:class:`~chargelift_runtime.settings.MqttSettings` (``MQTT_IDENTITY`` defaults to
``ingest``: :data:`DEFAULT_IDENTITY`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AwareDatetime, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from chargelift_contract.topics import SUBSCRIBE_ALL, SUBSCRIBE_EDGES
from chargelift_ingest.migrate import MIGRATIONS, MIN_RETENTION_DAYS
from chargelift_ingest.validate import MIN_SAMPLING_TIME
from chargelift_runtime.settings import MqttSettings

__all__ = ["DEFAULT_IDENTITY", "DatabaseSettings", "MigrateSettings", "MqttSettings", "Settings"]

#: Ingest's MQTT identity when ``MQTT_IDENTITY`` is unset. It is also the MQTT client id
#: (the broker binds them: one session per identity), so each ingest process of a
#: ``$share`` group needs an identity of its own (role ingest).
DEFAULT_IDENTITY = "ingest"


class DatabaseSettings(BaseSettings):
    """What ``chargelift-ingest migrate`` needs: ``DATABASE_URL``, ``INGEST_RETENTION_DAYS``,
    ``INGEST_MIGRATIONS_DIR``."""

    # An empty variable means "not set" (compose passes `${INGEST_RETENTION_DAYS:-}`).
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore", env_ignore_empty=True)

    database_url: SecretStr = Field(validation_alias="DATABASE_URL")
    # At least MIN_RETENTION_DAYS: the continuous aggregates refresh the last 3 days,
    # and a refresh must never see a window whose raw rows were dropped (0004_buckets.sql).
    retention_days: int | None = Field(None, ge=MIN_RETENTION_DAYS)
    migrations_dir: Path = MIGRATIONS


class MigrateSettings(DatabaseSettings):
    """``chargelift-ingest migrate`` also sets the services' database passwords:
    ``INGEST_DB_PASSWORD`` (role ``chargelift_ingest``), ``READER_PASSWORD``
    (``chargelift_reader``) and ``API_DB_PASSWORD`` (``chargelift_api``), each only when
    given."""

    db_password: SecretStr | None = None
    reader_password: SecretStr | None = Field(None, validation_alias="READER_PASSWORD")
    api_db_password: SecretStr | None = Field(None, validation_alias="API_DB_PASSWORD")

    def role_passwords(self) -> dict[str, str]:
        given = {
            "chargelift_ingest": self.db_password,
            "chargelift_reader": self.reader_password,
            "chargelift_api": self.api_db_password,
        }
        return {role: pw.get_secret_value() for role, pw in given.items() if pw is not None}


class Settings(DatabaseSettings):
    """``DATABASE_URL`` and ``INGEST_*`` variables of ``chargelift-ingest run`` (the
    ``MQTT_*`` ones are :class:`MqttSettings`)."""

    share_group: str | None = None
    batch_size: int = Field(5000, ge=1, le=30000)
    batch_age_ms: int = Field(200, ge=1)
    metrics_port: int = 9102
    metrics_host: str = "127.0.0.1"
    max_payload_bytes: int = Field(4096, ge=64)
    max_future_seconds: float = Field(300.0, ge=0)
    # Dead letters (docs/ingest.md, "Dead letters: quota, retention, stored once").
    dead_letter_rate: float = Field(0.2, ge=0)
    dead_letter_burst: int = Field(100, ge=1)
    dead_letter_global_rate: float = Field(5.0, ge=0)
    dead_letter_global_burst: int = Field(1000, ge=1)
    dead_letter_max_bytes: int = Field(1024, ge=64)
    # 0: keep dead letters for ever.
    dead_letter_retention_days: int = Field(30, ge=0)
    dead_letter_prune_interval_s: float = Field(3600.0, gt=0)
    #: An earlier SamplingTime is a dead letter (``implausible_time``); needs an offset.
    min_sampling_time: AwareDatetime = Field(MIN_SAMPLING_TIME)
    shutdown_timeout_s: float = Field(15.0, gt=0)
    # Every database call is bounded: a connection attempt, and one batch's whole
    # transaction (docs/reliability.md, "No silent stall").
    db_connect_timeout_s: float = Field(10.0, gt=0)
    db_write_timeout_s: float = Field(30.0, gt=0)
    # Messages held and no batch committed for this long: /healthz says 503; this
    # much longer again (0: at once): the process exits and its supervisor restarts it.
    liveness_s: float = Field(120.0, gt=0)
    watchdog_exit_s: float = Field(30.0, ge=0)

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
