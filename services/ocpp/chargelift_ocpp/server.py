"""The WebSocket listeners: TLS (profiles 2 and 3 on one port) and, when enabled, plain.

Every refusal happens in the ``process_request`` hook, before the upgrade: the client
gets 400/401/403/404/503 and never a WebSocket (:mod:`~.auth` decides). A client
certificate is requested but optional on the TLS port (``CERT_OPTIONAL``): a profile-3
charge point presents one, a profile-2 one sends HTTP Basic; a certificate that the
CA (``OCPP_CA_FILE``) did not issue, or that the CRL (``OCPP_CRL_FILE``) revokes, fails
the TLS handshake itself.

A charge point that connects again while connected replaces its old connection (the
old one is closed), like other central systems do: a charger that lost its link often
reconnects before the old TCP connection has timed out.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import logging
import random
import ssl
import weakref
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from types import TracebackType
from typing import Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from chargelift_ocpp.auth import ANSWER, Accepted, Authenticator, Refused
from chargelift_ocpp.config import SUBPROTOCOL, Settings
from chargelift_ocpp.metrics import OcppMetrics
from chargelift_ocpp.registry import ChargePointEntry

log = logging.getLogger(__name__)
#: The websockets library's log: never below INFO, its DEBUG lines show request headers
#: (Authorization: the Basic password).
_ws_log = logging.getLogger("chargelift_ocpp.websockets")

#: Runs one accepted connection until it closes.
Session = Callable[[ChargePointEntry, ServerConnection], Awaitable[None]]

_REPLACE_TIMEOUT = 5.0
#: The read buffer of each TLS connection (asyncio's default: 256 KiB, zero-filled at once).
TLS_READ_BUFFER = 32 * 1024


def bound_tls_read_buffer() -> None:
    """Give every TLS connection of this process a 32-KiB read buffer instead of 256 KiB.

    asyncio's ``SSLProtocol`` allocates ``max_size`` (256 KiB) per connection and fills
    it with zeros: 250 MB of RSS at 1,000 charge points (docs/benchmarks.md, "OCPP").
    It is the size of one read from the socket and from the TLS layer, so a smaller one
    only means more, smaller reads; a TLS record is at most 16 KiB. Process-wide: the
    gateway's one MQTT connection reads in 32-KiB pieces too.
    """
    protocol = asyncio.sslproto.SSLProtocol
    if getattr(protocol, "max_size", 0) > TLS_READ_BUFFER:
        protocol.max_size = TLS_READ_BUFFER


def server_tls_context(settings: Settings) -> ssl.SSLContext:
    """TLS 1.2+, the gateway's certificate, client certificates optional (profile 3)."""
    assert settings.tls_cert is not None
    assert settings.tls_key is not None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.ca_file is not None:
        ctx.load_verify_locations(settings.ca_file)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        if settings.crl_file is not None:
            ctx.load_verify_locations(settings.crl_file)
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


