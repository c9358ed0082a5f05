"""Settings of the OCPP gateway, from the environment (built in ``main()``).

The scheme of every service (:mod:`chargelift_runtime.settings`): ``OCPP_*`` variables
are the unprefixed fields of :class:`Settings` (``OCPP_PORT`` is ``port``). Every
variable, its default and its meaning: docs/ocpp.md, "Settings".
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from chargelift_edge.settings import EdgeSettings
from chargelift_runtime.settings import MqttSettings

__all__ = ["MqttSettings", "Settings"]

#: The one WebSocket subprotocol the gateway speaks (OCPP 1.6J).
SUBPROTOCOL = "ocpp1.6"
#: The longest OCPP 1.6 idTag (IdToken is a CiString20).
MAX_ID_TAG_CHARS = 20


class Settings(EdgeSettings):
    """``OCPP_*``: the listeners, the registry, the state directory and the limits; the
    outbox and publishing settings are the edge library's (:class:`EdgeSettings`), under
    the ``OCPP_`` prefix, as the poller's are under ``POLLER_``."""

    model_config = SettingsConfigDict(env_prefix="OCPP_", extra="ignore", env_ignore_empty=True)

    #: The charge point registry (TOML; written by ``chargelift-ocpp register``).
    charge_points: Path
    #: Where the gateway keeps its state (``transactions.sqlite3``, ``outbox.sqlite3``).
    state_dir: Path
    #: The durable outbox (default: ``outbox.sqlite3`` in the state directory).
    outbox: Path | None = None
    # The TLS listener (profiles 2 and 3): on when a certificate and key are given.
    host: str = "0.0.0.0"  # noqa: S104 - chargers connect from the LAN
    port: int = Field(9000, ge=0, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: The CA that issued the charge points' client certificates (profile 3).
    ca_file: Path | None = None
    #: The CA's revocation list: a revoked client certificate is refused (profile 3).
    crl_file: Path | None = None
    # The plain ws:// listener for profile 1 (HTTP Basic without TLS): off by default.
    allow_plain: bool = False
    plain_host: str = "127.0.0.1"
    plain_port: int = Field(9080, ge=0, le=65535)
    #: The URL path before the charge point id: ``wss://host:port/ocpp/<id>``.
    path: str = Field("/ocpp", pattern=r"^(/[A-Za-z0-9._~-]+)*$")
    #: Seconds between heartbeats, told to every charge point in the BootNotification answer.
    heartbeat_interval: int = Field(300, ge=1, le=86400)
    #: Id tags that Authorize and StartTransaction accept, comma-separated; empty: any.
    id_tags: str = ""
    #: The id tag of the gateway's RemoteStartTransaction (the ``Start`` command): 1-20
    #: printable characters (OCPP's idToken is a CiString20); always accepted.
    remote_id_tag: str = "chargelift"
    max_connections: int = Field(1000, ge=1)
    #: Threads that check passwords (scrypt: ~16 MiB and tens of ms of CPU each).
    password_check_threads: int = Field(1, ge=1, le=16)
    #: Password checks that may wait for a thread; one more handshake that needs a
    #: check is answered 503 + Retry-After at once.
    password_check_queue: int = Field(32, ge=0, le=10000)
    #: Retry-After of a 503 answer, in s (the answer says a random value up to twice it).
    busy_retry_after: int = Field(10, ge=1, le=3600)
    #: The largest WebSocket message accepted (bytes); a larger one closes the connection.
    max_message_bytes: int = Field(65536, ge=1024, le=16 * 1024 * 1024)
    #: Messages per second a connection may send on average (more wait), and the burst.
    message_rate: float = Field(20.0, gt=0)
    message_burst: int = Field(100, ge=1)
    #: Seconds the gateway waits for a charge point's answer to its own calls.
    response_timeout: float = Field(30.0, gt=0)
    #: The highest CurrentLimit accepted, in A (default: any the contract allows; the
    #: charge point refuses what it cannot do).
    max_current: float | None = Field(None, ge=6, le=3000)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9103, ge=0, le=65535)
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("remote_id_tag")
    @classmethod
    def _remote_id_tag(cls, value: str) -> str:
        if not 1 <= len(value) <= MAX_ID_TAG_CHARS or not value.isprintable():
            raise ValueError(f"must be 1-{MAX_ID_TAG_CHARS} printable characters (an OCPP idTag)")
        return value

    @model_validator(mode="after")
    def _listeners(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("OCPP_TLS_CERT and OCPP_TLS_KEY go together")
        if self.tls_cert is None and not self.allow_plain:
            raise ValueError(
                "no listener: set OCPP_TLS_CERT and OCPP_TLS_KEY (profiles 2 and 3), "
                "or OCPP_ALLOW_PLAIN=true (profile 1, LAN only)"
            )
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def accepted_id_tags(self) -> frozenset[str]:
        """The configured id tags and the gateway's own (:attr:`remote_id_tag`: a remote
        start is never refused by its own gateway); empty: every id tag is accepted."""
        tags = frozenset(t.strip() for t in self.id_tags.split(",") if t.strip())
        return tags | {self.remote_id_tag} if tags else tags

    @property
    def outbox_file(self) -> Path:
        return self.outbox if self.outbox is not None else self.state_dir / "outbox.sqlite3"

    @property
    def transactions_file(self) -> Path:
        return self.state_dir / "transactions.sqlite3"
