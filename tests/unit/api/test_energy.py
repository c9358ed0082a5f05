"""Energy and cost from register readings (the billing rules of chargelift_api.energy)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargelift_api.energy import NO_TARIFF, EnergyDelta, Tariffs, energy_by_period
from chargelift_api.periods import Period, calendar_periods
from chargelift_api.series import Point, Series
from tests.unit.api.helpers import at, series
from tests.unit.api.reference import coalesce, register_deltas

FLAT = Tariffs(series([], initial=(-600, 30.0)), Series.empty())


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


def test_null_readings_are_skipped_not_zero() -> None:
    reg = series([(0, 1000.0), (5, None), (10, 1200.0)])
    assert [d.wh for d in register_deltas(reg)] == [200.0]


@given(st.lists(st.one_of(st.none(), st.floats(0, 1e6)), min_size=1, max_size=50))
def test_energy_is_never_negative(values: list[float | None]) -> None:
    reg = series(list(enumerate(values)))
    assert all(d.wh >= 0 for d in register_deltas(reg))


@given(st.lists(st.floats(min_value=0, max_value=1e4), min_size=2, max_size=50))
def test_monotonic_register_energy_is_last_minus_first(steps: list[float]) -> None:
    values, total = [], 0.0
    for s in steps:
        total += s
        values.append(total)
    reg = series(list(enumerate(values)))
    assert sum(d.wh for d in register_deltas(reg)) == pytest.approx(values[-1] - values[0])


@given(st.lists(st.floats(0, 1e5), min_size=2, max_size=40))
def test_resets_never_bill_more_than_each_rise_and_each_new_value(values: list[float]) -> None:
    # Each reading's energy since the previous one is at most the rise or, after a
    # drop, the whole new value (a glitch's return bills less: only its gain).
    reg = series(list(enumerate(values)))
    bound = sum(b - a if b >= a else b for a, b in itertools.pairwise(values))
    total = sum(d.wh for d in register_deltas(reg))
    assert 0.0 <= total <= bound + 1e-6


def test_a_drop_to_0_and_back_is_a_glitch_not_energy() -> None:
    # Issue 17 must-show 6 (lbbrhzn/ocpp#1756): the register reads 0 for a moment.
    reg = series([(0, 5000.0), (10, 5500.0), (20, 0.0), (30, 0.0), (40, 5600.0), (50, 6000.0)])
    deltas = list(register_deltas(reg))
    assert [d.wh for d in deltas] == [500.0, 100.0, 400.0]
    assert not any(d.reset for d in deltas)
    assert deltas[1].start == at(10)  # the gain over the dip, from the last reading at the top


def test_a_jump_backwards_and_back_is_a_glitch() -> None:
    reg = series([(0, 5000.0), (10, 3000.0), (20, 2000.0), (30, 5000.0), (40, 5200.0)])
    assert sum(d.wh for d in register_deltas(reg)) == 200.0


def test_a_drop_that_rises_below_its_top_is_a_reset() -> None:
    # A new session: the register restarts at 0 and climbs; once above the old level it
    # is still the new session's energy.
    reg = series([(0, 5000.0), (10, 0.0), (20, 300.0), (30, 6000.0)])
    deltas = list(register_deltas(reg))
    assert [d.wh for d in deltas if d.wh] == [300.0, 5700.0]


@given(
    st.lists(st.floats(0, 1e4), min_size=2, max_size=30),
    st.lists(
        st.tuples(st.integers(0, 29), st.lists(st.floats(0, 1.0), min_size=1, max_size=4)),
        max_size=5,
    ),
)
def test_glitches_leave_the_energy_of_a_register_unchanged(
    steps: list[float], dips: list[tuple[int, list[float]]]
) -> None:
    # A rising register with dips (readings below the level before them, never rising
    # within the dip) inserted between readings bills last - first, as without them.
    values, total = [], 0.0
    for s in steps:
        total += s
        values.append(total)
    readings: list[float] = []
    inserted = dict(dips)
    for i, v in enumerate(values):
        readings.append(v)
        if i in inserted and i < len(values) - 1:
            readings.extend(v * f for f in sorted(inserted[i], reverse=True))
    reg = series(list(enumerate(readings)))
    assert sum(d.wh for d in register_deltas(reg)) == pytest.approx(values[-1] - values[0])


def test_a_delta_across_a_price_change_is_priced_pro_rata() -> None:
    delta = EnergyDelta(at(0), at(60), 6000.0)
    tariffs = Tariffs(
        series([(30, 20.0)], initial=(-100, 30.0)), series([(30, "T2")], (-100, "T1"))
    )
    parts = tariffs.split(delta)
    assert [(p.wh, p.price_ct_per_kwh, p.tariff) for p in parts] == [
        (3000.0, 30.0, "T1"),
        (3000.0, 20.0, "T2"),
    ]
    assert sum(p.cost_ct for p in parts) == pytest.approx(3 * 30 + 3 * 20)


def test_a_snapshot_repeating_the_price_is_not_a_cut() -> None:
    tariffs = Tariffs(series([(5, 30.0), (10, 30.0)], initial=(-1, 30.0)), Series.empty())
    assert tariffs.split(EnergyDelta(at(0), at(20), 100.0))[0].tariff == NO_TARIFF
    assert len(tariffs.split(EnergyDelta(at(0), at(20), 100.0))) == 1


def test_energy_without_a_known_price_costs_nothing_and_is_reported() -> None:
    [row] = energy_by_period(
        [EnergyDelta(at(0), at(10), 500.0)],
        Tariffs(Series.empty(), Series.empty()),
        [(at(0), at(60))],
    )
    assert (row.energy_wh, row.cost_ct, row.unpriced_wh) == (500.0, 0.0, 500.0)


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
    tariffs = Tariffs(price, Series.empty())
    parts = [p for d in register_deltas(reg) for p in tariffs.split(d)]
    assert sum(p.wh for p in parts) == pytest.approx(total)
    for p in parts:
        assert p.price_ct_per_kwh == price.at(p.start)
        assert p.cost_ct == pytest.approx(p.wh / 1000 * p.price_ct_per_kwh)  # type: ignore[operator]


@given(
    st.lists(st.tuples(st.integers(1, 90), st.floats(-2000, 5000)), min_size=1, max_size=40),
    st.lists(st.tuples(st.integers(0, 2000), st.floats(1, 60)), max_size=6),
    st.lists(st.integers(0, 2000), max_size=6),
)
def test_coalescing_between_cuts_changes_no_total(
    steps: list[tuple[int, float]], prices: list[tuple[int, float]], bounds: list[int]
) -> None:
    # What the SQL does (merge deltas no cut separates) must price exactly as the raw deltas.
    t, v, values = 0, 0.0, []
    for dt, step in steps:
        t += dt
        v = v + step if step >= 0 else max(0.0, -step / 10)  # negative step: a reset
        values.append((t, v))
    reg = series(values, initial=(0, 0.0))
    tariffs = Tariffs(series(sorted(prices), initial=(-1, 25.0)), Series.empty())
    edges = sorted({at(0), *(at(b) for b in bounds), at(t + 1)})
    periods = list(itertools.pairwise(edges))
    raw = list(register_deltas(reg))
    cuts = sorted(tariffs.cuts(at(-1), at(t + 2)) | set(edges))
    merged = coalesce(raw, cuts)
    assert len(merged) <= len(raw)
    a = energy_by_period(raw, tariffs, periods)
    b = energy_by_period(merged, tariffs, periods)
    assert [x.energy_wh for x in a] == pytest.approx([x.energy_wh for x in b])
    assert [x.cost_ct for x in a] == pytest.approx([x.cost_ct for x in b])


def test_the_delta_straddling_from_counts_only_its_share_after_from() -> None:
    reg = series([(30, 3000.0)], initial=(-30, 0.0))
    [row] = energy_by_period(register_deltas(reg), FLAT, [(at(0), at(60))])
    assert row.energy_wh == pytest.approx(1500.0)


def test_energy_by_day_in_local_time_splits_at_local_midnight() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start, end = datetime(2026, 11, 24, tzinfo=berlin), datetime(2026, 11, 26, tzinfo=berlin)
    periods = calendar_periods(start, end, Period.DAY, berlin)
    assert len(periods) == 2
    midnight = datetime(2026, 11, 25, tzinfo=berlin)
    reg: Series[float | None] = Series(
        Point(midnight - timedelta(hours=1), 0.0), [Point(midnight + timedelta(hours=1), 2000.0)]
    )
    rows = energy_by_period(register_deltas(reg), FLAT, periods)
    assert [r.energy_wh for r in rows] == pytest.approx([1000.0, 1000.0])


def test_lines_group_energy_by_tariff_and_price() -> None:
    tariffs = Tariffs(
        series([(30, 20.0), (50, 30.0)], initial=(-1, 30.0)),
        series([(30, "T2"), (50, "T1")], initial=(-1, "T1")),
    )
    [row] = energy_by_period([EnergyDelta(at(0), at(60), 6000.0)], tariffs, [(at(0), at(60))])
    assert [(ln.tariff, ln.price_ct_per_kwh, round(ln.energy_wh)) for ln in row.lines] == [
        ("T1", 30.0, 4000),
        ("T2", 20.0, 2000),
    ]


def test_calendar_periods_follow_dst_and_months() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    days = calendar_periods(
        datetime(2026, 3, 29, tzinfo=berlin),
        datetime(2026, 3, 30, tzinfo=berlin),
        Period.DAY,
        berlin,
    )
    assert [(b - a) for a, b in days] == [timedelta(hours=23)]
    autumn = calendar_periods(
        datetime(2026, 10, 25, tzinfo=berlin),
        datetime(2026, 10, 26, tzinfo=berlin),
        Period.DAY,
        berlin,
    )
    assert [(b - a) for a, b in autumn] == [timedelta(hours=25)]
    months = calendar_periods(
        datetime(2026, 1, 15, tzinfo=berlin),
        datetime(2026, 4, 1, tzinfo=berlin),
        Period.MONTH,
        berlin,
    )
    assert [a.astimezone(berlin).month for a, _ in months] == [1, 2, 3]
    assert months[0][0] == datetime(2026, 1, 15, tzinfo=berlin)  # clipped to `from`
    weeks = calendar_periods(
        datetime(2026, 11, 25, tzinfo=berlin),
        datetime(2026, 12, 10, tzinfo=berlin),
        Period.WEEK,
        berlin,
    )
    assert all(a.astimezone(berlin).weekday() == 0 for a, _ in weeks[1:])
    assert all(a.astimezone(berlin).hour == 0 for a, _ in weeks[1:])
