"""Small builders for the API's pure-logic tests: times in minutes from T0."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from chargelift_api.series import Point, Series

T0 = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    """T0 + ``minutes``."""
    return T0 + timedelta(minutes=minutes)


def series(
    values: Sequence[tuple[float, Any]], initial: tuple[float, Any] | None = None
) -> Series[Any]:
    """A series from (minute, value) pairs, with an optional carried-in reading."""
    init = None if initial is None else Point(at(initial[0]), initial[1])
    return Series(init, [Point(at(m), v) for m, v in values])
