"""Settings of the API, from the environment (built in ``main()``, never at import).

The broker block ``MQTT_*`` is the shared :class:`~chargelift_runtime.settings.MqttSettings`
and is optional here: without ``MQTT_HOST`` the API serves its reads and answers the
command endpoints with 503 (``MQTT_IDENTITY`` defaults to ``api``: :data:`DEFAULT_IDENTITY`).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chargelift_api.auth import TokenEntry, parse_tokens
from chargelift_runtime.settings import MqttSettings

__all__ = ["DEFAULT_IDENTITY", "MqttSettings", "Settings", "mqtt_configured"]

#: The API's MQTT identity when ``MQTT_IDENTITY`` is unset: a controller of every
#: charger (chargelift-certs gives the service identity ``api`` that role).
DEFAULT_IDENTITY = "api"


def mqtt_configured(environ: dict[str, str]) -> bool:
    """True if the broker block is configured at all (``MQTT_HOST`` set and not empty)."""
    return bool(environ.get("MQTT_HOST", "").strip())


class Settings(BaseSettings):
    """``DATABASE_URL`` and ``API_*`` variables."""

    model_config = SettingsConfigDict(
        env_prefix="API_", extra="ignore", validate_by_name=True, validate_by_alias=True
    )

    database_url: SecretStr = Field(validation_alias="DATABASE_URL")
    tokens: str = Field(
        description="comma-separated name:scope:sha256hex (see `chargelift-api hash-token`)"
    )
    timezone: str = "Europe/Berlin"
    currency: str = "EUR"
    max_points: int = Field(10_000, ge=10)
    min_bucket_seconds: int = Field(60, ge=1)
    max_window_days: int = Field(400, ge=1)
    max_session_days: int = Field(
        7, ge=1, description="longest plug-in looked for before `from` and after `to`"
    )
    max_rows: int = Field(
        100_000,
        ge=100,
        description="most rows one request may fetch from the database (more: 422)",
    )
    statement_timeout_ms: int = Field(
        5_000, ge=1, description="longest a single SQL statement may run (longer: 422)"
    )
    host: str = "127.0.0.1"
    port: int = 8000
    pool_min: int = Field(2, ge=1)
    pool_max: int = Field(10, ge=1)
    control_queue: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="commands accepted and waiting for the broker (more: 503)",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("tokens")
    @classmethod
    def _valid_tokens(cls, value: str) -> str:
        parse_tokens(value)
        return value

    def token_entries(self) -> list[TokenEntry]:
        """The parsed ``API_TOKENS`` entries."""
        return parse_tokens(self.tokens)

    @property
    def zone(self) -> ZoneInfo:
        """``API_TIMEZONE`` as a zone."""
        return ZoneInfo(self.timezone)
