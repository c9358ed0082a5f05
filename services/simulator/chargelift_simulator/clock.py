"""Simulated time: a start instant plus simulated seconds, advanced only by ``advance``.

The simulator never reads the wall clock for its physics. A :class:`SimClock` is moved
forward by the fleet's ticker (real seconds times speed) or by a test calling
``Fleet.step(seconds)``, so a run is reproducible from its seed and its steps alone.
The chargers live in a time zone (Europe/Berlin by default) because the MHCP tariff
windows (``BeginH_T1``…) are local times of day, and DevInfo reports ``Tz``/``Summer``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)

#: Used only when the system has no time-zone database (a minimal container image).
_FALLBACK_TZ = timezone(timedelta(hours=1), "CET")


def load_tz(name: str) -> tzinfo:
    """The named IANA zone; ``UTC`` always works; fixed CET if the database is missing."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        log.warning("time zone %r not found (no tzdata?): using fixed UTC+01:00", name)
        return _FALLBACK_TZ


def rfc3339(ts: float) -> str:
    """Unix seconds as RFC 3339 UTC with microseconds and ``Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


class SimClock:
    """Simulated time. ``elapsed`` is simulated seconds since ``start``."""

    __slots__ = ("_local", "elapsed", "start_ts", "tz")

    def __init__(self, start: datetime, tz: tzinfo) -> None:
        # A naive start is a local wall time of the chargers ("start at 21:59" means
        # 21:59 on the box's display), which is what tariff tests want to say.
        if start.tzinfo is None:
            start = start.replace(tzinfo=tz)
        self.tz = tz
        self.start_ts = start.timestamp()
        self.elapsed = 0.0
        self._local: tuple[float, datetime] | None = None

    def advance(self, seconds: float) -> None:
        """Move simulated time forward (never back)."""
        if not seconds >= 0:  # also rejects NaN
            raise ValueError(f"cannot advance the clock by {seconds!r} s")
        self.elapsed += seconds

    @property
    def timestamp(self) -> float:
        """Simulated now as Unix seconds."""
        return self.start_ts + self.elapsed

    def at(self, elapsed: float) -> float:
        """Unix seconds of a simulated instant given as ``elapsed`` seconds."""
        return self.start_ts + elapsed

    def local(self) -> datetime:
        """Simulated now as an aware local datetime (cached until the clock moves)."""
        cached = self._local
        if cached is not None and cached[0] == self.elapsed:
            return cached[1]
        now = datetime.fromtimestamp(self.timestamp, self.tz)
        self._local = (self.elapsed, now)
        return now

    def minute_of_day(self) -> float:
        """Local minutes since midnight, with fractions."""
        now = self.local()
        return now.hour * 60 + now.minute + (now.second + now.microsecond / 1e6) / 60
