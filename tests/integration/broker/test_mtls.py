"""Issue 3, "Must show": the broker admits only mutual-TLS clients of our CA and
keeps every device to its own topics; revocation works; retained values persist."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chargelift_certs import pki
from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_runtime.mqtt import (
    Message,
    MqttClient,
    MqttError,
    PublishRefusedError,
    TlsFiles,
)
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration

CONNECT_WAIT = 3.0


class Inbox:
    """Collects messages; lets a test wait for one on a topic."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = asyncio.Event()

    async def handle(self, msg: Message) -> None:
        self.messages.append(msg)
        self._changed.set()

    async def wait_for(self, topic: str, timeout: float = 5.0) -> Message:
        async with asyncio.timeout(timeout):
            while True:
                for msg in self.messages:
                    if msg.topic == topic:
                        return msg
                self._changed.clear()
                await self._changed.wait()

    def topics(self) -> set[str]:
        return {m.topic for m in self.messages}


@asynccontextmanager
async def client(
    broker: MosquittoServer,
    tls: TlsFiles,
    identity: str,
    *,
    subscribe: tuple[str, ...] = (),
    inbox: Inbox | None = None,
) -> AsyncIterator[MqttClient]:
    async with MqttClient(
        host=broker.host,
        port=broker.port,
        client_id=f"test-{identity}-{time.monotonic_ns()}",
        tls=tls,
        subscriptions=subscribe,
        on_message=inbox.handle if inbox else None,
    ) as c:
        async with asyncio.timeout(CONNECT_WAIT):
            await c.wait_connected()
        yield c


async def first_attempt(broker: MosquittoServer, tls: TlsFiles) -> BaseException | None:
    """Connect once with ``tls``: None if the broker accepted, else the error seen."""
    async with MqttClient(
        host=broker.host, port=broker.port, client_id="test-attempt", tls=tls
    ) as c:
        async with asyncio.timeout(CONNECT_WAIT):
            while not c.is_connected and c.last_error is None:
                await asyncio.sleep(0.01)
        return None if c.is_connected else c.last_error


async def refused(broker: MosquittoServer, tls: TlsFiles) -> BaseException:
    """Assert the broker refuses a connection with ``tls``; return the error seen."""
    error = await first_attempt(broker, tls)
    assert error is not None, "the broker accepted the connection"
    return error


async def refused_within(
    broker: MosquittoServer, tls: TlsFiles, since: float, seconds: float = 10
) -> float:
    """Retry until the broker refuses ``tls`` (a reload is asynchronous); return the
    seconds from ``since`` (a ``time.monotonic()``) to the first refusal."""
    started = since
    while await first_attempt(broker, tls) is None:
        assert time.monotonic() - started < seconds, f"still accepted after {seconds} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_a_valid_client_certificate_connects(
    broker: MosquittoServer, certs: TestCerts
) -> None:
    async with client(broker, certs.tls("charger-a"), "charger-a") as c:
        assert c.is_connected


async def test_no_client_certificate_is_refused(
    broker: MosquittoServer, certs: TestCerts, tmp_path: Path
) -> None:
    class NoCert(TlsFiles):
        def context(self) -> ssl.SSLContext:
            ctx = ssl.create_default_context(cafile=str(self.ca_file))
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            return ctx

    await refused(broker, NoCert(certs.ca_file, tmp_path / "none.crt", tmp_path / "none.key"))


async def test_certificate_from_another_ca_is_refused(
    broker: MosquittoServer, certs: TestCerts, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca"
    pki.create_ca(other)
    pki.issue_client(other, "charger-a", role="charger")  # same name, wrong issuer
    foreign = TlsFiles.for_identity(certs.ca_file, other, "charger-a")
    await refused(broker, foreign)


async def test_expired_certificate_is_refused(broker: MosquittoServer, certs: TestCerts) -> None:
    now = datetime.now(UTC)
    pki.issue_client(
        certs.dir,
        "expired-1",
        role="charger",
        not_before=now - timedelta(days=30),
        not_after=now - timedelta(days=1),
    )
    broker.reload()
    await refused(broker, certs.tls("expired-1"))


def test_plaintext_mqtt_to_the_tls_port_gets_no_connack(broker: MosquittoServer) -> None:
    # MQTT 3.1.1 CONNECT, client id "plain", clean session, keepalive 30.
    connect = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 5]) + b"plain"
    with socket.create_connection((broker.host, broker.port), timeout=5) as sock:
        sock.sendall(connect)
        try:
            answer = sock.recv(16)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert not answer.startswith(b"\x20"), "the broker answered plaintext with a CONNACK"


@pytest.mark.parametrize("retain", [False, True])
async def test_charger_cannot_publish_to_another_chargers_topics(
    broker: MosquittoServer, certs: TestCerts, retain: bool
) -> None:
    inbox = Inbox()
    async with client(
        broker, certs.tls("ingest"), "ingest", subscribe=("chargers/#",), inbox=inbox
    ) as ingest:
        async with client(broker, certs.tls("charger-a"), "charger-a") as a:
            # Mosquitto answers MQTT 5 with PUBACK 0x87 (not authorized) or, for a
            # retained message, drops the connection: the sender knows either way.
            with pytest.raises(MqttError) as err:
                await a.publish("chargers/charger-b/PowerOutput", b"{}", retain=retain)
            if isinstance(err.value, PublishRefusedError):
                assert err.value.reason_code == 0x87
        async with client(broker, certs.tls("charger-a"), "charger-a") as a:
            await a.publish("chargers/charger-a/PowerOutput", b"{}")  # its own: fine
        await inbox.wait_for("chargers/charger-a/PowerOutput")
        assert ingest.is_connected
    assert "chargers/charger-b/PowerOutput" not in inbox.topics()


