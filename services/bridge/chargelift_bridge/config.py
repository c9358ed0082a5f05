"""Settings of the bridge, from the environment (built in ``main()``).

``BRIDGE_*`` variables are the unprefixed fields of :class:`Settings`; the broker block
``MQTT_*`` is the shared :class:`~chargelift_runtime.settings.MqttSettings`
(``MQTT_IDENTITY`` defaults to ``bridge``: :data:`DEFAULT_IDENTITY`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chargelift_runtime.settings import MqttSettings

__all__ = ["DEFAULT_IDENTITY", "MqttSettings", "Settings"]

#: The bridge's MQTT identity (certificate role ``bridge``) when ``MQTT_IDENTITY`` is unset.
DEFAULT_IDENTITY = "bridge"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BRIDGE_", case_sensitive=False, extra="ignore", frozen=True,
        env_ignore_empty=True,
    )  # fmt: skip

    #: Publish the control entities (a current-limit number, pause/resume/stop buttons).
    #: Home Assistant's certificate must allow commands too (role homeassistant with
    #: --charger), else the broker refuses what they publish.
    control: bool = False
    #: The current-limit number's range (A per phase).
    min_current: float = Field(6.0, ge=0, le=3000)
    max_current: float = Field(32.0, gt=0, le=3000)
    #: The most chargers the bridge keeps (memory bound; more are dropped and counted).
    max_chargers: int = Field(10_000, ge=1, le=1_000_000)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9104, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _range(self) -> Settings:
        if self.min_current > self.max_current:
            raise ValueError("BRIDGE_MIN_CURRENT must not exceed BRIDGE_MAX_CURRENT")
        return self
