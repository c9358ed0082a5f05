"""Issue 17 end to end: an OCPP charge point's status, meter values and transactions reach
the API through the gateway, the broker and ingest.

The native stack of ``make dev`` (chargelift_devstack.Stack, each part its own process:
Mosquitto, PostgreSQL, ingest, the API, the OCPP gateway and a simulated OCPP charge
point) in a scratch directory. The test plays a second charge point itself, the spare one
``make dev`` registers for a real charger (``OCPP_CHARGE_POINT_ID``, ``OCPP_PASSWORD``),
with the ``ocpp`` package's client: its messages, timestamps and meter readings are known
exactly, so the API's figures can be checked to the watt-hour.

- must-show 1: status, power, energy and a transaction with its id tag appear in the API:
  the state, the history and a session whose energy equals meter stop - meter start;
- must-show 3: offline 60 s mid-transaction, the queued messages sent late with their own
  timestamps and one of them twice: every reading stored once at its own instant, and the
  session is right;
- must-show 6: the register drops to 0 and comes back inside a session: the session's
  energy is unchanged;
- must-show 5: a current limit through the API reaches the charge point as a charging
  profile and is reported applied; a stop through the API ends the transaction;
- and the simulated charge point of ``make dev`` reports as a charger of its own, and
  applies a limit sent through the API.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ClientChargePoint
from ocpp.v16 import call
from ocpp.v16 import call_result as result
from ocpp.v16.enums import Action
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from chargelift_certs import pki
from chargelift_devstack.main import OCPP_SPARE, Ports, Stack
from chargelift_devstack.procs import free_port
from tests.chaos.chaos import free_port_run
from tests.conftest import scratch
from tests.support.metrics import parse_metrics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(base_dir: Path) -> Iterator[Stack]:
    work = scratch(base_dir, "ocpp-e2e")
    certs = work / "certs"
    pki.dev_set(certs)
    ports = Ports(
        mqtt=free_port(),
        postgres=free_port(),
        api=free_port(),
        simulator=free_port_run(1),
        simulator_control=free_port(),
        poller_metrics=free_port(),
        ingest_metrics=free_port(),
        bridge_metrics=free_port(),
        ocpp=free_port(),
        ocpp_metrics=free_port(),
    )
    s = Stack(
        certs_dir=certs,
        chargers=1,
        speed=10,
        run_dir=work,
        ports=ports,
        ocpp_charge_points=1,
        # a meter value every 10 simulated s
        ocpp_simulator_args=["--interval", "10"],
    )
    try:
        s.up()
        yield s
    finally:
        s.down()


def api(stack: Stack, token: str = "API_TOKEN") -> httpx.Client:
    env = stack.env_values
    return httpx.Client(
        base_url=env["API_URL"],
        headers={"Authorization": f"Bearer {env[token]}"},
        timeout=10,
    )


def wait(check: Any, timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except httpx.TransportError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class AnsweringChargePoint(ClientChargePoint):  # type: ignore[misc]  # ocpp is untyped
    """A charge point that takes charging profiles and remote stops, as a charger does."""

    profiles: list[dict[str, Any]]
    stops: list[int]
    starts: list[tuple[str, int | None]]
    availability: list[tuple[int, str]]

    @on(Action.set_charging_profile)  # type: ignore[untyped-decorator]
    def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any]
    ) -> result.SetChargingProfile:
        self.profiles.append({"connector_id": connector_id, **cs_charging_profiles})
        return result.SetChargingProfile(status="Accepted")

    @on(Action.remote_stop_transaction)  # type: ignore[untyped-decorator]
    def on_remote_stop_transaction(self, transaction_id: int) -> result.RemoteStopTransaction:
        self.stops.append(transaction_id)
        return result.RemoteStopTransaction(status="Accepted")

    @on(Action.remote_start_transaction)  # type: ignore[untyped-decorator]
    def on_remote_start_transaction(
        self, id_tag: str, connector_id: int | None = None, **_: Any
    ) -> result.RemoteStartTransaction:
        self.starts.append((id_tag, connector_id))
        return result.RemoteStartTransaction(status="Accepted")

    @on(Action.change_availability)  # type: ignore[untyped-decorator]
    def on_change_availability(self, connector_id: int, type: str) -> result.ChangeAvailability:
        self.availability.append((connector_id, type))
        return result.ChangeAvailability(status="Accepted")


@asynccontextmanager
async def spare(stack: Stack) -> AsyncIterator[AnsweringChargePoint]:
    """The spare charge point, connected as a user's charger would be (profile 2)."""
    env = stack.env_values
    cp_id, password = env["OCPP_CHARGE_POINT_ID"], env["OCPP_PASSWORD"]
    token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
    ws = await connect(
        f"{env['OCPP_URL']}/{cp_id}",
        ssl=ssl.create_default_context(cafile=env["OCPP_CA_FILE"]),
        additional_headers={"Authorization": f"Basic {token}"},
        subprotocols=[Subprotocol("ocpp1.6")],
        open_timeout=10,
    )
    cp = AnsweringChargePoint(cp_id, ws, response_timeout=15)
    cp.profiles, cp.stops, cp.starts, cp.availability = [], [], [], []
    task = asyncio.create_task(cp.start())
    try:
        yield cp
    finally:
        await ws.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status(t: datetime, state: str) -> call.StatusNotification:
    return call.StatusNotification(
        connector_id=1, error_code="NoError", status=state, timestamp=iso(t)
    )


