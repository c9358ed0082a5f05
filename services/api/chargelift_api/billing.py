"""Sessions and energy of one charger: loads the series, runs the pure rules, prices.

The heavy part -- turning up to a month of 1 Hz register readings into deltas -- is
done by the database (``Repository.energy_deltas``), which merges every run of deltas
that no price, tariff, period or session boundary separates; the rules in
:mod:`chargelift_api.energy` and :mod:`chargelift_api.sessions` then see a few dozen
deltas instead of hundreds of thousands, with the same result. What remains for
Python (up to API_MAX_ROWS changes) runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from chargelift_api.energy import Bill, Tariffs, energy_by_period
from chargelift_api.periods import Period, calendar_periods
from chargelift_api.repository import Repository
from chargelift_api.sessions import (
    MICROSECOND,
    Session,
    bill_sessions,
    derive_sessions,
    session_cuts,
)

LIFETIME_METER = "TotalEnergyConsumption"
SESSION_REGISTER = "SessionEnergy"
ID_TAG = "IdTag"
TRANSACTION_ID = "TransactionId"


@dataclass(frozen=True)
class SessionsResult:
    """Sessions that started in the window, billed."""

    register: str | None
    sessions: list[Session]


@dataclass(frozen=True)
class EnergyResult:
    """Energy and cost per calendar period."""

    register: str | None
    periods: list[Bill]


class Billing:
    """Sessions and energy per period, for the routes."""

    def __init__(self, repo: Repository, max_session: timedelta) -> None:
        self._repo = repo
        self._max_session = max_session

    async def register(self, charger: str) -> str | None:
        """The energy register to use: a lifetime meter where the charger has one."""
        fields = await self._repo.fields_of(charger)
        for name in (LIFETIME_METER, SESSION_REGISTER):
            if name in fields:
                return name
        return None

    async def tariffs(self, charger: str, start: datetime, end: datetime) -> Tariffs:
        """Price and tariff in force over [start, end] (carried in from before)."""
        return Tariffs(
            await self._repo.changes(charger, "EnergyPrice", start, end),
            await self._repo.changes(charger, "Tariff", start, end),
        )

    async def sessions(
        self, charger: str, start: datetime, end: datetime, last_seen: datetime
    ) -> SessionsResult:
        """Sessions that started in [start, end), each computed whole.

        The series are read from ``max_session`` before ``start`` (to know whether a
        ``charging`` after ``start`` continues a plug-in that began earlier) to
        ``max_session`` after ``end`` (to find the end of a session that began inside).
        """
        lookback, horizon = start - self._max_session, end + self._max_session
        until = min(horizon, last_seen)
        repo = self._repo
        derived = await asyncio.to_thread(
            derive_sessions,
            await repo.changes(charger, "OperationState", lookback, horizon),
            await repo.changes(charger, "ConnectedVehicle", lookback, horizon),
            await repo.availability(charger, lookback, horizon),
            until,
        )
        # The end of the session before each one (None for the first derived): what was
        # published before it belongs to that earlier session (sessions.py).
        previous_end = {id(s): p.end for p, s in itertools.pairwise(derived)}
        found = [s for s in derived if start <= s.start < end]
        register = await self.register(charger)
        if not found:
            return SessionsResult(register, [])
        span_start = found[0].start
        # A list, not max(until, *ends): with only open sessions there are no ends, and
        # max() of a single datetime is a TypeError (a 500 while a car charges).
        span_end = max([until, span_start, *(s.end for s in found if s.end is not None)])
        tariffs = await self.tariffs(charger, span_start, span_end)
        if register is not None:
            cuts = sorted(set(session_cuts(found)) | tariffs.cuts(span_start, span_end))
            deltas = await repo.energy_deltas(
                charger, register, span_start, span_end + MICROSECOND, cuts
            )
            await asyncio.to_thread(bill_sessions, found, deltas, tariffs)
        peaks = await repo.peak_power(charger, [(s.start, s.end or until) for s in found])
        for session, peak in zip(found, peaks, strict=True):
            session.peak_power_w = peak
        spans = [(previous_end.get(id(s)), s.start, s.end or until) for s in found]
        id_tags = await repo.session_text(charger, ID_TAG, spans)
        transactions = await repo.session_text(charger, TRANSACTION_ID, spans)
        for session, id_tag, transaction in zip(found, id_tags, transactions, strict=True):
            session.id_tag, session.transaction_id = id_tag, transaction
        return SessionsResult(register, found)

    async def energy(
        self, charger: str, start: datetime, end: datetime, period: Period, zone_name: str
    ) -> EnergyResult:
        """Energy and cost per calendar period of [start, end) in ``zone_name``."""
        spans = calendar_periods(start, end, period, ZoneInfo(zone_name))
        register = await self.register(charger)
        if register is None:
            return EnergyResult(None, [Bill(a, b) for a, b in spans])
        tariffs = await self.tariffs(charger, start, end)
        cuts = sorted({a for a, _ in spans} | {end} | tariffs.cuts(start, end))
        deltas = await self._repo.energy_deltas(charger, register, start, end, cuts, next_one=True)
        bills = await asyncio.to_thread(energy_by_period, deltas, tariffs, spans)
        return EnergyResult(register, bills)
