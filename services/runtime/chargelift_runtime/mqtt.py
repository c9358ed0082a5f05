"""A thin async wrapper over gmqtt, the one place chargelift touches an MQTT library.

``async with MqttClient(...) as client`` starts a supervisor that connects over
mutual TLS, reconnects with bounded exponential backoff (a *new* gmqtt client per
connection: gmqtt's own reconnect is fire-and-forget and has a fixed delay, so it is
switched off; the delays are :class:`chargelift_runtime.retry.Backoff`'s, drawn by the
supervisor's own loop, which :mod:`chargelift_runtime.retry` explains), and on exit
disconnects with the will (MQTT 5 reason 0x04), so that consumers see "offline" on a
clean shutdown too.

Publishing: :meth:`MqttClient.publish` resolves when the broker's PUBACK arrives, and
fails with :class:`PublishRefusedError` if the PUBACK carries an error reason code (MQTT 5:
e.g. 0x87 "not authorized"; MQTT 3.1.1 brokers drop such messages silently, which is
why we always speak MQTT 5) or with :class:`ConnectionLostError` if the connection drops
first. A caller that must not lose a message keeps it until publish returns.

Receiving with delayed acknowledgement (``manual_ack=True``): the ``on_message``
coroutine is awaited and the PUBACK is sent only after it returns; it should only
enqueue the message and wait for whatever makes it durable. If it raises, no PUBACK
is sent and the broker redelivers after the next reconnect. gmqtt supports this only
with MQTT 5 (``optimistic_acknowledgement=False``).

gmqtt internals used (pinned in requirements.lock): the PUBACK packet handler of the
package handler (to read the reason code) and ``Client.reconnect`` (overridden).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import gmqtt
from gmqtt.mqtt.constants import MQTTv50
from gmqtt.mqtt.handler import MQTTConnectError

from chargelift_runtime.retry import Backoff

log = logging.getLogger(__name__)

#: MQTT 5 "Disconnect with Will Message".
_DISCONNECT_WITH_WILL = 0x04
#: Topic filters per SUBSCRIBE packet when (re)connecting: 100 charger command filters
#: are about 4 KB, far below the broker's packet limit.
SUBSCRIBE_BATCH = 100


class MqttError(Exception):
    """Base of the errors this module raises."""


class ConnectionLostError(MqttError):
    """The connection dropped (or was never up) before the broker acknowledged."""


class PublishRefusedError(MqttError):
    """The broker answered a publish with an error reason code."""

    def __init__(self, topic: str, reason_code: int) -> None:
        super().__init__(f"broker refused publish to {topic!r}: reason code {reason_code:#04x}")
        self.topic = topic
        self.reason_code = reason_code


#: The TLS 1.2 cipher suites the broker (mosquitto.conf.template's ``ciphers``) and our
#: clients accept: ECDHE with AES-GCM or ChaCha20-Poly1305, no CBC, no SHA-1 MAC.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Paths of the CA bundle and of this client's certificate and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def for_identity(cls, ca_file: Path, certs_dir: Path, identity: str) -> TlsFiles:
        """The files of ``identity`` in the layout of ``chargelift-certs`` (``clients/<id>.*``)."""
        clients = certs_dir / "clients"
        return cls(ca_file, clients / f"{identity}.crt", clients / f"{identity}.key")

    def context(self) -> ssl.SSLContext:
        """An SSL context for a client: TLS >= 1.2, server certificate and name verified."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # TLS 1.2: forward-secret AEAD suites only, like the broker (TLS 1.3's suites,
        # all AEAD, are not affected by set_ciphers).
        ctx.set_ciphers(TLS12_CIPHERS)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


@dataclass(frozen=True, slots=True)
class Will:
    """The last will: published by the broker if the connection dies (retained, QoS 1)."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Message:
    """A message received from the broker."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


MessageHandler = Callable[[Message], Awaitable[None]]


