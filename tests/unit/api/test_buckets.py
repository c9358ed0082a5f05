"""Buckets over change-only readings: carry-forward, time weighting, time in state."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargelift_api.buckets import NumericBucket, numeric_buckets, state_buckets
from chargelift_api.series import Series
from tests.unit.api.helpers import at, series
from tests.unit.api.reference import partials_of

HOUR = timedelta(minutes=60)


def buckets(
    s: Series[float | None],
    start: float,
    end: float,
    width: timedelta = HOUR,
    data_end: float | None = None,
) -> list[NumericBucket]:
    """Buckets of [start, end) minutes; the data ends at ``data_end`` (default: ``end``)."""
    a, b = at(start), at(end)
    known = at(end if data_end is None else data_end)
    carried = s.at(a - timedelta(microseconds=1))
    return numeric_buckets(partials_of(s, a, b, width, known), carried, a, b, width, known)


def states(
    s: Series[str | None], start: float, end: float, data_end: float | None = None
) -> list[tuple[float, dict[str, float]]]:
    """Hourly state buckets of [start, end) minutes as (start minute, seconds per state)."""
    known = at(end if data_end is None else data_end)
    out = state_buckets(s, at(start), at(end), HOUR, known)
    return [((b.start - at(0)) / timedelta(minutes=1), b.seconds) for b in out]


def test_empty_buckets_take_the_value_carried_in() -> None:
    s = series([(30, 10.0)], initial=(-5, 0.0))
    out = buckets(s, 0, 240)
    assert [(b.min, b.avg, b.max, b.last, b.count) for b in out] == [
        (0.0, 5.0, 10.0, 10.0, 1),
        (10.0, 10.0, 10.0, 10.0, 0),
        (10.0, 10.0, 10.0, 10.0, 0),
        (10.0, 10.0, 10.0, 10.0, 0),
    ]


def test_the_average_is_time_weighted() -> None:
    # 0 W for 59 minutes and a 1-minute spike of 6000 W: 100 W on average, not 3000.
    s = series([(59, 6000.0)], initial=(-1, 0.0))
    [b] = buckets(s, 0, 60)
    assert b.avg == pytest.approx(100.0)
    assert (b.min, b.max, b.last) == (0.0, 6000.0, 6000.0)


def test_buckets_before_the_first_reading_are_null() -> None:
    s = series([(90, 5.0)])
    first, second = buckets(s, 0, 120)
    assert (first.min, first.avg, first.last, first.count) == (None, None, None, 0)
    assert second.avg == pytest.approx(5.0)  # 5 W for the last 30 minutes it was known
    assert second.min == 5.0


def test_a_null_reading_is_no_value_not_zero() -> None:
    s = series([(30, None)], initial=(-1, 8.0))
    [b] = buckets(s, 0, 60)
    assert (b.avg, b.min, b.max, b.last) == (8.0, 8.0, 8.0, None)


def test_the_last_bucket_may_be_short() -> None:
    s = series([(10, 1.0)], initial=(-1, 1.0))
    out = buckets(s, 0, 90)
    assert [b.start for b in out] == [at(0), at(60)]


@given(
    st.lists(st.tuples(st.integers(0, 299), st.floats(-1e4, 1e4)), max_size=40),
    st.floats(-1e4, 1e4),
    st.sampled_from([15, 60, 100]),
)
def test_bucket_averages_integrate_to_the_window_average(
    readings: list[tuple[int, float]], initial: float, width_min: int
) -> None:
    points = sorted(dict(readings).items())
    s = series(points, initial=(-1, initial))
    out = buckets(s, 0, 300, timedelta(minutes=width_min))
    # Integral of the step function, minute by minute (readings are on whole minutes).
    minutes = [s.at(at(m)) for m in range(300)]
    exact = sum(v for v in minutes if v is not None) / 300
    widths = [min(width_min, 300 - i * width_min) for i in range(len(out))]
    total = 0.0
    for b, w in zip(out, widths, strict=True):  # a value is carried in: none is None
        assert b.min is not None
        assert b.avg is not None
        assert b.max is not None
        assert b.min <= b.avg + 1e-6
        assert b.avg <= b.max + 1e-6
        total += b.avg * w
    assert total / 300 == pytest.approx(exact, abs=1e-6)


def test_time_in_state_per_bucket() -> None:
    s = series([(20, "charging"), (80, "idle")], initial=(-30, "idle"))
    assert states(s, 0, 120) == [
        (0, {"idle": 20 * 60.0, "charging": 40 * 60.0}),
        (60, {"charging": 20 * 60.0, "idle": 40 * 60.0}),
    ]


def test_time_in_state_carries_the_state_through_empty_buckets() -> None:
    s = series([], initial=(-600, "charging"))
    assert states(s, 0, 180) == [(m, {"charging": 3600.0}) for m in (0, 60, 120)]


# --- the span of known data: before the first reading, after the latest one -------------
# Issue 12: at 01:40 the 02:00-06:00 buckets showed the last value (11,040 W), and `states`
# left out the buckets before the first reading while numbers showed them as null.


def test_buckets_after_the_end_of_the_data_are_null_not_the_last_value() -> None:
    s = series([(30, 11040.0)], initial=(-5, 0.0))
    # The latest reading is at minute 100 ("now"): the buckets from minute 120 on are future.
    out = buckets(s, 0, 360, data_end=100)
    assert [(b.min, b.avg, b.max, b.last, b.count) for b in out] == [
        (0.0, pytest.approx(11040.0 / 2), 11040.0, 11040.0, 1),
        (11040.0, 11040.0, 11040.0, 11040.0, 0),
        *[(None, None, None, None, 0)] * 4,
    ]


def test_the_bucket_the_data_ends_in_is_averaged_over_its_known_part() -> None:
    # 0 W until minute 90, 6 kW from then; the data ends at minute 100: 00:60-00:100 is
    # known, a quarter of it at 6 kW (not a half, as if 6 kW held to the bucket's end).
    s = series([(90, 6000.0)], initial=(-5, 0.0))
    _, current = buckets(s, 0, 120, data_end=100)
    assert current.avg == pytest.approx(1500.0)
    assert (current.min, current.max, current.last, current.count) == (0.0, 6000.0, 6000.0, 1)


def test_a_bucket_that_starts_as_the_data_ends_has_that_instant_value() -> None:
    s = series([(30, 0.0), (60, 7.0)], initial=(-5, 0.0))
    _, instant, future = buckets(s, 0, 180, data_end=60)
    assert (instant.min, instant.avg, instant.max, instant.last, instant.count) == (
        7.0,
        7.0,
        7.0,
        7.0,
        1,
    )
    assert (future.avg, future.count) == (None, 0)


def test_a_window_wholly_after_the_data_is_all_null() -> None:
    s = series([(10, 5.0)], initial=(-5, 1.0))
    out = buckets(s, 120, 240, data_end=60)
    assert [(b.min, b.avg, b.max, b.last, b.count) for b in out] == [
        (None, None, None, None, 0)
    ] * 2


def test_state_buckets_after_the_end_of_the_data_are_present_and_empty() -> None:
    s = series([(30, "charging")], initial=(-5, "idle"))
    assert states(s, 0, 240, data_end=100) == [
        (0, {"idle": 1800.0, "charging": 1800.0}),
        (60, {"charging": 2400.0}),  # up to the end of the data, not to the bucket's end
        (120, {}),
        (180, {}),
    ]


def test_before_the_first_reading_numbers_and_states_are_alike_present_and_empty() -> None:
    numbers = buckets(series([(90, 5.0)]), 0, 180)
    state = states(series([(90, "idle")]), 0, 180)
    assert [b.start for b in numbers] == [at(m) for m, _ in state] == [at(0), at(60), at(120)]
    assert (numbers[0].avg, numbers[0].count) == (None, 0)
    assert state == [(0, {}), (60, {"idle": 1800.0}), (120, {"idle": 3600.0})]


@given(
    st.lists(st.tuples(st.integers(0, 299), st.floats(-1e4, 1e4)), max_size=40),
    st.integers(0, 299),
    st.sampled_from([15, 60, 100]),
)
def test_the_known_part_integrates_to_the_average_up_to_the_end_of_the_data(
    readings: list[tuple[int, float]], data_end: int, width_min: int
) -> None:
    points = sorted((m, v) for m, v in dict(readings).items() if m <= data_end)
    s = series(points, initial=(-1, 0.0))
    out = buckets(s, 0, 300, timedelta(minutes=width_min), data_end=data_end)
    known = [min(width_min, data_end - i * width_min) for i in range(len(out))]
    for b, k in zip(out, known, strict=True):
        assert (b.avg is None) == (k < 0), (b, k)
    total = sum(b.avg * k for b, k in zip(out, known, strict=True) if b.avg is not None)
    exact = sum(s.at(at(m)) or 0.0 for m in range(data_end))
    assert total == pytest.approx(exact, abs=1e-6 * 300 * 1e4)
