"""Issue 14, finding 12: extreme stored values never make an endpoint answer 500.

Ingest now refuses numbers outside their field's bounds (``out_of_range``), but rows
stored before it did -- or restored from a dump -- may hold ``1e308``, ``-1e308``,
``Infinity`` or ``NaN``: SQL sums and register deltas of those overflowed into a 500 on
buckets, energy and sessions. The API reads such values as no reading (null); a huge
register jump that is within bounds is plain (large) energy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chargelift_contract import CATALOGUE, FieldType
from chargelift_devstack.postgres import PostgresServer
from tests.conftest import scratch
from tests.integration.api.conftest import READ_TOKEN, LiveApi, start_api
from tests.support.db import Row, fresh_database, plant_readings, reading_row

pytestmark = pytest.mark.integration

T1 = datetime(2026, 11, 10, 12, tzinfo=UTC)
INF, NAN = float("inf"), float("nan")
HUGE = 1e308

# (seconds after T1, field, value) for two chargers: one billed from SessionEnergy,
# one from a lifetime TotalEnergyConsumption meter.
WILD: dict[str, list[tuple[int, str, float | str | bool]]] = {
    "wild-1": [
        (-3600, "OperationState", "idle"),
        (-3600, "ConnectedVehicle", False),
        (-3600, "PowerOutput", HUGE),  # carried into every window that starts later
        (-3600, "SessionEnergy", 0.0),
        (-3600, "EnergyPrice", 30.0),
        (-3600, "Tariff", "T1"),
        (0, "SessionEnergy", HUGE),
        (0, "EnergyPrice", -HUGE),
        (60, "OperationState", "charging"),
        (60, "ConnectedVehicle", True),
        (60, "PowerOutput", HUGE),
        (120, "SessionEnergy", HUGE),
        (120, "PowerOutput", -HUGE),
        (120, "EnergyPrice", HUGE),
        (180, "SessionEnergy", 1000.0),
        (180, "PowerOutput", INF),
        (180, "EnergyPrice", -HUGE),
        (240, "SessionEnergy", -HUGE),
        (240, "PowerOutput", NAN),
        (240, "OutputCurrent", HUGE),
        (240, "EnergyPrice", NAN),
        (300, "SessionEnergy", 2000.0),
        (300, "PowerOutput", 7000.0),
        (300, "EnergyPrice", 30.0),
        (360, "SessionEnergy", 9_000_000.0),  # a huge jump within the bounds
        (360, "MaximumOutputCurrent", -INF),
        (360, "SessionDuration", HUGE),
        (360, "ErrorCode", -HUGE),
        (420, "OperationState", "idle"),
        (420, "ConnectedVehicle", False),
        (480, "OperationState", "charging"),  # open: still charging at the end
        (480, "ConnectedVehicle", True),
        (480, "PowerOutput", HUGE),
        (540, "SessionEnergy", HUGE),
    ],
    "wild-2": [
        (-3600, "OperationState", "idle"),
        (-3600, "TotalEnergyConsumption", HUGE),
        (60, "OperationState", "charging"),
        (60, "TotalEnergyConsumption", 1000.0),
        (120, "TotalEnergyConsumption", HUGE),
        (180, "TotalEnergyConsumption", 9e11),  # a huge jump within the bounds
        (240, "TotalEnergyConsumption", -HUGE),
        (300, "TotalEnergyConsumption", 1e12),
        (360, "TotalEnergyConsumption", 5.0),  # a reset
        (420, "TotalEnergyConsumption", INF),
        (480, "OperationState", "idle"),
        (480, "PowerOutput", -INF),
        (540, "TotalEnergyConsumption", NAN),
    ],
}


def rows() -> Iterator[Row]:
    for charger, history in WILD.items():
        for s, field, value in history:
            yield reading_row(T1 + timedelta(seconds=s), charger, field, value)


async def plant(dsn: str) -> None:
    # The shadow holds the most hostile value of each field.
    await plant_readings(dsn, rows(), "abs(value_num) DESC NULLS LAST, time DESC")


@pytest.fixture(scope="module")
def wild_api(postgres: PostgresServer, base_dir: Path) -> Iterator[LiveApi]:
    dsn = asyncio.run(fresh_database(postgres, "wild"))
    asyncio.run(plant(dsn))
    api = start_api(dsn, scratch(base_dir, "api"))
    yield api
    api.stop()


WINDOWS = [
    {"from": (T1 - timedelta(hours=2)).isoformat(), "to": (T1 + timedelta(days=1)).isoformat()},
    # starts after the first extreme values: they are carried in
    {"from": (T1 + timedelta(seconds=30)).isoformat(), "to": (T1 + timedelta(hours=1)).isoformat()},
]
NUMBERS = [s.name for s in CATALOGUE.values() if s.type is FieldType.NUMBER]


def requests() -> Iterator[tuple[str, dict[str, Any]]]:
    yield "/api/v1/chargers", {}
    for charger in WILD:
        url = f"/api/v1/chargers/{charger}"
        yield url, {}
        for w in WINDOWS:
            for field in [*NUMBERS, "OperationState"]:
                yield f"{url}/readings", {"field": field, **w}
                yield f"{url}/readings", {"field": field, **w, "format": "csv"}
                for bucket in (300, 3600):
                    yield f"{url}/readings", {"field": field, "bucket": bucket, **w}
                    yield (
                        f"{url}/readings",
                        {"field": field, "bucket": bucket, "format": "csv", **w},
                    )
            yield f"{url}/sessions", w
            yield f"{url}/sessions", {**w, "format": "csv"}
            for period in ("day", "week", "month"):
                yield f"{url}/energy", {**w, "period": period}


def numbers(doc: Any) -> Iterator[float]:
    if isinstance(doc, dict):
        for v in doc.values():
            yield from numbers(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from numbers(v)
    elif isinstance(doc, int | float) and not isinstance(doc, bool):
        yield float(doc)


async def test_no_endpoint_answers_500_for_extreme_stored_values(wild_api: LiveApi) -> None:
    failures = []
    async with httpx.AsyncClient(
        base_url=wild_api.url,
        headers={"Authorization": f"Bearer {READ_TOKEN}"},
        timeout=10.0,
        trust_env=False,
    ) as c:
        asked = 0
        for url, params in requests():
            asked += 1
            try:
                r = await c.get(url, params=params)
            except httpx.TransportError as exc:
                failures.append((url, params, 599, repr(exc)))  # no answer at all
                continue
            if r.status_code != 200:
                failures.append((url, params, r.status_code, r.text[:120]))
                continue
            if params.get("format") == "csv":
                if "e+308" in r.text or "inf" in r.text.lower():
                    failures.append((url, params, 200, "an extreme value in the CSV"))
                continue
            body = json.loads(r.text)  # strict JSON: no NaN or Infinity literals
            # nothing outside every field's bounds, times a year of seconds
            extreme = [x for x in numbers(body) if not abs(x) < 1e20]
            if extreme:
                failures.append((url, params, 200, f"extreme values {extreme[:3]}"))
    errors = sum(1 for f in failures if f[2] >= 500)
    assert not failures, (
        f"{len(failures)} of {asked} requests failed ({errors} with a 5xx): {failures[:5]}\n"
        + wild_api.log.read_text()[-3000:]
    )


async def test_extreme_values_read_as_null_and_energy_within_bounds_counts(
    wild_api: LiveApi,
) -> None:
    async with httpx.AsyncClient(
        base_url=wild_api.url,
        headers={"Authorization": f"Bearer {READ_TOKEN}"},
        timeout=10.0,
        trust_env=False,
    ) as c:
        day = WINDOWS[0]
        r = await c.get("/api/v1/chargers/wild-1/readings", params={"field": "PowerOutput", **day})
        assert [p["value"] for p in r.json()["points"]] == [
            None,
            None,
            None,
            None,
            None,
            7000.0,
            None,
        ]
        r = await c.get("/api/v1/chargers")
        assert {x["id"]: x["power_w"] for x in r.json()} == {"wild-1": None, "wild-2": None}
        # SessionEnergy 0 -> (1e308) -> 1000 -> (-1e308) -> 2000 -> 9e6 -> (1e308):
        # 9,000,000 Wh, the extreme readings skipped.
        r = await c.get("/api/v1/chargers/wild-1/sessions", params=day)
        body = r.json()
        assert body["total_energy_wh"] == 9_000_000.0
        assert [s["open"] for s in body["sessions"]] == [False, True]
        # 1000 -> (1e308) -> 9e11 -> (-1e308) -> 1e12 -> 5 (reset): 1e12 - 1000 + 5 Wh.
        r = await c.get("/api/v1/chargers/wild-2/energy", params={**day, "period": "day"})
        assert r.json()["total_energy_wh"] == 1e12 - 1000 + 5