class _AckTracker(gmqtt.storage.PersistentStorage):  # type: ignore[misc]
    """gmqtt's in-flight store, extended to resolve one future per packet id on PUBACK."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[int, tuple[str, asyncio.Future[None]]] = {}
        self.last_mid: int | None = None
        self.reason_codes: dict[int, int] = {}

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        self.last_mid = mid

    def take_last_mid(self) -> int | None:
        mid, self.last_mid = self.last_mid, None
        return mid

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        entry = self.pending.pop(mid, None)
        reason = self.reason_codes.pop(mid, 0)
        if entry is None:
            return
        topic, fut = entry
        if fut.done():
            return
        if reason >= 0x80:
            fut.set_exception(PublishRefusedError(topic, reason))
        else:
            fut.set_result(None)

    def fail_all(self, exc: BaseException) -> None:
        for _, fut in self.pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self.pending.clear()
        self.reason_codes.clear()


class _Client(gmqtt.Client):  # type: ignore[misc]
    """gmqtt's client without its own reconnect.

    gmqtt reconnects from fire-and-forget tasks with a fixed delay, and even after a
    disconnect() it may come back from its sleep and connect again. Reconnecting is
    the supervisor's job (fresh client, bounded backoff), so this is a no-op.
    """

    async def reconnect(self, delay: bool = False) -> None:
        return


class _CoalescingWriter:
    """A transport whose writes of one event-loop iteration leave as one write.

    gmqtt writes every packet on its own: the 5,000 PUBACKs that one committed batch
    releases, or a burst of PUBLISHes, become 5,000 TLS records and ``send()`` calls.
    Collected until the loop's next turn (``call_soon``) they leave as one (measured:
    +13 % ingest throughput, docs/benchmarks.md). Order is kept; ``close()`` flushes
    first, so a DISCONNECT written just before it is not lost.
    """

    __slots__ = ("_buffer", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._buffer: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._buffer:
            data = b"".join(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
            self._buffer.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _coalesce_writes(client: gmqtt.Client) -> None:
    """Route the writes of ``client``'s (connected) connection through one writer."""
    connection = client._connection
    transport = connection._transport
    if isinstance(transport, _CoalescingWriter):
        return
    writer = _CoalescingWriter(transport)
    connection._transport = writer
    connection._protocol._transport = writer


@dataclass
class _Connection:
    client: gmqtt.Client
    tracker: _AckTracker
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    sub_waiters: dict[int, asyncio.Future[tuple[int, ...]]] = field(default_factory=dict)


