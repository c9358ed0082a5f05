"""Transaction ids: one per distinct start, the same for a replay, durable."""

from __future__ import annotations

from pathlib import Path

from chargelift_ocpp.transactions import TransactionStore

T0 = "2026-01-02T10:00:00Z"


def test_a_replayed_start_gets_the_same_id_also_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "tx.sqlite3"
    with TransactionStore(path) as store:
        a = store.start("cp", 1, T0, 100, "tag")
        b = store.start("cp", 1, T0, 100, "tag")
        assert a.new
        assert not b.new
        assert a.transaction_id == b.transaction_id
        # any difference is another transaction
        ids = {
            store.start("cp", 2, T0, 100, "tag").transaction_id,
            store.start("cp", 1, "2026-01-02T10:00:01Z", 100, "tag").transaction_id,
            store.start("cp", 1, T0, 101, "tag").transaction_id,
            store.start("cp", 1, T0, 100, "other").transaction_id,
            store.start("cp-b", 1, T0, 100, "tag").transaction_id,
        }
        assert len(ids) == 5
        assert a.transaction_id not in ids
    with TransactionStore(path) as store:
        again = store.start("cp", 1, T0, 100, "tag")
        assert (again.transaction_id, again.new) == (a.transaction_id, False)
        assert store.meter_start("cp", a.transaction_id) == 100


def test_stop_outcomes(tmp_path: Path) -> None:
    with TransactionStore(tmp_path / "tx.sqlite3") as store:
        tx = store.start("cp", 1, T0, 100, "tag").transaction_id
        assert store.stop("cp", 999, T0, 5) == "unknown"
        assert store.stop("other-cp", tx, T0, 5) == "unknown"
        assert store.stop("cp", tx, T0, 500) == "stopped"
        assert store.stop("cp", tx, T0, 500) == "already_stopped"


def test_hostile_numbers_are_stored_not_failed(tmp_path: Path) -> None:
    with TransactionStore(tmp_path / "tx.sqlite3") as store:
        huge = store.start("cp", 10**30, T0, 10**40, "tag")
        assert store.start("cp", 10**30, T0, 10**40, "tag") == type(huge)(
            huge.transaction_id, False
        )
        assert store.stop("cp", 10**30, T0, 1) == "unknown"
        assert store.stop("cp", -5, T0, 1) == "unknown"
        assert store.stop("cp", huge.transaction_id, T0, -(10**40)) == "stopped"
        assert store.meter_start("cp", huge.transaction_id) == 10**40