def meter(t: datetime, tx: int, wh: float, w: float) -> call.MeterValues:
    return call.MeterValues(
        connector_id=1,
        transaction_id=tx,
        meter_value=[
            {
                "timestamp": iso(t),
                "sampledValue": [
                    {"value": f"{wh:.0f}", "measurand": "Energy.Active.Import.Register",
                     "unit": "Wh", "context": "Sample.Periodic"},
                    {"value": f"{w:.0f}", "measurand": "Power.Active.Import", "unit": "W",
                     "context": "Sample.Periodic"},
                ],
            }
        ],
    )  # fmt: skip


def sessions(client: httpx.Client, charger: str, start: datetime) -> list[dict[str, Any]]:
    r = client.get(
        f"/api/v1/chargers/{charger}/sessions",
        params={"from": iso(start - timedelta(hours=1)), "to": iso(start + timedelta(hours=2))},
    )
    if r.status_code != 200:
        return []
    found: list[dict[str, Any]] = r.json()["sessions"]
    return found


async def rows(stack: Stack, charger: str, field: str) -> list[tuple[datetime, Any]]:
    """What the database holds for one field: (instant, value), in time order."""
    assert stack.postgres is not None
    db = await asyncpg.connect(stack.postgres.dsn)
    try:
        found = await db.fetch(
            "SELECT time, coalesce(value_num::text, value_text, value_bool::text) AS value "
            "FROM readings WHERE charger = $1 AND field = $2 ORDER BY time",
            charger,
            field,
        )
    finally:
        await db.close()
    return [(r["time"], r["value"]) for r in found]


def numbers(found: list[tuple[datetime, Any]]) -> list[tuple[datetime, float]]:
    return [(t, float(v)) for t, v in found]


