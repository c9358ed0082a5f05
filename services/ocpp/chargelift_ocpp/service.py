"""The OCPP gateway service: the WebSocket listeners, the transaction store, ``/metrics``.

:class:`OcppService` owns the lifecycle (:mod:`chargelift_runtime.service`): ``run``
opens the transaction store, the uplink (:mod:`.uplink`: the outbox and the MQTT side,
from the edge library), the ``/metrics`` + ``/healthz`` endpoint and the listeners; when
``stop`` is set it closes the listeners (every connection: the charge points reconnect
on their own and resend what was not answered), then the uplink drains its outbox for
the grace period, then the rest closes in reverse order. Tests may give a
:class:`~.sink.ReadingSink` of their own instead of the uplink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from websockets.asyncio.server import ServerConnection

from chargelift_contract.envelope import EnvelopeError, parse_time
from chargelift_edge.announce import EdgeCertificateError, listed_chargers
from chargelift_ocpp import __version__
from chargelift_ocpp.auth import Authenticator, PasswordChecks
from chargelift_ocpp.chargepoint import OcppChargePoint
from chargelift_ocpp.config import Settings
from chargelift_ocpp.mapping import ChargePointMapper, MappingError
from chargelift_ocpp.metrics import MapperCounters, OcppMetrics, PasswordCheckCounters
from chargelift_ocpp.registry import ChargePointEntry, Registry
from chargelift_ocpp.server import OcppServer
from chargelift_ocpp.sink import Mapper, MapperFactory, ReadingSink
from chargelift_ocpp.transactions import TransactionStore
from chargelift_ocpp.uplink import Uplink
from chargelift_runtime.http import HttpEndpoint, Response
from chargelift_runtime.service import health
from chargelift_runtime.settings import MqttSettings

log = logging.getLogger("chargelift_ocpp")


class StartupError(Exception):
    """The gateway cannot start; the message says why (never a secret)."""


class OcppService:
    """``await OcppService(settings, mqtt).run(stop)``. Nothing starts before :meth:`run`;
    ``started`` is set once the listeners are up (``server`` has the ports).

    ``mqtt``: the broker block, with ``MQTT_IDENTITY`` the gateway's edge identity; the
    readings go through the :class:`~.uplink.Uplink`. ``sink`` instead: the readings go
    there (tests of the connection side, without a broker).

    ``mapper_factory`` and ``mapping_error`` default to ``mapping.ChargePointMapper``
    and ``mapping.MappingError``.
    """

    def __init__(
        self,
        settings: Settings,
        mqtt: MqttSettings | None = None,
        *,
        sink: ReadingSink | None = None,
        registry: CollectorRegistry | None = None,
        mapper_factory: MapperFactory | None = None,
        mapping_error: type[Exception] | None = None,
    ) -> None:
        if (mqtt is None) == (sink is None):
            raise ValueError("give the broker settings or a sink, not both")
        self.settings = settings
        self.mqtt = mqtt
        self.sink = sink
        self.uplink: Uplink | None = None
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = OcppMetrics(self.registry)
        self.registry.register(MapperCounters(lambda: list(self.mappers.values())))
        #: The handshakes' password checks (threads start at the first check).
        self.checks = PasswordChecks(settings.password_check_threads, settings.password_check_queue)
        self.registry.register(PasswordCheckCounters(self.checks))
        self._mapper_factory = mapper_factory
        self._mapping_error = mapping_error
        #: One mapper per charge point, kept across its reconnections.
        self.mappers: dict[str, Mapper] = {}
        self.server: OcppServer | None = None
        self.transactions: TransactionStore | None = None
        self.endpoint: HttpEndpoint | None = None
        self.started = asyncio.Event()

    def healthz(self) -> Response:
        connected = 0 if self.server is None else len(self.server.live)
        return health(None, __version__, connected_charge_points=connected)

    def prometheus(self) -> Response:
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)

    async def _session(self, entry: ChargePointEntry, connection: ServerConnection) -> None:
        assert self.transactions is not None
        assert self._mapper_factory is not None
        assert self._mapping_error is not None
        mapper = self.mappers.get(entry.id)
        if mapper is None:
            mapper = self.mappers[entry.id] = self._mapper_factory(entry.id)
            self._restore(entry.id, mapper)
        assert self.sink is not None
        s = self.settings
        cp = OcppChargePoint(
            entry,
            connection,
            mapper=mapper,
            mapping_error=self._mapping_error,
            sink=self.sink,
            transactions=self.transactions,
            metrics=self.metrics,
            heartbeat_interval=s.heartbeat_interval,
            id_tags=s.accepted_id_tags,
            message_rate=s.message_rate,
            message_burst=s.message_burst,
            response_timeout=s.response_timeout,
        )
        control = None if self.uplink is None else self.uplink.control
        if self.uplink is not None:
            self.uplink.connected(entry.id)
        if control is not None:
            control.attach(entry.id, cp)
        try:
            await cp.start()
        finally:
            if control is not None:
                control.detach(entry.id, cp)
            if self.uplink is not None:
                self.uplink.disconnected(entry.id)

    def _restore(self, charge_point: str, mapper: Mapper) -> None:
        """Tell a fresh mapper the transactions still running (after a restart), so
        their meter values and stops give the session's energy."""
        assert self.transactions is not None
        for t in self.transactions.running(charge_point):
            try:
                mapper.restore_transaction(
                    t.transaction_id,
                    int(t.connector),
                    float(t.meter_start),
                    t.id_tag or None,
                    parse_time(t.started_at),
                )
            except (ValueError, EnvelopeError) as exc:  # what the charger sent: hostile
                log.warning(
                    "%s: transaction %d not restored: %s", charge_point, t.transaction_id, exc
                )

    def _edge_chargers(self, mqtt: MqttSettings) -> tuple[str, frozenset[str]]:
        """The gateway's edge identity and the chargers its certificate lists."""
        if mqtt.identity is None:
            raise StartupError(
                "MQTT_IDENTITY is not set: the gateway publishes as an edge identity "
                "(chargelift-certs client <name> --role edge --charger <id> ...)"
            )
        tls = mqtt.tls(mqtt.identity)
        for path in (tls.cert_file, tls.key_file, mqtt.ca_file):
            if not path.is_file():
                raise StartupError(f"edge {mqtt.identity}: no file {path}")
        try:
            chargers = listed_chargers(tls.cert_file)
        except EdgeCertificateError as exc:
            raise StartupError(f"edge {mqtt.identity}: {exc}") from None
        if not chargers:
            raise StartupError(
                f"edge {mqtt.identity}: its certificate lists no charger; re-issue it with "
                "--charger <id> for every connector the gateway serves"
            )
        return mqtt.identity, chargers

    async def run(self, stop: asyncio.Event) -> None:
        """Start everything, run until ``stop`` is set, close in reverse order."""
        s = self.settings
        if self._mapper_factory is None:
            self._mapper_factory = ChargePointMapper
        if self._mapping_error is None:
            self._mapping_error = MappingError
        registry = Registry(s.charge_points)
        with TransactionStore(s.transactions_file) as transactions:
            self.transactions = transactions
            async with contextlib.AsyncExitStack() as stack:
                stack.callback(self.checks.close)
                if self.mqtt is not None:
                    edge_id, chargers = self._edge_chargers(self.mqtt)
                    self.uplink = await stack.enter_async_context(
                        Uplink(
                            s,
                            self.mqtt,
                            edge_id,
                            chargers,
                            self.metrics,
                            transactions=transactions,
                        )
                    )
                    self.sink = self.uplink
                self.server = OcppServer(
                    s,
                    Authenticator(registry, s.path, checks=self.checks),
                    self.metrics,
                    self._session,
                )
                self.endpoint = endpoint = HttpEndpoint(
                    s.metrics_host,
                    s.metrics_port,
                    {"/metrics": self.prometheus, "/healthz": self.healthz},
                )
                listeners_closed = asyncio.Event()
                async with asyncio.TaskGroup() as tg:
                    if self.uplink is not None:
                        tg.create_task(self.uplink.run(stop, listeners_closed), name="uplink")
                    try:
                        async with endpoint, self.server:
                            log.info(
                                "ocpp %s up: %d charge points registered; metrics on %s:%d",
                                __version__,
                                len(registry),
                                s.metrics_host,
                                endpoint.port,
                            )
                            self.started.set()
                            await stop.wait()
                            log.info("stopping: closing %d connections", len(self.server.live))
                    finally:
                        listeners_closed.set()
        log.info("ocpp stopped")
