"""Energy, cost and charging sessions from change-only readings. Pure functions, no I/O.

The data model: the edge publishes a field only when it changes (plus a periodic full
snapshot), so a value holds until the next reading of that field. Every series here is
therefore a *step function*: ``Series(initial, points)`` where ``initial`` is the last
value before the window (carried in) and ``points`` are the readings inside it.

Energy comes from an energy *register* (``SessionEnergy``, Wh: restarts at 0 with each
session and holds its value afterwards; or a lifetime ``TotalEnergyConsumption``):

* energy = sum of positive deltas between consecutive readings;
* a drop is a reset (new session, reboot): the new value itself is the energy since
  the reset (the register restarted from 0);
* the baseline of a window is the value in force at its start; with no reading before
  the window the first reading is the baseline and is *not* billed (we cannot know
  what part of it was charged before we saw it) — never a 0 baseline, which would bill
  a whole register (CitrineOS #1060: 910 kWh billed for 0.083).

Cost is integrated per price interval: the energy of a delta is spread evenly over the
time between the two readings and each part is priced with the ``EnergyPrice``
(ct/kWh) in force during that part, so a session across a tariff change pays each
tariff for what was charged under it (not one price per session, openWB #1757).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Point(Generic[T]):
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

    def at(self, moment: datetime) -> T | None:
        """The value in force at ``moment`` (the last reading at or before it)."""
        i = bisect.bisect_right(self._times, moment)
        if i:
            return self.points[i - 1].value
        return self.initial.value if self.initial is not None else None

    def changes_between(self, start: datetime, end: datetime) -> list[Point[T]]:
        """Readings with ``start < time < end``."""
        lo = bisect.bisect_right(self._times, start)
        hi = bisect.bisect_left(self._times, end)
        return list(self.points[lo:hi])


@dataclass(frozen=True, slots=True)
class EnergyDelta:
    """Energy charged between two register readings (``start`` < ``end``)."""

    start: datetime
    end: datetime
    wh: float
    reset: bool


def register_deltas(register: Series[float | None]) -> Iterator[EnergyDelta]:
    """Deltas of an energy register, with reset detection (see module docstring)."""
    prev = register.initial
    for point in register.points:
        if point.value is None:
            continue
        if prev is None or prev.value is None:
            prev = point  # first reading without baseline: baseline, not energy
            continue
        if point.value >= prev.value:
            delta, reset = point.value - prev.value, False
        else:
            delta, reset = point.value, True
        if delta > 0 or reset:
            yield EnergyDelta(prev.time, point.time, float(delta), reset)
        prev = point


@dataclass(frozen=True, slots=True)
class PricedPart:
    """A part of an energy delta under one price."""

    start: datetime
    end: datetime
    wh: float
    price_ct_per_kwh: float | None
    tariff: str | None

    @property
    def cost_ct(self) -> float:
        return 0.0 if self.price_ct_per_kwh is None else self.wh / 1000.0 * self.price_ct_per_kwh


def price_delta(
    delta: EnergyDelta,
    price: Series[float | None],
    tariff: Series[str | None],
    boundaries: Sequence[datetime] = (),
) -> list[PricedPart]:
    """Split ``delta`` at every price or tariff change (and boundary) inside it, pro rata."""
    cuts = sorted(
        {p.time for p in price.changes_between(delta.start, delta.end)}
        | {p.time for p in tariff.changes_between(delta.start, delta.end)}
        | {b for b in boundaries if delta.start < b < delta.end}
    )
    bounds = [delta.start, *cuts, delta.end]
    total = (delta.end - delta.start).total_seconds()
    parts = []
    for a, b in itertools.pairwise(bounds):
        share = (b - a).total_seconds() / total if total > 0 else 1.0
        parts.append(PricedPart(a, b, delta.wh * share, price.at(a), tariff.at(a)))
    return parts


@dataclass
class Session:
    """A charging session: from the first ``charging`` to the vehicle leaving."""

    start: datetime
    end: datetime | None = None
    energy_wh: float = 0.0
    cost_ct: float = 0.0
    peak_power_w: float | None = None
    offline: bool = False  # the charger went offline during the session
    tariffs: dict[str, float] = field(default_factory=dict)  # tariff -> Wh

    @property
    def duration_s(self) -> float | None:
        return None if self.end is None else (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class ChargerSeries:
    """The series the session and energy computations need, for one window."""

    state: Series[str | None]
    vehicle: Series[bool | None]
    register: Series[float | None]
    power: Series[float | None]
    price: Series[float | None]
    tariff: Series[str | None]
    availability: Series[str | None]


def _merged_events(s: ChargerSeries) -> list[tuple[datetime, str, object]]:
    events: list[tuple[datetime, str, object]] = []
    for name, series in (("state", s.state), ("vehicle", s.vehicle), ("avail", s.availability)):
        events.extend((p.time, name, p.value) for p in series.points)
    events.sort(key=lambda e: e[0])
    return events


def derive_sessions(s: ChargerSeries, window_end: datetime) -> list[Session]:
    """Charging sessions in the window.

    Rule (docs/api.md): a session starts when ``OperationState`` becomes ``charging``
    while none is open, and ends when ``ConnectedVehicle`` becomes false (unplug). A
    pause (the EMS or the car stops charging, the plug stays in) stays inside the
    session. Without ``ConnectedVehicle`` data the session ends when the state leaves
    ``charging``. If the charger goes offline the session stays open (``offline`` is
    set) until data shows the unplug; energy reported when it comes back is counted.
    A session open at the window's end has ``end = None``.
    """
    sessions: list[Session] = []
    current: Session | None = None
    has_vehicle_data = s.vehicle.initial is not None or bool(s.vehicle.points)
    if s.state.initial is not None and s.state.initial.value == "charging":
        current = Session(start=s.state.initial.time)
    for time, kind, value in _merged_events(s):
        if kind == "state":
            if value == "charging" and current is None:
                current = Session(start=time)
            elif value != "charging" and current is not None and not has_vehicle_data:
                current.end = time
                sessions.append(current)
                current = None
        elif kind == "vehicle":
            if value is False and current is not None:
                current.end = time
                sessions.append(current)
                current = None
        elif kind == "avail" and value == "offline" and current is not None:
            current.offline = True
    if current is not None:
        sessions.append(current)
    for session in sessions:
        _fill_session(session, s, window_end)
    return sessions


def _fill_session(session: Session, s: ChargerSeries, window_end: datetime) -> None:
    end = session.end or window_end
    for delta in register_deltas(s.register):
        if delta.end < session.start or delta.end > end:
            continue
        for part in price_delta(delta, s.price, s.tariff):
            session.energy_wh += part.wh
            session.cost_ct += part.cost_ct
            key = part.tariff or "unknown"
            session.tariffs[key] = session.tariffs.get(key, 0.0) + part.wh
    powers = [p.value for p in s.power.changes_between(session.start - _TINY, end + _TINY)]
    at_start = s.power.at(session.start)
    candidates = [v for v in [at_start, *powers] if v is not None]
    session.peak_power_w = max(candidates) if candidates else None


_TINY = timedelta(microseconds=1)


@dataclass
class PeriodEnergy:
    """Energy and cost of one calendar period, in total and per tariff."""

    start: datetime
    end: datetime
    energy_wh: float = 0.0
    cost_ct: float = 0.0
    tariffs: dict[str, tuple[float, float]] = field(default_factory=dict)  # Wh, ct


def energy_by_period(
    register: Series[float | None],
    price: Series[float | None],
    tariff: Series[str | None],
    periods: Sequence[tuple[datetime, datetime]],
) -> list[PeriodEnergy]:
    """Energy and cost per period (parts are cut at period boundaries, pro rata by time)."""
    out = [PeriodEnergy(a, b) for a, b in periods]
    starts = [a for a, _ in periods]
    boundaries = sorted({a for a, _ in periods} | {b for _, b in periods})
    for delta in register_deltas(register):
        for part in price_delta(delta, price, tariff, boundaries):
            i = bisect.bisect_right(starts, part.start) - 1
            if i < 0 or part.start >= out[i].end:
                continue
            period = out[i]
            period.energy_wh += part.wh
            period.cost_ct += part.cost_ct
            key = part.tariff or "unknown"
            wh, ct = period.tariffs.get(key, (0.0, 0.0))
            period.tariffs[key] = (wh + part.wh, ct + part.cost_ct)
    return out
