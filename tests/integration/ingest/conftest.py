"""Fixtures for ingest: a migrated database per test, ingest as a real process, a publisher."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from chargelift_contract import Envelope, encode, field_topic
from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_devstack.postgres import PostgresServer
from chargelift_devstack.procs import free_port
from chargelift_runtime.mqtt import MqttClient
from tests.support.certs import TestCerts
from tests.support.db import as_role, fresh_database

CHARGERS = ("charger-a", "charger-b", "amtron-1", "amtron-2", "amtron-3")
FIELDS: dict[str, Callable[[int], float | str | bool]] = {
    "PowerOutput": lambda i: float(i * 10),
    "SessionEnergy": lambda i: float(i),
    "OutputCurrent": lambda i: float(i % 32),
    "OperationState": lambda i: ("idle", "charging")[i % 2],
    "ConnectedVehicle": lambda i: i % 3 != 0,
    "Tariff": lambda i: f"T{1 + i % 2}",
}
_counter = itertools.count()


@pytest.fixture
async def db(postgres: PostgresServer) -> str:
    return await fresh_database(postgres)


def messages(
    n_per_field: int, start: datetime | None = None, chargers: Sequence[str] = CHARGERS
) -> list[tuple[str, str, bytes]]:
    """(identity, topic, payload) for every charger × field × sample, time-ordered."""
    t0 = start or datetime(2026, 11, 24, 10, tzinfo=UTC)
    out = []
    for i in range(n_per_field):
        t = t0 + timedelta(seconds=i, microseconds=123)
        for charger in chargers:
            for name, make in FIELDS.items():
                out.append((charger, field_topic(charger, name), encode(Envelope(t, make(i)))))
    return out


@dataclass
class Publisher:
    broker: MosquittoServer
    certs: TestCerts
    clients: dict[str, MqttClient] = field(default_factory=dict)

    async def client(self, identity: str) -> MqttClient:
        if identity not in self.clients:
            c = MqttClient(
                host=self.broker.host,
                port=self.broker.port,
                client_id=f"pub-{identity}-{uuid.uuid4().hex[:6]}",
                tls=self.certs.tls(identity),
            )
            await c.__aenter__()
            self.clients[identity] = c
        c = self.clients[identity]
        async with asyncio.timeout(20):
            await c.wait_connected()
        return c

    async def publish(
        self, msgs: Sequence[tuple[str, str, bytes]], *, window: int = 500, retain: bool = True
    ) -> None:
        """Publish and wait for every PUBACK, ``window`` at a time, retrying on a dropped link."""
        for chunk_start in range(0, len(msgs), window):
            chunk = msgs[chunk_start : chunk_start + window]
            while True:
                try:
                    futs = [
                        (await self.client(i)).publish_nowait(t, p, retain=retain)
                        for i, t, p in chunk
                    ]
                    await asyncio.gather(*futs)
                    break
                except Exception:
                    await asyncio.sleep(0.2)

    async def close(self) -> None:
        for c in self.clients.values():
            await c.__aexit__(None, None, None)


@pytest.fixture
async def publisher(own_broker: MosquittoServer, certs: TestCerts) -> AsyncIterator[Publisher]:
    pub = Publisher(own_broker, certs)
    yield pub
    await pub.close()


@dataclass
class IngestProcess:
    """``chargelift-ingest run`` as a real process."""

    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chargelift_ingest.main", "run"],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, timeout: float = 20.0) -> None:
        """Wait until it is connected and subscribed (its /healthz says so)."""
        url = f"http://127.0.0.1:{self.env['INGEST_METRICS_PORT']}/healthz"
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1) as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                assert self.proc.poll() is None, self.log.read_text()[-2000:]
                try:
                    if (await http.get(url)).json().get("mqtt_connected"):
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                await asyncio.sleep(0.05)
        pytest.fail(f"ingest not ready after {timeout}s:\n{self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['INGEST_METRICS_PORT']}/metrics"

    async def metric(self, name: str) -> float:
        """The value of one unlabelled sample of ingest's /metrics (0 if absent)."""
        async with httpx.AsyncClient(timeout=2) as http:
            text = (await http.get(self.metrics_url)).text
        for line in text.splitlines():
            key, _, value = line.rpartition(" ")
            if key == name:
                return float(value)
        return 0.0


def ingest_env(broker: MosquittoServer, certs: TestCerts, dsn: str, **extra: str) -> dict[str, str]:
    """Ingest as deployed: logged in as its own least-privileged role."""
    return {
        "DATABASE_URL": as_role(dsn, "chargelift_ingest"),
        "MQTT_HOST": broker.host,
        "MQTT_PORT": str(broker.port),
        "MQTT_CA_FILE": str(certs.ca_file),
        "MQTT_CERTS_DIR": str(certs.dir),
        "INGEST_METRICS_PORT": str(free_port()),
        "INGEST_BATCH_AGE_MS": "50",
        **extra,
    }


@pytest.fixture
async def ingest(
    own_broker: MosquittoServer, certs: TestCerts, db: str, tmp_path: Path
) -> AsyncIterator[IngestProcess]:
    proc = IngestProcess(ingest_env(own_broker, certs, db), tmp_path / "ingest.log")
    proc.start()
    await proc.ready()
    yield proc
    proc.kill()


async def count_rows(dsn: str, table: str = "readings", where: str = "") -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n: int = await conn.fetchval(f"SELECT count(*) FROM {table} {where}")
        return n
    finally:
        await conn.close()


async def wait_rows(
    dsn: str, expected: int, *, timeout: float = 60.0, table: str = "readings", where: str = ""
) -> int:
    """Wait until ``table`` has ``expected`` rows; return the count (fail on timeout)."""
    deadline = time.monotonic() + timeout
    n = -1
    while time.monotonic() < deadline:
        try:
            n = await count_rows(dsn, table, where)
        except (OSError, asyncpg.PostgresError):
            n = -1
        if n >= expected:
            await asyncio.sleep(0.3)  # anything more would be too many
            return await count_rows(dsn, table, where)
        await asyncio.sleep(0.1)
    pytest.fail(f"{table}: {n} rows after {timeout}s, expected {expected}")


class PubackProxy:
    """A TCP relay on loopback between ingest and the broker whose ingest → broker
    direction can be cut: ingest's PUBACKs then never reach the broker."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.upstream_open = True
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> PubackProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer, upstream=True)),
            asyncio.create_task(self._pipe(up_reader, writer, upstream=False)),
        ):
            self._tasks.add(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if upstream and not self.upstream_open:
                    continue  # swallowed: the broker never sees it
                writer.write(data)
                await writer.drain()
