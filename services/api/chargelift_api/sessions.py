"""Charging sessions from change-only readings. Pure, no I/O.

The rule (docs/api.md, "Sessions"):

* A session **starts** when ``OperationState`` becomes ``charging`` while none is open
  (or a vehicle is plugged in while the state in force is ``charging``).
* With ``ConnectedVehicle`` data it **ends** when the vehicle is unplugged
  (``ConnectedVehicle`` becomes false), or when the state leaves ``charging`` while no
  vehicle is known to be plugged in. A pause with the plug in (the car or an energy
  manager stops charging for a while) stays inside the session: one plug-in, one bill.
* Without ``ConnectedVehicle`` data it ends when the state leaves ``charging``.
* The charger (or its edge) going **offline** does not end a session: it stays open
  and is flagged ``offline``; readings after the charger comes back continue it, and
  the energy they show is counted. If it comes back unplugged, the session ends at the
  first reading that shows it (that end is late by up to the outage).
* A session with no end in the data is **open** (``end`` is None).

Id tag and transaction id (``IdTag``, ``TransactionId``, from chargers that report
them, e.g. OCPP): a session takes the first value published during it (a
StartTransaction that arrives after the charging state); without one, the value
published last after the previous session's end and at or before its start (a
transaction often starts at the plug-in, before the car draws power). A value
published during an earlier session is never taken: it belongs to that session; one
published during this session wins over one published before it (a stop of the
previous transaction re-published after that session ended). Computed in the
database (``repository.SESSION_TEXT``).

Energy: a register delta belongs to the session in which it *ends* (start and end
inclusive). Deltas are not split at session boundaries: energy flows only while a
vehicle charges, so a delta that straddles the start is that session's energy.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from chargelift_api.energy import Bill, EnergyDelta, Tariffs
from chargelift_api.series import Series
from chargelift_contract import OperationState

CHARGING = OperationState.CHARGING.value
MICROSECOND = timedelta(microseconds=1)


@dataclass
class Session:
    """One charging session (one plug-in) and its bill."""

    start: datetime
    end: datetime | None = None
    offline: bool = False
    charging_s: float = 0.0
    peak_power_w: float | None = None
    id_tag: str | None = None
    transaction_id: str | None = None
    bill: Bill = field(init=False)

    def __post_init__(self) -> None:
        self.bill = Bill(self.start, self.end)

    def close(self, end: datetime) -> None:
        """End the session at ``end``."""
        self.end = end
        self.bill.end = end

    def contains(self, moment: datetime) -> bool:
        """True when ``moment`` is inside [start, end] (open sessions never end)."""
        return self.start <= moment and (self.end is None or moment <= self.end)


def derive_sessions(
    state: Series[str | None],
    vehicle: Series[bool | None],
    availability: Series[str | None],
    until: datetime,
) -> list[Session]:
    """Sessions in the series (see the module docstring); ``until`` bounds open ones."""
    has_vehicle = vehicle.known
    s_now = state.initial.value if state.initial else None
    v_now = vehicle.initial.value if vehicle.initial else None
    sessions: list[Session] = []
    current: Session | None = None
    if s_now == CHARGING and state.initial is not None and v_now is not False:
        current = Session(start=state.initial.time)
    events = sorted(
        itertools.chain(
            (("state", p) for p in state.changes().points),
            (("vehicle", p) for p in vehicle.changes().points),
            (("avail", p) for p in availability.changes().points),
        ),
        key=lambda e: e[1].time,
    )
    # Readings of one poll share a SamplingTime: apply them together, then decide.
    for time, group in itertools.groupby(events, key=lambda e: e[1].time):
        became_charging = plugged_in = unplugged = went_offline = False
        for kind, point in group:
            if kind == "state":
                became_charging = point.value == CHARGING and s_now != CHARGING
                s_now = point.value  # type: ignore[assignment]
            elif kind == "vehicle":
                plugged_in = point.value is True and v_now is not True
                unplugged = point.value is False and v_now is not False
                v_now = point.value  # type: ignore[assignment]
            else:
                went_offline = point.value == "offline"
        if current is not None:
            if went_offline:
                current.offline = True
            stopped = s_now != CHARGING and (not has_vehicle or v_now is not True)
            if unplugged or stopped:
                current.close(time)
                sessions.append(current)
                current = None
        elif became_charging or (plugged_in and s_now == CHARGING):
            current = Session(start=time)
    if current is not None:
        sessions.append(current)
    for session in sessions:
        session.charging_s = _time_in(state, CHARGING, session.start, session.end or until)
    return sessions


def _time_in(state: Series[str | None], value: str, start: datetime, end: datetime) -> float:
    """Seconds of [start, end) during which ``state`` was ``value``."""
    if end <= start:
        return 0.0
    bounds = [start, *(p.time for p in state.between(start, end)), end]
    return sum(
        (b - a).total_seconds() for a, b in itertools.pairwise(bounds) if state.at(a) == value
    )


def session_cuts(sessions: Iterable[Session]) -> list[datetime]:
    """Boundaries no merged energy delta may cross, so each lands in one session.

    A delta belongs to the session its end lies in, start inclusive: the cut just
    before ``start`` keeps a delta that ends exactly at ``start`` apart from earlier ones.
    """
    cuts: list[datetime] = []
    for s in sessions:
        cuts.append(s.start - MICROSECOND)
        if s.end is not None:
            cuts.append(s.end)
    return cuts


def bill_sessions(
    sessions: Sequence[Session], deltas: Iterable[EnergyDelta], tariffs: Tariffs
) -> None:
    """Add every delta to the session it ends in, priced per tariff interval."""
    starts = [s.start for s in sessions]
    for delta in deltas:
        i = bisect.bisect_right(starts, delta.end) - 1
        if i < 0 or not sessions[i].contains(delta.end):
            continue
        for part in tariffs.split(delta):
            sessions[i].bill.add(part)
