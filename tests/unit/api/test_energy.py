"""Energy, cost and sessions from change-only readings (the billing rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargelift_api.energy import (
    ChargerSeries,
    EnergyDelta,
    Point,
    Series,
    derive_sessions,
    energy_by_period,
    price_delta,
    register_deltas,
)
from chargelift_api.periods import Period, calendar_periods

T0 = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def series(
    values: list[tuple[float, object]], initial: tuple[float, object] | None = None
) -> Series:  # type: ignore[type-arg]
    init = None if initial is None else Point(at(initial[0]), initial[1])
    return Series(init, [Point(at(m), v) for m, v in values])


def test_deltas_use_the_value_before_the_window_as_baseline() -> None:
    reg = series([(10, 1500.0), (20, 2500.0)], initial=(-5, 1000.0))
    assert [d.wh for d in register_deltas(reg)] == [500.0, 1000.0]


def test_first_reading_without_baseline_is_not_billed() -> None:
    # CitrineOS #1060: a 0 baseline billed the whole register.
    reg = series([(10, 910_000.0), (20, 910_083.0)])
    assert [d.wh for d in register_deltas(reg)] == [83.0]


def test_a_drop_is_a_reset_and_the_new_value_counts() -> None:
    reg = series([(0, 12_000.0), (10, 12_500.0), (20, 300.0), (30, 900.0)])
    deltas = list(register_deltas(reg))
    assert [d.wh for d in deltas] == [500.0, 300.0, 600.0]
    assert [d.reset for d in deltas] == [False, True, False]


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=50))
def test_energy_is_never_negative(values: list[float]) -> None:
    reg = series([(i, v) for i, v in enumerate(values)])
    assert all(d.wh >= 0 for d in register_deltas(reg))


@given(st.lists(st.floats(min_value=0, max_value=1e4), min_size=2, max_size=50))
def test_monotonic_register_energy_is_last_minus_first(steps: list[float]) -> None:
    values, total = [], 0.0
    for s in steps:
        total += s
        values.append(total)
    reg = series([(i, v) for i, v in enumerate(values)])
    assert sum(d.wh for d in register_deltas(reg)) == pytest.approx(values[-1] - values[0])


def test_a_delta_across_a_price_change_is_priced_pro_rata() -> None:
    delta = EnergyDelta(at(0), at(60), 6000.0, reset=False)
    price = series([(30, 20.0)], initial=(-100, 30.0))
    tariff = series([(30, "T2")], initial=(-100, "T1"))
    parts = price_delta(delta, price, tariff)
    assert [(p.wh, p.price_ct_per_kwh, p.tariff) for p in parts] == [
        (3000.0, 30.0, "T1"),
        (3000.0, 20.0, "T2"),
    ]
    assert sum(p.cost_ct for p in parts) == pytest.approx(3 * 30 + 3 * 20)


@given(
    st.lists(st.tuples(st.integers(1, 600), st.floats(0, 5000)), min_size=1, max_size=20),
    st.lists(st.tuples(st.integers(1, 600), st.floats(1, 60)), max_size=5),
)
def test_cost_is_the_sum_of_energy_times_price_in_force(
    steps: list[tuple[int, float]], prices: list[tuple[int, float]]
) -> None:
    t, total, values = 0, 0.0, []
    for dt, wh in steps:
        t += dt
        total += wh
        values.append((t, total))
    reg = series(values, initial=(0, 0.0))
    price = series(sorted(prices), initial=(-1, 25.0))
    tariff: Series = Series(None, [])  # type: ignore[type-arg]
    parts = [p for d in register_deltas(reg) for p in price_delta(d, price, tariff)]
    assert sum(p.wh for p in parts) == pytest.approx(total)
    for p in parts:
        assert p.price_ct_per_kwh == price.at(p.start)
        assert p.cost_ct == pytest.approx(p.wh / 1000 * p.price_ct_per_kwh)  # type: ignore[operator]


def charger(
    state: list[tuple[float, object]],
    vehicle: list[tuple[float, object]],
    register: list[tuple[float, object]],
    power: list[tuple[float, object]] | None = None,
    price: list[tuple[float, object]] | None = None,
    tariff: list[tuple[float, object]] | None = None,
    avail: list[tuple[float, object]] | None = None,
) -> ChargerSeries:
    return ChargerSeries(
        state=series(state),
        vehicle=series(vehicle),
        register=series(register, initial=(-60, 12_000.0)),
        power=series(power or []),
        price=series(price or [], initial=(-60, 30.0)),
        tariff=series(tariff or [], initial=(-60, "T1")),
        availability=series(avail or []),
    )


def test_session_spans_a_pause_and_ends_at_unplug() -> None:
    c = charger(
        state=[(0, "idle"), (5, "charging"), (30, "idle"), (40, "charging"), (70, "idle")],
        vehicle=[(2, True), (80, False)],
        register=[(5, 0.0), (30, 4000.0), (40, 4000.0), (70, 9000.0)],
        power=[(6, 11000.0), (30, 0.0), (41, 7400.0), (70, 0.0)],
    )
    [s] = derive_sessions(c, at(120))
    assert (s.start, s.end) == (at(5), at(80))
    assert s.energy_wh == pytest.approx(9000.0)
    assert s.peak_power_w == 11000.0
    assert s.cost_ct == pytest.approx(9 * 30)


def test_session_across_a_tariff_boundary_at_midnight_pays_each_tariff() -> None:
    # 23:00 local (Berlin, UTC+1) = 22:00 UTC = at(60); tariff T2 from 22:00 UTC.
    c = charger(
        state=[(50, "charging"), (130, "idle")],
        vehicle=[(49, True), (140, False)],
        register=[(50, 0.0), (70, 4000.0), (130, 16000.0)],
        price=[(60, 20.0)],
        tariff=[(60, "T2")],
    )
    [s] = derive_sessions(c, at(200))
    # 50..70: 4000 Wh, half before the change (30 ct), half after (20 ct); then 12000 Wh at 20 ct.
    assert s.energy_wh == pytest.approx(16000.0)
    assert s.tariffs == pytest.approx({"T1": 2000.0, "T2": 14000.0})
    assert s.cost_ct == pytest.approx(2 * 30 + 14 * 20)


def test_a_reset_inside_a_session_is_counted_not_lost() -> None:
    c = charger(
        state=[(0, "charging")],
        vehicle=[(0, True), (100, False)],
        register=[(0, 0.0), (30, 5000.0), (40, 200.0), (90, 3200.0)],
    )
    [s] = derive_sessions(c, at(120))
    assert s.energy_wh == pytest.approx(5000 + 200 + 3000)


def test_charger_offline_mid_session_keeps_the_session_open() -> None:
    c = charger(
        state=[(0, "charging")],
        vehicle=[(0, True)],
        register=[(0, 0.0), (20, 3000.0)],
        avail=[(0, "online"), (25, "offline")],
    )
    [s] = derive_sessions(c, at(60))
    assert s.end is None
    assert s.offline
    assert s.energy_wh == pytest.approx(3000.0)


def test_without_vehicle_data_a_session_ends_with_charging() -> None:
    c = charger(
        state=[(0, "charging"), (30, "idle"), (40, "charging"), (50, "idle")],
        vehicle=[],
        register=[(0, 0.0), (30, 1000.0), (50, 1500.0)],
    )
    assert [(s.start, s.end) for s in derive_sessions(c, at(60))] == [
        (at(0), at(30)),
        (at(40), at(50)),
    ]


def test_energy_by_day_in_local_time_splits_at_local_midnight() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start, end = datetime(2026, 11, 24, tzinfo=berlin), datetime(2026, 11, 26, tzinfo=berlin)
    periods = calendar_periods(start, end, Period.DAY, berlin)
    assert len(periods) == 2
    midnight = datetime(2026, 11, 25, tzinfo=berlin)
    reg: Series = Series(
        Point(midnight - timedelta(hours=1), 0.0),  # type: ignore[type-arg]
        [Point(midnight + timedelta(hours=1), 2000.0)],
    )
    rows = energy_by_period(reg, series([], initial=(-600, 30.0)), Series(None, []), periods)
    assert [r.energy_wh for r in rows] == pytest.approx([1000.0, 1000.0])


def test_calendar_periods_follow_dst_and_months() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    days = calendar_periods(
        datetime(2026, 3, 29, tzinfo=berlin),
        datetime(2026, 3, 30, tzinfo=berlin),
        Period.DAY,
        berlin,
    )
    assert [(b - a) for a, b in days] == [timedelta(hours=23)]
    months = calendar_periods(
        datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=berlin), Period.MONTH, berlin
    )
    assert [a.astimezone(berlin).month for a, _ in months] == [1, 2, 3]
    weeks = calendar_periods(
        datetime(2026, 11, 25, tzinfo=berlin),
        datetime(2026, 12, 10, tzinfo=berlin),
        Period.WEEK,
        berlin,
    )
    assert all(a.astimezone(berlin).weekday() == 0 for a, _ in weeks[1:])
