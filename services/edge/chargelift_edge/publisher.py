"""One publisher per charger: sends the charger's outbox rows over an MQTT connection.

With the per-charger identity each publisher has its own connection; with the edge
identity (docs/poller.md) all publishers share one connection and one in-flight
:class:`Window`. Either way a charger's rows travel in order on one connection.

Per connection ("session"):

1. write pending acknowledgements, then start from the oldest row that is either
   unsent or was acknowledged within the replay window (see :mod:`.outbox`) — so
   recently acknowledged rows are re-published *before* anything new;
2. append the charger's current availability (the broker may have published our last
   will ``offline`` while we were away) — it gets the newest ``seq``, so it lands after
   the backlog;
3. publish rows in ``seq`` order, retained (results: not retained), QoS 1, with at
   most the window's size awaiting their PUBACK on the connection (one connection, in
   order: the broker keeps the order);
4. on each PUBACK mark the row acknowledged; if the connection drops, unacknowledged
   rows simply stay in the outbox for the next session.

Rows reach the publisher in memory as they are committed (:meth:`rows_added`); when
more than ``buffer_limit`` are waiting (a long outage) it stops buffering and reads
them back from the outbox in pages, so memory stays bounded. An edge with many
chargers gives each publisher its share of one edge-wide bound (:func:`memory_share`),
so that the sum stays bounded too: 1,000 publishers of 1,000 buffered rows and a page
of 500 each would hold 1.5 M rows (measured at 1,000 OCPP charge points behind on
publishing: the gateway grew to 1.5 GB).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Protocol

from chargelift_contract import availability_topic
from chargelift_edge.metrics import EdgeMetrics
from chargelift_edge.outbox import Entry, Outbox, Row
from chargelift_runtime.mqtt import ConnectionLostError, PublishRefusedError

log = logging.getLogger(__name__)

#: MQTT 5 PUBACK reason codes that no retry can fix: the row is dropped and counted
#: (``refused``). 0x87 not authorised (ACL), 0x90 topic name invalid,
#: 0x95 packet too large, 0x99 payload format invalid. Other error codes (quota
#: exceeded, server busy...) are retried after a pause.
UNDELIVERABLE = frozenset({0x87, 0x90, 0x95, 0x99})

#: Pause before retrying after a transient refusal by the broker (s).
REFUSED_PAUSE = 1.0

#: MQTT 5 "not authorized": the ACL does not let this identity write the topic.
NOT_AUTHORIZED = 0x87


class PublishClient(Protocol):
    """The part of :class:`chargelift_runtime.mqtt.MqttClient` a publisher uses."""

    @property
    def is_connected(self) -> bool: ...

    @property
    def send_quota(self) -> int:
        """The broker's receive maximum of the current connection."""
        ...

    async def wait_connected(self) -> None: ...

    async def wait_disconnected(self) -> None: ...

    def publish_nowait(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]: ...


class Window:
    """The publishes in flight on one MQTT connection, shared by the publishers on it.

    Per-charger identity: one window per publisher. Edge identity: one window for the
    edge's connection, so that one number bounds what that connection has in flight,
    whatever the number of chargers (the broker's receive maximum is per connection
    too). Strictly first come, first served: a publisher that finds no free slot, or
    others already waiting, waits in line, and a freed slot is *handed* to the one that
    has waited longest (measured: letting the publisher whose PUBACK freed the slot take
    it again starved the others, p99 20 s at 1,000 chargers).
    Every slot taken is given back exactly once (on PUBACK, refusal or connection loss).
    """

    def __init__(self, size: int) -> None:
        self.configured = self.size = size
        self.used = 0
        self._waiting: OrderedDict[object, Callable[[], None]] = OrderedDict()
        self._granted: set[object] = set()  # handed a slot, not yet used

    def fit(self, send_quota: int) -> None:
        """Stay under the broker's receive maximum (gmqtt fails a publish beyond it),
        with room for the few publishes made outside the window (the edge's own)."""
        self.size = max(1, min(self.configured, send_quota - 16))

    def take(self, owner: object) -> bool:
        """Take a slot: one handed to ``owner``, or a free one if nobody waits for it."""
        if owner in self._granted:
            self._granted.discard(owner)
            return True
        if self.used >= self.size or self._waiting:
            return False
        self.used += 1
        return True

    def give_back(self) -> bool:
        """Free a slot: hand it to the publisher that has waited longest, if any (True)."""
        if self._waiting:
            owner, wake = self._waiting.popitem(last=False)
            self._granted.add(owner)  # still counted in ``used``
            wake()
            return True
        self.used -= 1
        return False

    def waiting(self, owner: object) -> bool:
        """True while ``owner`` waits in line (it is woken when a slot is handed to it)."""
        return owner in self._waiting

    def wait(self, owner: object, wake: Callable[[], None]) -> None:
        """Call ``wake`` (once) when a slot is handed to ``owner``; in line at most once."""
        if owner not in self._waiting and owner not in self._granted:
            self._waiting[owner] = wake

    def leave(self, owner: object) -> None:
        """``owner`` stops publishing (its session ended): out of line, slot passed on."""
        self._waiting.pop(owner, None)
        if owner in self._granted:
            self._granted.discard(owner)
            self.give_back()


