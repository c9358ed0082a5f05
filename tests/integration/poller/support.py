"""Helpers of the poller's integration tests: run the poller, watch MQTT, wait for things."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from chargelift_contract import Envelope, decode, parse_topic
from chargelift_contract.topics import AvailabilityTopic, FieldTopic
from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_devstack.procs import free_port
from chargelift_poller.config import (
    ChargerConfig,
    MqttIdentity,
    MqttSettings,
    PollerConfig,
    Settings,
)
from chargelift_poller.service import PollerService
from chargelift_runtime.mqtt import Message, MqttClient
from chargelift_runtime.retry import Backoff
from tests.support.certs import TestCerts
from tests.support.metrics import parse_metrics

#: A PIN nobody would print by accident; the tests grep every log for it.
PIN = "7319-pin-secret"
WRONG_PIN = "2468-wrong-secret"


@dataclass(frozen=True)
class Received:
    """One message as the subscriber saw it, in arrival order."""

    topic: str
    payload: bytes
    retain: bool
    at: float

    @property
    def charger(self) -> str:
        return parse_topic(self.topic).charger

    @property
    def field(self) -> str | None:
        parsed = parse_topic(self.topic)
        return parsed.field if isinstance(parsed, FieldTopic) else None

    @property
    def is_availability(self) -> bool:
        return isinstance(parse_topic(self.topic), AvailabilityTopic)

    def envelope(self) -> Envelope:
        return decode(self.payload)


@dataclass
class Inbox:
    """Every message received, in order; lets a test wait for a condition."""

    messages: list[Received] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, msg: Message) -> None:
        self.messages.append(Received(msg.topic, msg.payload, msg.retain, time.monotonic()))
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None

    def samples(self) -> list[Received]:
        return [m for m in self.messages if not m.is_availability]

    def latest(self, topic: str) -> Received | None:
        for m in reversed(self.messages):
            if m.topic == topic:
                return m
        return None


@asynccontextmanager
async def subscriber(
    broker: MosquittoServer, certs: TestCerts, *, client_id: str, persistent: bool = False
) -> AsyncIterator[Inbox]:
    """The ``ingest`` identity subscribed to ``chargers/#`` (QoS 1)."""
    inbox = Inbox()
    async with MqttClient(
        host=broker.host,
        port=broker.port,
        client_id=client_id,
        tls=certs.tls("ingest"),
        persistent_session=persistent,
        subscriptions=("chargers/#",),
        on_message=inbox.handle,
        backoff=Backoff(initial=0.2, maximum=1.0),
    ) as client:
        async with asyncio.timeout(10):
            await client.wait_connected()
        yield inbox


async def eventually(
    check: Callable[[], bool] | Callable[[], Awaitable[bool]],
    timeout: float,
    what: str,
    every: float = 0.05,
) -> None:
    """Poll ``check`` until it is true; fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)


def charger_config(
    charger_id: str, url: str, *, pin: str = PIN, interval: float = 0.5, timeout: float = 1.0
) -> ChargerConfig:
    return ChargerConfig(
        id=charger_id,
        driver="mhcp",
        url=url,
        identity=charger_id,
        interval=interval,
        timeout=timeout,
        pin=SecretStr(pin),
        pin_ref="env TEST_PIN",
        options={},
    )


@dataclass(frozen=True)
class Setup:
    """What the poller is built from besides its chargers: ``POLLER_*`` and ``MQTT_*``."""

    settings: Settings
    mqtt: MqttSettings


def settings(broker: MosquittoServer, certs: TestCerts, outbox: Path, **overrides: object) -> Setup:
    """Test settings (``overrides`` are :class:`Settings` fields: ``max_backoff=0.5``)."""
    values: dict[str, object] = {
        "config": outbox.parent / "unused.toml",
        "outbox": outbox,
        "metrics_port": 0,
        "mqtt_max_backoff": 1.0,
        "max_backoff": 1.0,
        "shutdown_grace": 3.0,
        **overrides,
    }
    mqtt = MqttSettings(
        host=broker.host, port=broker.port, ca_file=certs.ca_file, certs_dir=certs.dir
    )
    return Setup(Settings(**values), mqtt)  # type: ignore[arg-type]


@asynccontextmanager
async def running_poller(
    s: Setup, chargers: Sequence[ChargerConfig], mqtt: MqttIdentity | None = None
) -> AsyncIterator[PollerService]:
    """The poller, in this process and event loop, until the block ends (then SIGTERM-like)."""
    config = PollerConfig(tuple(chargers), mqtt or MqttIdentity())
    poller = PollerService(s.settings, s.mqtt, config)
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop), name="poller")
    try:
        await eventually(
            lambda: task.done() or poller.endpoint is not None, 10, "the poller to start"
        )
        if task.done():
            task.result()
        yield poller
    finally:
        stop.set()
        async with asyncio.timeout(20):
            await task


def metric(poller: PollerService, name: str, **labels: str) -> float:
    value = poller.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# -- the poller as a separate process -------------------------------------------------


def write_config(
    path: Path,
    chargers: Sequence[tuple[str, str, str]],
    interval: float,
    *,
    edge_id: str | None = None,
) -> Path:
    """A chargers file: (id, url, pin variable) per charger; with ``edge_id`` the edge identity."""
    lines = []
    if edge_id is not None:
        lines += ["[mqtt]", 'identity = "edge"', f'edge_id = "{edge_id}"', ""]
    lines += ["[defaults]", 'driver = "mhcp"', f"interval = {interval}", "timeout = 1.0", ""]
    for charger_id, url, pin_env in chargers:
        lines += [
            "[[chargers]]",
            f'id = "{charger_id}"',
            f'url = "{url}"',
            f'pin_env = "{pin_env}"',
            "",
        ]
    path.write_text("\n".join(lines))
    return path


@dataclass
class PollerProcess:
    """``python -m chargelift_poller.main`` with its own environment and log file."""

    env: dict[str, str]
    log: Path
    metrics_port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, **self.env, "POLLER_METRICS_PORT": str(self.metrics_port)}
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "chargelift_poller.main",
                env=env, stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip

    async def metrics(self) -> dict[str, float]:
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
            r = await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        return parse_metrics(r.text)

    async def ready(self) -> bool:
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=1) as http:
                r = await http.get(f"http://127.0.0.1:{self.metrics_port}/readyz")
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        async with asyncio.timeout(20):
            return await self.proc.wait()

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def outbox_rows(path: Path, *, unacked_only: bool = False) -> list[tuple[int, str, bytes, float]]:
    """(seq, topic, payload, sampled_at) straight from the outbox file, in seq order."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        where = "WHERE acked_at IS NULL" if unacked_only else ""
        return [
            (s, t, bytes(p), a)
            for s, t, p, a in db.execute(
                f"SELECT seq, topic, payload, sampled_at FROM outbox {where} ORDER BY seq"
            )
        ]
    finally:
        db.close()