def peer_common_name(connection: ServerConnection) -> str | None:
    """The CN of the client certificate the TLS layer verified; None without one."""
    ssl_object = connection.transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class OcppServer:
    """``async with OcppServer(settings, authenticator, metrics, session)``: listens
    until the block ends; ``tls_port`` and ``plain_port`` are the bound ports."""

    def __init__(
        self,
        settings: Settings,
        authenticator: Authenticator,
        metrics: OcppMetrics,
        session: Session,
    ) -> None:
        self.settings = settings
        self.auth = authenticator
        self.metrics = metrics
        self.session = session
        self.tls_port: int | None = None
        self.plain_port: int | None = None
        self._servers: list[Server] = []
        #: Accepted at the handshake, not yet running (dropped with the connection).
        self._accepted: weakref.WeakKeyDictionary[ServerConnection, Accepted] = (
            weakref.WeakKeyDictionary()
        )
        #: charge point id -> its live connection.
        self.live: dict[str, ServerConnection] = {}
        metrics.connected.set_function(lambda: len(self.live))
        _ws_log.setLevel(max(logging.INFO, logging.getLogger().getEffectiveLevel()))

    async def __aenter__(self) -> Self:
        s = self.settings
        try:
            if s.tls:
                bound_tls_read_buffer()
                server = await self._serve(s.host, s.port, server_tls_context(s))
                self._servers.append(server)
                self.tls_port = _port(server)
                log.info("OCPP 1.6J on wss://%s:%d%s/<id>", s.host, self.tls_port, s.path)
            if s.allow_plain:
                server = await self._serve(s.plain_host, s.plain_port, None)
                self._servers.append(server)
                self.plain_port = _port(server)
                log.warning(
                    "OCPP 1.6J without TLS (profile 1) on ws://%s:%d%s/<id>",
                    s.plain_host,
                    self.plain_port,
                    s.path,
                )
        except BaseException:
            await self._close()
            raise
        return self

    async def _serve(self, host: str, port: int, tls: ssl.SSLContext | None) -> Server:
        return await serve(
            self._handle,
            host,
            port,
            ssl=tls,
            process_request=self._process_request,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            max_size=self.settings.max_message_bytes,
            max_queue=4,
            compression=None,  # no inflate bombs, less CPU; chargers do not need it
            open_timeout=10,
            close_timeout=_REPLACE_TIMEOUT,
            ping_interval=60,
            ping_timeout=60,
            server_header=None,
            logger=_ws_log,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        for server in reversed(self._servers):
            server.close()
        for server in reversed(self._servers):
            try:
                async with asyncio.timeout(_REPLACE_TIMEOUT + 2):
                    await server.wait_closed()
            except TimeoutError:
                log.warning("some OCPP connections did not close in time")
        self._servers.clear()

    # -- the handshake ----------------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        if len(self.live) + len(self._accepted) >= self.settings.max_connections:
            decision: Accepted | Refused = Refused("too_many_connections")
        else:
            decision = await self.auth.check(
                request.path,
                request.headers,
                tls=connection.transport.get_extra_info("ssl_object") is not None,
                peer_cn=peer_common_name(connection),
                alive=lambda: client_alive(connection),
            )
        self.metrics.registry_reload_failures.set(self.auth.registry.failed_reloads)
        if isinstance(decision, Refused):
            self.metrics.refused.labels(decision.reason).inc()
            log.warning(
                "refused charge point %r from %s: %s",
                decision.shown_id,
                _remote(connection),
                decision.reason,
            )
            response = connection.respond(decision.status, ANSWER[decision.status])
            if decision.status == HTTPStatus.UNAUTHORIZED:
                response.headers["WWW-Authenticate"] = 'Basic realm="chargelift-ocpp"'
            elif decision.status == HTTPStatus.SERVICE_UNAVAILABLE:
                response.headers["Retry-After"] = str(self.retry_after())
            return response
        self._accepted[connection] = decision
        return None

    def retry_after(self) -> int:
        """Seconds a refused charge point is told to wait: ``OCPP_BUSY_RETRY_AFTER`` to
        twice that, at random, so that a refused crowd does not come back at once."""
        base = self.settings.busy_retry_after
        return random.randint(base, 2 * base)  # noqa: S311 - spreading load, not a secret

    # -- a connection -----------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        decision = self._accepted.pop(connection, None)
        if decision is None:  # pragma: no cover - process_request accepted it
            await connection.close(code=1011)
            return
        entry = decision.charge_point
        old = self.live.get(entry.id)
        self.live[entry.id] = connection
        if old is not None:
            self.metrics.replaced.inc()
            log.info("charge point %s connected again: the old connection is closed", entry.id)
            await old.close(code=1001, reason="replaced by a new connection")
        self.metrics.accepted.labels(str(entry.profile)).inc()
        log.info(
            "charge point %s connected from %s (profile %d, %s)",
            entry.id,
            _remote(connection),
            entry.profile,
            decision.method,
        )
        try:
            await self.session(entry, connection)
        except ConnectionClosed:
            pass
        finally:
            if self.live.get(entry.id) is connection:
                del self.live[entry.id]
            log.info("charge point %s disconnected", entry.id)


def client_alive(connection: ServerConnection) -> bool:
    """False once the client has closed or lost its TCP connection (during the handshake
    the transport keeps reading, so websockets sees the end of the stream). Only reads
    state: a password check's thread calls it (:class:`~.auth.PasswordChecks`)."""
    return not (connection.connection_lost_waiter.done() or connection.transport.is_closing())


def _port(server: Server) -> int:
    return int(next(iter(server.sockets)).getsockname()[1])


def _remote(connection: ServerConnection) -> str:
    peer = connection.transport.get_extra_info("peername")
    return str(peer[0]) if peer else "?"