class MqttClient:
    """One MQTT 5 connection, kept up by a supervisor task for the life of the context."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        tls: TlsFiles | None,
        will: Will | None = None,
        persistent_session: bool = False,
        session_expiry: int = 7 * 24 * 3600,
        subscriptions: Sequence[str] = (),
        on_message: MessageHandler | None = None,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        retain_handling: int = 0,
        keepalive: int = 30,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        if manual_ack and on_message is None:
            raise ValueError("manual_ack needs an on_message handler")
        self.host = host
        self.port = port
        self.client_id = client_id
        self._tls = tls
        self._will = will
        self._persistent = persistent_session
        self._session_expiry = session_expiry if persistent_session else 0
        self._subscriptions = tuple(subscriptions)
        self._on_message = on_message
        self._manual_ack = manual_ack
        self._receive_maximum = receive_maximum
        self._retain_handling = retain_handling
        self._keepalive = keepalive
        self._backoff = backoff or Backoff()
        self._connect_timeout = connect_timeout
        self._conn: _Connection | None = None
        self._connected = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self.session_present = False
        #: The broker's receive maximum for this client (MQTT 5 CONNACK; 65,535 when it
        #: sends none): QoS 1 publishes this connection may have unacknowledged at once.
        self.send_quota = 65535
        self.connections = 0
        self.last_error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._supervisor = asyncio.create_task(self._supervise(), name=f"mqtt:{self.client_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        conn, self._conn = self._conn, None
        self._connected.clear()
        if conn is not None:
            conn.tracker.fail_all(ConnectionLostError("client closed"))
            reason = _DISCONNECT_WITH_WILL if self._will is not None else 0
            await self._close(conn, reason)

    @property
    def is_connected(self) -> bool:
        """True while a connection is up (CONNACK received, not lost)."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Wait until connected (wrap in ``asyncio.timeout`` to bound the wait)."""
        await self._connected.wait()

    async def wait_disconnected(self) -> None:
        """Wait until the current connection is lost (returns at once if down)."""
        conn = self._conn
        if conn is not None and self._connected.is_set():
            await conn.lost.wait()

    # -- publishing ------------------------------------------------------------------

    def publish_nowait(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Send now; the future resolves on PUBACK (QoS 1) or at once (QoS 0).

        Raises :class:`ConnectionLostError` at once when not connected.
        """
        conn = self._conn
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if conn is None or not self._connected.is_set():
            raise ConnectionLostError("not connected")
        tracker = conn.tracker
        tracker.last_mid = None
        conn.client.publish(topic, payload, qos=qos, retain=retain)
        mid = tracker.take_last_mid()  # set by gmqtt's store call inside publish()
        if qos == 0:
            fut.set_result(None)
        elif mid is None:  # gmqtt did not store it: the link is going down
            fut.set_exception(ConnectionLostError("publish was not sent"))
        else:
            tracker.pending[mid] = (topic, fut)
        return fut

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Send and wait for the broker's acknowledgement (see module docstring)."""
        await self.publish_nowait(topic, payload, qos=qos, retain=retain)

    async def subscribe(self, topic: str, *, qos: int = 1, retain_handling: int = 0) -> int:
        """Subscribe on the current connection; return the granted QoS (>= 0x80: refused)."""
        conn = self._conn
        if conn is None or not self._connected.is_set():
            raise ConnectionLostError("not connected")
        return await self._subscribe(conn, topic, qos, retain_handling, self._connect_timeout)

    @staticmethod
    async def _subscribe(
        conn: _Connection, topic: str, qos: int, retain_handling: int, wait_s: float = 10.0
    ) -> int:
        granted = await MqttClient._subscribe_many(conn, (topic,), qos, retain_handling, wait_s)
        return granted[0]

    @staticmethod
    async def _subscribe_many(
        conn: _Connection,
        topics: Sequence[str],
        qos: int,
        retain_handling: int,
        wait_s: float = 10.0,
    ) -> tuple[int, ...]:
        """One SUBSCRIBE packet for ``topics``; the granted QoS of each, in order."""
        mid = conn.client.subscribe(
            [
                gmqtt.Subscription(t, qos=qos, retain_handling_options=retain_handling)
                for t in topics
            ]
        )
        fut: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
        conn.sub_waiters[mid] = fut
        lost: asyncio.Future[Any] = asyncio.ensure_future(conn.lost.wait())
        waiters: list[asyncio.Future[Any]] = [fut, lost]
        try:
            # Bounded: a broker that keeps the connection but never answers (frozen,
            # overloaded) must not hold the subscription, and so the client, forever.
            await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if not fut.done():
            conn.sub_waiters.pop(mid, None)
            if not conn.lost.is_set():
                conn.lost.set()  # the supervisor closes this connection and reconnects
                raise ConnectionLostError(f"no SUBACK within {wait_s:.0f} s")
            raise ConnectionLostError("connection lost before SUBACK")
        granted = fut.result()
        if len(granted) != len(topics):
            conn.lost.set()
            raise ConnectionLostError(f"SUBACK for {len(granted)} of {len(topics)} filters")
        return granted

    # -- the supervisor --------------------------------------------------------------

    async def _supervise(self) -> None:
        delays = self._backoff.delays()
        while True:
            try:
                conn = await self._connect()
            except (OSError, TimeoutError, MQTTConnectError, ConnectionLostError) as exc:
                self.last_error = exc
                delay = next(delays)
                log.warning(
                    "mqtt %s: cannot connect to %s:%d (%s); retrying in %.1fs",
                    self.client_id,
                    self.host,
                    self.port,
                    _describe(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            delays = self._backoff.delays()
            self.connections += 1
            self._conn = conn
            try:
                # Subscribed before "connected": whoever waits for the connection may rely
                # on the subscriptions being in place.
                # Batched: an edge subscribes every charger's commands, one round
                # trip per SUBSCRIBE_BATCH filters instead of one per charger.
                subs = self._subscriptions
                for start in range(0, len(subs), SUBSCRIBE_BATCH):
                    batch = subs[start : start + SUBSCRIBE_BATCH]
                    granted_all = await self._subscribe_many(
                        conn, batch, 1, self._retain_handling, self._connect_timeout
                    )
                    for topic, granted in zip(batch, granted_all, strict=True):
                        if granted >= 0x80:
                            log.error(
                                "mqtt %s: subscription to %s refused (%#04x)",
                                self.client_id,
                                topic,
                                granted,
                            )
            except ConnectionLostError:
                pass  # dropped while subscribing: conn.lost is set, handled just below
            if not conn.lost.is_set():
                self._connected.set()
                log.info(
                    "mqtt %s: connected to %s:%d (session present: %s)",
                    self.client_id,
                    self.host,
                    self.port,
                    self.session_present,
                )
            await conn.lost.wait()
            self._connected.clear()
            conn.tracker.fail_all(ConnectionLostError("connection lost"))
            log.warning("mqtt %s: connection to %s:%d lost", self.client_id, self.host, self.port)
            self._conn = None
            await self._close(conn, 0)
            await asyncio.sleep(next(delays))

    async def _connect(self) -> _Connection:
        props: dict[str, Any] = {"session_expiry_interval": self._session_expiry}
        if self._receive_maximum is not None:
            props["receive_maximum"] = self._receive_maximum
        tracker = _AckTracker()
        will = None
        if self._will is not None:
            will = gmqtt.Message(
                self._will.topic, self._will.payload, qos=self._will.qos, retain=self._will.retain
            )
        client = _Client(
            self.client_id,
            clean_session=not self._persistent,
            optimistic_acknowledgement=not self._manual_ack,
            will_message=will,
            persistent_storage=tracker,
            logger=logging.getLogger("gmqtt"),
            **props,
        )
        conn = _Connection(client, tracker)
        self._install_callbacks(conn)
        ctx = self._tls.context() if self._tls is not None else False
        connecting = asyncio.ensure_future(
            client.connect(
                self.host, self.port, ssl=ctx, keepalive=self._keepalive, version=MQTTv50
            )
        )
        lost = asyncio.ensure_future(conn.lost.wait())
        try:
            # With TLS 1.3 a refused client certificate shows only after the handshake:
            # the broker closes the connection instead of sending a CONNACK.
            waiters: list[asyncio.Future[Any]] = [connecting, lost]
            async with asyncio.timeout(self._connect_timeout):
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if connecting.done():
                connecting.result()  # raises the connect error, if any
        except BaseException:
            await self._abort(connecting, conn)
            raise
        finally:
            lost.cancel()
        if not connecting.done():
            await self._abort(connecting, conn)
            raise ConnectionLostError(
                "broker closed the connection before CONNACK (certificate refused?)"
            )
        if conn.lost.is_set():
            await self._close(conn, 0)
            raise ConnectionLostError("connection closed right after CONNACK")
        _coalesce_writes(client)
        return conn

    def _install_callbacks(self, conn: _Connection) -> None:
        client = conn.client
        handler = client._package_handler
        original_puback = handler._handle_puback_packet

        def on_puback(cmd: int, packet: bytes) -> None:
            # gmqtt ignores the MQTT 5 reason code of a PUBACK; a refused publish must
            # not count as delivered, so note it before gmqtt frees the packet id.
            if len(packet) >= 3:
                (mid,) = struct.unpack("!H", packet[:2])
                conn.tracker.reason_codes[mid] = packet[2]
            original_puback(cmd, packet)

        handler._handle_puback_packet = on_puback

        def on_connack(client_: Any, session_present: int, result: int, _props: Any) -> None:
            self.session_present = bool(session_present)
            # gmqtt passes the CONNACK's properties merged with (and overridden by) our
            # own CONNECT properties: our receive maximum would hide the broker's. Read
            # the broker's own, which gmqtt keeps as lists (absent: 65,535, MQTT 5
            # 3.2.2.3.3).
            connack = getattr(client_._package_handler, "_connack_properties", None)
            quota = connack.get("receive_maximum") if isinstance(connack, dict) else None
            if isinstance(quota, list):
                quota = quota[0] if quota else None
            self.send_quota = int(quota) if isinstance(quota, int) and quota > 0 else 65535

        def on_disconnect(_client: Any, _packet: Any, exc: Any = None) -> None:
            conn.lost.set()

        def on_subscribe(_client: Any, mid: int, granted: tuple[int, ...], _props: Any) -> None:
            fut = conn.sub_waiters.pop(mid, None)
            if fut is not None and not fut.done():
                fut.set_result(tuple(granted))

        client.on_connect = on_connack
        client.on_disconnect = on_disconnect
        client.on_subscribe = on_subscribe
        if self._on_message is not None:
            client.on_message = self._make_message_callback()

    def _make_message_callback(self) -> Callable[..., Awaitable[int]]:
        handler = self._on_message
        assert handler is not None

        async def on_message(
            _client: Any, topic: str, payload: bytes, qos: int, properties: dict[str, Any]
        ) -> int:
            await handler(Message(topic, payload, qos, bool(properties.get("retain", 0))))
            return 0  # gmqtt sends the PUBACK (success) now, after the handler is done

        return on_message

    @classmethod
    async def _abort(cls, connecting: asyncio.Future[Any], conn: _Connection) -> None:
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await connecting
        await cls._close(conn, 0)

    @staticmethod
    async def _close(conn: _Connection, reason_code: int) -> None:
        conn.lost.set()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await conn.client.disconnect(reason_code=reason_code)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."