async def test_charger_cannot_read_other_chargers_even_with_a_wildcard(
    broker: MosquittoServer, certs: TestCerts
) -> None:
    # Mosquitto 2.0 grants a wildcard subscription and applies the read ACL to each
    # message it would deliver; 2.1 refuses it at SUBACK. Either way nothing of
    # another charger may arrive, live or retained.
    async with client(broker, certs.tls("charger-b"), "charger-b") as b:
        await b.publish("chargers/charger-b/PowerOutput", b'{"retained": 1}', retain=True)
    inbox = Inbox()
    async with client(broker, certs.tls("charger-a"), "charger-a", inbox=inbox) as a:
        for topic in ("chargers/#", "chargers/+/PowerOutput", "chargers/charger-b/#", "#"):
            await a.subscribe(topic)
        assert await a.subscribe("chargers/charger-a/#") < 0x80
        async with client(broker, certs.tls("charger-b"), "charger-b") as b:
            await b.publish("chargers/charger-b/PowerOutput", b'{"live": 1}')
        await a.publish("chargers/charger-a/PowerOutput", b"{}", retain=False)
        await inbox.wait_for("chargers/charger-a/PowerOutput")  # delivery works...
    assert not any("charger-b" in t for t in inbox.topics())  # ...but not of b


async def test_ingest_can_read_but_not_publish(broker: MosquittoServer, certs: TestCerts) -> None:
    for topic in ("chargers/charger-a/PowerOutput", "chargers/ingest/PowerOutput", "x"):
        async with client(broker, certs.tls("ingest"), "ingest") as ingest:
            assert await ingest.subscribe("chargers/#") < 0x80
            with pytest.raises(MqttError):
                await ingest.publish(topic, b"{}")


async def test_unlisted_identity_of_our_ca_can_do_nothing(
    broker: MosquittoServer, certs: TestCerts
) -> None:
    # "poller" is a service identity with no MQTT rights at all (pollers publish as
    # chargers or edges). Issued here; it needs no reload: its ACL block is empty.
    if not (certs.dir / "clients" / "poller.crt").exists():
        pki.issue_client(certs.dir, "poller", role="service")
    inbox = Inbox()
    async with client(broker, certs.tls("poller"), "poller", inbox=inbox) as poller:
        await poller.subscribe("chargers/#")
        async with client(broker, certs.tls("charger-a"), "charger-a") as a:
            await a.publish("chargers/charger-a/PowerOutput", b"{}")
        with pytest.raises(MqttError):
            await poller.publish("chargers/poller/PowerOutput", b"{}")
        with pytest.raises(MqttError):
            await poller.publish("chargers/charger-a/set/Stop", b"{}")
    assert inbox.messages == []


async def test_revoked_identity_is_refused_and_others_keep_working(
    own_broker: MosquittoServer, certs: TestCerts
) -> None:
    tls = certs.issue_charger("revoke-me")
    own_broker.reload()
    async with client(own_broker, tls, "revoke-me") as connected:
        await connected.publish("chargers/revoke-me/PowerOutput", b"{}")

        started = time.monotonic()
        pki.revoke(certs.dir, "revoke-me")
        own_broker.reload()  # the documented step: SIGHUP re-reads the CRL and the ACL
        # revoke() moved the files aside; present them anyway, as a thief would.
        crt = next((certs.dir / "clients" / "revoked").glob("revoke-me-*.crt"))
        revoked = TlsFiles(certs.ca_file, crt, crt.with_suffix(".key"))
        effect = await refused_within(own_broker, revoked, since=started)
        print(f"revocation took effect for new connections after {effect:.3f}s")

        # A connection made before the revocation stays open (TLS is not re-checked),
        # but the regenerated ACL leaves it no topic to write.
        with pytest.raises(MqttError):
            await connected.publish("chargers/revoke-me/PowerOutput", b"{}")

    async with client(own_broker, certs.tls("charger-b"), "charger-b") as b:
        await b.publish("chargers/charger-b/PowerOutput", b"{}")


async def test_retained_message_survives_a_broker_restart(
    own_broker: MosquittoServer, certs: TestCerts
) -> None:
    payload = b'{"SamplingTime":"2026-11-24T10:00:00.000000Z","Value":7400}'
    async with client(own_broker, certs.tls("charger-a"), "charger-a") as a:
        await a.publish("chargers/charger-a/PowerOutput", payload, retain=True)
    own_broker.restart()
    inbox = Inbox()
    async with client(
        own_broker, certs.tls("ingest"), "ingest", subscribe=("chargers/charger-a/#",), inbox=inbox
    ):
        msg = await inbox.wait_for("chargers/charger-a/PowerOutput")
    assert msg.payload == payload
    assert msg.retain
