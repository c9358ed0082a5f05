"""The durable outbox: order, acknowledgement, replay window, bounds, reopening."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from chargelift_edge.outbox import Entry, Outbox, OutboxError, Row


class Wall:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


class Listener:
    def __init__(self) -> None:
        self.added: list[Row] = []
        self.dropped = 0

    def rows_added(self, rows: Sequence[Row]) -> None:
        self.added.extend(rows)

    def rows_dropped(self) -> None:
        self.dropped += 1


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite"


@pytest.fixture
def outbox(path: Path, wall: Wall) -> Iterator[Outbox]:
    with Outbox.open(path, max_rows=100, max_age=3600, replay_window=60, clock=wall) as box:
        yield box


def entry(i: int, charger: str = "c1", field: str = "PowerOutput", at: float = 0.0) -> Entry:
    return Entry(charger, f"chargers/{charger}/{field}", f"v{i}".encode(), at or float(i))


def payloads(rows: Sequence[Row]) -> list[bytes]:
    return [r.payload for r in rows]


def test_append_is_ordered_and_notifies_the_charger(outbox: Outbox) -> None:
    l1, l2 = Listener(), Listener()
    outbox.listen("c1", l1)
    outbox.listen("c2", l2)
    rows = outbox.append([entry(1), entry(2, "c2"), entry(3)])
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert payloads(l1.added) == [b"v1", b"v3"]
    assert payloads(l2.added) == [b"v2"]
    assert outbox.depth == 3
    assert outbox.size == 3
    assert payloads(outbox.load("c1", after=0, limit=10)) == [b"v1", b"v3"]
    assert outbox.load("c1", after=rows[0].seq, limit=10)[0].payload == b"v3"


def test_one_append_is_one_transaction(outbox: Outbox) -> None:
    good = entry(1)
    with pytest.raises(sqlite3.IntegrityError):
        outbox.append([good, Entry("c1", "t", None, 1.0)])  # type: ignore[arg-type]
    assert outbox.load("c1", after=0, limit=10) == []
    assert outbox.depth == 0


def test_acknowledged_rows_leave_only_after_the_ack_is_written(outbox: Outbox, wall: Wall) -> None:
    rows = outbox.append([entry(i) for i in range(1, 4)])
    outbox.ack(rows[0].seq)
    assert outbox.depth == 3  # noted, not yet written
    assert outbox.flush_acks() == 1
    assert outbox.depth == 2
    wall.t += 61  # past the replay window
    assert payloads(outbox.load("c1", after=0, limit=10)) == [b"v2", b"v3"]


def test_recently_acknowledged_rows_are_replayed_in_order(outbox: Outbox, wall: Wall) -> None:
    rows = outbox.append([entry(i) for i in range(1, 5)])
    for r in rows[:2]:
        outbox.ack(r.seq)
    outbox.flush_acks()
    wall.t += 30  # inside the 60 s window
    loaded = outbox.load("c1", after=0, limit=10)
    assert payloads(loaded) == [b"v1", b"v2", b"v3", b"v4"]
    assert [r.acked for r in loaded] == [True, True, False, False]


def test_double_ack_counts_once(outbox: Outbox) -> None:
    (row,) = outbox.append([entry(1)])
    outbox.ack(row.seq)
    outbox.flush_acks()
    outbox.ack(row.seq)
    assert outbox.flush_acks() == 0
    assert outbox.depth == 0
    assert outbox.size == 1


def test_prune_removes_acked_rows_after_the_window(outbox: Outbox, wall: Wall) -> None:
    rows = outbox.append([entry(i) for i in range(1, 4)])
    outbox.ack(rows[0].seq)
    outbox.flush_acks()
    assert outbox.prune() == 0
    wall.t += 61
    assert outbox.prune() == 1
    assert outbox.size == 2
    assert outbox.depth == 2


def test_survives_reopening(path: Path, wall: Wall) -> None:
    with Outbox.open(path, replay_window=60, clock=wall) as box:
        rows = box.append([entry(i) for i in range(1, 6)])
        box.ack(rows[0].seq)
        box.flush_acks()
        box.ack(rows[1].seq)  # written on close
    with Outbox.open(path, replay_window=60, clock=wall) as box:
        assert box.depth == 3
        assert box.size == 5
        more = box.append([entry(6)])
        assert more[0].seq > rows[-1].seq
        wall.t += 100
        assert payloads(box.load("c1", after=0, limit=10)) == [b"v3", b"v4", b"v5", b"v6"]


def test_sequence_numbers_are_never_reused(path: Path, wall: Wall) -> None:
    with Outbox.open(path, replay_window=0, clock=wall) as box:
        (row,) = box.append([entry(1)])
        box.ack(row.seq)
        box.flush_acks()
        wall.t += 1
        assert box.prune() == 1
        (again,) = box.append([entry(2)])
        assert again.seq > row.seq


def test_the_file_is_in_wal_mode(outbox: Outbox, path: Path) -> None:
    outbox.append([entry(1)])
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_max_rows_drops_the_oldest_but_keeps_each_topics_newest(path: Path, wall: Wall) -> None:
    with Outbox.open(path, max_rows=5, max_age=3600, replay_window=60, clock=wall) as box:
        listener = Listener()
        box.listen("c1", listener)
        box.append([entry(1, field="SessionEnergy")])  # the only SessionEnergy: kept
        box.append([entry(i) for i in range(2, 10)])  # PowerOutput v2..v9
        assert box.depth == 9
        assert box.enforce_bounds() == {"max_rows": 4}
        assert box.depth == 5
        assert payloads(box.load("c1", after=0, limit=20)) == [b"v1", b"v6", b"v7", b"v8", b"v9"]
        assert listener.dropped == 1
    # Every drop is recorded with its reason, so that a gap downstream is explained.
    db = sqlite3.connect(path)
    recorded = db.execute("SELECT payload, reason FROM dropped ORDER BY seq").fetchall()
    db.close()
    assert recorded == [
        (b"v2", "max_rows"),
        (b"v3", "max_rows"),
        (b"v4", "max_rows"),
        (b"v5", "max_rows"),
    ]


def test_max_age_drops_old_unsent_rows_but_not_the_newest(path: Path, wall: Wall) -> None:
    with Outbox.open(path, max_rows=100, max_age=600, replay_window=60, clock=wall) as box:
        box.append([entry(1), entry(2), entry(3, field="Tariff")])
        wall.t += 500
        box.append([entry(4)])
        wall.t += 200  # v1..v3 are 700 s old, v4 200 s
        assert box.enforce_bounds() == {"max_age": 2}  # v1, v2; v3 is Tariff's newest
        assert payloads(box.load("c1", after=0, limit=20)) == [b"v3", b"v4"]


def test_acked_rows_are_not_counted_as_drops(path: Path, wall: Wall) -> None:
    with Outbox.open(path, max_rows=1, max_age=3600, replay_window=60, clock=wall) as box:
        rows = box.append([entry(1), entry(2)])
        box.ack(rows[0].seq)  # noted only; enforce_bounds writes it first
        assert box.enforce_bounds() == {}
        assert box.depth == 1


def test_discard_removes_one_undeliverable_row(outbox: Outbox) -> None:
    rows = outbox.append([entry(1), entry(2)])
    assert outbox.discard(rows[0].seq)
    assert not outbox.discard(rows[0].seq)
    assert outbox.depth == 1
    assert payloads(outbox.load("c1", after=0, limit=10)) == [b"v2"]


def test_oldest_unsent_age(outbox: Outbox, wall: Wall) -> None:
    assert outbox.oldest_unsent_age() == 0
    outbox.append([entry(1, at=wall.t - 5), entry(2, at=wall.t)])
    assert outbox.oldest_unsent_age() == pytest.approx(5)


def test_refuses_an_unknown_schema(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(OutboxError, match="schema version 99"):
        Outbox.open(path)


# -- issue 14, finding 3: nothing the broker cannot take reaches the head of the queue --


def test_an_entry_over_the_broker_packet_limit_is_dropped_at_enqueue(
    path: Path, wall: Wall, caplog: pytest.LogCaptureFixture
) -> None:
    from chargelift_contract.limits import publish_packet_size

    drops: list[tuple[str, int]] = []
    topic = "chargers/c1/FirmwareVersion"
    limit = 1024
    fits = b"x" * (limit - publish_packet_size(topic, b"") - 1)  # - 1: a 2-byte length
    assert publish_packet_size(topic, fits) == limit
    with Outbox.open(
        path, replay_window=60, clock=wall, max_packet_bytes=limit,
        on_drop=lambda reason, n: drops.append((reason, n)),
    ) as box:  # fmt: skip
        listener = Listener()
        box.listen("c1", listener)
        rows = box.append(
            [
                entry(1),
                Entry("c1", topic, fits + b"y", 2.0),
                Entry("c1", topic, fits, 3.0),
                entry(4),
            ]
        )
        assert payloads(rows) == [b"v1", fits, b"v4"]
        assert payloads(listener.added) == [b"v1", fits, b"v4"]
        assert box.depth == 3
        assert drops == [("too_large", 1)]
        assert payloads(box.load("c1", after=0, limit=10)) == [b"v1", fits, b"v4"]
        box.append([Entry("c1", topic, fits * 2, 5.0)])
        assert drops == [("too_large", 1), ("too_large", 1)]
    db = sqlite3.connect(path)
    try:
        dropped = db.execute("SELECT seq, topic, reason, length(payload) FROM dropped").fetchall()
    finally:
        db.close()
    assert dropped == [
        (2, topic, "too_large", len(fits) + 1),
        (5, topic, "too_large", 2 * len(fits)),
    ]
    logged = [r.getMessage() for r in caplog.records if "packet limit" in r.getMessage()]
    assert len(logged) == 1  # once per topic
    assert "c1" in logged[0]
    assert "1025 bytes" in logged[0]


# -- issue 16: per-row retain flag (schema 2) ------------------------------------------


def test_a_version_1_outbox_is_migrated_its_rows_stay_retained(path: Path, wall: Wall) -> None:
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, charger TEXT NOT NULL, topic TEXT NOT NULL,
            payload BLOB NOT NULL, sampled_at REAL NOT NULL, created_at REAL NOT NULL,
            acked_at REAL
        );
        INSERT INTO outbox (charger, topic, payload, sampled_at, created_at)
            VALUES ('c1', 'chargers/c1/PowerOutput', X'7631', 1.0, 1.0);
        PRAGMA user_version=1;
        """
    )
    db.close()
    with Outbox.open(path, clock=wall) as outbox:
        outbox.append([Entry("c1", "chargers/c1/result/Stop", b"r", 2.0, retain=False)])
        rows = outbox.load("c1", after=0, limit=10)
        assert [(r.payload, r.retain) for r in rows] == [(b"v1", True), (b"r", False)]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()


def test_statements_commit_with_the_rows_or_not_at_all(outbox: Outbox) -> None:
    bad = ("INSERT INTO no_such_table VALUES (?)", (1,))
    with pytest.raises(sqlite3.OperationalError):
        outbox.append([entry(1)], also=[bad])
    assert outbox.depth == 0
    assert outbox.load("c1", after=0, limit=10) == []