async def test_a_transaction_reaches_the_api_with_its_id_tag_and_its_energy(
    stack: Stack,
) -> None:
    """Must-show 1, and must-show 6: a register that drops to 0 inside the session."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    async with spare(stack) as cp:
        boot = await cp.call(
            call.BootNotification(charge_point_vendor="ACME", charge_point_model="Box 11")
        )
        assert boot.status == "Accepted"
        await cp.call(status(t0, "Available"))
        await cp.call(status(t0 + timedelta(seconds=10), "Preparing"))
        begin = iso(t0 + timedelta(seconds=20))
        started = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="card-7", meter_start=10_000, timestamp=begin
            )
        )
        tx = started.transaction_id
        await cp.call(status(t0 + timedelta(seconds=20), "Charging"))
        await cp.call(meter(t0 + timedelta(seconds=80), tx, 10_120, 7_400))
        # the lbbrhzn/ocpp#1756 glitch: the register reads 0 once, then its level again
        await cp.call(meter(t0 + timedelta(seconds=140), tx, 0, 7_400))
        await cp.call(meter(t0 + timedelta(seconds=200), tx, 10_370, 7_300))
        await cp.call(
            call.StopTransaction(
                transaction_id=tx, meter_stop=10_500, timestamp=iso(t0 + timedelta(seconds=260)),
                reason="EVDisconnected", id_tag="card-7",
            )
        )  # fmt: skip
        await cp.call(status(t0 + timedelta(seconds=260), "Finishing"))
        last = t0 + timedelta(seconds=270)
        await cp.call(status(last, "Available"))

    with api(stack) as client:
        state = wait(
            lambda: (
                (r := client.get(f"/api/v1/chargers/{OCPP_SPARE}")).status_code == 200
                and (f := {x["field"]: x for x in r.json()["fields"]}).get("VendorState")
                # the last message sent: everything before it is stored too (one
                # connection, in order)
                and when(f["VendorState"]["sampling_time"]) == last
                and f
            ),
            60,
            "the spare charge point's last status in the API",
        )
        assert state["VendorState"]["value"] == "Available"
        assert state["OperationState"]["value"] == "idle"
        assert state["IdTag"]["value"] == "card-7"
        assert state["ChargerVendor"]["value"] == "ACME"
        assert state["ChargerModel"]["value"] == "Box 11"
        assert state["ConnectedVehicle"]["value"] is False
        assert state["TotalEnergyConsumption"]["value"] == 10_500
        assert state["SessionEnergy"]["value"] == 500
        found = wait(
            lambda: [s for s in sessions(client, OCPP_SPARE, t0) if s["end"] is not None],
            30,
            "the closed session",
        )
        assert len(found) == 1, found
        session = found[0]
        assert session["energy_wh"] == 500  # meter stop - meter start
        assert session["id_tag"] == "card-7"
        assert session["transaction_id"] == str(tx)
        history = client.get(
            f"/api/v1/chargers/{OCPP_SPARE}/readings",
            params={"field": "PowerOutput", "from": iso(t0), "to": iso(t0 + timedelta(hours=1))},
        )
        assert history.status_code == 200, history.text
        assert [p["value"] for p in history.json()["points"]] == [7_400, 7_400, 7_300]
    # the register's 0 was never stored as energy (must-show 6)
    energy = numbers(await rows(stack, OCPP_SPARE, "TotalEnergyConsumption"))
    assert energy
    assert all(v != 0 for _, v in energy)
    async with httpx.AsyncClient(timeout=5) as http:
        gateway = parse_metrics((await http.get(stack.env_values["OCPP_METRICS_URL"])).text)
    assert gateway["ocpp_energy_register_rejected_total"] >= 1  # counted


async def test_an_offline_queue_sent_late_and_twice_is_stored_once_at_its_instants(
    stack: Stack,
) -> None:
    """Must-show 3: 60 s offline mid-transaction; the queue arrives late, one message twice.

    The lifetime register carries on from the first test's transaction (10,500 Wh), and
    the first meter value of this one is already past the first session's whole energy
    (600 > 500 Wh): no register arithmetic may take it for a glitch."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=15)
    async with spare(stack) as cp:
        await cp.call(status(t0, "Preparing"))
        started = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="card-8", meter_start=10_500, timestamp=iso(t0)
            )
        )
        tx = started.transaction_id
        await cp.call(status(t0, "Charging"))
        await cp.call(meter(t0 + timedelta(seconds=30), tx, 11_100, 7_200))
    # Offline: the charge point goes on charging and queues what it would have sent.
    queued = [
        meter(t0 + timedelta(seconds=60), tx, 11_160, 7_200),
        meter(t0 + timedelta(seconds=90), tx, 11_220, 7_100),
        meter(t0 + timedelta(seconds=120), tx, 11_280, 7_000),
    ]
    await asyncio.sleep(2)  # the gateway sees the connection end (the charger offline)
    async with spare(stack) as cp:
        await cp.call(status(t0 + timedelta(seconds=125), "Charging"))
        for message in [queued[0], queued[1], queued[1], queued[2]]:  # one of them twice
            await cp.call(message)
        end = iso(t0 + timedelta(seconds=150))
        await cp.call(call.StopTransaction(transaction_id=tx, meter_stop=11_300, timestamp=end))
        await cp.call(status(t0 + timedelta(seconds=150), "Available"))

    with api(stack) as client:
        found = wait(
            lambda: [
                s
                for s in sessions(client, OCPP_SPARE, t0)
                if s["id_tag"] == "card-8" and s["end"] is not None
            ],
            60,
            "the session of card-8",
        )
        assert len(found) == 1, found
        assert found[0]["energy_wh"] == 800  # meter stop - meter start
        assert found[0]["transaction_id"] == str(tx)
    stored = [
        (t, v)
        for t, v in numbers(await rows(stack, OCPP_SPARE, "PowerOutput"))
        if t0 <= t <= t0 + timedelta(seconds=150)
    ]
    # once each, at the instant the charge point measured it (not when it arrived)
    assert stored == [
        (t0 + timedelta(seconds=30), 7_200),
        (t0 + timedelta(seconds=60), 7_200),
        (t0 + timedelta(seconds=90), 7_100),
        (t0 + timedelta(seconds=120), 7_000),
    ]


