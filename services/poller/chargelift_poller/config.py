"""Configuration: environment variables (:class:`Settings`) and the chargers file.

Settings are built in ``main()``, never at import time: ``POLLER_*`` is :class:`Settings`
(``POLLER_OUTBOX`` is ``Settings.outbox``), ``MQTT_*`` the block every service shares,
:class:`~chargelift_runtime.settings.MqttSettings` (the poller takes its MQTT identities
from the chargers file, never from ``MQTT_IDENTITY``). The chargers file is TOML::

    [mqtt]                      # optional; how the poller identifies itself to the broker
    identity = "charger"        # "charger" (default): one certificate and MQTT connection
                                #   per charger, each with its own last will;
                                # "edge": ONE connection with the certificate of edge_id
                                #   for all chargers (chargelift-certs client <edge_id>
                                #   --role edge --charger <id> ...), docs/poller.md
    # edge_id = "site-1"        # required with identity = "edge"

    [defaults]                  # optional; any per-charger key except id/url/pin_*
    interval = 1.0              # s between polls
    timeout = 5.0               # s per device call (asyncio.timeout and httpx)

    [[chargers]]
    id = "amtron-1"             # charger id: topic chargers/amtron-1/...
    driver = "mhcp"             # a registered driver name
    url = "http://192.168.1.50:25000"
    pin_env = "AMTRON_1_PIN"    # the PIN is read from this variable, or:
    # pin_file = "/run/secrets/amtron-1-pin"   (first line, whitespace stripped)
    # identity = "amtron-1"     # MQTT client identity (certificate); default: id
                                # (per-charger identity only)
    # interval = 1.0
    # timeout = 5.0
    # min_current = 6.0         # A: lowest limit a command may set (IEC 61851: 6 A)
    # max_current = 16.0        # A: highest; default: the charger's own (MHCP MaxCurrWb)
    # default_current = 16.0    # A: what a lease reverts to; default: max_current
    # min_write_interval = 2.0  # s between two writes to the charger
    # permanent_writes = false  # save written limits to the charger's flash
    # [chargers.options]        # driver-specific, e.g. api_path = "/MHCP/1.0"

PINs are :class:`~pydantic.SecretStr` from the moment they are read; error messages
name the charger and the *reference* (variable or file), never the value.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict

from chargelift_contract import TopicError, encode_edge_chargers, validate_charger_id
from chargelift_contract.commands import MAX_CURRENT_A
from chargelift_contract.limits import MAX_EDGE_CHARGERS_BYTES
from chargelift_edge.settings import EdgeSettings
from chargelift_poller.models import OptionValue
from chargelift_runtime.settings import MqttSettings

__all__ = [
    "ChargerConfig",
    "ConfigFileError",
    "ControlConfig",
    "MqttIdentity",
    "MqttSettings",
    "PollerConfig",
    "Settings",
    "load_config",
]


class ConfigFileError(ValueError):
    """The chargers file is missing, unreadable or invalid; the message says where."""


class Settings(EdgeSettings):
    """``POLLER_*``: the poller's own environment (12-factor). Required values have no default.

    The broker and the certificates are the shared ``MQTT_*`` block, :class:`MqttSettings`;
    the outbox, publishing and drain settings are the edge library's
    (:class:`~chargelift_edge.settings.EdgeSettings`), under the ``POLLER_`` prefix.
    """

    model_config = SettingsConfigDict(
        env_prefix="POLLER_", case_sensitive=False, extra="ignore", frozen=True
    )

    config: Path = Field(description="path of the chargers file (TOML)")
    outbox: Path = Field(description="path of the SQLite outbox file")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9101, ge=0, le=65535)
    #: Full snapshot of every field at least this often (s). Must be shorter than the
    #: smallest time bucket of the API so that no bucket misses a value.
    snapshot_interval: PositiveFloat = 300.0
    #: The first polls are spread over this many seconds (default: one second per 100
    #: chargers, at least the poll interval), and so are the periodic full snapshots.
    start_spread: PositiveFloat | None = None
    #: Publishes in flight per MQTT connection (QoS 1 on one connection keeps order).
    inflight: PositiveInt = 100
    #: Upper bound of the retry backoff (s) of a charger with transient errors.
    max_backoff: PositiveFloat = 60.0
    #: Retry period (s) of a charger with a permanent error (wrong PIN, bad address).
    permanent_retry: PositiveFloat = 300.0
    # Publishes in flight and no PUBACK for this long (or the event loop stalled, or
    # the process frozen this long): /healthz answers 503; this much longer again
    # (0: at once) the process exits so that its supervisor restarts it.
    liveness: PositiveFloat = 120.0
    watchdog_exit: float = Field(default=30.0, ge=0)
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """How commands may drive one charger (the chargers file's control keys).

    ``max_current`` ``None``: the charger's own maximum as its driver reads it (MHCP
    ``MaxCurrWb``); ``default_current`` ``None``: the maximum in force.
    """

    min_current: float = 6.0
    max_current: float | None = None
    default_current: float | None = None
    min_write_interval: float = 2.0
    permanent_writes: bool = False


@dataclass(frozen=True, slots=True)
class ChargerConfig:
    """One charger, resolved: the PIN is read, the identity is known."""

    id: str
    driver: str
    url: str
    identity: str
    interval: float
    timeout: float
    pin: SecretStr | None = field(repr=False)
    pin_ref: str
    options: Mapping[str, OptionValue]
    control: ControlConfig = ControlConfig()


@dataclass(frozen=True, slots=True)
class MqttIdentity:
    """How the poller identifies itself to the broker (the chargers file's ``[mqtt]``).

    ``charger``: one certificate and MQTT connection per charger (the default).
    ``edge``: one connection with the certificate of ``edge_id`` for all chargers.
    """

    mode: Literal["charger", "edge"] = "charger"
    edge_id: str | None = None

    @property
    def is_edge(self) -> bool:
        return self.mode == "edge"


@dataclass(frozen=True, slots=True)
class PollerConfig:
    """The chargers file, resolved."""

    chargers: tuple[ChargerConfig, ...]
    mqtt: MqttIdentity = MqttIdentity()


class _MqttTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    identity: Literal["charger", "edge"] = "charger"
    edge_id: str | None = None

    @field_validator("edge_id")
    @classmethod
    def _edge_id(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                validate_charger_id(value)
            except TopicError as exc:
                raise ValueError(str(exc).replace("charger id", "edge id")) from None
        return value


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    driver: str
    url: str
    pin_env: str | None = None
    pin_file: Path | None = None
    identity: str | None = None
    interval: PositiveFloat = 1.0
    timeout: PositiveFloat = 5.0
    options: dict[str, OptionValue] = Field(default_factory=dict)
    min_current: PositiveFloat = 6.0
    max_current: PositiveFloat | None = Field(default=None, le=MAX_CURRENT_A)
    default_current: PositiveFloat | None = Field(default=None, le=MAX_CURRENT_A)
    min_write_interval: float = Field(default=2.0, ge=0, le=3600)
    permanent_writes: bool = False

    @model_validator(mode="after")
    def _currents(self) -> Self:
        low, high, default = self.min_current, self.max_current, self.default_current
        if high is not None and low > high:
            raise ValueError(f"min_current {low:g} A is above max_current {high:g} A")
        if default is not None and default < low:
            raise ValueError(f"default_current {default:g} A is below min_current {low:g} A")
        if default is not None and high is not None and default > high:
            raise ValueError(f"default_current {default:g} A is above max_current {high:g} A")
        return self

    def control(self) -> ControlConfig:
        return ControlConfig(
            min_current=self.min_current,
            max_current=self.max_current,
            default_current=self.default_current,
            min_write_interval=self.min_write_interval,
            permanent_writes=self.permanent_writes,
        )

    @field_validator("id", "identity")
    @classmethod
    def _charger_id(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                validate_charger_id(value)
            except TopicError as exc:
                raise ValueError(str(exc)) from None
        return value


_DEFAULTABLE = frozenset(
    {
        "driver",
        "interval",
        "timeout",
        "options",
        "min_current",
        "max_current",
        "default_current",
        "min_write_interval",
        "permanent_writes",
    }
)


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)
    )


def _mqtt_identity(path: Path, table: object) -> MqttIdentity:
    try:
        mqtt = _MqttTable.model_validate(table)
    except ValidationError as exc:
        raise ConfigFileError(f"chargers file {path}, [mqtt]: {_problems(exc)}") from None
    if mqtt.identity == "edge" and mqtt.edge_id is None:
        raise ConfigFileError(f'chargers file {path}, [mqtt]: identity = "edge" needs edge_id')
    if mqtt.identity == "charger" and mqtt.edge_id is not None:
        raise ConfigFileError(
            f'chargers file {path}, [mqtt]: edge_id is set but identity is not "edge"'
        )
    return MqttIdentity(mqtt.identity, mqtt.edge_id)


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> PollerConfig:
    """Read and validate the chargers file, resolving every PIN reference."""
    env = os.environ if environ is None else environ
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigFileError(f"chargers file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"chargers file {path}: invalid TOML: {exc}") from None
    unknown = set(doc) - {"mqtt", "defaults", "chargers"}
    if unknown:
        raise ConfigFileError(f"chargers file {path}: unknown table(s) {sorted(unknown)}")
    mqtt = _mqtt_identity(path, doc.get("mqtt", {}))
    defaults: dict[str, Any] = doc.get("defaults", {})
    bad_defaults = set(defaults) - _DEFAULTABLE
    if bad_defaults:
        raise ConfigFileError(
            f"chargers file {path}: [defaults] may set only {sorted(_DEFAULTABLE)}, "
            f"not {sorted(bad_defaults)}"
        )
    raw = doc.get("chargers", [])
    if not isinstance(raw, list) or not raw:
        raise ConfigFileError(f"chargers file {path}: no [[chargers]] entries")
    chargers: list[ChargerConfig] = []
    for index, item in enumerate(raw, start=1):
        where = f"chargers file {path}, charger #{index}"
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            where += f" ({item['id']})"
        try:
            entry = _Entry.model_validate({**defaults, **item})
        except ValidationError as exc:
            raise ConfigFileError(f"{where}: {_problems(exc)}") from None
        if mqtt.is_edge and entry.identity is not None:
            raise ConfigFileError(
                f'{where}: identity is per-charger; with [mqtt] identity = "edge" every '
                f"charger publishes as edge {mqtt.edge_id!r}"
            )
        pin, pin_ref = _resolve_pin(entry, env, where)
        chargers.append(
            ChargerConfig(
                id=entry.id,
                driver=entry.driver,
                url=entry.url,
                identity=mqtt.edge_id if mqtt.edge_id is not None else entry.identity or entry.id,
                interval=entry.interval,
                timeout=entry.timeout,
                pin=pin,
                pin_ref=pin_ref,
                options=dict(entry.options),
                control=entry.control(),
            )
        )
    _check_unique(path, chargers, edge=mqtt.is_edge)
    if mqtt.is_edge and len(encode_edge_chargers(c.id for c in chargers)) > MAX_EDGE_CHARGERS_BYTES:
        raise ConfigFileError(
            f"chargers file {path}: the charger list of edge {mqtt.edge_id!r} exceeds "
            f"{MAX_EDGE_CHARGERS_BYTES} bytes as JSON (the broker's packet limit): "
            "split the chargers over two edges"
        )
    return PollerConfig(tuple(chargers), mqtt)


def _resolve_pin(entry: _Entry, env: Mapping[str, str], where: str) -> tuple[SecretStr | None, str]:
    if entry.pin_env is not None and entry.pin_file is not None:
        raise ConfigFileError(f"{where}: set pin_env or pin_file, not both")
    if entry.pin_env is not None:
        ref = f"env {entry.pin_env}"
        value = env.get(entry.pin_env)
        if not value:
            raise ConfigFileError(f"{where}: the PIN variable {entry.pin_env} is not set")
        return SecretStr(value), ref
    if entry.pin_file is not None:
        ref = f"file {entry.pin_file}"
        try:
            text = entry.pin_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigFileError(
                f"{where}: cannot read the PIN file {entry.pin_file}: {exc.strerror}"
            ) from None
        lines = text.strip().splitlines()
        value = lines[0].strip() if lines else ""
        if not value:
            raise ConfigFileError(f"{where}: the PIN file {entry.pin_file} is empty")
        return SecretStr(value), ref
    return None, "no PIN configured"


def _check_unique(path: Path, chargers: list[ChargerConfig], *, edge: bool) -> None:
    seen_ids: set[str] = set()
    seen_identities: set[str] = set()
    for c in chargers:
        if c.id in seen_ids:
            raise ConfigFileError(f"chargers file {path}: charger id {c.id!r} appears twice")
        # One MQTT connection per identity carries that charger's last will; two
        # chargers on one identity would fight over the connection.
        if not edge and c.identity in seen_identities:
            raise ConfigFileError(
                f"chargers file {path}: identity {c.identity!r} is used by two chargers"
            )
        seen_ids.add(c.id)
        seen_identities.add(c.identity)
