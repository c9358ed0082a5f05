"""The poller service: :class:`PollerService` owns the lifecycle (start, run, drain, stop).

Lifecycle (one ``asyncio.TaskGroup``, nested ``async with``)::

    outbox (SQLite) > per charger: httpx client (DeviceTransport) and MqttClient
    (will: availability offline) > HTTP endpoint
    > TaskGroup[coordinators, publishers, housekeeper]

With the edge identity (``[mqtt] identity = "edge"`` in the chargers file) there is
one MqttClient for all chargers (will: ``edges/{edge}/availability`` offline), its
publishers share one in-flight window, and an :class:`~.edge.EdgeAnnouncer` publishes
the edge's charger list and ``online`` on every connection.

On ``stop`` (SIGTERM): polling stops, publishers keep draining the outbox for up to
``POLLER_SHUTDOWN_GRACE`` seconds, then everything closes in reverse order (each
MQTT connection disconnects with its will, so the chargers show ``offline``; with the
edge identity each charger's ``offline`` is queued in the outbox first and drained
with the rest, then the edge's will says the edge is ``offline``).
Whatever is still unsent stays in the outbox for the next start.

Commands: whichever connection publishes a charger's fields also subscribes its
command topic (``chargers/{id}/set/+``, QoS 1, a persistent session so that the broker
keeps commands for a poller that reconnects); each message is handed to the charger's
:class:`~.commands.Commander` and acknowledged once it is stored. One commander task
per charger applies them (docs/poller.md, "Control").
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import functools
import gc
import logging
import ssl
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from chargelift_contract import availability_topic, edge_availability_topic
from chargelift_contract.commands import MAX_EXPIRY, command_filter, parse_command_topic
from chargelift_contract.errors import ContractError
from chargelift_contract.topics import OFFLINE
from chargelift_edge.announce import EdgeAnnouncer
from chargelift_edge.clock import Clock, SystemClock
from chargelift_edge.housekeeping import Housekeeper, drain
from chargelift_edge.outbox import Entry, Outbox
from chargelift_edge.publisher import Publisher, Window, memory_share
from chargelift_poller import __version__
from chargelift_poller.checks import StartupError
from chargelift_poller.commands import Commander, Device
from chargelift_poller.config import ChargerConfig, MqttSettings, PollerConfig, Settings
from chargelift_poller.coordinator import Coordinator, Timing
from chargelift_poller.drivers import REGISTRY, Closeable
from chargelift_poller.errors import ChargerError
from chargelift_poller.metrics import PollerMetrics
from chargelift_poller.models import DriverSpec
from chargelift_poller.transport import DeviceTransport
from chargelift_runtime.certmetrics import CertificateExpiryCollector
from chargelift_runtime.http import HttpEndpoint, Response
from chargelift_runtime.mqtt import Message, MessageHandler, MqttClient, Will
from chargelift_runtime.retry import Backoff
from chargelift_runtime.service import health
from chargelift_runtime.watchdog import Liveness

log = logging.getLogger("chargelift_poller")

#: asyncio's SSL transport allocates (and zero-fills) a 256 KiB receive buffer per
#: connection: with one MQTT connection per charger that is 256 MB of RSS for 1,000
#: chargers (measured). The poller receives only CONNACKs and PUBACKs; a smaller buffer
#: only means more reads for a large burst, never lost data.
SSL_READ_BUFFER = 8 * 1024


def tune_runtime() -> None:
    """Process-wide adjustment for many TLS connections (measured; see docs/poller.md)."""
    asyncio.sslproto.SSLProtocol.max_size = SSL_READ_BUFFER


#: Default pace of the first polls: this many chargers start per second.
START_RATE = 100.0


def first_poll_delay(index: int, count: int, interval: float, spread: float | None) -> float:
    """When the ``index``-th of ``count`` chargers polls first, in seconds after start.

    The first polls are spread evenly over ``spread`` seconds (default: ``count`` /
    START_RATE), never over less than the poll interval. A first poll publishes every
    field (a full snapshot, ~12 rows), and so does each periodic snapshot after it,
    which keeps the offset: 1,000 chargers starting within one second put ~12,000
    rows through the outbox and the MQTT window at once, which measured +90 MB peak
    RSS and a p99 of seconds (docs/benchmarks.md); spread over 10 s they do not.
    """
    window = max(interval, count / START_RATE if spread is None else spread)
    return window * index / max(1, count)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class _Connected(Protocol):
    @property
    def is_connected(self) -> bool: ...


class PollerService:
    """The poller: built from its settings and chargers file, driven by :meth:`run`.

    Nothing starts in ``__init__``; the attributes below ``clock`` are filled by
    :meth:`run` and are what the HTTP endpoint (and the tests) report on.
    """

    def __init__(
        self,
        settings: Settings,
        mqtt: MqttSettings,
        config: PollerConfig,
        *,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.mqtt = mqtt
        self.config = config
        self.chargers = config.chargers
        self.edge_id = config.mqtt.edge_id
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = PollerMetrics(self.registry)
        identities = (
            [self.edge_id]
            if self.edge_id is not None
            else sorted({c.identity for c in self.chargers})
        )
        cert_files = [mqtt.ca_file] + [mqtt.tls(i).cert_file for i in identities]
        self.registry.register(CertificateExpiryCollector(lambda: cert_files))
        self.clock = clock or SystemClock()
        self.coordinators: list[Coordinator] = []
        self.commanders: dict[str, Commander] = {}
        self._commanders_ready = asyncio.Event()
        self.clients: list[MqttClient] = []
        self.client_of: dict[str, _Connected] = {}  # charger id -> its MQTT connection
        self.announcer: EdgeAnnouncer | None = None
        self.outbox: Outbox | None = None
        self.endpoint: HttpEndpoint | None = None
        self.windows: list[Window] = []  # one per MQTT connection
        self._stopping = False
        # Stuck = publishes in flight on the connections and no PUBACK for the window
        # (a connection that drops gives its slots back, so an outage is not "stuck").
        self.liveness = Liveness(
            "poller",
            window=settings.liveness,
            exit_after=settings.watchdog_exit,
            waiting=lambda: any(w.used for w in self.windows),
            progress=lambda: 0 if self.outbox is None else self.outbox.acks_noted,
        )
        self.metrics.stalled.set_function(self.liveness.stalled_for)

    # -- HTTP routes -------------------------------------------------------------

    def routes(self) -> dict[str, Callable[[], Response]]:
        """``/metrics``, ``/healthz`` and ``/readyz`` of the HTTP endpoint."""
        return {
            "/metrics": self._metrics_route,
            "/healthz": self._health_route,
            "/readyz": self._ready_route,
        }

    def _metrics_route(self) -> Response:
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)

    def _health_route(self) -> Response:
        outbox = self.outbox
        return health(
            self.liveness.problem(),
            __version__,
            chargers={
                c.charger_id: {
                    "up": s.up,
                    "since": _iso(s.since),
                    "failures": s.failures,
                    "last_error": s.last_error,
                    "mqtt_connected": self.client_of[c.charger_id].is_connected,
                }
                for c in self.coordinators
                for s in (c.status,)
            },
            edge=None
            if self.edge_id is None
            else {
                "id": self.edge_id,
                "mqtt_connected": bool(self.clients) and self.clients[0].is_connected,
            },
            outbox=None
            if outbox is None
            else {
                "depth": outbox.depth,
                "rows": outbox.size,
                "oldest_unsent_age_seconds": round(outbox.oldest_unsent_age(), 3),
            },
        )

    def _ready_route(self) -> Response:
        down = [c.client_id for c in self.clients if not c.is_connected]
        if down or not self.clients:
            return 503, "text/plain", f"mqtt not connected: {len(down)}\n".encode()
        return 200, "text/plain", b"ready\n"

    # -- the lifecycle -------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Start, run until ``stop`` is set, drain for the grace period and close."""
        s = self.settings
        with s.open_outbox(s.outbox, on_drop=self._dropped) as outbox:
            self.outbox = outbox
            log.info(
                "outbox %s: %d unsent row(s), %d row(s) in total", s.outbox,
                outbox.depth, outbox.size,
            )  # fmt: skip
            async with contextlib.AsyncExitStack() as stack:
                publishers = await self._start_chargers(stack, outbox)
                async with HttpEndpoint(s.metrics_host, s.metrics_port, self.routes()) as endpoint:
                    self.endpoint = endpoint
                    # Everything built so far lives as long as the process: keep it out
                    # of the cyclic GC's full collections (measured at 1,000 chargers:
                    # a gen-2 pass every ~2.5 s stalled the loop 160 ms; 65 ms frozen).
                    gc.collect()
                    gc.freeze()
                    async with self.liveness:
                        await self._run_until(stop, outbox, publishers)
        log.info("poller stopped")

    async def _start_chargers(
        self, stack: contextlib.AsyncExitStack, outbox: Outbox
    ) -> list[Publisher]:
        """Per charger: its HTTP client, coordinator, MQTT connection and publisher.

        One HTTP client per charger, each with its own keep-alive connection: a shared
        httpcore pool scans all its connections for every request (measured: 1,000
        chargers saturate a core), and per-charger clients keep one charger's stuck
        connection away from the others. See transport.py for the transport. One TLS
        context for all (only for https:// chargers), loaded once.
        """
        s = self.settings
        tls = ssl.create_default_context()
        publishers: list[Publisher] = []
        shared: tuple[MqttClient, Window] | None = None
        if self.edge_id is not None:
            # The edge identity: one connection (and one in-flight window) for all.
            edge_client = await stack.enter_async_context(
                self._client(
                    self.edge_id,
                    f"poller-edge-{self.edge_id}",
                    edge_availability_topic(self.edge_id),
                    [command_filter(c.id) for c in self.chargers],
                    self._route_command,
                )
            )
            shared = edge_client, Window(s.edge_inflight)
            self.windows.append(shared[1])
            self.clients.append(edge_client)
            self.announcer = EdgeAnnouncer(self.edge_id, [c.id for c in self.chargers], edge_client)
        buffer_limit, page = memory_share(len(self.chargers))
        for index, charger in enumerate(self.chargers):
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=DeviceTransport(ssl_context=tls),
                    timeout=charger.timeout + 1.0,
                    trust_env=False,
                    follow_redirects=False,
                )
            )
            coordinator, commander = self._coordinator(charger, index, outbox, http)
            if isinstance(coordinator.driver, Closeable):
                # A driver with a connection of its own (Modbus): closed at shutdown,
                # before the HTTP client (the exit stack unwinds in reverse).
                stack.push_async_callback(coordinator.driver.aclose)
            self.commanders[charger.id] = commander
            if shared is None:
                client = await stack.enter_async_context(
                    self._client(
                        charger.identity,
                        f"poller-{charger.id}",
                        availability_topic(charger.id),
                        [command_filter(charger.id)],
                        commander.receive,
                    )
                )
                window = Window(s.inflight)
                self.windows.append(window)
                self.clients.append(client)
            else:
                client, window = shared
            publishers.append(
                Publisher(
                    charger.id,
                    client,
                    outbox,
                    self.metrics.edge,
                    availability=functools.partial(self._availability, coordinator),
                    window=window,
                    halt_when_not_authorized=shared is not None,
                    buffer_limit=buffer_limit,
                    page=page,
                )
            )
            self.coordinators.append(coordinator)
            self.client_of[charger.id] = client
        self._commanders_ready.set()
        return publishers

    async def _route_command(self, message: Message) -> None:
        """Edge identity: hand a command to its charger's commander."""
        await self._commanders_ready.wait()
        try:
            charger = parse_command_topic(message.topic).charger
        except ContractError:
            log.warning("a message on an unexpected topic was ignored: %r", message.topic[:200])
            return
        commander = self.commanders.get(charger)
        if commander is None:
            log.warning("a command for charger %s, not polled here, was ignored", charger)
            return
        await commander.receive(message)

    def _coordinator(
        self, charger: ChargerConfig, index: int, outbox: Outbox, http: httpx.AsyncClient
    ) -> tuple[Coordinator, Commander]:
        s = self.settings
        spec = DriverSpec(
            charger_id=charger.id,
            url=charger.url,
            pin=charger.pin,
            pin_ref=charger.pin_ref,
            options=charger.options,
            clock=self.clock.now,
            timeout=charger.timeout,
        )
        try:
            driver = REGISTRY.create(charger.driver, spec, http)
        except ChargerError as exc:
            raise StartupError(str(exc)) from None
        self.metrics.declare_charger(charger.id)
        start_delay = first_poll_delay(index, len(self.chargers), charger.interval, s.start_spread)
        timing = Timing(
            interval=charger.interval,
            timeout=charger.timeout,
            max_backoff=s.max_backoff,
            permanent_retry=s.permanent_retry,
            start_delay=start_delay,
        )
        coordinator = Coordinator(
            charger.id,
            driver,
            outbox,
            self.metrics,
            timing=timing,
            snapshot_interval=s.snapshot_interval,
            clock=self.clock,
            # One charger's odd answer meeting a bug must not stop every charger of the
            # site (issue 14): the task group would exit. Logged with its traceback.
            contain_driver_faults=True,
        )
        commander = Commander(
            charger.id,
            driver,
            charger.control,
            outbox,
            Device(coordinator.device_lock, lambda: coordinator.status.up, charger.timeout),
            self.metrics,
            clock=self.clock,
            driver_name=charger.driver,
        )
        coordinator.extra = commander.values
        return coordinator, commander

    def _dropped(self, reason: str, count: int) -> None:
        self.metrics.edge.outbox_dropped.labels(reason).inc(count)

    def _availability(self, coordinator: Coordinator) -> bytes | None:
        # While stopping with the edge identity every charger is about to be offline (its
        # "offline" is queued by _queue_offline): a reconnect must not announce it online.
        return OFFLINE if self._stopping else coordinator.availability()

    def _client(
        self,
        identity: str,
        client_id: str,
        will_topic: str,
        commands: Sequence[str],
        on_command: MessageHandler,
    ) -> MqttClient:
        """An MQTT connection as ``identity`` whose will says ``will_topic`` is offline.

        It subscribes ``commands`` and acknowledges each command once ``on_command``
        has stored it (a persistent session: commands wait for a poller that is away,
        at most as long as a command can live).
        """
        return MqttClient(
            host=self.mqtt.host,
            port=self.mqtt.port,
            client_id=client_id,
            tls=self.mqtt.tls(identity),
            will=Will(will_topic, OFFLINE),
            persistent_session=True,
            session_expiry=int(MAX_EXPIRY.total_seconds()),
            subscriptions=commands,
            on_message=on_command,
            manual_ack=True,
            backoff=Backoff(initial=0.5, maximum=self.settings.mqtt_max_backoff),
        )

    async def _run_until(
        self, stop: asyncio.Event, outbox: Outbox, publishers: Sequence[Publisher]
    ) -> None:
        housekeeper = Housekeeper(outbox, self.metrics.edge, clock=self.clock)
        async with asyncio.TaskGroup() as tg:
            polling = [
                tg.create_task(c.run(), name=f"poll:{c.charger_id}") for c in self.coordinators
            ]
            polling += [
                tg.create_task(c.run(), name=f"commands:{c.charger_id}")
                for c in self.commanders.values()
            ]
            others = [tg.create_task(p.run(), name=f"publish:{p.charger_id}") for p in publishers]
            others.append(tg.create_task(housekeeper.run(), name="housekeeping"))
            if self.announcer is not None:
                others.append(tg.create_task(self.announcer.run(), name="edge"))
            log.info("polling %d charger(s)", len(self.coordinators))
            await stop.wait()
            for task in polling:
                task.cancel()
            if self.config.mqtt.is_edge:
                await asyncio.gather(*polling, return_exceptions=True)
                self._queue_offline(outbox)
            await self._drain(outbox)
            for task in others:
                task.cancel()

    def _queue_offline(self, outbox: Outbox) -> None:
        """Edge identity: each charger's ``offline``, queued after its last samples.

        With the per-charger identity each connection's will says it; the edge's will
        speaks only for the edge (consumers that know its charger list infer the rest).
        """
        self._stopping = True
        now = self.clock.now().timestamp()
        outbox.append([Entry(c.id, availability_topic(c.id), OFFLINE, now) for c in self.chargers])

    async def _drain(self, outbox: Outbox) -> None:
        grace = self.settings.shutdown_grace
        log.info("stopping: polling stopped; publishing the outbox for up to %.0f s", grace)
        await drain(outbox, grace)
