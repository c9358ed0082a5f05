"""Energy and cost from an energy register, priced per tariff interval. Pure, no I/O.

Energy comes from an energy *register* (``SessionEnergy``, Wh: restarts at 0 with each
session and holds its value afterwards; or a lifetime ``TotalEnergyConsumption``):

* energy = sum of positive deltas between consecutive readings;
* a drop is a reset (new session, reboot): the new value itself is the energy since
  the reset (the register restarted from 0);
* a drop and back is a glitch, not a reset (lbbrhzn/ocpp#1756): when the register falls
  (to 0, or backwards) and its next rise reaches at least the level before the drop,
  the readings in the dip are ignored and only the gain over that level counts, spread
  from the last reading at that level; a drop whose next rise stays below it is a reset;
* the baseline of a window is the value in force at its start; with no reading before
  the window the first reading is the baseline and is *not* billed (we cannot know
  what part of it was charged before we saw it) -- never a 0 baseline, which would bill
  a whole register (CitrineOS #1060: 910 kWh billed for 0.083).

A delta's energy is spread evenly over the time between its two readings. Cost is
integrated per price interval: a delta is cut at every price or tariff change (and
calendar or window boundary) inside it and each part is priced with the
``EnergyPrice`` (ct/kWh) in force during that part, so a session across a tariff
change pays each tariff for what was charged under it (not one price per session,
openWB #1757).

The database computes the deltas by these rules and merges consecutive deltas that no
cut separates (``repository.ENERGY_DELTAS``), so long series are not walked here point by
point. tests/unit/api/reference.py holds the same rules in Python (``register_deltas``,
``coalesce``), the reference model of the unit tests.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from chargelift_api.series import Series

NO_TARIFF = "default"
"""The tariff name reported when the charger publishes no ``Tariff``."""


@dataclass(frozen=True, slots=True)
class EnergyDelta:
    """Energy charged between two register readings (``start`` <= ``end``)."""

    start: datetime
    end: datetime
    wh: float
    reset: bool = False


@dataclass(frozen=True, slots=True)
class PricedPart:
    """A part of an energy delta under one price and tariff."""

    start: datetime
    end: datetime
    wh: float
    price_ct_per_kwh: float | None
    tariff: str

    @property
    def cost_ct(self) -> float:
        """Cost in ct (0 when no price is known)."""
        return 0.0 if self.price_ct_per_kwh is None else self.wh / 1000.0 * self.price_ct_per_kwh


@dataclass(frozen=True)
class Tariffs:
    """The ``EnergyPrice`` (ct/kWh) and ``Tariff`` name in force over time."""

    price: Series[float | None]
    name: Series[str | None]
    # The changes, computed once: split() asks for them once per delta, and recomputing
    # them each time made a bill quadratic in the number of price changes.
    _price_changes: Series[float | None] = field(init=False, repr=False, compare=False)
    _name_changes: Series[str | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_price_changes", self.price.changes())
        object.__setattr__(self, "_name_changes", self.name.changes())

    def cuts(self, start: datetime, end: datetime) -> set[datetime]:
        """Times strictly inside (``start``, ``end``) at which the price or tariff changes."""
        return {p.time for p in self._price_changes.between(start, end)} | {
            p.time for p in self._name_changes.between(start, end)
        }

    def split(self, delta: EnergyDelta, boundaries: Sequence[datetime] = ()) -> list[PricedPart]:
        """Cut ``delta`` at every price or tariff change and boundary inside it, pro rata."""
        cuts = sorted(
            self.cuts(delta.start, delta.end)
            | {b for b in boundaries if delta.start < b < delta.end}
        )
        bounds = [delta.start, *cuts, delta.end]
        total = (delta.end - delta.start).total_seconds()
        parts = []
        for a, b in itertools.pairwise(bounds):
            share = (b - a).total_seconds() / total if total > 0 else 1.0
            parts.append(
                PricedPart(a, b, delta.wh * share, self.price.at(a), self.name.at(a) or NO_TARIFF)
            )
        return parts


@dataclass
class Line:
    """Energy and cost under one tariff and price."""

    tariff: str
    price_ct_per_kwh: float | None
    start: datetime
    end: datetime
    energy_wh: float = 0.0
    cost_ct: float = 0.0


@dataclass
class Bill:
    """Energy and cost of a span of time, in total and per tariff and price."""

    start: datetime
    end: datetime | None
    energy_wh: float = 0.0
    cost_ct: float = 0.0
    unpriced_wh: float = 0.0
    lines: list[Line] = field(default_factory=list)

    def add(self, part: PricedPart) -> None:
        """Add a priced part (parts arrive in time order); parts without energy add nothing."""
        if part.wh <= 0:
            return
        self.energy_wh += part.wh
        self.cost_ct += part.cost_ct
        if part.price_ct_per_kwh is None:
            self.unpriced_wh += part.wh
        for line in self.lines:
            if line.tariff == part.tariff and line.price_ct_per_kwh == part.price_ct_per_kwh:
                line.energy_wh += part.wh
                line.cost_ct += part.cost_ct
                line.end = max(line.end, part.end)
                return
        self.lines.append(
            Line(part.tariff, part.price_ct_per_kwh, part.start, part.end, part.wh, part.cost_ct)
        )


def energy_by_period(
    deltas: Iterable[EnergyDelta],
    tariffs: Tariffs,
    periods: Sequence[tuple[datetime, datetime]],
) -> list[Bill]:
    """Energy and cost per period; deltas are cut at period boundaries, pro rata by time.

    Parts outside every period (before the first, after the last) are dropped: the
    delta that straddles ``from`` is billed to the window only for its share after
    ``from``, so consecutive windows add up to the whole.
    """
    out = [Bill(a, b) for a, b in periods]
    if not out:
        return out
    starts = [a for a, _ in periods]
    boundaries = sorted({a for a, _ in periods} | {b for _, b in periods})
    for delta in deltas:
        for part in tariffs.split(delta, boundaries):
            i = bisect.bisect_right(starts, part.start) - 1
            if i < 0 or part.start >= periods[i][1]:
                continue
            out[i].add(part)
    return out
