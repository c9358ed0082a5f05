"""The control endpoint: list chargers, switch faults, force cars in and out."""

from __future__ import annotations

import httpx
import pytest

from chargelift_simulator import Fault, FaultKind, Fleet
from tests.integration.simulator.conftest import mhcp


def control(fleet: Fleet, path: str) -> str:
    return f"http://127.0.0.1:{fleet.control_port}{path}"


async def test_list_the_chargers(fleet: Fleet, client: httpx.AsyncClient) -> None:
    r = await client.get(control(fleet, "/chargers"))
    assert r.status_code == 200
    listed = r.json()["chargers"]
    assert [c["id"] for c in listed] == ["amtron-1", "amtron-2"]
    first = listed[0]
    assert first == {
        "id": "amtron-1",
        "port": fleet.chargers[0].port,
        "url": fleet.chargers[0].url,
        "state": "Idle",
        "plugged": False,
        "fault": {"kind": "none", "latency_s": 0.0, "remaining": None},
        "dev_mode": "Remote",
        "remote_current": 16,
        "current_limit": 16.0,
        "writes": 0,
        "permanent_writes": 0,
    }
    r = await client.get(control(fleet, "/chargers/amtron-2"))
    assert r.json()["id"] == "amtron-2"


async def test_switch_a_fault_and_heal_it(fleet: Fleet, client: httpx.AsyncClient) -> None:
    charger = fleet.chargers[1]
    r = await client.post(
        control(fleet, "/chargers/amtron-2/fault"), json={"kind": "http500", "remaining": 3}
    )
    assert r.status_code == 200
    assert r.json()["fault"] == {"kind": "http500", "latency_s": 0.0, "remaining": 3}
    assert charger.fault == Fault(FaultKind.HTTP500, remaining=3)
    assert (await client.get(mhcp(charger))).status_code == 500
    listed = (await client.get(control(fleet, "/chargers"))).json()["chargers"]
    assert listed[1]["fault"]["remaining"] == 2
    r = await client.post(control(fleet, "/chargers/amtron-2/fault"), json={"kind": "none"})
    assert r.json()["fault"]["kind"] == "none"
    assert (await client.get(mhcp(charger))).status_code == 200


async def test_latency_over_the_control_endpoint(fleet: Fleet, client: httpx.AsyncClient) -> None:
    r = await client.post(
        control(fleet, "/chargers/amtron-1/fault"), json={"kind": "latency", "latency_s": 0.25}
    )
    assert r.status_code == 200
    assert fleet.chargers[0].fault == Fault(FaultKind.LATENCY, latency_s=0.25)


async def test_plug_and_unplug(fleet: Fleet, client: httpx.AsyncClient) -> None:
    r = await client.post(control(fleet, "/chargers/amtron-1/plug"))
    assert r.json() == {"changed": True, "charger": r.json()["charger"]}
    assert r.json()["charger"]["state"] == "StandbyConnect"
    assert r.json()["charger"]["plugged"] is True
    r = await client.post(control(fleet, "/chargers/amtron-1/plug"))
    assert r.json()["changed"] is False
    fleet.step(30)
    assert fleet.chargers[0].state == "Charging"
    r = await client.post(control(fleet, "/chargers/amtron-1/unplug"))
    assert (r.json()["changed"], r.json()["charger"]["state"]) == (True, "Idle")
    r = await client.post(control(fleet, "/chargers/amtron-1/unplug"))
    assert r.json()["changed"] is False
    assert fleet.chargers[0].sessions[-1].reason == "unplug"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/", None, 404),
        ("GET", "/chargers/amtron-9", None, 404),
        ("POST", "/chargers/amtron-9/fault", {"kind": "none"}, 404),
        ("POST", "/chargers/amtron-1/explode", None, 404),
        ("GET", "/chargers/amtron-1/fault", None, 405),
        ("POST", "/chargers", None, 405),
        ("POST", "/chargers/amtron-1", None, 405),
        ("POST", "/chargers/amtron-1/fault", {"kind": "slow"}, 400),
        ("POST", "/chargers/amtron-1/fault", {"kind": "latency", "latency_s": -1}, 400),
        ("POST", "/chargers/amtron-1/fault", {"kind": "http500", "remaining": 0}, 400),
        ("POST", "/chargers/amtron-1/fault", [], 400),
    ],
)
async def test_errors(
    fleet: Fleet,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: object,
    status: int,
) -> None:
    r = await client.request(method, control(fleet, path), json=body)
    assert r.status_code == status
    assert "error" in r.json()
    assert fleet.chargers[0].fault == Fault()


async def test_writes_and_the_limit_show_on_the_control_endpoint(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    charger = fleet.chargers[0]
    r = await client.post(mhcp(charger), json={"Permanent": False, "RemoteCurr": 10})
    assert r.status_code == 200
    r = await client.post(mhcp(charger), json={"Permanent": True, "RemoteCurr": 12})
    assert r.status_code == 200
    r = await client.post(mhcp(charger), json={"Permanent": "no"})  # refused: not counted
    assert r.status_code == 400
    info = (await client.get(control(fleet, "/chargers/amtron-1"))).json()
    assert (info["remote_current"], info["current_limit"]) == (12, 12.0)
    assert (info["writes"], info["permanent_writes"]) == (2, 1)
