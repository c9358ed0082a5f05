"""The gateway's side towards chargelift: what the poller does, through the same parts.

The gateway is an edge: one MQTT connection as its edge identity (``MQTT_IDENTITY``, a
certificate of role ``edge`` that lists every charger the gateway may publish for), the
durable SQLite outbox, one publisher per charger, the announcer and the outbox's chores,
all from :mod:`chargelift_edge`, shared with the poller rather than copied:

* :meth:`Uplink.submit` is the :class:`~chargelift_ocpp.sink.ReadingSink`: the readings
  of one OCPP message are committed to the outbox in one transaction *before* the charge
  point gets its answer. A gateway killed after the answer has them on disk; one killed
  before it never answered, and the charge point sends the message again (its own
  transaction queue), which the mapper and the transaction store make harmless.
* Readings reach MQTT at their own instants (``SamplingTime``). A reading older than the
  newest one already published on its topic (a charge point replaying its offline queue
  after a fresher status) is published *not retained*: ingest stores it at its instant,
  and the retained shadow keeps the newest value. Different values at one instant are
  kept apart by a millisecond each, in the order sent (:class:`Instants`).
* A charger is ``online`` while its charge point is connected, ``offline`` otherwise
  (``chargers/{id}/availability``, through the outbox like every row). The broker's will
  speaks for the gateway (``edges/{edge}/availability``).
* Readings for a charger the certificate does not list are dropped and counted: the
  broker would refuse them and close the connection every other charger shares.
* Commands: the same connection subscribes ``chargers/{id}/set/+`` of every listed
  charger (persistent session, each command acknowledged once it is stored) and hands
  them to :class:`~.control.Control` (when a transaction store is given).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from chargelift_contract import Envelope, availability_topic, encode, field_topic
from chargelift_contract.commands import MAX_EXPIRY, command_filter
from chargelift_contract.envelope import Value
from chargelift_contract.topics import OFFLINE, ONLINE, edge_availability_topic
from chargelift_edge.announce import EdgeAnnouncer
from chargelift_edge.clock import Clock, SystemClock
from chargelift_edge.housekeeping import Housekeeper, drain
from chargelift_edge.outbox import Entry, Outbox
from chargelift_edge.publisher import Publisher, Window, memory_share
from chargelift_ocpp.config import Settings
from chargelift_ocpp.control import Control, charge_point_of
from chargelift_ocpp.metrics import OcppMetrics
from chargelift_ocpp.transactions import TransactionStore
from chargelift_runtime.mqtt import MqttClient, Will
from chargelift_runtime.retry import Backoff
from chargelift_runtime.settings import MqttSettings

log = logging.getLogger(__name__)


__all__ = ["Uplink", "charge_point_of"]


class Instants:
    """Where each reading goes in time, per topic.

    * A reading newer than every other on its topic is the newest: retained.
    * One older (a charge point's offline queue, sent late) keeps its instant and is not
      retained, so the shadow keeps the newest value.
    * Several *different* values at the *same* instant (OCPP timestamps are often whole
      seconds: Preparing and Charging in one second) would be one row in the database,
      the first one stored: the session would never start. Each next value is placed
      :data:`STEP` after the previous one, in the order the charge point sent them. The
      same value at that instant again (a message sent twice) goes where it went first.
    """

    STEP = timedelta(milliseconds=1)

    def __init__(self) -> None:
        # topic -> (the newest instant the charge point gave, {value: where it went})
        self._newest: dict[str, tuple[datetime, dict[Value, datetime]]] = {}

    def place(self, topic: str, sampled_at: datetime, value: Value) -> tuple[datetime, bool]:
        """(the instant to publish ``value`` at, whether it is the topic's newest)."""
        newest = self._newest.get(topic)
        if newest is None or sampled_at > newest[0]:
            self._newest[topic] = (sampled_at, {value: sampled_at})
            return sampled_at, True
        given, placed = newest
        if sampled_at < given:
            return sampled_at, False
        last = max(placed.values())
        at = placed.get(value)
        if at is None:
            at = placed[value] = last + self.STEP
            return at, True
        return at, at == last


class Uplink:
    """``async with Uplink(...) as uplink:`` then ``await uplink.run(stop)``.

    ``chargers``: what the edge certificate lists (read at start-up by the caller).
    """

    def __init__(
        self,
        settings: Settings,
        mqtt: MqttSettings,
        edge_id: str,
        chargers: Iterable[str],
        metrics: OcppMetrics,
        *,
        clock: Clock | None = None,
        transactions: TransactionStore | None = None,
    ) -> None:
        self.settings = settings
        self.transactions = transactions
        #: The commanders (with a transaction store; made when the outbox opens).
        self.control: Control | None = None
        self.mqtt = mqtt
        self.edge_id = edge_id
        self.chargers = frozenset(chargers)
        # charge point -> its listed chargers, for the availability of each connection
        self._chargers_of: dict[str, list[str]] = {}
        for c in sorted(self.chargers):
            self._chargers_of.setdefault(charge_point_of(c), []).append(c)
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.outbox: Outbox | None = None
        self.client: MqttClient | None = None
        self.publishers: list[Publisher] = []
        self._connections: dict[str, int] = {}  # charge point -> open connections
        self.instants = Instants()
        self._stopping = False
        self._stack = contextlib.AsyncExitStack()

    # -- ReadingSink ---------------------------------------------------------------

    def submit(self, readings: Sequence[Any], received_at: float | None = None) -> None:
        """Commit the readings of one message to the outbox (before it is answered).

        ``received_at`` (when the message was read) goes with the rows in memory, for
        ``ocpp_reading_publish_seconds`` at their PUBACK."""
        outbox = self._require_outbox()
        entries: list[Entry] = []
        for r in readings:
            if r.charger not in self.chargers:
                self.metrics.readings_unlisted.inc()
                log.warning(
                    "a reading for charger %s, which the certificate of edge %s does not "
                    "list, was dropped (re-issue it with --charger %s)",
                    r.charger,
                    self.edge_id,
                    r.charger,
                )
                continue
            topic = field_topic(r.charger, r.field)
            at, retain = self.instants.place(topic, r.sampled_at, r.value)
            payload = encode(Envelope(at, r.value))
            entries.append(
                Entry(
                    r.charger,
                    topic,
                    payload,
                    at.timestamp(),
                    retain=retain,
                    received_at=received_at,
                )
            )
        if entries:
            outbox.append(entries)

    # -- availability --------------------------------------------------------------

    def connected(self, charge_point: str) -> None:
        """A connection of ``charge_point`` was accepted: its chargers are online."""
        n = self._connections.get(charge_point, 0)
        self._connections[charge_point] = n + 1
        if n == 0:
            self._queue_availability(charge_point, ONLINE)

    def disconnected(self, charge_point: str) -> None:
        """A connection of ``charge_point`` ended (a newer one may still be open)."""
        n = self._connections.get(charge_point, 0) - 1
        if n > 0:
            self._connections[charge_point] = n
            return
        self._connections.pop(charge_point, None)
        if not self._stopping:
            self._queue_availability(charge_point, OFFLINE)

    def _availability(self, charger: str) -> bytes:
        if self._stopping:
            return OFFLINE
        return ONLINE if charge_point_of(charger) in self._connections else OFFLINE

    def _queue_availability(self, charge_point: str, state: bytes) -> None:
        mine = self._chargers_of.get(charge_point, [])
        if mine and self.outbox is not None:
            now = self.clock.now().timestamp()
            self.outbox.append([Entry(c, availability_topic(c), state, now) for c in mine])

    # -- the lifecycle -------------------------------------------------------------

    def _require_outbox(self) -> Outbox:
        if self.outbox is None:
            raise RuntimeError("the uplink is not open")
        return self.outbox

    async def __aenter__(self) -> Uplink:
        s = self.settings
        try:
            self.outbox = self._stack.enter_context(
                s.open_outbox(s.outbox_file, on_drop=self._dropped)
            )
            log.info(
                "outbox %s: %d unsent row(s), %d row(s) in total",
                s.outbox_file,
                self.outbox.depth,
                self.outbox.size,
            )
            commands: list[str] = []
            if self.transactions is not None:
                self.control = Control(
                    self.chargers,
                    self.outbox,
                    self.transactions,
                    self.metrics,
                    clock=self.clock,
                    max_current=s.max_current,
                    remote_id_tag=s.remote_id_tag,
                )
                commands = [command_filter(c) for c in sorted(self.chargers)]
            self.client = await self._stack.enter_async_context(
                MqttClient(
                    host=self.mqtt.host,
                    port=self.mqtt.port,
                    client_id=f"ocpp-edge-{self.edge_id}",
                    tls=self.mqtt.tls(self.edge_id),
                    will=Will(edge_availability_topic(self.edge_id), OFFLINE),
                    persistent_session=True,
                    session_expiry=int(MAX_EXPIRY.total_seconds()),
                    backoff=Backoff(initial=0.5, maximum=s.mqtt_max_backoff),
                    subscriptions=commands,
                    on_message=None if self.control is None else self.control.receive,
                    manual_ack=self.control is not None,
                )
            )
        except BaseException:
            await self._stack.aclose()
            raise
        window = Window(s.edge_inflight)
        buffer_limit, page = memory_share(len(self.chargers))
        self.publishers = [
            Publisher(
                charger,
                self.client,
                self.outbox,
                self.metrics.edge,
                availability=functools.partial(self._availability, charger),
                window=window,
                halt_when_not_authorized=True,
                buffer_limit=buffer_limit,
                page=page,
            )
            for charger in sorted(self.chargers)
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
        self.outbox = None

    async def run(self, stop: asyncio.Event, listeners_closed: asyncio.Event) -> None:
        """Publish until ``stop``; once ``listeners_closed`` is set too (no reading can
        come any more), queue every charger's ``offline`` and drain the outbox for the
        grace period."""
        outbox = self._require_outbox()
        assert self.client is not None
        housekeeper = Housekeeper(outbox, self.metrics.edge, clock=self.clock)
        announcer = EdgeAnnouncer(self.edge_id, sorted(self.chargers), self.client)
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(p.run(), name=f"publish:{p.charger_id}") for p in self.publishers
            ]
            tasks.append(tg.create_task(housekeeper.run(), name="housekeeping"))
            tasks.append(tg.create_task(announcer.run(), name="edge"))
            if self.control is not None:
                tasks.append(tg.create_task(self.control.run(), name="commands"))
            await stop.wait()
            await listeners_closed.wait()
            self._stopping = True
            now = self.clock.now().timestamp()
            outbox.append([Entry(c, availability_topic(c), OFFLINE, now) for c in self.chargers])
            grace = self.settings.shutdown_grace
            log.info("stopping: publishing the outbox for up to %.0f s", grace)
            await drain(outbox, grace)
            for task in tasks:
                task.cancel()

    def _dropped(self, reason: str, count: int) -> None:
        self.metrics.edge.outbox_dropped.labels(reason).inc(count)
