"""A known history of chargers, written through the real ingest (validation + writer).

An emulated edge polls once a minute and publishes like the real one: only the fields
that changed, plus a full snapshot every 5 minutes; the availability topic says
online/offline. Each message goes through ``chargelift_ingest.validate.validate`` and
``chargelift_ingest.writer.Writer`` -- the code that stores MQTT messages in production.

Times are Europe/Berlin (UTC+1 in November). The tariff is the simulator's: T1 at
32.0 ct/kWh from 06:00, T2 at 21.0 ct/kWh from 22:00. While charging, the power is
12 kW, i.e. exactly 200 Wh per minute, so every expected figure is plain arithmetic.

``amtron-1``:

* **A** Fri 20 Nov 21:30 -> Sat 01:20 (unplug): across the 22:00 tariff change and
  midnight, with a pause 23:00-23:10 (car plugged in, idle). Charging 210 min =
  42,000 Wh: 6,000 Wh at 32 ct + 36,000 Wh at 21 ct = 9.48 EUR. A power spike of
  12.5 kW at 00:30.
* **B** Sat 10:00 -> 12:00, unplug 12:05: the register resets (a reboot) at 11:01.
  24,000 Wh at 32 ct = 7.68 EUR (a "last minus first" would say 12,000).
* **C** Sat 14:00 -> 16:00, unplug 16:30: the edge goes offline at 14:30:30 and comes
  back at 15:30 with 12,000 Wh more on the register. 24,000 Wh at 32 ct = 7.68 EUR.
* **D** Sat 23:00 -> still charging at the last poll (23:30): open, 6,000 Wh at 21 ct.

``live-1`` is charging right now: its data runs up to ``NOW`` (this process's start,
to the minute), and its only session started at ``NOW`` - 40 min and is still open:
8,000 Wh at 32 ct = 2.56 EUR so far.

``meter-1`` has a lifetime meter (``TotalEnergyConsumption``) that starts at 1,000,000 Wh:
its first reading is a baseline, never billed; one session 12:00 -> 13:00 Sat, 12,000 Wh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from prometheus_client import CollectorRegistry

from chargelift_contract import Envelope, availability_topic, encode, field_topic
from chargelift_ingest.metrics import IngestMetrics
from chargelift_ingest.validate import Availability, Reading, validate
from chargelift_ingest.writer import Writer

BERLIN = ZoneInfo("Europe/Berlin")
SNAPSHOT_EVERY = 5  # polls (minutes)
WH_PER_MIN = 200.0  # 12 kW


def local(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A Berlin wall-clock time in November 2026, as UTC."""
    return datetime(2026, 11, day, hour, minute, second, tzinfo=BERLIN).astimezone(UTC)


START = local(20, 20, 0)  # first poll
END = local(21, 23, 30)  # last poll
NOW = datetime.now(UTC).replace(second=0, microsecond=0)  # live-1's last poll
LIVE_SESSION_START = NOW - timedelta(minutes=40)


@dataclass
class Edge:
    """Publishes like the poller: changes only, plus a snapshot every few polls."""

    charger: str
    last: dict[str, Any] = field(default_factory=dict)
    polls: int = 0
    messages: list[tuple[str, bytes, datetime]] = field(default_factory=list)

    def poll(self, at: datetime, values: dict[str, Any]) -> None:
        snapshot = self.polls % SNAPSHOT_EVERY == 0
        self.polls += 1
        for name, value in values.items():
            if snapshot or self.last.get(name, object()) != value:
                payload = encode(Envelope(at, value))
                self.messages.append((field_topic(self.charger, name), payload, at))
                self.last[name] = value

    def availability(self, at: datetime, online: bool) -> None:
        payload = b"online" if online else b"offline"
        self.messages.append((availability_topic(self.charger), payload, at))


def _minutes(a: datetime, b: datetime) -> Iterator[datetime]:
    t = a
    while t <= b:
        yield t
        t += timedelta(minutes=1)


SESSION_STARTS = ((20, 21, 30), (21, 10, 0), (21, 14, 0), (21, 23, 0))


def _charging(hm: tuple[int, int, int]) -> bool:
    return (
        (20, 21, 30) <= hm < (20, 23, 0)
        or (20, 23, 10) <= hm < (21, 1, 10)
        or (21, 10, 0) <= hm < (21, 12, 0)
        or (21, 14, 0) <= hm < (21, 16, 0)
        or hm >= (21, 23, 0)
    )


def _plugged(hm: tuple[int, int, int]) -> bool:
    return (
        (20, 21, 25) <= hm < (21, 1, 20)
        or (21, 9, 55) <= hm < (21, 12, 5)
        or (21, 13, 55) <= hm < (21, 16, 30)
        or hm >= (21, 22, 55)
    )


