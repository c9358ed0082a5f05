"""The simulated OCPP 1.6J charge point against a tiny central system on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v16 import call

from chargelift_simulator.ocpp_cp import OcppFaults, SimChargePoint
from chargelift_simulator.ocpp_fleet import OcppFleet, OcppFleetConfig
from tests.support.certs import TestCerts

from .ocpp_central import CentralSystem, central_system

PASSWORD = "sim-ocpp-password-0123"  # 22 bytes (profile 2 wants >= 16)


def fleet_config(cs: CentralSystem, **overrides: Any) -> OcppFleetConfig:
    values: dict[str, Any] = {
        "url": cs.url,
        "count": 1,
        "password": PASSWORD,
        "random_traffic": False,
        "speed": 20.0,  # 20 simulated seconds per real second
        "meter_interval_s": 4.0,  # a sample every 0.2 real seconds
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
        "response_timeout_s": 5.0,
    }
    values.update(overrides)
    return OcppFleetConfig(**values)


@pytest.fixture
async def cs() -> AsyncIterator[CentralSystem]:
    async with central_system() as server:
        yield server


def energy(payload: dict[str, Any]) -> int | None:
    for mv in payload["meterValue"]:
        for sv in mv["sampledValue"]:
            if sv.get("measurand") == "Energy.Active.Import.Register":
                return int(sv["value"])
    return None


def power(payload: dict[str, Any]) -> float:
    for mv in payload["meterValue"]:
        for sv in mv["sampledValue"]:
            if sv.get("measurand") == "Power.Active.Import":
                return float(sv["value"])
    raise AssertionError("no power")


def context(payload: dict[str, Any]) -> str:
    return str(payload["meterValue"][0]["sampledValue"][0].get("context"))


def replayed_all(cp: SimChargePoint) -> bool:
    return cp.online and not cp.backlog


def lapsed(cp: SimChargePoint) -> bool:
    return cp.limit_a is None and cp.model.power_w > 10_000


async def until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def charge(cs: CentralSystem, cp: SimChargePoint, samples: int = 3) -> None:
    """Plug a car in and wait until ``samples`` periodic meter values of its transaction."""
    cp.model.plug()
    await until(lambda: cp.transaction is not None)
    await until(
        lambda: (
            sum(
                1
                for p in cs.of("MeterValues")
                if "transactionId" in p and context(p) == "Sample.Periodic"
            )
            >= samples
        )
    )


async def test_boot_status_and_a_full_transaction(cs: CentralSystem) -> None:
    async with OcppFleet(fleet_config(cs)) as fleet:
        cp = fleet.charge_points[0]
        await fleet.wait_online()
        await charge(cs, cp)
        cp.model.unplug()
        cp.observe()
        await until(lambda: bool(cs.of("StopTransaction")))
        await until(lambda: cs.of("StatusNotification")[-1]["status"] == "Available")
    assert cp.call_errors == []  # the central system found every message valid
    token = base64.b64encode(f"{cp.id}:{PASSWORD}".encode()).decode()
    assert cs.auth_headers[0] == f"Basic {token}"
    boot = cs.of("BootNotification")[0]
    assert boot["chargePointVendor"] == "chargelift"
    assert boot["chargePointModel"] == "sim-ocpp"
    assert boot["chargePointSerialNumber"]
    assert boot["firmwareVersion"]
    actions = cs.actions()
    assert actions[:3] == ["BootNotification", "StatusNotification", "StatusNotification"]
    statuses = [p["status"] for p in cs.of("StatusNotification") if p["connectorId"] == 1]
    assert statuses[:4] == ["Available", "Preparing", "Charging", "Available"] or (
        "Preparing" in statuses and "Charging" in statuses
    )
    assert actions.index("Authorize") < actions.index("StartTransaction")
    (start,) = cs.of("StartTransaction")
    (stop,) = cs.of("StopTransaction")
    assert start["idTag"] == cp.id_tag == stop["idTag"]
    assert stop["transactionId"] == 1001
    assert stop["reason"] == "EVDisconnected"
    tx_values = [p for p in cs.of("MeterValues") if p.get("transactionId") == 1001]
    contexts = [context(p) for p in tx_values]
    assert contexts[0] == "Transaction.Begin"
    assert contexts[-1] == "Transaction.End"
    assert "Sample.Periodic" in contexts
    registers = [energy(p) for p in tx_values]
    assert registers[0] == start["meterStart"]
    assert registers[-1] == stop["meterStop"]
    assert registers == sorted(registers)  # type: ignore[type-var]
    assert stop["meterStop"] - start["meterStart"] > 0
    sample = tx_values[1]["meterValue"][0]["sampledValue"]
    measurands = {(s.get("measurand"), s.get("phase")) for s in sample}
    assert {
        ("Energy.Active.Import.Register", None),
        ("Power.Active.Import", None),
        ("Current.Import", "L1"),
        ("Current.Import", "L3"),
        ("Voltage", "L2-N"),
        ("SoC", None),
    } <= measurands


async def test_a_charging_profile_limits_the_power_until_valid_to(cs: CentralSystem) -> None:
    async with OcppFleet(fleet_config(cs)) as fleet:
        cp = fleet.charge_points[0]
        await fleet.wait_online()
        await charge(cs, cp, samples=1)
        await until(lambda: cp.model.power_w > 10_000)
        valid_to = datetime.fromtimestamp(cp.now(), UTC) + timedelta(seconds=60)

        def profile(limit: float, valid: datetime | None) -> Any:
            body: dict[str, Any] = {
                "charging_profile_id": 7,
                "stack_level": 0,
                "charging_profile_purpose": "TxDefaultProfile",
                "charging_profile_kind": "Absolute",
                "charging_schedule": {
                    "charging_rate_unit": "A",
                    "charging_schedule_period": [{"start_period": 0, "limit": limit}],
                },
            }
            if valid is not None:
                body["valid_to"] = valid.isoformat()
            return call.SetChargingProfile(connector_id=1, cs_charging_profiles=body)

        answer = await cs.call(cp.id, profile(8, valid_to))
        assert answer.status == "Accepted"
        assert cp.limit_a == 8
        await until(lambda: 0 < cp.model.power_w <= 8 * 3 * 230)
        n = len(cs.of("MeterValues"))
        await until(lambda: len(cs.of("MeterValues")) >= n + 2)
        assert 0 < power(cs.of("MeterValues")[-1]) <= 8 * 3 * 230 + 0.1
        # validTo: 60 simulated seconds later the limit lapses and the power rises again.
        await until(lambda: lapsed(cp), timeout=15)
        # A 0 A profile pauses: SuspendedEVSE.
        answer = await cs.call(cp.id, profile(0, None))
        assert answer.status == "Accepted"
        await until(lambda: cp.status == "SuspendedEVSE")
        assert cp.model.power_w == 0
        await until(lambda: cs.of("StatusNotification")[-1]["status"] == "SuspendedEVSE")
        answer = await cs.call(cp.id, call.ClearChargingProfile(id=7))
        assert answer.status == "Accepted"
        await until(lambda: cp.status == "Charging")


async def test_remote_stop_ends_the_transaction_and_remote_start_begins_one(
    cs: CentralSystem,
) -> None:
    async with OcppFleet(fleet_config(cs)) as fleet:
        cp = fleet.charge_points[0]
        await fleet.wait_online()
        await charge(cs, cp, samples=1)
        answer = await cs.call(cp.id, call.RemoteStopTransaction(transaction_id=1001))
        assert answer.status == "Accepted"
        await until(lambda: bool(cs.of("StopTransaction")))
        assert cs.of("StopTransaction")[0]["reason"] == "Remote"
        assert cp.transaction is None
        assert cp.model.power_w == 0
        await until(lambda: cp.status == "Finishing")
        answer = await cs.call(cp.id, call.RemoteStopTransaction(transaction_id=1001))
        assert answer.status == "Rejected"
        answer = await cs.call(cp.id, call.RemoteStartTransaction(id_tag="APP-42"))
        assert answer.status == "Accepted"
        await until(lambda: len(cs.of("StartTransaction")) == 2)
        assert cs.of("StartTransaction")[1]["idTag"] == "APP-42"


async def test_remote_start_needs_a_car_and_inoperative_waits_for_the_transaction(
    cs: CentralSystem,
) -> None:
    async with OcppFleet(fleet_config(cs)) as fleet:
        cp = fleet.charge_points[0]
        await fleet.wait_online()
        start = call.RemoteStartTransaction(id_tag="APP-1", connector_id=1)
        # No car plugged in: nothing to start.
        assert (await cs.call(cp.id, start)).status == "Rejected"
        await charge(cs, cp, samples=1)
        tx = cp.transaction
        assert tx is not None
        assert tx.real_id is not None
        # A transaction runs: no second one; Inoperative is Scheduled for its end.
        assert (await cs.call(cp.id, start)).status == "Rejected"
        inoperative = call.ChangeAvailability(connector_id=1, type="Inoperative")
        assert (await cs.call(cp.id, inoperative)).status == "Scheduled"
        await asyncio.sleep(0.3)
        assert (cp.transaction, cp.status, cp.available) == (tx, "Charging", True)
        stop = call.RemoteStopTransaction(transaction_id=tx.real_id)
        assert (await cs.call(cp.id, stop)).status == "Accepted"
        await until(lambda: bool(cs.of("StopTransaction")))
        await until(lambda: cp.status == "Unavailable")  # the car is still plugged in
        await until(lambda: cs.of("StatusNotification")[-1]["status"] == "Unavailable")
        # Unavailable: no transaction starts, not even a remote one.
        assert (await cs.call(cp.id, start)).status == "Rejected"
        await asyncio.sleep(0.3)
        assert (cp.transaction, len(cs.of("StartTransaction"))) == (None, 1)
        # Operative again: a remote start begins a transaction with its id tag, charging.
        operative = call.ChangeAvailability(connector_id=1, type="Operative")
        assert (await cs.call(cp.id, operative)).status == "Accepted"
        await until(lambda: cp.status != "Unavailable")
        start = call.RemoteStartTransaction(id_tag="APP-7", connector_id=1)
        assert (await cs.call(cp.id, start)).status == "Accepted"
        await until(lambda: len(cs.of("StartTransaction")) == 2)
        assert cs.of("StartTransaction")[1]["idTag"] == "APP-7"
        await until(lambda: cp.status == "Charging" and cp.model.power_w > 0)
    assert cp.call_errors == []


async def test_offline_mid_transaction_replays_in_order_with_the_real_id(
    cs: CentralSystem,
) -> None:
    async with OcppFleet(fleet_config(cs)) as fleet:
        cp = fleet.charge_points[0]
        await fleet.wait_online()
        cp.disconnect(1.0)  # offline before the car comes: StartTransaction is queued too
        cp.duplicate_next()
        assert not cp.online
        cp.model.plug()
        await until(lambda: cp.transaction is not None)
        await asyncio.sleep(0.5)
        backlog = cp.backlog
        assert [o.action for o in backlog][:2] == ["StartTransaction", "MeterValues"]
        assert all(o.tx is not None for o in backlog)
        queued_times = [
            o.payload.get("timestamp") or o.payload["meterValue"][0]["timestamp"] for o in backlog
        ]
        tx = cp.transaction
        assert tx is not None
        assert tx.local_id < 0
        assert tx.real_id is None
        before = len(cs.calls)
        await until(lambda: replayed_all(cp))
        replayed = cs.calls[before:]
        tx_calls = [r for r in replayed if r.action in ("StartTransaction", "MeterValues")]
        assert tx_calls[0].action == "StartTransaction"
        assert cp.transactions[0].real_id == 1001
        values = [r.payload for r in tx_calls[1:]]
        assert all(p["transactionId"] == 1001 for p in values)
        # Their own timestamps, in order; the first MeterValues of the backlog came twice.
        stamps = [p["meterValue"][0]["timestamp"] for p in values]
        assert stamps[0] == stamps[1]
        assert values[0] == values[1]
        assert stamps[1:] == sorted(stamps[1:])
        assert [tx_calls[0].payload["timestamp"], *stamps[1:]][: len(queued_times)] == (
            queued_times[: len(stamps)]
        )
        assert cp.connections == 2
        assert cp.call_errors == []


async def test_the_automatic_offline_fault_replays_late_and_duplicates_once(
    cs: CentralSystem,
) -> None:
    faults = OcppFaults(offline_after_s=4.0, offline_for_s=0.6, duplicate_on_replay=True)
    async with OcppFleet(fleet_config(cs, faults=faults)) as fleet:
        cp = fleet.charge_points[0]
        await fleet.wait_online()
        cp.model.plug()
        await until(lambda: cp.connections == 2 and cp.online and not cp.backlog)
        await until(lambda: len([p for p in cs.of("MeterValues") if "transactionId" in p]) > 8)
    in_tx = [p for p in cs.of("MeterValues") if "transactionId" in p]
    texts = [json.dumps(p, sort_keys=True) for p in in_tx]
    assert len(texts) - len(set(texts)) == 1  # exactly one message twice
    stamps = [p["meterValue"][0]["timestamp"] for p in in_tx]
    assert stamps == sorted(stamps)  # replayed in order, with their own timestamps
    assert {p["transactionId"] for p in in_tx} == {1001}


async def test_clock_skew_shifts_every_timestamp(cs: CentralSystem) -> None:
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    config = fleet_config(cs, start=start, speed=0.0, faults=OcppFaults(clock_skew_s=3600))
    async with OcppFleet(config) as fleet:
        await fleet.wait_online()
        await until(lambda: len(cs.of("StatusNotification")) >= 2)
    assert cs.of("StatusNotification")[0]["timestamp"] == "2026-03-01T13:00:00.000Z"


async def test_a_register_drop_reports_zero_once_then_the_register(cs: CentralSystem) -> None:
    async with OcppFleet(fleet_config(cs)) as fleet:
        cp = fleet.charge_points[0]
        await fleet.wait_online()
        await charge(cs, cp, samples=1)
        cp.drop_register_next()
        await charge(cs, cp, samples=4)
    registers = [energy(p) for p in cs.of("MeterValues") if "transactionId" in p]
    assert registers.count(0) == 1
    i = registers.index(0)
    after, before = registers[i + 1], registers[i - 1]
    assert after is not None
    assert before is not None
    assert after >= before


async def test_the_schema_violation_is_sent_raw_and_answered_with_an_error(
    cs: CentralSystem,
) -> None:
    async with OcppFleet(fleet_config(cs)) as fleet:
        cp = fleet.charge_points[0]
        await fleet.wait_online()
        uid = await cp.send_schema_violation("value_not_string")
        uid2 = await cp.send_schema_violation("missing_field")
        await until(lambda: uid in cp.raw_answers and uid2 in cp.raw_answers)
        assert any(uid in frame and '"value":' in frame for frame in cs.raw)
        assert cp.raw_answers[uid].startswith("[4,")
        assert cp.raw_answers[uid2].startswith("[4,")
        # The connection carries on.
        answer = await cs.call(cp.id, call.GetConfiguration(key=["MeterValueSampleInterval"]))
        assert answer.configuration_key[0]["value"] == "4"


async def test_the_silent_fault_never_answers_a_call(cs: CentralSystem) -> None:
    async with OcppFleet(fleet_config(cs, faults=OcppFaults(ignore_calls=True))) as fleet:
        cp = fleet.charge_points[0]
        await fleet.wait_online()
        proto = cs.connected[cp.id]
        proto._response_timeout = 0.5
        with pytest.raises(TimeoutError):
            await cs.call(cp.id, call.GetConfiguration())
        assert cp.calls_received == ["GetConfiguration"]
        assert cp.calls_ignored == 1
        cp.faults.ignore_calls = False
        answer = await cs.call(cp.id, call.GetConfiguration())
        assert answer.configuration_key


async def test_availability_trigger_and_configuration(cs: CentralSystem) -> None:
    async with OcppFleet(fleet_config(cs)) as fleet:
        cp = fleet.charge_points[0]
        await fleet.wait_online()
        answer = await cs.call(cp.id, call.ChangeAvailability(connector_id=0, type="Inoperative"))
        assert answer.status == "Accepted"
        await until(lambda: cs.of("StatusNotification")[-1]["status"] == "Unavailable")
        answer = await cs.call(cp.id, call.ChangeAvailability(connector_id=0, type="Operative"))
        assert answer.status == "Accepted"
        await until(lambda: cs.of("StatusNotification")[-1]["status"] == "Available")
        answer = await cs.call(
            cp.id, call.ChangeConfiguration(key="MeterValueSampleInterval", value="60")
        )
        assert answer.status == "Accepted"
        assert cp.meter_interval_s == 60
        n = len(cs.of("MeterValues"))
        answer = await cs.call(cp.id, call.TriggerMessage(requested_message="MeterValues"))
        assert answer.status == "Accepted"
        await until(lambda: len(cs.of("MeterValues")) == n + 1)
        assert context(cs.of("MeterValues")[-1]) == "Trigger"
        answer = await cs.call(cp.id, call.Reset(type="Soft"))
        assert answer.status == "Accepted"
        await until(lambda: len(cs.of("BootNotification")) == 2)


async def test_several_charge_points_in_one_process(cs: CentralSystem) -> None:
    async with OcppFleet(fleet_config(cs, count=5, prefix="cp-")) as fleet:
        await fleet.wait_online()
        assert sorted(cs.connected) == [f"cp-{i}" for i in range(1, 6)]
        assert len({cp.id_tag for cp in fleet.charge_points}) == 5


async def test_profile_3_connects_with_a_client_certificate_over_wss(certs: TestCerts) -> None:
    files = certs.issue_charger("ocpp-tls-1")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca_file))
    tls.load_cert_chain(certs.dir / "broker.crt", certs.dir / "broker.key")
    tls.verify_mode = ssl.CERT_REQUIRED
    async with central_system(tls) as cs:
        good = fleet_config(
            cs,
            ids=("ocpp-tls-1",),
            password=None,
            ca_file=str(certs.ca_file),
            cert_file=str(files.cert_file),
            key_file=str(files.key_file),
        )
        async with OcppFleet(good) as fleet:
            await fleet.wait_online()
        assert cs.auth_headers == [None]
        assert (("commonName", "ocpp-tls-1"),) in cs.peer_subjects[0]
        # Without the client certificate the handshake fails and it keeps trying.
        bare = fleet_config(cs, ids=("ocpp-tls-2",), password=None, ca_file=str(certs.ca_file))
        async with OcppFleet(bare) as fleet:
            cp = fleet.charge_points[0]
            await until(lambda: cp.connect_failures >= 2)
            assert not cp.online


async def test_the_console_script_runs_until_sigterm_and_never_logs_the_password(
    cs: CentralSystem,
) -> None:
    argv = ["--url", cs.url, "--count", "2", "--password", PASSWORD, "--speed", "20"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chargelift_simulator.ocpp_main",
        *argv,
        "--interval",
        "4",
        "--log-level",
        "DEBUG",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await until(lambda: len(cs.of("BootNotification")) == 2, timeout=20)
        await until(lambda: len(cs.of("MeterValues")) >= 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await proc.communicate()
    assert proc.returncode == 0
    log = err.decode()
    assert "ocpp-sim-2" in log
    assert PASSWORD not in log
    assert base64.b64encode(f"ocpp-sim-1:{PASSWORD}".encode()).decode() not in log


async def test_a_503_with_retry_after_is_honoured(cs: CentralSystem) -> None:
    """A busy central system (the gateway's full password-check line) answers 503 with
    Retry-After: the charge point waits that long, not its own short backoff."""
    cs.busy, cs.retry_after = 1, 1
    async with OcppFleet(fleet_config(cs)) as fleet:  # backoff 0.05-0.2 s
        cp = fleet.charge_points[0]
        await fleet.wait_online(10)
    assert len(cs.handshakes) == 2
    assert cs.handshakes[1] - cs.handshakes[0] >= 0.95
    assert cp.retry_afters == 1