def command(stack: Stack, charger: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a command with the control token; its final status."""
    with api(stack, "API_CONTROL_TOKEN") as control:
        r = control.post(f"/api/v1/chargers/{charger}/commands", json=body)
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        done: dict[str, Any] = wait(
            lambda: (s := control.get(location).json())["status"] != "pending" and s,
            60,
            f"the outcome of {body} for {charger}",
        )
    return done


async def test_a_limit_and_a_stop_through_the_api_reach_the_charge_point(stack: Stack) -> None:
    """Must-show 5, on a charge point whose every call the test sees."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    async with spare(stack) as cp:
        await cp.call(status(t0, "Charging"))
        started = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="card-10", meter_start=11_300, timestamp=iso(t0)
            )
        )
        limit = {"command": "set_current_limit", "value": 10, "valid_for": 600}
        done = await asyncio.to_thread(command, stack, OCPP_SPARE, limit)
        assert done["status"] == "applied", done
        profile = cp.profiles[-1]
        assert profile["connector_id"] == 1
        assert profile["charging_profile_purpose"] == "TxDefaultProfile"
        schedule = profile["charging_schedule"]
        assert schedule["charging_rate_unit"] == "A"
        assert schedule["charging_schedule_period"][0]["limit"] == 10
        assert "valid_to" in profile  # the lease: the charger drops it by itself
        stop = await asyncio.to_thread(command, stack, OCPP_SPARE, {"command": "stop"})
        assert stop["status"] == "applied", stop
        assert cp.stops == [started.transaction_id]
        # the charger ends the transaction, as a remote stop asks
        end = iso(t0 + timedelta(seconds=60))
        await cp.call(
            call.StopTransaction(
                transaction_id=started.transaction_id,
                meter_stop=11_700,
                timestamp=end,
                reason="Remote",
            )
        )
        await cp.call(status(t0 + timedelta(seconds=60), "Available"))
    with api(stack) as client:
        found = wait(
            lambda: [
                s
                for s in sessions(client, OCPP_SPARE, t0)
                if s["id_tag"] == "card-10" and s["end"] is not None
            ],
            60,
            "the stopped session",
        )
    assert found[0]["energy_wh"] == 400