def amtron() -> Edge:
    """amtron-1: sessions A-D (see the module docstring)."""
    edge = Edge("amtron-1")
    edge.availability(START - timedelta(seconds=30), online=True)
    register = 12_000.0  # the previous session's energy, held
    was_charging = False
    offline = (local(21, 14, 30, 30), local(21, 15, 30))
    for t in _minutes(START, END):
        if offline[0] <= t < offline[1]:
            continue  # the edge is cut off: nothing is polled or published
        wall = t.astimezone(BERLIN)
        hm = (wall.day, wall.hour, wall.minute)
        if t == offline[1]:
            edge.availability(t, online=True)
            register = 18_000.0  # it kept charging: 90 minutes since 14:00
        elif was_charging:
            register += WH_PER_MIN  # the minute that just ended
        charging = _charging(hm)
        if hm in SESSION_STARTS:
            register = 0.0  # a new session restarts the register
        if hm == (21, 11, 1):
            register = WH_PER_MIN  # a reboot reset it: only the last minute is left
        power = 12_000.0 if charging else 0.0
        if hm == (21, 0, 30):
            power = 12_500.0
        t1 = (6, 0) <= (wall.hour, wall.minute) < (22, 0)
        edge.poll(
            t,
            {
                "OperationState": "charging" if charging else "idle",
                "ConnectedVehicle": _plugged(hm),
                "PowerOutput": power,
                "SessionEnergy": register,
                "Tariff": "T1" if t1 else "T2",
                "EnergyPrice": 32.0 if t1 else 21.0,
                "FirmwareVersion": "5.22",
            },
        )
        was_charging = charging
        if t + timedelta(seconds=30) == offline[0]:
            edge.availability(offline[0], online=False)
    return edge


def meter() -> Edge:
    """meter-1: a lifetime meter from 1,000,000 Wh; one session Sat 12:00-13:00."""
    edge = Edge("meter-1")
    total, was_charging = 1_000_000.0, False
    for t in _minutes(local(21, 11, 0), local(21, 14, 0)):
        wall = t.astimezone(BERLIN)
        if was_charging:
            total += WH_PER_MIN
        charging = (12, 0) <= (wall.hour, wall.minute) < (13, 0)
        was_charging = charging
        edge.poll(
            t,
            {
                "OperationState": "charging" if charging else "idle",
                "TotalEnergyConsumption": total,
                "PowerOutput": 12_000.0 if charging else 0.0,
                "EnergyPrice": 32.0,
            },
        )
    return edge


def live() -> Edge:
    """live-1: plugged in at NOW - 45 min, charging since NOW - 40 min, still charging."""
    edge = Edge("live-1")
    first = NOW - timedelta(hours=3)
    edge.availability(first - timedelta(seconds=30), online=True)
    register, was_charging = 0.0, False
    for t in _minutes(first, NOW):
        if was_charging:
            register += WH_PER_MIN
        charging = t >= LIVE_SESSION_START
        if t == LIVE_SESSION_START:
            register = 0.0
        edge.poll(
            t,
            {
                "OperationState": "charging" if charging else "idle",
                "ConnectedVehicle": t >= NOW - timedelta(minutes=45),
                "PowerOutput": 12_000.0 if charging else 0.0,
                "SessionEnergy": register,
                "Tariff": "T1",
                "EnergyPrice": 32.0,
            },
        )
        was_charging = charging
    return edge


async def write(dsn: str, edges: list[Edge], batch: int = 500) -> int:
    """Validate every message like ingest and write it with ingest's writer."""
    now = datetime.now(UTC)
    items: list[Reading | Availability] = []
    for edge in edges:
        for topic, payload, at in edge.messages:
            item = validate(topic, payload, now=now, max_bytes=65536, max_future=timedelta(0))
            if isinstance(item, Availability):
                item = Availability(item.charger, item.online, at)  # received at the change
            assert isinstance(item, Reading | Availability), item
            items.append(item)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        writer = Writer(pool, metrics=IngestMetrics(CollectorRegistry()))
        written = 0
        for i in range(0, len(items), batch):
            chunk = items[i : i + batch]
            result = await writer.write(
                [x for x in chunk if isinstance(x, Reading)],
                availability=[x for x in chunk if isinstance(x, Availability)],
            )
            written += result.inserted
        return written
    finally:
        await pool.close()


def load(dsn: str) -> int:
    """Write the whole scenario; the number of readings stored."""
    return asyncio.run(write(dsn, [amtron(), meter(), live()]))
