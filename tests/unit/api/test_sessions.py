"""Charging sessions: the session rule and per-interval billing (chargelift_api.sessions)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargelift_api.energy import Tariffs
from chargelift_api.series import Series
from chargelift_api.sessions import Session, bill_sessions, derive_sessions, session_cuts
from tests.unit.api.helpers import at, series
from tests.unit.api.reference import coalesce, register_deltas

Pts = Sequence[tuple[float, Any]]


def sessions(
    state: Pts,
    vehicle: Pts,
    register: Pts | None = None,
    price: Pts | None = None,
    tariff: Pts | None = None,
    avail: Pts | None = None,
    until: float = 200,
) -> list[Session]:
    found = derive_sessions(series(state), series(vehicle), series(avail or []), at(until))
    tariffs = Tariffs(series(price or [], initial=(-60, 30.0)), series(tariff or [], (-60, "T1")))
    deltas = register_deltas(series(register or [], initial=(-60, 12_000.0)))
    bill_sessions(found, deltas, tariffs)
    return found


def test_session_spans_a_pause_and_ends_at_unplug() -> None:
    [s] = sessions(
        state=[(0, "idle"), (5, "charging"), (30, "idle"), (40, "charging"), (70, "idle")],
        vehicle=[(2, True), (80, False)],
        register=[(5, 0.0), (30, 4000.0), (40, 4000.0), (70, 9000.0)],
    )
    assert (s.start, s.end) == (at(5), at(80))
    assert s.charging_s == 55 * 60
    assert s.bill.energy_wh == pytest.approx(9000.0)
    assert s.bill.cost_ct == pytest.approx(9 * 30)


def test_session_across_a_tariff_boundary_pays_each_tariff() -> None:
    [s] = sessions(
        state=[(50, "charging"), (130, "idle")],
        vehicle=[(49, True), (140, False)],
        register=[(50, 0.0), (70, 4000.0), (130, 16000.0)],
        price=[(60, 20.0)],
        tariff=[(60, "T2")],
    )
    # 50..70: 4000 Wh, half before the change (30 ct), half after (20 ct); then 12000 Wh at 20 ct.
    assert s.bill.energy_wh == pytest.approx(16000.0)
    assert [(ln.tariff, ln.price_ct_per_kwh) for ln in s.bill.lines] == [("T1", 30.0), ("T2", 20.0)]
    assert [ln.energy_wh for ln in s.bill.lines] == pytest.approx([2000.0, 14000.0])
    assert s.bill.cost_ct == pytest.approx(2 * 30 + 14 * 20)


def test_a_reset_inside_a_session_is_counted_not_lost() -> None:
    [s] = sessions(
        state=[(0, "charging")],
        vehicle=[(0, True), (100, False)],
        register=[(0, 0.0), (30, 5000.0), (40, 200.0), (90, 3200.0)],
    )
    assert s.bill.energy_wh == pytest.approx(5000 + 200 + 3000)


def test_the_held_register_of_the_last_session_is_not_billed_again() -> None:
    # SessionEnergy holds 12 kWh after the previous session; the new one restarts at 0.
    [s] = sessions(
        state=[(0, "idle"), (10, "charging"), (40, "idle")],
        vehicle=[(9, True), (50, False)],
        register=[(0, 12_000.0), (10, 0.0), (20, 1000.0), (40, 3000.0)],
    )
    assert s.bill.energy_wh == pytest.approx(3000.0)


def test_charger_offline_mid_session_keeps_the_session_open() -> None:
    [s] = sessions(
        state=[(0, "charging")],
        vehicle=[(0, True)],
        register=[(0, 0.0), (20, 3000.0)],
        avail=[(0, "online"), (25, "offline")],
        until=60,
    )
    assert (s.end, s.offline) == (None, True)
    assert s.bill.energy_wh == pytest.approx(3000.0)
    assert s.charging_s == 60 * 60


def test_energy_reported_after_an_outage_is_counted_in_the_session() -> None:
    [s] = sessions(
        state=[(0, "charging"), (90, "idle")],
        vehicle=[(0, True), (90, False)],
        register=[(0, 0.0), (20, 3000.0), (90, 9000.0)],
        avail=[(0, "online"), (25, "offline"), (90, "online")],
    )
    assert (s.end, s.offline) == (at(90), True)
    assert s.bill.energy_wh == pytest.approx(9000.0)


def test_without_vehicle_data_a_session_ends_with_charging() -> None:
    found = sessions(
        state=[(0, "charging"), (30, "idle"), (40, "charging"), (50, "idle")],
        vehicle=[],
        register=[(0, 0.0), (30, 1000.0), (50, 1500.0)],
    )
    assert [(s.start, s.end, s.bill.energy_wh) for s in found] == [
        (at(0), at(30), 1000.0),
        (at(40), at(50), 500.0),
    ]


def test_snapshots_repeating_charging_do_not_start_new_sessions() -> None:
    found = sessions(
        state=[(0, "charging"), (5, "charging"), (10, "charging"), (20, "idle")],
        vehicle=[(0, True), (5, True), (30, False), (35, False)],
    )
    assert [(s.start, s.end) for s in found] == [(at(0), at(30))]


def test_stale_charging_state_after_unplug_waits_for_the_next_plug_in() -> None:
    found = sessions(
        state=[(0, "charging")],
        vehicle=[(0, True), (30, False), (60, True), (90, False)],
    )
    assert [(s.start, s.end) for s in found] == [(at(0), at(30)), (at(60), at(90))]


def test_a_session_open_before_the_series_starts_at_the_carried_in_reading() -> None:
    state: Series[str | None] = series([(30, "idle")], initial=(-10, "charging"))
    [s] = derive_sessions(state, Series.empty(), Series.empty(), at(60))
    assert (s.start, s.end) == (at(-10), at(30))


@given(
    st.lists(
        st.tuples(st.integers(1, 30), st.sampled_from(["idle", "charging", "off"])), max_size=30
    ),
    st.lists(st.tuples(st.integers(1, 30), st.booleans()), max_size=15),
)
def test_sessions_are_ordered_and_disjoint(
    state_steps: list[tuple[int, str]], vehicle_steps: list[tuple[int, bool]]
) -> None:
    def timeline(steps: list[tuple[int, Any]]) -> Pts:
        t = 0
        out: list[tuple[float, Any]] = []
        for dt, v in steps:
            t += dt
            out.append((t, v))
        return out

    found = sessions(timeline(state_steps), timeline(vehicle_steps), until=10_000)
    for a, b in itertools.pairwise(found):
        assert a.end is not None
        assert a.start <= a.end < b.start
    assert all(s.end is not None for s in found[:-1])


@given(st.lists(st.tuples(st.integers(1, 20), st.floats(0, 3000)), min_size=2, max_size=40))
def test_merging_deltas_at_session_cuts_bills_the_same(steps: list[tuple[int, float]]) -> None:
    t, v, reg = 0, 0.0, []
    for dt, wh in steps:
        t += dt
        v += wh
        reg.append((t, v))
    state = [(t * 0.2, "charging"), (t * 0.5, "idle"), (t * 0.6, "charging"), (t * 0.9, "idle")]
    tariffs = Tariffs(series([(t * 0.4, 20.0)], initial=(-1, 30.0)), Series.empty())
    raw = list(register_deltas(series(reg, initial=(0, 0.0))))
    found = [
        derive_sessions(series(state), Series.empty(), Series.empty(), at(t)) for _ in range(2)
    ]
    cuts = session_cuts(found[0]) + sorted(tariffs.cuts(at(-1), at(t + 1)))
    bill_sessions(found[0], raw, tariffs)
    bill_sessions(found[1], coalesce(raw, cuts), tariffs)
    assert [s.bill.energy_wh for s in found[0]] == pytest.approx(
        [s.bill.energy_wh for s in found[1]]
    )
    assert [s.bill.cost_ct for s in found[0]] == pytest.approx([s.bill.cost_ct for s in found[1]])