async def test_a_start_and_the_availability_through_the_api_reach_the_charge_point(
    stack: Stack,
) -> None:
    """Issue 17, Control: ``start`` is a remote start with the gateway's id tag, and the
    transaction the charger then begins is a session with that id tag in the API."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    # The charger's register goes on from where the other tests left it.
    registers = numbers(await rows(stack, OCPP_SPARE, "TotalEnergyConsumption"))
    base = int(registers[-1][1]) if registers else 20_000
    async with spare(stack) as cp:
        await cp.call(status(t0, "Preparing"))
        for name, kind in (("set_inoperative", "Inoperative"), ("set_operative", "Operative")):
            done = await asyncio.to_thread(command, stack, OCPP_SPARE, {"command": name})
            assert done["status"] == "applied", done
            assert done["reason"] == f"ChangeAvailability {kind}: Accepted"
        assert cp.availability == [(1, "Inoperative"), (1, "Operative")]
        done = await asyncio.to_thread(command, stack, OCPP_SPARE, {"command": "start"})
        assert done["status"] == "applied", done
        assert "Accepted by the charge point" in done["reason"]
        assert cp.starts == [("chargelift", 1)]  # OCPP_REMOTE_ID_TAG's default
        # The charger begins the transaction it was asked for, with that id tag.
        started = await cp.call(
            call.StartTransaction(
                connector_id=1,
                id_tag="chargelift",
                meter_start=base,
                timestamp=iso(t0 + timedelta(seconds=10)),
            )
        )
        assert started.id_tag_info["status"] == "Accepted"
        await cp.call(status(t0 + timedelta(seconds=10), "Charging"))
        await cp.call(
            call.StopTransaction(
                transaction_id=started.transaction_id,
                meter_stop=base + 250,
                timestamp=iso(t0 + timedelta(seconds=70)),
                reason="Local",
            )
        )
        await cp.call(status(t0 + timedelta(seconds=70), "Available"))
    with api(stack) as client:
        found = wait(
            lambda: [
                s
                for s in sessions(client, OCPP_SPARE, t0)
                if s["id_tag"] == "chargelift" and s["end"] is not None
            ],
            60,
            "the remotely started session",
        )
    assert found[0]["energy_wh"] == 250


def test_the_simulated_charge_point_of_make_dev_reports(stack: Stack) -> None:
    with api(stack) as client:
        state = wait(
            lambda: (
                (r := client.get("/api/v1/chargers/ocpp-sim-1")).status_code == 200
                and (f := {x["field"]: x for x in r.json()["fields"]}).get("ChargerVendor")
                and f.get("OperationState")
                and f
            ),
            60,
            "the simulated OCPP charge point in the API",
        )
    assert state["OperationState"]["value"] in {"idle", "charging"}
    assert state["ChargerModel"]["value"]
    # the simulated charge point takes a limit as a charging profile and says so
    done = command(stack, "ocpp-sim-1", {"command": "set_current_limit", "value": 8})
    assert done["status"] == "applied", done


class ResendingChargePoint:
    """The spare charge point as a real one behaves when its central system dies: every
    MeterValues waits for its answer; an unanswered one is sent again after reconnecting
    (OCPP 1.6, 4.7: transaction-related messages are delivered at least once)."""

    def __init__(self, stack: Stack, tx: int, t0: datetime) -> None:
        self.stack, self.tx, self.t0 = stack, tx, t0
        self.answered: list[datetime] = []  # instants of the meter values answered
        self.reconnects = 0

    async def send_all(self, count: int, every: float) -> None:
        pending = [self.t0 + timedelta(seconds=i) for i in range(count)]
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            try:
                async with spare(self.stack) as cp:
                    while pending:
                        at = pending[0]
                        watts = 5_000 + (at - self.t0).total_seconds()
                        wh = 11_700 + (at - self.t0).total_seconds()
                        await asyncio.wait_for(cp.call(meter(at, self.tx, wh, watts)), 5)
                        self.answered.append(pending.pop(0))
                        await asyncio.sleep(every)
            except Exception as exc:  # the connection lost in any of its ways
                if isinstance(exc, AssertionError):
                    raise
                self.reconnects += 1
                await asyncio.sleep(0.5)
        assert not pending, f"{len(pending)} meter values never answered"


def accepted_since_start(stack: Stack) -> float:
    """Connections the (restarted) gateway process accepted: its counters start at 0."""
    try:
        text = httpx.get(stack.env_values["OCPP_METRICS_URL"], timeout=2).text
    except httpx.TransportError:
        return 0.0
    return parse_metrics(text).get('ocpp_connections_accepted_total{profile="2"}', 0.0)


async def test_a_killed_gateway_loses_nothing_and_duplicates_nothing(stack: Stack) -> None:
    """Must-show 4: SIGKILL during traffic and a restart: every meter value the charge
    point sent is stored exactly once, and the charge points reconnect on their own."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    async with spare(stack) as cp:
        await cp.call(status(t0, "Charging"))
        started = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="card-9", meter_start=11_700, timestamp=iso(t0)
            )
        )
    sender = ResendingChargePoint(stack, started.transaction_id, t0 + timedelta(seconds=1))
    traffic = asyncio.create_task(sender.send_all(count=60, every=0.05))
    while len(sender.answered) < 15:
        await asyncio.sleep(0.02)
    gateway = stack.service("ocpp")
    gateway.kill()  # SIGKILL, mid-traffic
    await asyncio.sleep(1.0)
    gateway.start()
    await traffic
    assert sender.reconnects >= 1  # the kill was felt
    # the spare (the test's) and ocpp-sim-1 (the simulator's, on its own) came back
    wait(lambda: accepted_since_start(stack) >= 2, 60, "both charge points back")
    sent = [t0 + timedelta(seconds=1 + i) for i in range(60)]
    stored: list[tuple[datetime, float]] = []
    for _ in range(120):
        stored = [
            (t, v)
            for t, v in numbers(await rows(stack, OCPP_SPARE, "PowerOutput"))
            if sent[0] <= t <= sent[-1]
        ]
        if len(stored) >= len(sent):
            break
        await asyncio.sleep(0.5)
    # nothing lost, nothing twice (a message sent again is the same reading at the same
    # instant: one row), every reading at its own instant with its own value
    assert stored == [(t, 5_000 + (t - sent[0]).total_seconds()) for t in sent]
