"""The OCPP gateway service: the WebSocket listeners, the transaction store, ``/metrics``.

:class:`OcppService` owns the lifecycle (:mod:`chargelift_runtime.service`): ``run``
opens the transaction store, the ``/metrics`` + ``/healthz`` endpoint and the listeners;
when ``stop`` is set it closes the listeners (every connection: the charge points
reconnect on their own and resend what was not answered), then the rest in reverse
order. Readings go to the :class:`~.sink.ReadingSink` it is given.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from websockets.asyncio.server import ServerConnection

from chargelift_ocpp import __version__
from chargelift_ocpp.auth import Authenticator
from chargelift_ocpp.chargepoint import OcppChargePoint
from chargelift_ocpp.config import Settings
from chargelift_ocpp.metrics import OcppMetrics
from chargelift_ocpp.registry import ChargePointEntry, Registry
from chargelift_ocpp.server import OcppServer
from chargelift_ocpp.sink import Mapper, MapperFactory, ReadingSink, default_mapper_factory
from chargelift_ocpp.transactions import TransactionStore
from chargelift_runtime.http import HttpEndpoint, Response
from chargelift_runtime.service import health

log = logging.getLogger("chargelift_ocpp")


class OcppService:
    """``await OcppService(settings, sink=...).run(stop)``. Nothing starts before
    :meth:`run`; ``started`` is set once the listeners are up (``server`` has the ports).

    ``mapper_factory`` and ``mapping_error`` default to ``mapping.ChargePointMapper``
    and ``mapping.MappingError``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        sink: ReadingSink,
        registry: CollectorRegistry | None = None,
        mapper_factory: MapperFactory | None = None,
        mapping_error: type[Exception] | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = OcppMetrics(self.registry)
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
        await cp.start()

    async def run(self, stop: asyncio.Event) -> None:
        """Start everything, run until ``stop`` is set, close in reverse order."""
        s = self.settings
        if self._mapper_factory is None or self._mapping_error is None:
            factory, error = default_mapper_factory()
            self._mapper_factory = self._mapper_factory or factory
            self._mapping_error = self._mapping_error or error
        registry = Registry(s.charge_points)
        with TransactionStore(s.transactions_file) as transactions:
            self.transactions = transactions
            self.server = OcppServer(
                s, Authenticator(registry, s.path), self.metrics, self._session
            )
            self.endpoint = endpoint = HttpEndpoint(
                s.metrics_host,
                s.metrics_port,
                {"/metrics": self.prometheus, "/healthz": self.healthz},
            )
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
        log.info("ocpp stopped")
