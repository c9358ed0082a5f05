"""The ingest service: MQTT → validate → batch → database, acknowledged after the commit.

:class:`IngestService` owns the lifecycle (:mod:`chargelift_runtime.service`): ``run``
opens the pool, starts the batcher, the dead-letter retention job, the ``/metrics`` +
``/healthz`` endpoint and the MQTT session; when ``stop`` is set it drains (flushes what
is queued for at most ``INGEST_SHUTDOWN_TIMEOUT_S``, lets the PUBACKs of committed
messages go out) and closes everything in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from chargelift_ingest import __version__
from chargelift_ingest.batcher import Batcher, NotStored
from chargelift_ingest.config import DEFAULT_IDENTITY, MqttSettings, Settings
from chargelift_ingest.deadletters import DeadLetterBudget, prune_forever
from chargelift_ingest.edges import EdgeCertificates
from chargelift_ingest.metrics import IngestMetrics
from chargelift_ingest.validate import Cleared, DeadLetter, validate
from chargelift_ingest.writer import Writer
from chargelift_runtime.http import HttpEndpoint, Response
from chargelift_runtime.mqtt import Message, MqttClient
from chargelift_runtime.service import health
from chargelift_runtime.watchdog import Liveness

log = logging.getLogger("chargelift_ingest")


def topic_text(topic: object) -> str:
    """The topic as text: gmqtt hands over the raw bytes of a topic that is not UTF-8; it
    becomes a bad_topic dead letter like any other malformed topic."""
    if isinstance(topic, bytes):
        return topic.decode("utf-8", errors="replace")
    return str(topic)


def quiet_not_stored(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """A handler that raised NotStored withheld its PUBACK on purpose: not an error."""
    if isinstance(context.get("exception"), NotStored):
        return
    loop.default_exception_handler(context)


class IngestService:
    """``await IngestService(settings, mqtt).run(stop)``: subscribe, validate, batch,
    write; when ``stop`` is set flush, acknowledge and return. Nothing starts before
    :meth:`run`."""

    def __init__(
        self,
        settings: Settings,
        mqtt: MqttSettings,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.mqtt = mqtt
        #: Also the MQTT client id (the broker binds them: one session per identity).
        self.identity = mqtt.identity or DEFAULT_IDENTITY
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = IngestMetrics(self.registry)
        self.metrics.watch_certificates(mqtt.certs_dir, mqtt.ca_file)
        self._max_future = timedelta(seconds=settings.max_future_seconds)
        #: Handlers running: each holds one unacknowledged message.
        self.handling = 0
        #: Handlers that returned (their PUBACK goes out): the progress count.
        self.committed = 0
        self._idle = asyncio.Event()  # set while no handler runs
        self._idle.set()
        self.budget = DeadLetterBudget(
            rate=settings.dead_letter_rate,
            burst=settings.dead_letter_burst,
            global_rate=settings.dead_letter_global_rate,
            global_burst=settings.dead_letter_global_burst,
            metrics=self.metrics,
        )
        # Stuck = messages held (handlers waiting for their commit) and none committed
        # for the liveness window: /healthz turns 503, then the process exits.
        self.liveness = Liveness(
            "ingest",
            window=settings.liveness_s,
            exit_after=settings.watchdog_exit_s,
            waiting=lambda: self.handling > 0,
            progress=lambda: self.committed,
        )
        self.batcher: Batcher | None = None
        self.client: MqttClient | None = None
        # Read at every scrape, not only when someone asks /healthz.
        self.metrics.mqtt_connected.set_function(lambda: 1 if self.mqtt_connected else 0)
        self.metrics.database_ok.set_function(lambda: 1 if self.database_ok else 0)
        self.metrics.pending.set_function(lambda: self.pending)
        self.metrics.stalled.set_function(self.liveness.stalled_for)

    # -- state, for /healthz and the gauges -------------------------------------------

    @property
    def mqtt_connected(self) -> bool:
        return self.client is not None and self.client.is_connected

    @property
    def database_ok(self) -> bool:
        return self.batcher is None or self.batcher.database_ok

    @property
    def pending(self) -> int:
        return 0 if self.batcher is None else self.batcher.pending

    def healthz(self) -> Response:
        # Liveness, not readiness: while the broker or the database is away the process
        # waits for them as designed, and the status stays "ok" unless messages have
        # waited without any commit for the whole liveness window.
        return health(
            self.liveness.problem(),
            __version__,
            stalled_seconds=round(self.liveness.stalled_for(), 1),
            mqtt_connected=self.mqtt_connected,
            database_ok=self.database_ok,
            pending=self.pending,
        )

    def prometheus(self) -> Response:
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)

    # -- the message handler -----------------------------------------------------------

    async def on_message(self, msg: Message) -> None:
        """Only classify and enqueue; returning lets gmqtt send the PUBACK, which must
        wait for the commit (submit raises NotStored if there will be none)."""
        assert self.batcher is not None, "messages arrive only while run() runs"
        self.handling += 1
        self._idle.clear()
        try:
            self.metrics.received.inc()
            topic = topic_text(msg.topic)
            item = validate(
                topic,
                msg.payload,
                now=datetime.now(UTC),
                max_bytes=self.settings.max_payload_bytes,
                max_future=self._max_future,
                min_time=self.settings.min_sampling_time,
            )
            if isinstance(item, Cleared):
                # Nothing to store: acknowledged on return. Rare (an operator retiring a
                # device), so each one is logged.
                self.metrics.cleared.inc()
                log.info("retained value of %s deleted (zero-length message)", topic)
                self.committed += 1
                return
            if isinstance(item, DeadLetter) and self.budget.allow(topic) is not None:
                self.committed += 1  # acknowledged on return: progress
                return  # over budget: counted, acknowledged, not stored
            await self.batcher.submit(item, topic, msg.payload)
            self.committed += 1
        finally:
            self.handling -= 1
            if not self.handling:
                self._idle.set()

    # -- the lifecycle -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Start everything, run until ``stop`` is set, drain, close in reverse order."""
        s = self.settings
        asyncio.get_running_loop().set_exception_handler(quiet_not_stored)
        # Up to two batches of messages are alive at once (a task, a future and a
        # payload each): with the default thresholds the cyclic GC would scan that heap
        # every few hundred allocations (measured: a third of the CPU at 20k msg/s).
        # Nothing here builds reference cycles at that rate; collect rarely, and never
        # the start-up heap.
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        # min_size 0: start even while the database is down; the batcher retries. Every
        # call is bounded: connecting (timeout), each statement (command_timeout, which
        # also bounds asyncpg's own cancel and reset), and each batch's transaction.
        async with asyncpg.create_pool(
            s.database_url.get_secret_value(),
            min_size=0,
            max_size=2,
            timeout=s.db_connect_timeout_s,
            command_timeout=s.db_write_timeout_s,
        ) as pool:
            writer = Writer(
                pool,
                EdgeCertificates(self.mqtt.certs_dir / "clients").chargers,
                dead_letter_max_bytes=s.dead_letter_max_bytes,
                timeout=s.db_write_timeout_s,
                acquire_timeout=s.db_connect_timeout_s,
                metrics=self.metrics,
            )
            self.batcher = Batcher(
                writer, size=s.batch_size, age_s=s.batch_age_ms / 1000, metrics=self.metrics
            )
            self.client = MqttClient(
                host=self.mqtt.host,
                port=self.mqtt.port,
                client_id=self.identity,
                tls=self.mqtt.tls(self.identity),
                persistent_session=True,
                manual_ack=True,
                on_message=self.on_message,
                subscriptions=s.subscriptions,
                receive_maximum=s.receive_maximum,
                # Retained values only for a new subscription, not at every reconnect of
                # the persistent session (they would be absorbed as duplicates anyway).
                retain_handling=1,
            )
            endpoint = HttpEndpoint(
                s.metrics_host,
                s.metrics_port,
                {"/metrics": self.prometheus, "/healthz": self.healthz},
            )
            async with endpoint, self.liveness, asyncio.TaskGroup() as tg:
                writing = tg.create_task(self.batcher.run(), name="batcher")
                pruning = None
                if s.dead_letter_retention_days:
                    pruning = tg.create_task(
                        prune_forever(
                            pool,
                            s.dead_letter_retention_days,
                            s.dead_letter_prune_interval_s,
                            metrics=self.metrics,
                        ),
                        name="dead-letter retention",
                    )
                async with self.client:
                    log.info(
                        "ingest %s up: %s → database; metrics on %s:%d",
                        __version__,
                        " + ".join(s.subscriptions),
                        s.metrics_host,
                        endpoint.port,
                    )
                    await stop.wait()
                    await self._drain(self.batcher, writing)
                if pruning is not None:
                    pruning.cancel()
        log.info("ingest stopped")

    async def _drain(self, batcher: Batcher, writing: asyncio.Task[None]) -> None:
        """Flush what is queued (bounded), then let the committed handlers return."""
        log.info("stopping: flushing %d messages", batcher.pending)
        batcher.close()  # new messages are not taken: the broker keeps them
        done, _ = await asyncio.wait({writing}, timeout=self.settings.shutdown_timeout_s)
        if not done:
            log.warning(
                "database unavailable: %d messages left unacknowledged "
                "(the broker redelivers them)",
                batcher.pending,
            )
            writing.cancel()  # a transaction in progress rolls back
            with contextlib.suppress(asyncio.CancelledError):
                await writing
        batcher.abandon()
        # Let the handlers of committed messages return: gmqtt sends their PUBACKs before
        # the DISCONNECT.
        try:
            async with asyncio.timeout(5):
                await self._idle.wait()
            await asyncio.sleep(0)  # gmqtt's done-callbacks write the PUBACKs
        except TimeoutError:
            log.warning("%d message handlers still running at exit", self.handling)
