"""chargelift_ocpp.mapping: OCPP 1.6J payloads (camelCase, as on the wire) -> readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargelift_contract import CATALOGUE, field_spec, validate_charger_id
from chargelift_contract.envelope import check_value
from chargelift_ocpp.mapping import (
    CONFIRMATIONS,
    MAX_CONNECTORS,
    MAX_FUTURE,
    MAX_TRANSACTIONS,
    ChargePointMapper,
    MappingError,
    Reading,
    charger_id,
    validate_charge_point_id,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
CP = "wallbox-7"


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def stamp(seconds: float) -> str:
    return at(seconds).isoformat().replace("+00:00", "Z")


def values(readings: list[Reading]) -> dict[tuple[str, str], Any]:
    """(charger, field) -> value; fails when one appears twice."""
    out: dict[tuple[str, str], Any] = {}
    for r in readings:
        key = (r.charger, r.field)
        assert key not in out, key
        out[key] = r.value
    return out


def fields(readings: list[Reading], charger: str = CP) -> dict[str, Any]:
    return {f: v for (c, f), v in values(readings).items() if c == charger}


def series(readings: list[Reading], field: str) -> list[tuple[datetime, Any]]:
    return [(r.sampled_at, r.value) for r in readings if r.field == field]


def meter(
    seconds: float, *sampled: dict[str, Any], connector: int = 1, **extra: Any
) -> dict[str, Any]:
    return {
        "connectorId": connector,
        "meterValue": [{"timestamp": stamp(seconds), "sampledValue": list(sampled)}],
        **extra,
    }


def energy(value: str, unit: str | None = None, **extra: Any) -> dict[str, Any]:
    sv = {"value": value, "measurand": "Energy.Active.Import.Register", **extra}
    if unit is not None:
        sv["unit"] = unit
    return sv


def start(
    mapper: ChargePointMapper, seconds: float, meter_start: int, tx: int = 7
) -> list[Reading]:
    payload = {
        "connectorId": 1,
        "idTag": "RFID-0042",
        "meterStart": meter_start,
        "timestamp": stamp(seconds),
    }
    return mapper.start_transaction(payload, tx, NOW + timedelta(seconds=seconds))


def stop(mapper: ChargePointMapper, seconds: float, meter_stop: int, tx: int = 7) -> list[Reading]:
    payload = {
        "transactionId": tx,
        "meterStop": meter_stop,
        "timestamp": stamp(seconds),
        "reason": "EVDisconnected",
    }
    return mapper.stop_transaction(payload, at(seconds))


def register(mapper: ChargePointMapper, seconds: float, wh: str) -> list[Reading]:
    return mapper.meter_values(meter(seconds, energy(wh)), at(seconds))


# --- charger ids ---------------------------------------------------------------------------


def test_connector_1_is_the_charge_point_and_others_get_a_suffix() -> None:
    assert charger_id("wallbox-7", 1) == "wallbox-7"
    assert charger_id("wallbox-7", 2) == "wallbox-7__2"
    assert charger_id("a", MAX_CONNECTORS) == f"a__{MAX_CONNECTORS}"


@given(
    st.from_regex(r"[a-z0-9_-]{1,48}", fullmatch=True).filter(lambda s: "__" not in s),
    st.integers(1, MAX_CONNECTORS),
)
def test_every_charger_id_is_valid_for_the_contract(cp: str, connector: int) -> None:
    validate_charger_id(charger_id(cp, connector))


@given(
    st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True).filter(lambda s: "__" not in s),
    st.integers(1, 12),
    st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True).filter(lambda s: "__" not in s),
    st.integers(1, 12),
)
def test_charger_ids_never_collide(cp1: str, n1: int, cp2: str, n2: int) -> None:
    if (cp1, n1) != (cp2, n2):
        assert charger_id(cp1, n1) != charger_id(cp2, n2)


@pytest.mark.parametrize(
    "cp", ["", "Wallbox", "a__b", "x" * 49, "wall box", "ä", "a/b", "a+b", "a\x00"]
)
def test_an_invalid_charge_point_id_is_refused(cp: str) -> None:
    with pytest.raises(MappingError):
        validate_charge_point_id(cp)
    with pytest.raises(MappingError):
        ChargePointMapper(cp)


@pytest.mark.parametrize("connector", [0, -1, MAX_CONNECTORS + 1, True, 1.0, "1", None])
def test_an_invalid_connector_has_no_charger_id(connector: Any) -> None:
    with pytest.raises(MappingError):
        charger_id(CP, connector)


# --- BootNotification ----------------------------------------------------------------------


def test_boot_notification_gives_vendor_model_serial_and_firmware() -> None:
    readings = ChargePointMapper(CP).boot_notification(
        {
            "chargePointVendor": "Mennekes",
            "chargePointModel": "AMTRON 4You",
            "chargeBoxSerialNumber": "box-1",
            "chargePointSerialNumber": "SN123",
            "firmwareVersion": "5.22.3",
        },
        NOW,
    )
    assert fields(readings) == {
        "ChargerVendor": "Mennekes",
        "ChargerModel": "AMTRON 4You",
        "SerialNumber": "SN123",
        "FirmwareVersion": "5.22.3",
    }
    assert {r.sampled_at for r in readings} == {NOW}


def test_boot_falls_back_to_the_charge_box_serial_and_reaches_every_connector() -> None:
    mapper = ChargePointMapper(CP)
    mapper.status_notification(
        {"connectorId": 2, "status": "Available", "errorCode": "NoError"}, NOW
    )
    readings = mapper.boot_notification(
        {"chargePointVendor": "V", "chargePointModel": "M", "chargeBoxSerialNumber": "B"}, NOW
    )
    assert fields(readings)["SerialNumber"] == "B"
    assert fields(readings, f"{CP}__2")["ChargerModel"] == "M"


def test_a_bad_boot_value_is_dropped_alone() -> None:
    mapper = ChargePointMapper(CP)
    readings = mapper.boot_notification(
        {"chargePointVendor": "x" * 1_000_000, "chargePointModel": "M", "firmwareVersion": 5},
        NOW,
    )
    assert fields(readings) == {"ChargerModel": "M"}
    assert mapper.dropped_values == 2


# --- StatusNotification --------------------------------------------------------------------

STATUSES = [
    ("Available", "idle", False),
    ("Preparing", "idle", True),
    ("Charging", "charging", True),
    ("SuspendedEV", "idle", True),
    ("SuspendedEVSE", "idle", True),
    ("Finishing", "idle", True),
    ("Reserved", "idle", False),
    ("Unavailable", "scheduled_downtime", None),
    ("Faulted", "unscheduled_downtime", None),
]


@pytest.mark.parametrize(("status", "state", "vehicle"), STATUSES)
def test_status_maps_to_operation_state_and_connected_vehicle(
    status: str, state: str, vehicle: bool | None
) -> None:
    readings = ChargePointMapper(CP).status_notification(
        {"connectorId": 1, "status": status, "errorCode": "NoError", "timestamp": stamp(-5)},
        NOW,
    )
    assert fields(readings) == {
        "OperationState": state,
        "VendorState": status,
        "ConnectedVehicle": vehicle,
        "VendorErrorCode": None,
    }
    assert {r.sampled_at for r in readings} == {at(-5)}


def test_an_error_code_becomes_the_vendor_error_code() -> None:
    readings = ChargePointMapper(CP).status_notification(
        {
            "connectorId": 2,
            "status": "Faulted",
            "errorCode": "GroundFailure",
            "vendorErrorCode": "E042",
            "info": "RCD tripped",
        },
        NOW,
    )
    assert fields(readings, f"{CP}__2")["VendorErrorCode"] == "GroundFailure/E042 (RCD tripped)"
    assert {r.sampled_at for r in readings} == {NOW}  # no timestamp: the receive time


def test_connector_0_faulted_applies_to_every_connector_and_available_restores_them() -> None:
    mapper = ChargePointMapper(CP)
    for connector, status in ((1, "Charging"), (2, "Available")):
        mapper.status_notification(
            {"connectorId": connector, "status": status, "errorCode": "NoError"}, NOW
        )
    faulted = mapper.status_notification(
        {"connectorId": 0, "status": "Faulted", "errorCode": "InternalError"}, NOW
    )
    assert fields(faulted)["OperationState"] == "unscheduled_downtime"
    assert fields(faulted, f"{CP}__2")["VendorErrorCode"] == "InternalError"
    back = mapper.status_notification(
        {"connectorId": 0, "status": "Available", "errorCode": "NoError"}, at(1)
    )
    assert fields(back)["OperationState"] == "charging"
    assert fields(back, f"{CP}__2")["OperationState"] == "idle"


def test_connector_0_without_known_connectors_means_connector_1() -> None:
    readings = ChargePointMapper(CP).status_notification(
        {"connectorId": 0, "status": "Unavailable", "errorCode": "NoError"}, NOW
    )
    assert {r.charger for r in readings} == {CP}


@pytest.mark.parametrize(
    "payload",
    [
        {"connectorId": 1, "status": "Sleeping", "errorCode": "NoError"},
        {"connectorId": 1, "status": "Available", "errorCode": "Oops"},
        {"connectorId": 1, "status": ["Available"], "errorCode": "NoError"},
        {"connectorId": 0, "status": "Charging", "errorCode": "NoError"},
        {"connectorId": "1", "status": "Available", "errorCode": "NoError"},
        {"connectorId": 10**400, "status": "Available", "errorCode": "NoError"},
        {"status": "Available", "errorCode": "NoError"},
    ],
)
def test_a_status_that_makes_no_sense_is_a_mapping_error(payload: dict[str, Any]) -> None:
    with pytest.raises(MappingError):
        ChargePointMapper(CP).status_notification(payload, NOW)


# --- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        "yesterday",
        "2026-12-02 12:00",
        "1970-01-01T00:00:00Z",
        (NOW + MAX_FUTURE + timedelta(seconds=1)).isoformat(),
        12345,
        "9" * 10_000,
    ],
)
def test_an_unbelievable_timestamp_becomes_the_receive_time(timestamp: Any) -> None:
    mapper = ChargePointMapper(CP)
    readings = mapper.status_notification(
        {"connectorId": 1, "status": "Available", "errorCode": "NoError", "timestamp": timestamp},
        NOW,
    )
    assert {r.sampled_at for r in readings} == {NOW}
    assert mapper.clock_corrections == 1


def test_a_late_timestamp_is_kept_and_any_offset_is_utc() -> None:
    readings = ChargePointMapper(CP).status_notification(
        {
            "connectorId": 1,
            "status": "Available",
            "errorCode": "NoError",
            "timestamp": "2026-12-02T10:00:00.5+01:00",
        },
        NOW,
    )
    assert {r.sampled_at for r in readings} == {datetime(2026, 12, 2, 9, 0, 0, 500000, UTC)}


# --- MeterValues ---------------------------------------------------------------------------


def test_meter_values_map_every_measurand_at_its_own_timestamp() -> None:
    payload = {
        "connectorId": 1,
        "meterValue": [
            {
                "timestamp": stamp(-20),
                "sampledValue": [
                    {"value": "12345.6"},  # Energy.Active.Import.Register, Wh by default
                    {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
                    {"value": "16.1", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                    {"value": "15.9", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
                    {"value": "16.4", "measurand": "Current.Import", "phase": "L3", "unit": "A"},
                    {"value": "230.1", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
                    {"value": "231", "measurand": "Voltage", "phase": "L2-N", "unit": "V"},
                    {"value": "229", "measurand": "Voltage", "phase": "L3", "unit": "V"},
                    {"value": "400", "measurand": "Voltage", "phase": "L1-L2", "unit": "V"},
                    {"value": "63", "measurand": "SoC", "unit": "Percent", "location": "EV"},
                    {"value": "50.0", "measurand": "Frequency"},
                    {"value": "21", "measurand": "Temperature", "unit": "Celsius"},
                ],
            },
            {
                "timestamp": stamp(-10),
                "sampledValue": [
                    {"value": "12.40", "unit": "kWh", "context": "Sample.Clock"},
                    {"value": "7000", "measurand": "Power.Active.Import", "unit": "W"},
                ],
            },
        ],
    }
    readings = ChargePointMapper(CP).meter_values(payload, NOW)
    first = {r.field: r.value for r in readings if r.sampled_at == at(-20)}
    assert first == {
        "TotalEnergyConsumption": 12345.6,
        "PowerOutput": 7400,
        "OutputCurrentL1": 16.1,
        "OutputCurrentL2": 15.9,
        "OutputCurrentL3": 16.4,
        "OutputCurrent": 16.4,
        "VoltageL1": 230.1,
        "VoltageL2": 231,
        "VoltageL3": 229,
        "StateOfCharge": 63,
    }
    second = {r.field: r.value for r in readings if r.sampled_at == at(-10)}
    assert second == {"TotalEnergyConsumption": 12400, "PowerOutput": 7000}


def test_unphased_current_and_voltage() -> None:
    readings = ChargePointMapper(CP).meter_values(
        meter(
            0,
            {"value": "32", "measurand": "Current.Import"},
            {"value": "400.5", "measurand": "Voltage"},
        ),
        NOW,
    )
    assert fields(readings) == {"OutputCurrent": 32, "VoltageL1": 400.5}


@pytest.mark.parametrize(
    "sampled",
    [
        {"value": "1000", "location": "Inlet"},
        {"value": "1000", "location": "EV"},
        {"value": "1000", "measurand": "Energy.Active.Export.Register"},
        {"value": "1000", "measurand": "Power.Active.Export"},
        {"value": "1000", "measurand": "Power.Active.Import", "phase": "L1"},
        {"value": "1000", "format": "SignedData"},
        {"value": "16", "measurand": "Current.Import", "phase": "N"},
        {"value": "16", "measurand": "Current.Offered"},
    ],
)
def test_what_chargelift_does_not_map_is_ignored_not_dropped(sampled: dict[str, Any]) -> None:
    mapper = ChargePointMapper(CP)
    assert mapper.meter_values(meter(0, sampled), NOW) == []
    assert mapper.dropped_values == 0


@pytest.mark.parametrize(
    "sampled",
    [
        {"value": "NaN"},
        {"value": "nan"},
        {"value": "inf"},
        {"value": "1e400"},
        {"value": "1_000"},
        {"value": " 1000"},
        {"value": "0x10"},
        {"value": 1000},
        {"value": None},
        {"value": "1" * 10_000},
        {"value": "-5"},  # a negative register
        {"value": "1e13"},  # beyond the register's bounds
        {"value": "100", "unit": "varh"},
        {"value": "100", "unit": "MWh"},
        {"value": "5", "measurand": "Power.Active.Import", "unit": "MW"},
        {"value": "101", "measurand": "SoC"},
        {"value": "4000", "measurand": "Current.Import"},
        {"value": "1", "context": "Sometimes"},
        {"value": "1", "phase": "L4"},
        {"value": "1", "location": ["Outlet"]},
        {"value": "1", "measurand": 7},
        {"value": "1", "format": "Zip"},
    ],
)
def test_a_bad_sampled_value_is_dropped_and_the_others_kept(sampled: dict[str, Any]) -> None:
    mapper = ChargePointMapper(CP)
    readings = mapper.meter_values(
        meter(0, sampled, {"value": "7400", "measurand": "Power.Active.Import"}), NOW
    )
    assert fields(readings) == {"PowerOutput": 7400}
    assert mapper.dropped_values == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"connectorId": 1, "meterValue": "lots"},
        {"connectorId": 1},
        {"connectorId": 1, "meterValue": [{}] * 1001},
        {"connectorId": -1, "meterValue": []},
        {"connectorId": None, "meterValue": []},
        [],
        "payload",
    ],
)
def test_a_meter_values_message_that_makes_no_sense_is_a_mapping_error(payload: Any) -> None:
    with pytest.raises(MappingError):
        ChargePointMapper(CP).meter_values(payload, NOW)


def test_a_bad_meter_value_entry_is_dropped_alone() -> None:
    mapper = ChargePointMapper(CP)
    payload = meter(0, energy("1000"))
    payload["meterValue"] += ["junk", {"timestamp": stamp(1), "sampledValue": "junk"}]
    assert fields(mapper.meter_values(payload, NOW)) == {"TotalEnergyConsumption": 1000}
    assert mapper.dropped_values == 2


def test_meter_values_of_connector_0_are_ignored() -> None:
    assert ChargePointMapper(CP).meter_values(meter(0, energy("5"), connector=0), NOW) == []


def test_several_connectors_are_several_chargers() -> None:
    readings = ChargePointMapper(CP).meter_values(
        meter(0, {"value": "11", "measurand": "Power.Active.Import"}, connector=3), NOW
    )
    assert values(readings) == {(f"{CP}__3", "PowerOutput"): 11}


# --- transactions --------------------------------------------------------------------------


def test_start_transaction_gives_id_tag_transaction_id_and_zero_session_energy() -> None:
    readings = start(ChargePointMapper(CP), -30, 5000, tx=42)
    assert fields(readings) == {
        "IdTag": "RFID-0042",
        "TransactionId": "42",
        "SessionEnergy": 0,
        "TotalEnergyConsumption": 5000,
    }
    times = {r.field: r.sampled_at for r in readings}
    # meterStart is where the register stood before the transaction: 1 ms before its start.
    assert times.pop("TotalEnergyConsumption") == at(-30) - timedelta(milliseconds=1)
    assert set(times.values()) == {at(-30)}


def test_session_energy_follows_the_register_and_ends_at_meter_stop_minus_meter_start() -> None:
    mapper = ChargePointMapper(CP)
    start(mapper, 0, 5000)
    assert fields(register(mapper, 60, "5100")) == {
        "TotalEnergyConsumption": 5100,
        "SessionEnergy": 100,
    }
    readings = stop(mapper, 120, 5230)
    assert fields(readings) == {"TotalEnergyConsumption": 5230, "SessionEnergy": 230}
    assert {r.sampled_at for r in readings} == {at(120)}
    # after the stop the register goes on, the session energy stays
    assert fields(register(mapper, 180, "5230")) == {"TotalEnergyConsumption": 5230}


def test_stop_transaction_maps_its_transaction_data() -> None:
    mapper = ChargePointMapper(CP)
    start(mapper, 0, 5000)
    payload = {
        "transactionId": 7,
        "meterStop": 5300,
        "timestamp": stamp(120),
        "reason": "Local",
        "transactionData": [
            {"timestamp": stamp(60), "sampledValue": [energy("5.15", "kWh")]},
            {"timestamp": stamp(120), "sampledValue": [energy("5300", context="Transaction.End")]},
        ],
    }
    readings = mapper.stop_transaction(payload, at(121))
    assert series(readings, "SessionEnergy") == [(at(60), 150), (at(120), 300)]
    assert series(readings, "TotalEnergyConsumption") == [(at(60), 5150), (at(120), 5300)]


def test_an_unknown_transaction_still_gives_the_register_and_can_be_restored() -> None:
    mapper = ChargePointMapper(CP)
    assert fields(stop(mapper, 60, 9000, tx=99)) == {"TotalEnergyConsumption": 9000}

    restored = ChargePointMapper(CP)
    restored.restore_transaction(99, 1, 8000, "RFID-1", at(-600))
    assert fields(register(restored, 30, "8800"))["SessionEnergy"] == 800
    assert fields(stop(restored, 60, 9000, tx=99))["SessionEnergy"] == 1000


def test_an_unknown_transaction_of_a_charge_point_with_several_connectors_is_unattributed() -> None:
    mapper = ChargePointMapper(CP)
    mapper.meter_values(meter(0, energy("1"), connector=2), NOW)
    assert stop(mapper, 60, 9000, tx=99) == []
    assert mapper.unattributed == 1


def test_a_transaction_on_connector_2_is_that_charger_s() -> None:
    mapper = ChargePointMapper(CP)
    mapper.start_transaction(
        {"connectorId": 2, "idTag": "T", "meterStart": 100, "timestamp": stamp(0)}, 3, NOW
    )
    readings = mapper.meter_values(meter(30, energy("150"), connector=2, transactionId=3), NOW)
    assert values(readings) == {
        (f"{CP}__2", "TotalEnergyConsumption"): 150,
        (f"{CP}__2", "SessionEnergy"): 50,
    }
    assert {r.charger for r in stop(mapper, 60, 180, tx=3)} == {f"{CP}__2"}


def test_a_start_or_stop_sent_twice_gives_the_same_readings() -> None:
    mapper = ChargePointMapper(CP)
    assert start(mapper, 0, 5000) == start(mapper, 0, 5000)
    register(mapper, 30, "5100")
    assert stop(mapper, 60, 5200) == stop(mapper, 60, 5200)


@pytest.mark.parametrize(
    "payload",
    [
        {"connectorId": 1, "idTag": "T", "meterStart": -1, "timestamp": stamp(0)},
        {"connectorId": 1, "idTag": "T", "meterStart": 1e400, "timestamp": stamp(0)},
        {"connectorId": 1, "idTag": "T", "meterStart": "5", "timestamp": stamp(0)},
        {"connectorId": 1, "idTag": "T", "meterStart": True, "timestamp": stamp(0)},
        {"connectorId": 0, "idTag": "T", "meterStart": 5, "timestamp": stamp(0)},
        {"idTag": "T", "meterStart": 5, "timestamp": stamp(0)},
    ],
)
def test_a_start_that_makes_no_sense_is_a_mapping_error_and_changes_nothing(
    payload: dict[str, Any],
) -> None:
    mapper = ChargePointMapper(CP)
    with pytest.raises(MappingError):
        mapper.start_transaction(payload, 7, NOW)
    assert fields(stop(mapper, 60, 9000)) == {"TotalEnergyConsumption": 9000}


@pytest.mark.parametrize("tx", [-1, 2**31, True, "7", None, 10**100])
def test_a_bad_transaction_id_is_a_mapping_error(tx: Any) -> None:
    mapper = ChargePointMapper(CP)
    with pytest.raises(MappingError):
        mapper.start_transaction(
            {"connectorId": 1, "idTag": "T", "meterStart": 5, "timestamp": stamp(0)}, tx, NOW
        )
    with pytest.raises(MappingError):
        mapper.stop_transaction({"transactionId": tx, "meterStop": 5}, NOW)


def test_authorize_gives_no_reading() -> None:
    assert ChargePointMapper(CP).authorize({"idTag": "RFID-0042"}, NOW) == []


# --- the plausibility gate -----------------------------------------------------------------


def test_a_drop_to_0_and_back_inside_a_session_is_not_billed() -> None:
    mapper = ChargePointMapper(CP)
    start(mapper, 0, 10_000)
    readings: list[Reading] = []
    for seconds, wh in ((60, "10100"), (120, "0"), (180, "10300"), (240, "0"), (300, "10500")):
        readings += register(mapper, seconds, wh)
    readings += stop(mapper, 360, 10_600)
    sessions = [v for _, v in series(readings, "SessionEnergy")]
    assert sessions == [100, 300, 500, 600]
    assert sessions == sorted(sessions)  # never backwards
    assert 0 not in [v for _, v in series(readings, "TotalEnergyConsumption")]
    assert mapper.rejected_registers == 2


def test_a_jump_backwards_is_not_published() -> None:
    mapper = ChargePointMapper(CP)
    register(mapper, 0, "50000")
    assert register(mapper, 60, "40000") == []
    assert fields(register(mapper, 120, "50100")) == {"TotalEnergyConsumption": 50100}
    assert mapper.rejected_registers == 1


def test_an_implausible_jump_forward_is_not_published() -> None:
    mapper = ChargePointMapper(CP)
    register(mapper, 0, "50000")
    # 4 MW for 60 s is 66.7 kWh: 1 GWh more is no charging
    assert register(mapper, 60, "1000050000") == []
    assert mapper.rejected_registers == 1
    assert fields(register(mapper, 120, "50200")) == {"TotalEnergyConsumption": 50200}


def test_a_lower_register_that_persists_becomes_the_new_baseline() -> None:
    mapper = ChargePointMapper(CP)
    register(mapper, 0, "50000")
    published = [register(mapper, 60 * i, str(100 + i)) for i in range(1, CONFIRMATIONS + 1)]
    assert published[:-1] == [[]] * (CONFIRMATIONS - 1)
    assert fields(published[-1]) == {"TotalEnergyConsumption": 100 + CONFIRMATIONS}
    assert mapper.rejected_registers == CONFIRMATIONS - 1
    assert fields(register(mapper, 600, "200")) == {"TotalEnergyConsumption": 200}


def test_a_new_transaction_with_a_lower_meter_start_is_a_replaced_meter() -> None:
    mapper = ChargePointMapper(CP)
    register(mapper, 0, "50000")
    start(mapper, 60, 20)
    assert fields(register(mapper, 120, "70")) == {
        "TotalEnergyConsumption": 70,
        "SessionEnergy": 50,
    }
    assert mapper.rejected_registers == 0


def test_a_confirmed_new_baseline_mid_session_never_moves_the_session_backwards() -> None:
    mapper = ChargePointMapper(CP)
    start(mapper, 0, 10_000)
    readings = register(mapper, 60, "10400")
    for i in range(1, CONFIRMATIONS + 2):  # the meter restarts at 0 and counts on
        readings += register(mapper, 60 + 60 * i, str(10 * i))
    sessions = [v for _, v in series(readings, "SessionEnergy")]
    assert sessions == sorted(sessions)
    assert sessions[-1] == 400 + 10  # continues from 400 once the new baseline is confirmed
    assert fields(stop(mapper, 600, 10_900))["SessionEnergy"] == 900  # the charger's own


def test_a_duplicate_rejected_reading_confirms_nothing() -> None:
    mapper = ChargePointMapper(CP)
    register(mapper, 0, "50000")
    for _ in range(CONFIRMATIONS + 1):
        assert register(mapper, 60, "0") == []


def test_a_rounding_echo_below_the_baseline_is_neither_published_nor_counted() -> None:
    mapper = ChargePointMapper(CP)
    start(mapper, 0, 12_345)
    assert mapper.meter_values(meter(0, energy("12.34", "kWh")), NOW) == []
    assert mapper.rejected_registers == 0


def test_readings_replayed_late_keep_their_instants() -> None:
    mapper = ChargePointMapper(CP)
    start(mapper, -600, 1000)
    late = register(mapper, -300, "1500")  # queued while offline, arrives now
    assert series(late, "SessionEnergy") == [(at(-300), 500)]
    register(mapper, 0, "2000")
    again = register(mapper, -300, "1500")  # the same message sent twice
    assert again == late


def test_a_first_register_of_0_needs_confirming() -> None:
    mapper = ChargePointMapper(CP)
    assert register(mapper, 0, "0") == []
    assert fields(register(mapper, 60, "50000")) == {"TotalEnergyConsumption": 50000}
    fresh = ChargePointMapper(CP)
    published = [register(fresh, 60 * i, "0") for i in range(CONFIRMATIONS)]
    assert not any(published[:-1])
    assert fields(published[-1]) == {"TotalEnergyConsumption": 0}  # a new meter does read 0


def test_an_older_reading_inconsistent_with_the_baseline_is_rejected() -> None:
    mapper = ChargePointMapper(CP)
    register(mapper, 0, "50000")
    assert register(mapper, -60, "60000") == []  # earlier, yet higher
    assert mapper.rejected_registers == 1


def test_session_energy_of_a_register_in_kwh_is_exact_to_the_mwh() -> None:
    mapper = ChargePointMapper(CP)
    start(mapper, 0, 5000)
    readings = mapper.meter_values(meter(60, energy("5.1234", "kWh")), at(60))
    assert fields(readings)["SessionEnergy"] == 123.4


def test_phase_currents_win_over_an_unphased_one() -> None:
    readings = ChargePointMapper(CP).meter_values(
        meter(
            0,
            {"value": "48", "measurand": "Current.Import"},
            {"value": "16", "measurand": "Current.Import", "phase": "L1"},
            {"value": "15", "measurand": "Current.Import", "phase": "L2"},
        ),
        NOW,
    )
    assert fields(readings)["OutputCurrent"] == 16


def test_the_mapper_remembers_a_bounded_number_of_transactions() -> None:
    mapper = ChargePointMapper(CP)
    for tx in range(1, 2000):
        mapper.start_transaction(
            {"connectorId": 1 + tx % 3, "idTag": "T", "meterStart": tx, "timestamp": stamp(tx)},
            tx,
            at(tx),
        )
    assert len(mapper._transactions) <= MAX_TRANSACTIONS
    # the newest ones are still known: their stop gives the session energy
    assert fields(stop(mapper, 2100, 2999, tx=1999), f"{CP}__2")["SessionEnergy"] == 1000


def test_a_huge_vendor_error_code_is_dropped_and_the_status_kept() -> None:
    mapper = ChargePointMapper(CP)
    readings = mapper.status_notification(
        {
            "connectorId": 1,
            "status": "Faulted",
            "errorCode": "OtherError",
            "vendorErrorCode": "E" * 1_000_000,
        },
        NOW,
    )
    assert fields(readings)["VendorErrorCode"] == "OtherError"
    assert mapper.dropped_values == 1


# --- hostile input -------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["Available", "Charging", "L1", "kWh", "Outlet", "SoC", "Voltage"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "connectorId",
        "status",
        "errorCode",
        "timestamp",
        "meterValue",
        "sampledValue",
        "value",
        "measurand",
        "unit",
        "phase",
        "location",
        "transactionId",
        "meterStart",
        "meterStop",
        "idTag",
        "transactionData",
        "chargePointVendor",
    ]
)
_payloads = st.dictionaries(_keys, _json, max_size=8) | _json


def _check(readings: list[Reading]) -> None:
    for r in readings:
        validate_charger_id(r.charger)
        spec = field_spec(r.field)
        spec.check(check_value(r.value))
        if isinstance(r.value, int | float) and not isinstance(r.value, bool):
            assert spec.in_bounds(r.value), r
        assert r.sampled_at.tzinfo is not None


@settings(max_examples=400)
@given(st.lists(st.tuples(st.integers(0, 5), _payloads), max_size=6))
def test_any_payload_gives_valid_readings_or_a_mapping_error(
    messages: list[tuple[int, Any]],
) -> None:
    mapper = ChargePointMapper(CP)
    for kind, payload in messages:
        try:
            match kind:
                case 0:
                    readings = mapper.boot_notification(payload, NOW)
                case 1:
                    readings = mapper.status_notification(payload, NOW)
                case 2:
                    readings = mapper.meter_values(payload, NOW)
                case 3:
                    readings = mapper.start_transaction(payload, 7, NOW)
                case 4:
                    readings = mapper.stop_transaction(payload, NOW)
                case _:
                    readings = mapper.authorize(payload, NOW)
        except MappingError:
            continue
        _check(readings)


_sampled = st.fixed_dictionaries(
    {"value": st.one_of(st.floats(allow_nan=True).map(str), st.text(max_size=8))},
    optional={
        "measurand": st.sampled_from(
            [
                "Energy.Active.Import.Register",
                "Power.Active.Import",
                "Current.Import",
                "Voltage",
                "SoC",
                "X",
            ]
        ),
        "unit": st.sampled_from(["Wh", "kWh", "W", "kW", "A", "V", "Percent", "K"]),
        "phase": st.sampled_from(["L1", "L2", "L3", "N", "L1-N", "L1-L2"]),
        "location": st.sampled_from(["Outlet", "Inlet", "EV"]),
        "context": st.sampled_from(["Sample.Periodic", "Transaction.Begin", "Nope"]),
    },
)


@settings(max_examples=300)
@given(st.lists(st.lists(_sampled, max_size=6), max_size=4))
def test_any_sampled_values_give_valid_readings(entries: list[list[dict[str, Any]]]) -> None:
    mapper = ChargePointMapper(CP)
    payload = {
        "connectorId": 1,
        "meterValue": [
            {"timestamp": stamp(i), "sampledValue": sampled} for i, sampled in enumerate(entries)
        ],
    }
    _check(mapper.meter_values(payload, NOW))


@settings(max_examples=300)
@given(
    st.integers(0, 10**9),
    st.lists(
        st.one_of(st.just(0), st.integers(0, 2000), st.integers(-(10**6), 10**7)), max_size=20
    ),
    st.integers(0, 5000),
)
def test_the_session_energy_never_goes_backwards_and_ends_right(
    meter_start: int, steps: list[int], final: int
) -> None:
    mapper = ChargePointMapper(CP)
    readings = start(mapper, 0, meter_start)
    wh = meter_start
    for i, step in enumerate(steps, 1):
        reported = 0 if step == 0 else wh + step
        if 0 < step <= 2000:
            wh += step  # an honest reading
        readings += register(mapper, 60 * i, str(max(reported, 0)))
    readings += stop(mapper, 60 * (len(steps) + 1), wh + final)
    sessions = [v for _, v in series(readings, "SessionEnergy")]
    assert sessions[-1] == wh + final - meter_start
    honest = [v for v in sessions[:-1]]
    assert honest == sorted(honest)
    _check(readings)


def test_the_catalogue_has_every_field_the_mapper_writes() -> None:
    written = {
        "OperationState",
        "VendorState",
        "ConnectedVehicle",
        "VendorErrorCode",
        "ChargerVendor",
        "ChargerModel",
        "SerialNumber",
        "FirmwareVersion",
        "IdTag",
        "TransactionId",
        "SessionEnergy",
        "TotalEnergyConsumption",
        "PowerOutput",
        "OutputCurrent",
        "OutputCurrentL1",
        "OutputCurrentL2",
        "OutputCurrentL3",
        "VoltageL1",
        "VoltageL2",
        "VoltageL3",
        "StateOfCharge",
    }
    assert written <= set(CATALOGUE)
