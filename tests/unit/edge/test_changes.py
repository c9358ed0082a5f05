"""Change detection and the periodic snapshot."""

from __future__ import annotations

import pytest

from chargelift_contract.envelope import Value
from chargelift_edge.changes import ChangeDetector


def test_first_read_is_full_then_only_changes() -> None:
    d = ChangeDetector(snapshot_interval=300)
    assert d.snapshot_due(0)
    values: dict[str, Value] = {"PowerOutput": 0, "Tariff": "T1"}
    assert d.select(values, full=True) == values
    d.commit(values, full=True, now=0)
    assert not d.snapshot_due(10)
    assert d.select({"PowerOutput": 0, "Tariff": "T1"}, full=False) == {}
    assert d.select({"PowerOutput": 7000, "Tariff": "T1"}, full=False) == {"PowerOutput": 7000}


def test_snapshot_is_due_after_the_interval() -> None:
    d = ChangeDetector(snapshot_interval=300)
    d.commit({"PowerOutput": 1}, full=True, now=0)
    assert not d.snapshot_due(299.9)
    assert d.snapshot_due(300)
    assert d.select({"PowerOutput": 1}, full=True) == {"PowerOutput": 1}


def test_only_what_was_committed_counts_as_published() -> None:
    d = ChangeDetector(snapshot_interval=300)
    d.commit({"PowerOutput": 1}, full=True, now=0)
    assert d.select({"PowerOutput": 2}, full=False) == {"PowerOutput": 2}
    # not committed (e.g. the outbox write failed): still a change next time
    assert d.select({"PowerOutput": 2}, full=False) == {"PowerOutput": 2}


def test_type_changes_are_changes() -> None:
    d = ChangeDetector(snapshot_interval=300)
    d.commit({"A": 1, "B": True, "C": None}, full=True, now=0)
    assert d.select({"A": 1.0, "B": 1, "C": None}, full=False) == {"A": 1.0, "B": 1}


def test_forget_forces_a_full_snapshot() -> None:
    d = ChangeDetector(snapshot_interval=300)
    d.commit({"A": 1}, full=True, now=0)
    d.forget()
    assert d.snapshot_due(1)


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ChangeDetector(0)
