"""Step functions over change-only readings. Pure, no I/O.

The edge publishes a field only when it changes (plus a periodic full snapshot), so a
value *holds* until the next reading of that field. A :class:`Series` is therefore a
step function: ``initial`` is the last reading before the window (the value carried
in) and ``points`` are the readings inside it, in time order.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T", covariant=True)


@dataclass(frozen=True, slots=True)
class Point(Generic[T]):
    """One reading: the value of a field from ``time`` on."""

    time: datetime
    value: T


@dataclass(frozen=True)
class Series(Generic[T]):
    """A step function: ``initial`` (carried in, may be None) then ``points`` in time order."""

    initial: Point[T] | None
    points: Sequence[Point[T]]
    _times: list[datetime] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_times", [p.time for p in self.points])

    @classmethod
    def empty(cls) -> Series[T]:
        """A series without any reading (every value is None)."""
        return cls(None, [])

    @property
    def known(self) -> bool:
        """True when the series has any reading, carried in or inside."""
        return self.initial is not None or bool(self.points)

    def at(self, moment: datetime) -> T | None:
        """The value in force at ``moment`` (the last reading at or before it)."""
        i = bisect.bisect_right(self._times, moment)
        if i:
            return self.points[i - 1].value
        return self.initial.value if self.initial is not None else None

    def between(self, start: datetime, end: datetime) -> list[Point[T]]:
        """Readings with ``start < time < end`` (the changes strictly inside)."""
        lo = bisect.bisect_right(self._times, start)
        hi = bisect.bisect_left(self._times, end)
        return list(self.points[lo:hi])

    def changes(self) -> Series[T]:
        """The same step function without readings that repeat the value in force.

        Snapshots republish unchanged values; only real changes are boundaries.
        """
        out: list[Point[T]] = []
        last: Point[T] | None = self.initial
        for p in self.points:
            if last is None or p.value != last.value:
                out.append(p)
                last = p
        return Series(self.initial, out)