#: The most outbox rows all publishers of one edge hold in memory together (buffered
#: rows and the page read back), about 50 MB.
EDGE_MEMORY_ROWS = 100_000
#: A publisher's buffer and page never go below this many rows, whatever the share.
MIN_SHARE_ROWS = 20
#: A publisher's buffer and page when the share allows (a small edge).
DEFAULT_BUFFER_LIMIT = 1000
DEFAULT_PAGE = 500


def memory_share(chargers: int, total: int = EDGE_MEMORY_ROWS) -> tuple[int, int]:
    """``(buffer_limit, page)`` for each of ``chargers`` publishers of one edge, so
    that together they hold at most ``total`` rows (and never fewer than
    :data:`MIN_SHARE_ROWS` each): the defaults up to 66 chargers, 50 and 50 each at
    1,000."""
    each = max(MIN_SHARE_ROWS, total // (2 * max(1, chargers)))
    return min(DEFAULT_BUFFER_LIMIT, each), min(DEFAULT_PAGE, each)


class Publisher:
    """Drains one charger's outbox rows into its MQTT connection (see module docstring)."""

    def __init__(
        self,
        charger_id: str,
        client: PublishClient,
        outbox: Outbox,
        metrics: EdgeMetrics,
        *,
        availability: Callable[[], bytes | None],
        inflight: int = 100,
        window: Window | None = None,
        halt_when_not_authorized: bool = False,
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
        page: int = DEFAULT_PAGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.charger_id = charger_id
        self._client = client
        self._outbox = outbox
        self._availability = availability
        self._availability_topic = availability_topic(charger_id)
        self._window = window if window is not None else Window(inflight)
        # Edge identity: Mosquitto answers a denied publish with 0x87 *and* closes the
        # connection (2.0.11, measured), which here is every charger's connection.
        self._halt_when_not_authorized = halt_when_not_authorized
        self.halted = False
        self._buffer_limit = buffer_limit
        self._page = page
        self._clock = clock
        self._buffer: deque[Row] = deque()
        self._cursor = 0  # highest seq taken into the buffer in this session
        self._last_sent = 0  # highest seq handed to the client in this session
        self._spilled = True  # rows after _cursor may be in the outbox only
        self._epoch = 0
        self._restart = False
        self._wake = asyncio.Event()
        self._refused_topics: set[str] = set()
        self._metrics = metrics
        self._m_published = metrics.published.labels(charger_id)
        self._m_replayed = metrics.replayed.labels(charger_id)
        self._m_connected = metrics.mqtt_connected.labels(charger_id)
        outbox.listen(charger_id, self)

    # -- OutboxListener ----------------------------------------------------------

    def rows_added(self, rows: Sequence[Row]) -> None:
        """New committed rows of this charger."""
        if not self._spilled:
            if len(self._buffer) + len(rows) > self._buffer_limit:
                self._spilled = True  # from now on they are read back from the outbox
            else:
                self._buffer.extend(rows)
                self._cursor = rows[-1].seq
        if not self._window.waiting(self):  # else it is woken when its turn comes
            self._wake.set()

    def rows_dropped(self) -> None:
        """The bounds deleted unsent rows: forget the buffer, re-read after the last sent."""
        self._buffer.clear()
        self._cursor = self._last_sent
        self._spilled = True
        self._wake.set()

    # -- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        """Publish for the life of the process, one session per MQTT connection."""
        while True:
            await self._client.wait_connected()
            self._m_connected.set(1)
            try:
                await self._session()
            finally:
                self._m_connected.set(0)
            if self.halted:
                await asyncio.Event().wait()  # until the process stops (see _refused)
            if self._restart:  # the broker refused a publish for a transient reason
                await asyncio.sleep(REFUSED_PAUSE)

    async def _session(self) -> None:
        self._epoch += 1
        epoch = self._epoch
        self._outbox.flush_acks()  # so that what was acknowledged is known as such
        self._buffer.clear()
        self._cursor = self._last_sent = 0
        self._spilled = True
        self._restart = False
        self._window.fit(self._client.send_quota)
        current = self._availability()
        if current is not None:
            self._outbox.append(
                [Entry(self.charger_id, self._availability_topic, current, self._clock())]
            )
        lost = asyncio.ensure_future(self._client.wait_disconnected())
        lost.add_done_callback(lambda _: self._wake.set())
        try:
            while not lost.done() and not self._restart:
                self._wake.clear()
                self._fill(epoch)
                await self._wake.wait()
        finally:
            lost.cancel()
            self._window.leave(self)
            self._epoch += 1  # late callbacks of this session are ignored

    def _fill(self, epoch: int) -> None:
        window = self._window
        while True:
            row = self._next_row()
            if row is None:
                window.leave(self)  # nothing to send: no place in line, no slot held
                return
            if self._outbox.too_large(row):
                # Queued before the packet limit was checked at enqueue (an older outbox,
                # a lowered limit): the broker would drop the connection, every time.
                if self._outbox.discard(row.seq, reason="too_large"):
                    self._metrics.outbox_dropped.labels("too_large").inc()
                log.error(
                    "charger %s: a queued row of %s is over the broker's packet limit: dropped",
                    self.charger_id,
                    row.topic[:200],
                )
                continue
            if not window.take(self):
                self._requeue(row)
                window.wait(self, self._wake.set)
                return
            try:
                fut = self._client.publish_nowait(row.topic, row.payload, qos=1, retain=row.retain)
            except ConnectionLostError:
                window.give_back()
                self._requeue(row)
                return  # the session ends; the row is still in the outbox
            self._last_sent = row.seq
            fut.add_done_callback(functools.partial(self._done, epoch, row))

    def _requeue(self, row: Row) -> None:
        # Not sent (no slot, or a shared connection reporting "not connected" a moment
        # before this publisher's session ends): it goes first again.
        self._buffer.appendleft(row)

    def _next_row(self) -> Row | None:
        if not self._buffer and self._spilled:
            rows = self._outbox.load(self.charger_id, after=self._cursor, limit=self._page)
            if rows:
                self._buffer.extend(rows)
                self._cursor = rows[-1].seq
            if len(rows) < self._page:
                self._spilled = False
        return self._buffer.popleft() if self._buffer else None

    def _done(self, epoch: int, row: Row, fut: asyncio.Future[None]) -> None:
        exc = None if fut.cancelled() else fut.exception()  # always retrieve it
        handed = self._window.give_back()  # whichever session it was sent in
        if epoch != self._epoch:
            return
        if not handed or exc is not None:
            # The freed slot is ours to fill (with a shared window it went to the
            # publisher waiting longest; ours is in line if it has rows).
            self._wake.set()
        if fut.cancelled():
            return
        if exc is None:
            if row.acked:
                self._m_replayed.inc()
                return
            now = self._clock()
            self._outbox.ack(row.seq, now)
            self._m_published.inc()
            self._metrics.publish_latency.observe(max(0.0, now - row.sampled_at))
            if row.received_at is not None and self._metrics.receipt_latency is not None:
                self._metrics.receipt_latency.observe(max(0.0, now - row.received_at))
        elif isinstance(exc, PublishRefusedError):
            self._refused(row, exc)
        else:
            self._metrics.publish_errors.labels(self.charger_id, "connection_lost").inc()

    def _refused(self, row: Row, exc: PublishRefusedError) -> None:
        self._metrics.publish_errors.labels(self.charger_id, "refused").inc()
        if exc.reason_code not in UNDELIVERABLE:
            log.warning("%s; retrying in %.0f s", exc, REFUSED_PAUSE)
            self._restart = True
            return
        if exc.reason_code == NOT_AUTHORIZED and self._halt_when_not_authorized:
            self._halt(exc)
            return
        if self._outbox.discard(row.seq):
            self._metrics.outbox_dropped.labels("refused").inc()
        if row.topic not in self._refused_topics:
            self._refused_topics.add(row.topic)
            log.error(
                "charger %s: %s; the message is dropped (counted in "
                '%s_outbox_dropped_total{reason="refused"}); check the identity\'s ACL',
                self.charger_id,
                exc,
                self._metrics.prefix,
            )

    def _halt(self, exc: PublishRefusedError) -> None:
        if self.halted:
            return
        # Each further publish would cost every charger of the edge a reconnect: stop
        # publishing this charger, keep its rows (the outbox bounds apply) for a poller
        # restarted with a certificate that lists it.
        self.halted = True
        self._restart = True
        self._wake.set()
        log.error(
            "charger %s: %s; the edge certificate does not list this charger: its rows "
            "stay in the outbox and are not published until the certificate lists it "
            "(chargelift-certs client <edge> --role edge --charger ... --force, reload the "
            "broker) and the poller restarts",
            self.charger_id,
            exc,
        )
