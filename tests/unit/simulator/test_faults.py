"""Fault values, their countdown, and the control endpoint's fault bodies."""

from __future__ import annotations

import math

import pytest

from chargelift_simulator import Fault, FaultKind
from chargelift_simulator.control import parse_fault
from chargelift_simulator.faults import FaultSlot


def test_a_fault_accepts_the_enum_or_its_string() -> None:
    assert Fault("timeout").kind is FaultKind.TIMEOUT  # type: ignore[arg-type]
    assert Fault(FaultKind.LATENCY, latency_s=2).to_json() == {
        "kind": "latency",
        "latency_s": 2,
        "remaining": None,
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "slow"},
        {"latency_s": -1.0},
        {"latency_s": math.inf},
        {"latency_s": True},
        {"remaining": 0},
        {"remaining": 1.5},
        {"remaining": True},
    ],
)
def test_invalid_faults_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Fault(**kwargs)  # type: ignore[arg-type]


def test_a_slot_counts_remaining_down_then_heals() -> None:
    slot = FaultSlot()
    assert slot.take().kind is FaultKind.NONE
    slot.set(Fault(FaultKind.HTTP500, remaining=2))
    assert slot.current.remaining == 2
    assert slot.take().kind is FaultKind.HTTP500
    assert slot.current == Fault(FaultKind.HTTP500, remaining=1)
    assert slot.take().kind is FaultKind.HTTP500
    assert slot.current.kind is FaultKind.NONE
    assert slot.take().kind is FaultKind.NONE


def test_without_remaining_a_fault_stays_until_replaced() -> None:
    slot = FaultSlot()
    slot.set(Fault(FaultKind.RESET))
    assert all(slot.take().kind is FaultKind.RESET for _ in range(100))
    slot.set(Fault())
    assert slot.take().kind is FaultKind.NONE


def test_parse_fault_bodies() -> None:
    assert parse_fault(b'{"kind": "latency", "latency_s": 0.5, "remaining": 3}') == Fault(
        FaultKind.LATENCY, 0.5, 3
    )
    assert parse_fault(b'{"kind": "none"}') == Fault()
    assert parse_fault(b'{"kind": "reset", "latency_s": null, "remaining": null}') == Fault(
        FaultKind.RESET
    )
    for bad in (
        b"not json",
        b"[]",
        b"{}",
        b'{"kind": 1}',
        b'{"kind": "slow"}',
        b'{"kind": "latency", "latency_s": "1"}',
        b'{"kind": "latency", "latency_s": -1}',
        b'{"kind": "http500", "remaining": 0}',
        b'{"kind": "http500", "other": 1}',
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
            parse_fault(bad)
