"""Issue 17: sessions carry the transaction's id tag and id; a register glitch is not energy.

Chargers that report transactions (OCPP, through the gateway) publish ``IdTag`` and
``TransactionId``; the API's sessions show the values that were the session's (rule in
chargelift_api.sessions). Must-show 6 from the API's side: an energy register that drops
to 0 (or jumps backwards) and comes back inside a session changes neither the session's
energy nor the energy per period -- for a ``SessionEnergy`` register and for a lifetime
``TotalEnergyConsumption`` alike, also when a window's edge cuts the dip.

The readings are planted in the database as ingest stores them (the API's side only);
those of ``MAPPED`` are what the gateway's own mapper makes of a charge point's messages.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chargelift_devstack.postgres import PostgresServer
from chargelift_ocpp.mapping import ChargePointMapper, Reading
from tests.conftest import scratch
from tests.integration.api.conftest import READ_TOKEN, LiveApi, start_api
from tests.support.db import Row, fresh_database, plant_readings, reading_row

pytestmark = pytest.mark.integration

T1 = datetime(2026, 11, 10, 12, tzinfo=UTC)
TAGGED = "ocpp-tags-1"  # SessionEnergy only (no lifetime meter), with transactions
METERED = "ocpp-meter-1"  # a lifetime meter, no transactions reported
MAPPED = "ocpp-mapped"  # a charge point's messages through the gateway's mapper
History = list[tuple[int, str, float | str | bool | None]]

# (seconds after T1, field, value)
TAGGED_HISTORY: History = [
    (-600, "OperationState", "idle"),
    (-600, "ConnectedVehicle", False),
    (-600, "EnergyPrice", 30.0),
    (-600, "SessionEnergy", 0.0),
    # Session 1: the transaction starts at the plug-in, before the car draws power.
    (-60, "IdTag", "CARD-A"),
    (-60, "TransactionId", "101"),
    (0, "OperationState", "charging"),
    (0, "ConnectedVehicle", True),
    (600, "SessionEnergy", 5000.0),
    (900, "SessionEnergy", 0.0),  # a glitch: 0 for 20 s ...
    (910, "SessionEnergy", 0.0),
    (920, "SessionEnergy", 5500.0),  # ... and back
    (1200, "SessionEnergy", 8000.0),
    (1500, "OperationState", "idle"),
    (1500, "ConnectedVehicle", False),
    (1510, "TransactionId", "101"),  # the stop, re-published after the session ended
    # Session 2: the same card; the StartTransaction arrives after the charging state.
    (1800, "OperationState", "charging"),
    (1800, "ConnectedVehicle", True),
    (1800, "SessionEnergy", 0.0),
    (1830, "IdTag", "CARD-A"),
    (1830, "TransactionId", "102"),
    (2400, "SessionEnergy", 3000.0),
    (2700, "SessionEnergy", 1000.0),  # a jump backwards ...
    (2760, "SessionEnergy", 3200.0),  # ... and back
    (3000, "OperationState", "idle"),
    (3000, "ConnectedVehicle", False),
    # Session 3: nothing published for it (the values in force are session 2's).
    (3600, "OperationState", "charging"),
    (3600, "ConnectedVehicle", True),
    (3600, "SessionEnergy", 0.0),
    (4200, "SessionEnergy", 2000.0),
    (4500, "OperationState", "idle"),
    (4500, "ConnectedVehicle", False),
    # Session 4: a transaction ended (null published), no new one.
    (4600, "TransactionId", None),
    (4600, "IdTag", None),
    (5400, "OperationState", "charging"),
    (5400, "ConnectedVehicle", True),
    (5400, "SessionEnergy", 0.0),
    (5700, "SessionEnergy", 1000.0),
    (6000, "OperationState", "idle"),
    (6000, "ConnectedVehicle", False),
]

METERED_HISTORY: History = [
    (-600, "OperationState", "idle"),
    (-600, "ConnectedVehicle", False),
    (-600, "EnergyPrice", 30.0),
    (-600, "TotalEnergyConsumption", 1_000_000.0),
    (0, "OperationState", "charging"),
    (0, "ConnectedVehicle", True),
    (600, "TotalEnergyConsumption", 1_005_000.0),
    (900, "TotalEnergyConsumption", 0.0),  # a glitch: the register reads 0 ...
    (910, "TotalEnergyConsumption", 0.0),
    (920, "TotalEnergyConsumption", 1_005_500.0),  # ... and comes back
    (1200, "TotalEnergyConsumption", 1_008_000.0),
    (1500, "OperationState", "idle"),
    (1500, "ConnectedVehicle", False),
]


def _ocpp_time(s: int) -> str:
    return (T1 + timedelta(seconds=s)).isoformat().replace("+00:00", "Z")


def _status(mapper: ChargePointMapper, s: int, status: str) -> list[Reading]:
    payload = {
        "connectorId": 1,
        "errorCode": "NoError",
        "status": status,
        "timestamp": _ocpp_time(s),
    }
    return mapper.status_notification(payload, T1 + timedelta(seconds=s))


def _transaction(
    mapper: ChargePointMapper, tx: int, s: int, meter_start: int, meter_stop: int, until: int
) -> list[Reading]:
    """A whole transaction as a charge point sends it: Preparing, StartTransaction and
    Charging in the same second, a meter value, StopTransaction, Available."""
    readings = _status(mapper, s - 30, "Preparing")
    start = {
        "connectorId": 1,
        "idTag": "CARD-M",
        "meterStart": meter_start,
        "timestamp": _ocpp_time(s),
    }
    readings += mapper.start_transaction(start, tx, T1 + timedelta(seconds=s))
    readings += _status(mapper, s, "Charging")
    middle = (s + until) // 2
    sample = {
        "value": str((meter_start + meter_stop) // 2),
        "measurand": "Energy.Active.Import.Register",
        "unit": "Wh",
    }
    payload = {
        "connectorId": 1,
        "transactionId": tx,
        "meterValue": [{"timestamp": _ocpp_time(middle), "sampledValue": [sample]}],
    }
    readings += mapper.meter_values(payload, T1 + timedelta(seconds=middle))
    stop = {
        "transactionId": tx,
        "meterStop": meter_stop,
        "timestamp": _ocpp_time(until),
        "reason": "EVDisconnected",
    }
    readings += mapper.stop_transaction(stop, T1 + timedelta(seconds=until))
    return readings + _status(mapper, until, "Available")


def mapped_readings() -> list[Reading]:
    """Two transactions; between them the register rose by 12 kWh that the gateway never
    saw (a session while the charge point was away, its messages lost)."""
    mapper = ChargePointMapper(MAPPED)
    readings = _status(mapper, -600, "Available")
    readings += _transaction(mapper, 1, 0, 1_000_000, 1_008_000, 1500)
    readings += _transaction(mapper, 2, 3600, 1_020_000, 1_025_000, 4500)
    assert {r.charger for r in readings} == {MAPPED}
    return readings


def _row(charger: str, s: int, field: str, value: float | str | bool | None) -> Row:
    time = T1 + timedelta(seconds=s)
    if value is None:
        return (time, charger, field, None, None, None)
    return reading_row(time, charger, field, value)


def rows() -> Iterator[Row]:
    for charger, history in ((TAGGED, TAGGED_HISTORY), (METERED, METERED_HISTORY)):
        for s, field, value in history:
            yield _row(charger, s, field, value)
    yield _row(MAPPED, -600, "EnergyPrice", 30.0)
    for r in mapped_readings():
        if r.value is None:
            yield (r.sampled_at, r.charger, r.field, None, None, None)
        else:
            yield reading_row(r.sampled_at, r.charger, r.field, r.value)


@pytest.fixture(scope="module")
def tx_api(postgres: PostgresServer, base_dir: Path) -> Iterator[LiveApi]:
    dsn = asyncio.run(fresh_database(postgres, "tx"))
    asyncio.run(plant_readings(dsn, rows()))
    api = start_api(dsn, scratch(base_dir, "api"))
    yield api
    api.stop()


@pytest.fixture
async def client(tx_api: LiveApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=tx_api.url,
        headers={"Authorization": f"Bearer {READ_TOKEN}"},
        timeout=10.0,
        trust_env=False,
    ) as c:
        yield c


def iso(s: int) -> str:
    return (T1 + timedelta(seconds=s)).isoformat()


WHOLE = {"from": iso(-3600), "to": iso(7200)}


async def get(client: httpx.AsyncClient, charger: str, what: str, **params: Any) -> Any:
    r = await client.get(f"/api/v1/chargers/{charger}/{what}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def test_sessions_carry_the_id_tag_and_transaction_id(client: httpx.AsyncClient) -> None:
    body = await get(client, TAGGED, "sessions", **WHOLE)
    got = [(s["id_tag"], s["transaction_id"]) for s in body["sessions"]]
    assert got == [
        ("CARD-A", "101"),  # published before the start, at the plug-in
        ("CARD-A", "102"),  # published during it (the late re-published 101 is not its)
        (None, None),  # nothing published for it: session 2's values are not taken
        (None, None),  # the transaction ended (null) before it started
    ]


async def test_a_session_of_a_charger_without_transactions_has_null_ids(
    client: httpx.AsyncClient,
) -> None:
    [s] = (await get(client, METERED, "sessions", **WHOLE))["sessions"]
    assert (s["id_tag"], s["transaction_id"]) == (None, None)


async def test_a_window_starting_after_the_ids_still_finds_them(
    client: httpx.AsyncClient,
) -> None:
    # The window opens after session 2's values were published: they are still its own.
    window = {"from": iso(1700), "to": iso(3500)}
    [s] = (await get(client, TAGGED, "sessions", **window))["sessions"]
    assert (s["id_tag"], s["transaction_id"]) == ("CARD-A", "102")


async def test_the_sessions_csv_has_the_ids(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/api/v1/chargers/{TAGGED}/sessions", params={**WHOLE, "format": "csv"})
    assert r.status_code == 200, r.text
    lines = list(csv.DictReader(io.StringIO(r.text, newline="")))
    assert [(line["id_tag"], line["transaction_id"]) for line in lines] == [
        ("CARD-A", "101"),
        ("CARD-A", "102"),
        ("", ""),
        ("", ""),
    ]


@pytest.mark.parametrize("charger", [TAGGED, METERED])
async def test_a_register_glitch_inside_a_session_is_no_energy(
    client: httpx.AsyncClient, charger: str
) -> None:
    body = await get(client, charger, "sessions", **WHOLE)
    first = body["sessions"][0]
    assert first["energy_wh"] == pytest.approx(8000.0)  # not 13,500 (a reset at the 0)
    assert first["cost"] == pytest.approx(2.4)
    if charger == TAGGED:
        # 3,200 Wh, not 4,200: the jump backwards to 1,000 and back is no energy either.
        energies = [s["energy_wh"] for s in body["sessions"]]
        assert energies == pytest.approx([8000.0, 3200.0, 2000.0, 1000.0])


@pytest.mark.parametrize("charger", [TAGGED, METERED])
@pytest.mark.parametrize("cut", [905, 915, 2730])
async def test_the_energy_per_period_is_unchanged_by_a_glitch_and_windows_add_up(
    client: httpx.AsyncClient, charger: str, cut: int
) -> None:
    # Windows whose edge falls inside a dip still see it as one: the two halves add up
    # to the whole, which is the session energy.
    whole = (await get(client, charger, "energy", **WHOLE))["total_energy_wh"]
    expected = 14_200.0 if charger == TAGGED else 8000.0
    assert whole == pytest.approx(expected)
    before = await get(client, charger, "energy", **{"from": WHOLE["from"], "to": iso(cut)})
    after = await get(client, charger, "energy", **{"from": iso(cut), "to": WHOLE["to"]})
    assert before["total_energy_wh"] + after["total_energy_wh"] == pytest.approx(expected)
    assert min(before["total_energy_wh"], after["total_energy_wh"]) >= 0.0


async def test_a_register_rise_between_transactions_is_not_billed_to_the_next_session(
    client: httpx.AsyncClient,
) -> None:
    # Each session is its transaction's meterStop - meterStart, although the charge point
    # reports Charging in the same second as the start, and the register stood 12 kWh
    # higher at the second start than at the first stop.
    body = await get(client, MAPPED, "sessions", **WHOLE)
    got = [(s["transaction_id"], s["energy_wh"]) for s in body["sessions"]]
    assert got == [("1", pytest.approx(8000.0)), ("2", pytest.approx(5000.0))]
    assert body["sessions"][1]["cost"] == pytest.approx(1.5)
    # The rise is still energy the charger delivered: the period counts it.
    energy = await get(client, MAPPED, "energy", **WHOLE)
    assert energy["total_energy_wh"] == pytest.approx(25_000.0)
