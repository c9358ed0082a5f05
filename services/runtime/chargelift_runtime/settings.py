"""Settings every service shares, and one way to report bad ones.

The naming scheme (docs/conventions.md): each service's ``config.py`` declares one
``Settings`` class with ``env_prefix="<SERVICE>_"`` and unprefixed field names
(``POLLER_OUTBOX`` is ``Settings.outbox``); a variable that several services read has
one name everywhere and is declared once: the broker block :class:`MqttSettings`
(``MQTT_*``) here, ``DATABASE_URL`` as a field with that ``validation_alias``.

``main()`` builds them with :func:`load_settings`; invalid or missing values end in one
:class:`SettingsError` naming every variable and why, never a value (it may be secret).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar, overload

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from chargelift_runtime.mqtt import TlsFiles

S = TypeVar("S", bound=BaseSettings)
T = TypeVar("T", bound=BaseSettings)


class MqttSettings(BaseSettings):
    """The broker and this process's certificates: ``MQTT_*``, the same for every service."""

    model_config = SettingsConfigDict(
        env_prefix="MQTT_", case_sensitive=False, extra="ignore", frozen=True
    )

    host: str = Field(description="the broker's host name (its certificate must name it)")
    port: int = Field(default=8883, ge=1, le=65535)
    ca_file: Path = Field(description="CA bundle that signed the broker's certificate")
    certs_dir: Path = Field(description="directory with clients/<identity>.crt and .key")
    #: The service's own identity (its certificate's name, also its MQTT client id);
    #: the poller takes its identities from the chargers file instead.
    identity: str | None = None

    def tls(self, identity: str) -> TlsFiles:
        """The CA bundle and ``identity``'s certificate and key."""
        return TlsFiles.for_identity(self.ca_file, self.certs_dir, identity)


class SettingsError(ValueError):
    """Invalid or missing settings; the message names each variable, never a value."""


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable that sets ``cls``'s ``field`` (a field's name, or its
    ``validation_alias``: pydantic names a field by its alias in errors)."""
    info = cls.model_fields.get(field)
    if info is None and any(f.validation_alias == field for f in cls.model_fields.values()):
        return field
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, str):
        return alias
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def describe(cls: type[BaseSettings], exc: ValidationError) -> list[str]:
    """One ``NAME: reason`` line per problem (inputs are never shown)."""
    return [
        f"{env_name(cls, str(e['loc'][0])) if e['loc'] else cls.__name__}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)
    ]


@overload
def load_settings(first: type[S], /) -> S: ...
@overload
def load_settings(first: type[S], second: type[T], /) -> tuple[S, T]: ...
def load_settings(first: type[S], second: type[T] | None = None, /) -> S | tuple[S, T]:
    """Build each settings class from the environment; all problems in one error."""
    problems: list[str] = []
    built: list[BaseSettings] = []
    for cls in (first,) if second is None else (first, second):
        try:
            built.append(cls())
        except ValidationError as exc:
            problems += describe(cls, exc)
    if problems:
        raise SettingsError("invalid environment:\n" + "\n".join(f"  {p}" for p in problems))
    if second is None:
        return built[0]  # type: ignore[return-value]
    return built[0], built[1]  # type: ignore[return-value]
