"""Issue 18 end to end: Modbus chargers of a mixed site (``make dev DEV_MODBUS=1``) in the API.

The native stack of ``make dev`` with ``modbus=True`` (chargelift_devstack.Stack, each
part its own process: Mosquitto, PostgreSQL, ingest, the simulator, the poller, the API)
in a scratch directory: ``amtron-1`` read over MHCP, ``amtron-2`` over Modbus TCP as an
HCC3, ``amtron-3`` as a Bender, all three the simulator's chargers. Nothing is faked.

- must-show 2 (API half): each map's values reach the API with the right units: the
  lifetime meters above 65,535 Wh (a wrong word order reads nonsense), power in W,
  Bender currents in A from mA with their fractions, voltages in V;
- must-show 4: the HCC3 energy register drops to 0 and comes back inside a session
  (the simulator's ``crafted`` fault on registers 781/782): the session's energy in the
  API is what the simulator charged (its MHCP ``ChgNrg`` for the same session, the ground
  truth), not the whole register counted again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chargelift_certs import pki
from chargelift_devstack.main import Ports, Stack
from chargelift_devstack.procs import free_port
from tests.chaos.chaos import free_port_run
from tests.conftest import scratch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HCC3, BENDER = "amtron-2", "amtron-3"
#: HCC3 energy meter: u32 at input registers 781 (low word) and 782 (high word).
HCC3_METER = ("781", "782")
#: The simulated car's steady power (3 phases x 16 A x 230 V) and per-phase current.
STEADY_W, STEADY_A = 11_040, 16.0


@pytest.fixture(scope="module")
def stack(base_dir: Path) -> Iterator[Stack]:
    work = scratch(base_dir, "modbus-e2e")
    certs = work / "certs"
    pki.dev_set(certs)
    ports = Ports(
        mqtt=free_port(),
        postgres=free_port(),
        api=free_port(),
        simulator=free_port_run(3),
        simulator_control=free_port(),
        poller_metrics=free_port(),
        ingest_metrics=free_port(),
        bridge_metrics=free_port(),
        modbus=free_port_run(6),  # charger i, map k on modbus + 2i + k: 2..5 used
    )
    s = Stack(
        certs_dir=certs,
        chargers=3,
        speed=1,  # real time: the 1 Hz poll sees the current ramp (fractional amperes)
        run_dir=work,
        ports=ports,
        modbus=True,
        # cars come and go only when the test says so
        simulator_args=["--no-random-traffic"],
    )
    try:
        s.up()
        yield s
    finally:
        s.down()


def wait(check: Any, timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except httpx.TransportError:  # the API is still starting
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def api(stack: Stack) -> httpx.Client:
    env = stack.env_values
    return httpx.Client(
        base_url=env["API_URL"],
        headers={"Authorization": f"Bearer {env['API_TOKEN']}"},
        timeout=10,
    )


def simulator(stack: Stack, charger: str, action: str, body: Any = None) -> dict[str, Any]:
    url = f"{stack.env_values['SIMULATOR_CONTROL_URL']}/chargers/{charger}/{action}"
    answer = httpx.post(url, json=body, timeout=5)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def state(client: httpx.Client, charger: str) -> dict[str, dict[str, Any]]:
    answer = client.get(f"/api/v1/chargers/{charger}")
    if answer.status_code != 200:
        return {}
    return {f["field"]: f for f in answer.json()["fields"]}


def points(client: httpx.Client, charger: str, field: str, since: datetime) -> list[Any]:
    answer = client.get(
        f"/api/v1/chargers/{charger}/readings",
        params={"field": field, "from": iso(since), "to": iso(datetime.now(UTC))},
    )
    assert answer.status_code == 200, answer.text
    return [p["value"] for p in answer.json()["points"]]


def sessions(client: httpx.Client, charger: str, since: datetime) -> list[dict[str, Any]]:
    answer = client.get(
        f"/api/v1/chargers/{charger}/sessions",
        params={"from": iso(since - timedelta(minutes=5)), "to": iso(since + timedelta(hours=1))},
    )
    if answer.status_code != 200:
        return []
    found: list[dict[str, Any]] = answer.json()["sessions"]
    return found


def session_energy_truth(stack: Stack, charger: str) -> float:
    """The simulator's energy of the charger's current or last session: its MHCP ``ChgNrg``
    (the same ChargerModel its Modbus map serves; nobody else reads this port)."""
    index = int(charger.rsplit("-", 1)[1]) - 1
    pin = (stack.run_dir / "charger-pin").read_text().strip()
    answer = httpx.get(
        f"http://127.0.0.1:{stack.ports.simulator + index}/MHCP/1.0/ChargeData",
        params={"DevKey": pin},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    return float(answer.json()["ChgNrg"])


def test_modbus_values_reach_the_api_in_their_units_and_a_register_glitch_bills_nothing(
    stack: Stack,
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    with api(stack) as client:
        wait(
            lambda: all(state(client, c).get("OperationState") for c in ("amtron-1", HCC3, BENDER)),
            60,
            "the three chargers (MHCP, HCC3, Bender) in the API",
        )
        plugged_at = datetime.now(UTC)
        for charger in (HCC3, BENDER):
            simulator(stack, charger, "plug")  # handshake ~3 s, then a ramp to 11 kW

        def steady() -> dict[str, dict[str, dict[str, Any]]] | None:
            found = {c: state(client, c) for c in (HCC3, BENDER)}
            ok = (
                all(
                    f.get("PowerOutput", {}).get("value") == STEADY_W
                    and f.get("OperationState", {}).get("value") == "charging"
                    for f in found.values()
                )
                and found[BENDER].get("OutputCurrentL1", {}).get("value") == STEADY_A
            )
            return found if ok else None

        found = wait(steady, 60, "both Modbus chargers charging at 11 kW in the API")

        # --- must-show 2: units through the API ---------------------------------------
        hcc3, bender = found[HCC3], found[BENDER]
        for fields in (hcc3, bender):
            meter = fields["TotalEnergyConsumption"]
            # the simulator's meters start at 100,000 Wh: low-word-first (HCC3) and
            # high-word-first (Bender) decoded right; a swapped order is off by ~2**16
            assert 100_000 <= meter["value"] < 200_000, meter
            assert meter["unit"] == "Wh"
            assert fields["PowerOutput"]["unit"] == "W"
            assert fields["ConnectedVehicle"]["value"] is True
        assert hcc3["SerialNumber"]["value"]
        assert bender["OutputCurrentL1"]["value"] == STEADY_A  # A, not 16,000 (mA)
        assert bender["OutputCurrentL1"]["unit"] == "A"
        assert bender["OutputCurrent"]["value"] == STEADY_A
        assert bender["VoltageL1"]["value"] == 230
        assert bender["VoltageL1"]["unit"] == "V"
        ramp = points(client, BENDER, "OutputCurrentL1", plugged_at)
        assert any(0 < a < STEADY_A and a != int(a) for a in ramp), (
            f"no fractional current in the ramp: {ramp}"
        )
        assert max(ramp) == STEADY_A

        # --- must-show 4: the HCC3 meter reads 0, then its level again ------------------
        time.sleep(5)  # some charging before the glitch
        simulator(stack, HCC3, "fault", {"kind": "crafted", "raw": dict.fromkeys(HCC3_METER, "0")})
        wait(
            lambda: state(client, HCC3).get("TotalEnergyConsumption", {}).get("value") == 0,
            30,
            "the register's 0 in the API's state",
        )
        time.sleep(2)  # a few polls of 0
        simulator(stack, HCC3, "fault", {"kind": "none"})
        wait(
            lambda: (
                state(client, HCC3).get("TotalEnergyConsumption", {}).get("value", 0) >= 100_000
            ),
            30,
            "the register back at its level",
        )
        time.sleep(5)  # more charging after it
        simulator(stack, HCC3, "unplug")
        closed = wait(
            lambda: [s for s in sessions(client, HCC3, plugged_at) if s["end"] is not None],
            60,
            "the HCC3 session closed in the API",
        )
        assert len(closed) == 1, closed
        session = closed[0]
        truth = session_energy_truth(stack, HCC3)

        meters = points(client, HCC3, "TotalEnergyConsumption", since)
        assert 0 in meters, f"the glitch never reached the database: {meters}"
        assert truth > 20  # ~12 s at 11 kW charged
        # the register's dip is ignored: the session bills what the car took (give or
        # take the energy of one poll interval at each end: 11 kW x 1 s ~ 3 Wh), not the
        # 100,000+ Wh a reset would count again
        assert abs(session["energy_wh"] - truth) <= 10, (session, truth, meters)
        # and the stored register before the dip and at the end agree with it as well
        levels = [m for m in meters if m]
        assert session["energy_wh"] <= levels[-1] - levels[0] + 1e-6
