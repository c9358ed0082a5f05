"""Buckets over change-only readings: carry-forward, time weighting, time in state."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargelift_api.buckets import NumericBucket, numeric_buckets, partials_of, state_buckets
from chargelift_api.series import Series
from tests.unit.api.helpers import at, series

HOUR = timedelta(minutes=60)


def buckets(
    s: Series[float | None], start: float, end: float, width: timedelta = HOUR
) -> list[NumericBucket]:
    a, b = at(start), at(end)
    carried = s.at(a - timedelta(microseconds=1))
    return numeric_buckets(partials_of(s, a, b, width), carried, a, b, width)


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
    out = state_buckets(s, at(0), at(120), HOUR)
    assert [(b.start, b.state, b.seconds) for b in out] == [
        (at(0), "charging", 40 * 60.0),
        (at(0), "idle", 20 * 60.0),
        (at(60), "charging", 20 * 60.0),
        (at(60), "idle", 40 * 60.0),
    ]


def test_time_in_state_carries_the_state_through_empty_buckets() -> None:
    s = series([], initial=(-600, "charging"))
    out = state_buckets(s, at(0), at(180), HOUR)
    assert [(b.state, b.seconds) for b in out] == [("charging", 3600.0)] * 3
