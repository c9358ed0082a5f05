"""The publisher: outbox rows to MQTT in order, acknowledged on PUBACK, replayed on reconnect."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from chargelift_edge.metrics import EdgeMetrics
from chargelift_edge.outbox import Entry, Outbox
from chargelift_edge.publisher import (
    DEFAULT_BUFFER_LIMIT,
    DEFAULT_PAGE,
    EDGE_MEMORY_ROWS,
    MIN_SHARE_ROWS,
    Publisher,
    Window,
    memory_share,
)
from chargelift_runtime.mqtt import ConnectionLostError, PublishRefusedError
from tests.unit.edge.conftest import sample

CHARGER = "amtron-1"


class FakeClient:
    """Stands in for MqttClient: records publishes; the test decides about PUBACKs."""

    def __init__(self) -> None:
        self.auto_ack = True
        self.sent: list[tuple[str, bytes, bool]] = []
        self.pending: list[asyncio.Future[None]] = []
        self._up = asyncio.Event()
        self._lost = asyncio.Event()

    send_quota = 65535

    @property
    def is_connected(self) -> bool:
        return self._up.is_set()

    async def wait_connected(self) -> None:
        await self._up.wait()

    async def wait_disconnected(self) -> None:
        if self._up.is_set():
            await self._lost.wait()

    def publish_nowait(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        if not self._up.is_set():
            raise ConnectionLostError("not connected")
        assert qos == 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, payload, retain))
        if self.auto_ack:
            fut.set_result(None)
        else:
            self.pending.append(fut)
        return fut

    def connect(self) -> None:
        self._lost = asyncio.Event()
        self._up.set()

    def drop(self) -> None:
        self._up.clear()
        for fut in self.pending:
            if not fut.done():
                fut.set_exception(ConnectionLostError("connection lost"))
        self.pending.clear()
        self._lost.set()

    def ack(self, n: int) -> None:
        for fut in self.pending[:n]:
            fut.set_result(None)
        del self.pending[:n]

    def payloads(self) -> list[bytes]:
        return [p for _, p, _ in self.sent]


class Wall:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def outbox(tmp_path: Path, wall: Wall) -> Iterator[Outbox]:
    with Outbox.open(tmp_path / "o.sqlite", replay_window=60, clock=wall) as box:
        yield box


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def availability() -> list[bytes | None]:
    return [None]


@pytest.fixture
async def publisher(
    client: FakeClient, outbox: Outbox, metrics: EdgeMetrics, wall: Wall,
    availability: list[bytes | None],
) -> AsyncIterator[Publisher]:  # fmt: skip
    pub = Publisher(
        CHARGER, client, outbox, metrics, availability=lambda: availability[0],
        inflight=100, buffer_limit=8, page=5, clock=wall,
    )  # fmt: skip
    task = asyncio.create_task(pub.run())
    yield pub
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def add(outbox: Outbox, *values: int, field: str = "PowerOutput") -> None:
    outbox.append(
        [Entry(CHARGER, f"chargers/{CHARGER}/{field}", str(v).encode(), 1_800_000_000.0 + v)
         for v in values]
    )  # fmt: skip


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def nums(payloads: list[bytes]) -> list[int]:
    return [int(p) for p in payloads if p.isdigit()]


@pytest.mark.usefixtures("publisher")
async def test_rows_are_published_in_order_retained_and_acknowledged(
    client: FakeClient, outbox: Outbox, metrics: EdgeMetrics, wall: Wall
) -> None:
    client.connect()
    await settle()
    add(outbox, 1, 2, 3)
    add(outbox, 4)
    await settle()
    assert nums(client.payloads()) == [1, 2, 3, 4]
    assert all(retain for _, _, retain in client.sent)
    outbox.flush_acks()
    assert outbox.depth == 0
    assert sample(metrics, "edge_published_total", charger=CHARGER) == 4
    assert sample(metrics, "edge_publish_latency_seconds_count") == 4


async def test_receipt_to_puback_is_measured_from_received_at_when_asked(
    client: FakeClient, outbox: Outbox, wall: Wall
) -> None:
    metrics = EdgeMetrics(CollectorRegistry(), "edge", receipt_latency=True)
    pub = Publisher(CHARGER, client, outbox, metrics, availability=lambda: None, clock=wall)
    task = asyncio.create_task(pub.run())
    try:
        client.auto_ack = False
        client.connect()
        await settle()
        topic = f"chargers/{CHARGER}/PowerOutput"
        # Sampled long ago by the sender's clock, received 0.25 s before the PUBACK.
        outbox.append([Entry(CHARGER, topic, b"1", wall.t - 3600, received_at=wall.t)])
        outbox.append([Entry(CHARGER, topic, b"2", wall.t - 3600)])  # no receipt time
        await settle()
        wall.t += 0.25
        client.ack(2)
        await settle()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sample(metrics, "edge_publish_latency_seconds_count") == 2
    assert sample(metrics, "edge_reading_publish_seconds_count") == 1
    assert sample(metrics, "edge_reading_publish_seconds_sum") == pytest.approx(0.25)


def test_without_receipt_latency_there_is_no_such_series(metrics: EdgeMetrics) -> None:
    assert metrics.receipt_latency is None
    assert metrics.registry.get_sample_value("edge_reading_publish_seconds_count") is None


@pytest.mark.usefixtures("publisher")
async def test_in_flight_window_is_bounded(client: FakeClient, outbox: Outbox) -> None:
    client.auto_ack = False
    client.connect()
    await settle()
    add(outbox, *range(1, 8))  # within the in-memory buffer
    add(outbox, *range(8, 251))  # beyond it: read back from the outbox in pages
    await settle()
    assert len(client.sent) == 100
    client.ack(10)
    await settle()
    assert len(client.sent) == 110
    for _ in range(20):
        client.ack(100)
        await settle()
    assert nums(client.payloads()) == list(range(1, 251))


@pytest.mark.usefixtures("publisher")
async def test_reconnect_replays_the_window_first_then_the_rest_then_availability(
    client: FakeClient, outbox: Outbox, metrics: EdgeMetrics, wall: Wall,
    availability: list[bytes | None],
) -> None:  # fmt: skip
    availability[0] = b"online"
    client.connect()
    await settle()
    add(outbox, 1, 2)
    await settle()
    client.drop()
    outbox.flush_acks()
    add(outbox, 3, 4)  # sampled while the broker was away
    wall.t += 30
    client.sent.clear()
    client.connect()
    await settle()
    # online, 1, 2 were acknowledged 30 s ago (inside the window): re-published first,
    # then the backlog, then the current availability.
    assert client.payloads() == [b"online", b"1", b"2", b"3", b"4", b"online"]
    assert sample(metrics, "edge_replayed_total", charger=CHARGER) == 3
    assert sample(metrics, "edge_published_total", charger=CHARGER) == 3 + 3
    wall.t += 61  # the window has passed: nothing is replayed any more
    outbox.flush_acks()
    client.drop()
    client.sent.clear()
    client.connect()
    await settle()
    assert client.payloads() == [b"online"]


@pytest.mark.usefixtures("publisher")
async def test_unacknowledged_rows_are_sent_again_after_a_drop(
    client: FakeClient, outbox: Outbox, metrics: EdgeMetrics
) -> None:
    client.auto_ack = False
    client.connect()
    await settle()
    add(outbox, 1, 2, 3)
    await settle()
    client.ack(1)
    await settle()
    client.drop()  # 2 and 3 were in flight
    client.auto_ack = True
    client.sent.clear()
    client.connect()
    await settle()
    assert client.payloads() == [b"1", b"2", b"3"]  # 1 is replayed (window), 2, 3 resent
    outbox.flush_acks()
    assert outbox.depth == 0
    assert (
        sample(metrics, "edge_publish_errors_total", charger=CHARGER, reason="connection_lost") == 2
    )


@pytest.mark.usefixtures("publisher")
async def test_a_long_backlog_is_read_back_in_order(client: FakeClient, outbox: Outbox) -> None:
    for start in range(1, 200, 3):
        add(outbox, start, start + 1, start + 2)  # one poll = one transaction
    await settle()
    client.connect()
    for _ in range(10):
        await settle()
    assert nums(client.payloads()) == list(range(1, 202))


@pytest.mark.usefixtures("publisher")
async def test_rows_dropped_by_the_bounds_are_not_sent(client: FakeClient, outbox: Outbox) -> None:
    client.auto_ack = False
    client.connect()
    await settle()
    add(outbox, 1)
    await settle()
    add(outbox, *range(2, 300))
    outbox.max_rows = 10
    assert outbox.enforce_bounds() == {"max_rows": 289}
    for _ in range(10):
        client.ack(100)
        await settle()
    sent = nums(client.payloads())
    assert sent[0] == 1
    assert sent == sorted(sent)
    assert len(sent) == len(set(sent))
    assert sent[-10:] == list(range(290, 300))


@pytest.mark.usefixtures("publisher")
async def test_refused_rows_are_dropped_counted_and_logged_once(
    client: FakeClient, outbox: Outbox, metrics: EdgeMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    client.auto_ack = False
    client.connect()
    await settle()
    add(outbox, 1, 2, 3)
    await settle()
    for fut in client.pending[:2]:
        fut.set_exception(PublishRefusedError(f"chargers/{CHARGER}/PowerOutput", 0x87))
    client.pending[2].set_result(None)
    await settle()
    outbox.flush_acks()
    assert outbox.depth == 0
    assert outbox.size == 1
    assert sample(metrics, "edge_outbox_dropped_total", reason="refused") == 2
    assert len([r for r in caplog.records if "0x87" in r.getMessage()]) == 1
    # The log names the counter under the service's own prefix.
    assert 'edge_outbox_dropped_total{reason="refused"}' in caplog.text


@pytest.mark.usefixtures("publisher")
async def test_a_transient_refusal_retries_the_row(client: FakeClient, outbox: Outbox) -> None:
    client.auto_ack = False
    client.connect()
    await settle()
    add(outbox, 1)
    await settle()
    client.pending[0].set_exception(PublishRefusedError("t", 0x97))  # quota exceeded
    client.pending.clear()
    client.auto_ack = True
    await asyncio.sleep(1.2)  # the publisher pauses before retrying
    assert client.payloads() == [b"1", b"1"]
    outbox.flush_acks()
    assert outbox.depth == 0


async def test_nothing_is_sent_while_disconnected(
    publisher: Publisher, client: FakeClient, outbox: Outbox, metrics: EdgeMetrics
) -> None:
    add(outbox, 1, 2)
    await settle()
    assert client.sent == []
    assert sample(metrics, "edge_mqtt_connected", charger=CHARGER) == 0
    client.connect()
    await settle()
    assert sample(metrics, "edge_mqtt_connected", charger=CHARGER) == 1
    assert client.payloads() == [b"1", b"2"]


# --- the edge identity: publishers sharing one connection and one window -------------


async def test_publishers_on_one_connection_share_the_window_fairly(
    client: FakeClient, outbox: Outbox, metrics: EdgeMetrics, wall: Wall
) -> None:
    window = Window(4)
    pubs = [
        Publisher(
            charger,
            client,
            outbox,
            metrics,
            availability=lambda: None,
            window=window,
            buffer_limit=8,
            page=5,
            clock=wall,
        )
        for charger in ("a", "b")
    ]
    tasks = [asyncio.create_task(p.run()) for p in pubs]
    try:
        client.auto_ack = False
        client.connect()
        await settle()
        for charger in ("a", "b"):
            outbox.append(
                [Entry(charger, f"chargers/{charger}/PowerOutput", f"{charger}{i}".encode(), i)
                 for i in range(10)]
            )  # fmt: skip
        await settle()
        assert len(client.sent) == 4  # the connection's window, not 4 per charger
        assert window.used == 4
        for _ in range(20):
            client.ack(1)
            await settle()
        # Both chargers got slots while the other had rows waiting: neither starves.
        first = [t.split("/")[1] for t, _, _ in client.sent[:12]]
        assert {"a", "b"} == set(first[4:])
        for charger in ("a", "b"):
            mine = [p for t, p, _ in client.sent if t.startswith(f"chargers/{charger}/")]
            assert mine == [f"{charger}{i}".encode() for i in range(10)]  # in order
        client.drop()  # whatever was in flight gives its slot back
        await settle()
        assert window.used == 0
        outbox.flush_acks()
        assert outbox.depth == 0
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_window_slots_are_handed_to_the_longest_waiting_owner() -> None:
    window = Window(1)
    woken: list[str] = []
    assert window.take("a")
    assert not window.take("b")
    window.wait("b", lambda: woken.append("b"))
    window.wait("c", lambda: woken.append("c"))
    window.wait("b", lambda: woken.append("b-again"))  # already in line: ignored
    window.give_back()  # a's PUBACK: the slot goes to b, not back to a
    assert woken == ["b"]
    assert not window.take("a")  # c waits longer than a
    assert window.take("b")
    window.give_back()
    assert woken == ["b", "c"]
    window.leave("c")  # c's session ended before it used the slot: freed
    assert window.used == 0
    assert window.take("a")


def test_window_stays_under_the_brokers_receive_maximum() -> None:
    window = Window(1000)
    window.fit(1000)  # Mosquitto's max_inflight_messages
    assert window.size == 984
    window.fit(65535)
    assert window.size == 1000
    window.fit(2)
    assert window.size == 1


async def test_an_edge_publisher_refused_as_not_authorized_halts_and_keeps_its_rows(
    client: FakeClient,
    outbox: Outbox,
    metrics: EdgeMetrics,
    wall: Wall,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Mosquitto closes the connection after a denied publish: with the edge identity that
    # is every charger's connection, so the charger the certificate lacks stops publishing.
    caplog.set_level(logging.ERROR)
    pub = Publisher(
        CHARGER,
        client,
        outbox,
        metrics,
        availability=lambda: None,
        halt_when_not_authorized=True,
        clock=wall,
    )
    task = asyncio.create_task(pub.run())
    try:
        client.auto_ack = False
        client.connect()
        await settle()
        add(outbox, 1, 2)
        await settle()
        client.pending[0].set_exception(PublishRefusedError(f"chargers/{CHARGER}/x", 0x87))
        await settle()
        client.drop()  # what Mosquitto does next
        client.sent.clear()
        client.connect()
        add(outbox, 3)
        await settle()
        assert pub.halted
        assert client.sent == []  # nothing more from this charger
        outbox.flush_acks()
        assert outbox.depth == 3  # kept for a poller whose certificate lists it
        assert sample(metrics, "edge_outbox_dropped_total", reason="refused") == 0
        assert len([r for r in caplog.records if "does not list this charger" in r.message]) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.usefixtures("publisher")
async def test_a_queued_row_over_the_packet_limit_is_dropped_not_sent(
    client: FakeClient, outbox: Outbox, metrics: EdgeMetrics
) -> None:
    # Issue 14, finding 3: rows queued before the limit was checked at enqueue (an older
    # outbox file, or a lowered POLLER_MQTT_MAX_PACKET_BYTES) never reach the broker.
    add(outbox, 1)
    outbox.append([Entry(CHARGER, f"chargers/{CHARGER}/Tariff", b"9" * 2000, 1.8e9)])
    add(outbox, 2)
    outbox.max_packet_bytes = 1024
    client.connect()
    await settle()
    assert nums(client.payloads()) == [1, 2]
    assert all(len(p) < 100 for p in client.payloads())
    assert sample(metrics, "edge_outbox_dropped_total", reason="too_large") == 1


def test_the_memory_share_keeps_an_edge_s_publishers_within_one_bound() -> None:
    assert memory_share(1) == (DEFAULT_BUFFER_LIMIT, DEFAULT_PAGE)  # a small edge: defaults
    for chargers in (1, 10, 66, 100, 1000, 5000):
        buffer_limit, page = memory_share(chargers)
        assert min(buffer_limit, page) >= MIN_SHARE_ROWS
        assert chargers * (buffer_limit + page) <= max(
            EDGE_MEMORY_ROWS, chargers * 2 * MIN_SHARE_ROWS
        )
    assert memory_share(1000) == (50, 50)
    assert memory_share(10**6) == (MIN_SHARE_ROWS, MIN_SHARE_ROWS)


async def test_publishers_behind_hold_only_their_share_of_rows_in_memory(
    client: FakeClient, outbox: Outbox, metrics: EdgeMetrics, wall: Wall
) -> None:
    # 40 chargers, a bound of 1,600 rows: 20 buffered each at most, the rest stays in
    # the outbox (read back in pages when the broker takes them again).
    buffer_limit, page = memory_share(40, total=1600)
    window = Window(4)  # one connection: 4 in flight, never acknowledged
    pubs = [
        Publisher(
            f"c{i}", client, outbox, metrics, availability=lambda: None, window=window,
            buffer_limit=buffer_limit, page=page, clock=wall,
        )
        for i in range(40)
    ]  # fmt: skip
    tasks = [asyncio.create_task(p.run()) for p in pubs]
    try:
        client.auto_ack = False
        client.connect()
        await settle()
        for rnd in range(5):
            outbox.append(
                [Entry(f"c{i}", f"chargers/c{i}/PowerOutput", b"%d" % (rnd * 10 + j), rnd * 10 + j)
                 for i in range(40) for j in range(10)]
            )  # fmt: skip
            await settle()
        assert len(client.sent) == 4
        held = sum(len(p._buffer) for p in pubs)
        assert 0 < held <= 1600 // 2  # with the defaults: 1,996
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
