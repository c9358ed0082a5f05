"""The OCPP gateway on 127.0.0.1 with real TLS: a registry, certificates, clients.

The gateway runs in the test's event loop (:class:`OcppService`, fresh metrics registry)
with a fake mapper and a list sink; the server certificate is the test CA's broker
certificate (it names 127.0.0.1). Charge points:

- ``cp-pass`` profile 2 (TLS + password), ``cp-cert`` profile 3 (client certificate),
  ``cp-lan`` profile 1 (password over plain ws://, when the plain listener is on).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from chargelift_ocpp.config import Settings
from chargelift_ocpp.registry import ChargePointEntry, hash_password, write_registry
from chargelift_ocpp.service import OcppService
from chargelift_runtime.mqtt import TlsFiles
from chargelift_runtime.settings import MqttSettings
from tests.support.certs import TestCerts
from tests.support.metrics import parse_metrics
from tests.support.ocpp import FakeMappers, FakeMappingError, ListSink

PASSWORD_2 = "profile-two-password-0123456789"
PASSWORD_1 = "profile-one-password-0123456789"


@dataclass
class Gateway:
    """A running gateway and what a test needs to talk to it."""

    service: OcppService
    settings: Settings
    certs: TestCerts
    sink: ListSink
    mappers: FakeMappers
    foreign: TlsFiles
    stop: Callable[[], Awaitable[None]]

    @property
    def tls_url(self) -> str:
        assert self.service.server is not None
        return f"wss://127.0.0.1:{self.service.server.tls_port}/ocpp"

    @property
    def plain_url(self) -> str:
        assert self.service.server is not None
        return f"ws://127.0.0.1:{self.service.server.plain_port}/ocpp"

    def metrics(self) -> dict[str, float]:
        return parse_metrics(generate_latest(self.service.registry).decode())

    def refused(self, reason: str) -> float:
        return self.metrics().get(f'ocpp_handshakes_refused_total{{reason="{reason}"}}', 0.0)

    def client_context(
        self, identity: str | None = None, *, foreign: bool = False
    ) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.certs.ca_file))
        if foreign:
            ctx.load_cert_chain(self.foreign.cert_file, self.foreign.key_file)
        elif identity is not None:
            files = self.certs.tls(identity)
            ctx.load_cert_chain(files.cert_file, files.key_file)
        return ctx

    async def connect(
        self,
        cp_id: str,
        *,
        password: str | None = None,
        user: str | None = None,
        cert: str | None = None,
        foreign: bool = False,
        plain: bool = False,
        subprotocols: list[str] | None = None,
    ) -> ClientConnection:
        headers = {}
        if password is not None:
            token = base64.b64encode(f"{user or cp_id}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        url = f"{self.plain_url if plain else self.tls_url}/{cp_id}"
        return await connect(
            url,
            ssl=None if plain else self.client_context(cert, foreign=foreign),
            additional_headers=headers,
            subprotocols=[Subprotocol(p) for p in subprotocols or ["ocpp1.6"]],
            open_timeout=10,
        )


@dataclass
class GatewayFactory:
    certs: TestCerts
    base: Path
    foreign: TlsFiles
    stack: contextlib.AsyncExitStack
    sink: ListSink = field(default_factory=ListSink)
    mappers: FakeMappers = field(default_factory=FakeMappers)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "charge_points": self.base / "charge_points.toml",
            "state_dir": self.base / "state",
            "host": "127.0.0.1",
            "port": 0,
            "plain_port": 0,
            "metrics_port": 0,
            "tls_cert": self.certs.dir / "broker.crt",
            "tls_key": self.certs.dir / "broker.key",
            "ca_file": self.certs.ca_file,
            "crl_file": self.certs.dir / "crl.pem",
        }
        values.update(overrides)
        return Settings(**values)

    async def start(self, mqtt: MqttSettings | None = None, **overrides: Any) -> Gateway:
        """With ``mqtt`` (the broker and the gateway's edge identity): the real uplink and
        mapper; without: the fake mapper and the list sink."""
        settings = self.settings(**overrides)
        service = OcppService(
            settings,
            mqtt,
            sink=None if mqtt is not None else self.sink,
            registry=CollectorRegistry(),
            mapper_factory=None if mqtt is not None else self.mappers,
            mapping_error=None if mqtt is not None else FakeMappingError,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))

        async def stopped() -> None:
            if not task.done():
                stop.set()
                await asyncio.wait_for(task, 30)

        started = asyncio.create_task(service.started.wait())
        done, _ = await asyncio.wait({task, started}, timeout=30, return_when="FIRST_COMPLETED")
        if task in done:
            started.cancel()
            task.result()  # raises what failed
        assert started in done, "the gateway did not start"
        self.stack.push_async_callback(stopped)
        return Gateway(
            service, settings, self.certs, self.sink, self.mappers, self.foreign, stopped
        )


@pytest.fixture
async def gateways(certs: TestCerts, tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """``await gateways.start(**settings)``: a started gateway (stopped after the test)."""
    from chargelift_certs import pki

    certs.issue_charger("cp-cert")
    foreign_dir = tmp_path / "foreign-ca"
    pki.create_ca(foreign_dir)
    if not (foreign_dir / "clients" / "cp-cert.crt").exists():
        pki.issue_client(foreign_dir, "cp-cert", role="charger")
    foreign = TlsFiles.for_identity(foreign_dir / "ca.crt", foreign_dir, "cp-cert")
    write_registry(
        tmp_path / "charge_points.toml",
        [
            ChargePointEntry("cp-pass", 2, hash_password(PASSWORD_2)),
            ChargePointEntry("cp-cert", 3),
            ChargePointEntry("cp-lan", 1, hash_password(PASSWORD_1)),
            ChargePointEntry("cp-two", 2, hash_password(PASSWORD_2)),
        ],
    )
    async with contextlib.AsyncExitStack() as stack:
        factory = GatewayFactory(certs, tmp_path, foreign, stack)
        yield factory
