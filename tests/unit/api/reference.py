"""The Python reference model of the rules chargelift_api's SQL implements.

The repository computes energy deltas and merges them (``ENERGY_DELTAS``) and the
bucket partials in SQL; these functions are the same rules in Python, moved here from
the production modules, which never called them. The unit tests feed the billing and
bucket code with them (and check that merging changes no total); the SQL itself is
tested through the endpoints (tests/integration/api).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from chargelift_api.buckets import Partial
from chargelift_api.energy import EnergyDelta
from chargelift_api.series import Series


def register_deltas(register: Series[float | None]) -> Iterator[EnergyDelta]:
    """Deltas of an energy register, with reset and glitch detection (chargelift_api.energy's
    rules, as ``repository.ENERGY_DELTAS`` applies them).

    A segment is a rise (or the first reading) and the readings up to the next rise; a
    segment that falls (a dip) and whose next rise comes back to at least its top was a
    glitch: its drops bill nothing and the return bills its gain over the top, from the
    last reading at the top. Any other drop is a reset: its new value is billed.
    """
    start = [register.initial] if register.initial else []
    points = [(p.time, float(p.value)) for p in [*start, *register.points] if p.value is not None]
    pairs = list(itertools.pairwise(points))
    segs, seg = [], 0
    for (_, a), (_, b) in pairs:
        seg += b > a
        segs.append(seg)
    dips: dict[int, tuple[float, datetime]] = {}
    for ((ta, a), (_, b)), k in zip(pairs, segs, strict=True):
        if b < a and k not in dips:
            dips[k] = (a, ta)
    glitch = {
        k - 1: b >= dips[k - 1][0]
        for ((_, a), (_, b)), k in zip(pairs, segs, strict=True)
        if b > a and k - 1 in dips
    }
    for ((ta, a), (tb, b)), k in zip(pairs, segs, strict=True):
        if b > a:
            if glitch.get(k - 1):
                top, top_t = dips[k - 1]
                if b > top:
                    yield EnergyDelta(top_t, tb, b - top, False)
            else:
                yield EnergyDelta(ta, tb, b - a, False)
        elif b < a and not glitch.get(k):
            yield EnergyDelta(ta, tb, b, True)


def coalesce(deltas: Iterable[EnergyDelta], cuts: Sequence[datetime]) -> list[EnergyDelta]:
    """Merge deltas that lie between the same two cuts into one delta.

    A delta with a cut strictly inside it is kept alone (it will be split pro rata).
    This is what ``repository.ENERGY_DELTAS`` does in SQL; the merged deltas price,
    split and attribute exactly as the originals whenever every price, tariff,
    period and session boundary is among ``cuts``.
    """
    ordered = sorted(cuts)
    out: list[EnergyDelta] = []
    group: list[EnergyDelta] = []
    group_key = -1

    def flush() -> None:
        if group:
            out.append(
                EnergyDelta(
                    group[0].start,
                    group[-1].end,
                    sum(d.wh for d in group),
                    any(d.reset for d in group),
                )
            )
            group.clear()

    for d in deltas:
        k0 = bisect.bisect_right(ordered, d.start)  # cuts <= start
        k1 = bisect.bisect_left(ordered, d.end)  # cuts < end
        if k0 != k1:
            flush()
            out.append(d)
            group_key = -1
            continue
        if k1 != group_key:
            flush()
            group_key = k1
        group.append(d)
    flush()
    return out


def partials_of(
    series: Series[float | None],
    start: datetime,
    end: datetime,
    width: timedelta,
    data_end: datetime,
) -> list[Partial]:
    """The :class:`Partial` rows the database computes (``repository``'s bucket query).

    The last reading holds until ``data_end`` (or ``end``, if that is earlier).
    """
    w = width.total_seconds()
    total = (min(end, data_end) - start).total_seconds()
    inside = [p for p in series.points if start <= p.time < end]
    groups: dict[int, list[tuple[float, float, float | None]]] = {}
    for cur, nxt in itertools.zip_longest(inside, inside[1:]):
        e = (cur.time - start).total_seconds()
        e_next = max(e, total) if nxt is None else (nxt.time - start).total_seconds()
        groups.setdefault(int(e // w), []).append((e, e_next, cur.value))
    out = []
    for i, rows in sorted(groups.items()):
        values = [v for _, _, v in rows if v is not None]
        spans = [(min(e_next, (i + 1) * w) - e, v) for e, e_next, v in rows]
        out.append(
            Partial(
                i=i,
                n=len(rows),
                min=min(values) if values else None,
                max=max(values) if values else None,
                first_e=rows[0][0],
                area=sum(d * v for d, v in spans if v is not None) if values else None,
                covered=sum(d for d, v in spans if v is not None) if values else None,
                last=rows[-1][2],
            )
        )
    return out
