"""The MHCP driver's mapping onto the field catalogue, over recorded responses."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from chargelift_contract import CATALOGUE
from chargelift_poller.drivers.mhcp import FIELDS, STATE_MAP, MhcpDriver
from chargelift_poller.errors import (
    AuthError,
    ChargerConnectionError,
    ChargerError,
    ChargerHttpError,
    ChargerProtocolError,
    ChargerTimeoutError,
    ConfigError,
    PermanentError,
    TransientError,
)
from chargelift_poller.models import DriverSpec
from tests.support.clock import FakeClock
from tests.unit.poller.conftest import PIN, Recorder, fixture_json


def driver(recorder: Recorder, clock: FakeClock, **options: Any) -> MhcpDriver:
    spec = DriverSpec(
        charger_id="amtron-1",
        url="http://192.0.2.10:25000",
        pin=SecretStr(PIN),
        pin_ref="env AMTRON_1_PIN",
        options=options,
        clock=clock.now,
    )
    return MhcpDriver(spec, recorder.client())


def idle(**changes: Any) -> dict[str, Any]:
    return {**fixture_json("mhcp", "ChargeData"), **changes}


def devinfo(**changes: Any) -> dict[str, Any]:
    return {**fixture_json("mhcp", "DevInfo"), **changes}


@pytest.fixture
def answering(recorder: Recorder) -> Recorder:
    recorder.json("ChargeData", idle())
    recorder.json("DevInfo", devinfo())
    return recorder


async def test_full_read_of_the_recorded_idle_sample(answering: Recorder, clock: FakeClock) -> None:
    reading = await driver(answering, clock).read(full=True)
    assert reading.values == {
        "OperationState": "idle",
        "VendorState": "Idle",
        "ConnectedVehicle": False,  # HCCP "A11": no vehicle
        "PowerOutput": 0,
        "OutputCurrent": 0,
        "MaximumOutputCurrent": 13,  # DevMode Remote -> RemoteCurr
        "SessionEnergy": 12648,  # the LAST session's energy, Wh
        "SessionDuration": 18613,
        "EnergyPrice": 27.0,  # 270 x 0.1 ct/kWh
        "Tariff": "T1",
        "ErrorCode": 0,
        "FirmwareVersion": "HCC3 V1.13",
    }
    assert "TotalEnergyConsumption" not in reading.values  # MHCP has no lifetime meter
    assert answering.endpoints() == ["DevInfo", "ChargeData"]


async def test_charging_sample(recorder: Recorder, clock: FakeClock) -> None:
    recorder.json("ChargeData", fixture_json("mhcp", "ChargeData-charging"))
    recorder.json("DevInfo", devinfo(DevMode="Time"))
    reading = await driver(recorder, clock).read(full=True)
    assert reading.values["OperationState"] == "charging"
    assert reading.values["ConnectedVehicle"] is True
    assert reading.values["PowerOutput"] == 11040
    assert reading.values["OutputCurrent"] == 16
    assert reading.values["EnergyPrice"] == 22.5
    assert reading.values["MaximumOutputCurrent"] == 10  # DevMode Time, tariff T2


async def test_requests_carry_the_pin_as_devkey_and_accept_json(
    answering: Recorder, clock: FakeClock
) -> None:
    await driver(answering, clock).read(full=True)
    for request in answering.requests:
        assert request.url.params["DevKey"] == PIN
        assert request.headers["Accept"] == "application/json"
        assert request.url.path.startswith("/MHCP/1.0/")


async def test_sampling_time_is_when_chargedata_arrived(
    answering: Recorder, clock: FakeClock
) -> None:
    reading = await driver(answering, clock).read(full=False)
    assert reading.sampling_time == clock.now()
    assert reading.sampling_time.tzinfo is not None


async def test_a_fast_read_skips_devinfo_and_its_fields(
    answering: Recorder, clock: FakeClock
) -> None:
    d = driver(answering, clock)
    await d.read(full=True)
    answering.requests.clear()
    reading = await d.read(full=False)
    assert answering.endpoints() == ["ChargeData"]
    assert "ErrorCode" not in reading.values
    assert "FirmwareVersion" not in reading.values
    assert reading.values["MaximumOutputCurrent"] == 13  # DevMode remembered


async def test_the_first_read_always_reads_devinfo(answering: Recorder, clock: FakeClock) -> None:
    await driver(answering, clock).read(full=False)
    assert answering.endpoints() == ["DevInfo", "ChargeData"]


@pytest.mark.parametrize(("vendor", "expected"), sorted(STATE_MAP.items()))
async def test_every_known_state_maps(
    recorder: Recorder, clock: FakeClock, vendor: str, expected: str
) -> None:
    recorder.json("ChargeData", idle(ChgState=vendor))
    recorder.json("DevInfo", devinfo())
    reading = await driver(recorder, clock).read(full=True)
    assert reading.values["OperationState"] == expected
    assert reading.values["VendorState"] == vendor


@pytest.mark.parametrize(
    ("state", "hccp", "connected"),
    [
        ("Idle", "A11", False),
        ("StandbyConnect", "A11", False),
        ("StandbyAuthorize", "B11", True),
        ("Charging", "C21", True),
        ("Paused", "B21", True),
        ("Terminated", "B11", True),
        ("Idle", "B11", True),  # the control pilot says a car is there
        ("Idle", None, False),
        ("Charging", None, True),
    ],
)
async def test_connected_vehicle(
    recorder: Recorder, clock: FakeClock, state: str, hccp: str | None, connected: bool
) -> None:
    doc = idle(ChgState=state)
    if hccp is None:
        del doc["HCCP"]
    else:
        doc["HCCP"] = hccp
    recorder.json("ChargeData", doc)
    recorder.json("DevInfo", devinfo())
    reading = await driver(recorder, clock).read(full=True)
    assert reading.values["ConnectedVehicle"] is connected


@pytest.mark.parametrize(
    ("mode", "tariff", "expected"),
    [("Remote", "T2", 13), ("Time", "T1", 16), ("HomeManager", "T2", 10), ("Time", "T3", None)],
)
async def test_maximum_output_current(
    recorder: Recorder, clock: FakeClock, mode: str, tariff: str, expected: int | None
) -> None:
    recorder.json("ChargeData", idle(Tariff=tariff))
    recorder.json("DevInfo", devinfo(DevMode=mode))
    reading = await driver(recorder, clock).read(full=True)
    assert reading.values.get("MaximumOutputCurrent") == expected


async def test_unknown_state_is_unknown_and_logged_once_per_value(
    recorder: Recorder, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    recorder.json("DevInfo", devinfo())
    d = driver(recorder, clock)
    caplog.set_level(logging.WARNING)
    for state in ("Sleeping", "Sleeping", "Sleeping", "Booting", "Booting"):
        recorder.json("ChargeData", idle(ChgState=state))
        reading = await d.read(full=False)
        assert reading.values["OperationState"] == "unknown"
        assert reading.values["VendorState"] == state
    warnings = [r.getMessage() for r in caplog.records if "unknown MHCP ChgState" in r.getMessage()]
    assert len(warnings) == 2
    assert "'Sleeping'" in warnings[0]
    assert "amtron-1" in warnings[0]
    assert "'Booting'" in warnings[1]


async def test_devinfo_error_means_unscheduled_downtime_until_it_clears(
    recorder: Recorder, clock: FakeClock
) -> None:
    recorder.json("ChargeData", idle(ChgState="Charging"))
    recorder.json("DevInfo", devinfo(Err=13))  # overtemperature
    d = driver(recorder, clock)
    reading = await d.read(full=True)
    assert reading.values["OperationState"] == "unscheduled_downtime"
    assert reading.values["ErrorCode"] == 13
    # While an error is reported, DevInfo is read on every poll so that it clears at once.
    recorder.json("DevInfo", devinfo(Err=0))
    recorder.requests.clear()
    reading = await d.read(full=False)
    assert recorder.endpoints() == ["DevInfo", "ChargeData"]
    assert reading.values["OperationState"] == "charging"
    assert reading.values["ErrorCode"] == 0


async def test_error_state_reads_devinfo_on_the_next_poll(
    recorder: Recorder, clock: FakeClock
) -> None:
    recorder.json("ChargeData", idle(ChgState="Error"))
    recorder.json("DevInfo", devinfo())
    d = driver(recorder, clock)
    await d.read(full=True)
    recorder.requests.clear()
    await d.read(full=False)
    assert recorder.endpoints() == ["DevInfo", "ChargeData"]


async def test_extra_fields_are_ignored(recorder: Recorder, clock: FakeClock) -> None:
    recorder.json("ChargeData", idle(NewFirmwareField={"x": [1, 2]}, Another="y"))
    recorder.json("DevInfo", devinfo(Unheard=1))
    reading = await driver(recorder, clock).read(full=True)
    assert set(reading.values) <= set(CATALOGUE)
    assert reading.values["OperationState"] == "idle"


async def test_missing_optional_keys_are_simply_not_reported(
    recorder: Recorder, clock: FakeClock
) -> None:
    recorder.json("ChargeData", {"ChgState": "Idle"})
    recorder.json("DevInfo", {})
    reading = await driver(recorder, clock).read(full=True)
    assert reading.values == {
        "OperationState": "idle",
        "VendorState": "Idle",
        "ConnectedVehicle": False,
    }


def test_every_mapped_field_is_in_the_catalogue() -> None:
    assert {f.name for f in FIELDS} <= set(CATALOGUE)


# -- errors -----------------------------------------------------------------------

ERROR_CASES: list[tuple[str, Any, type[ChargerError]]] = [
    ("status", 403, AuthError),
    ("status", 401, AuthError),
    ("status", 404, ConfigError),
    ("status", 500, ChargerHttpError),
    ("status", 503, ChargerHttpError),
    ("body", b'{"ChgState": "Idle", "ActPwr": 12', ChargerProtocolError),  # truncated
    ("body", b"<html>busy</html>", ChargerProtocolError),
    ("body", b"[1, 2, 3]", ChargerProtocolError),
    ("body", b'{"ActPwr": 5}', ChargerProtocolError),  # no ChgState
    ("body", b'{"ChgState": "Idle", "ActPwr": "fast"}', ChargerProtocolError),
    ("body", b'{"ChgState": 3}', ChargerProtocolError),
    ("raise", httpx.ConnectError("[Errno 111] Connection refused"), ChargerConnectionError),
    ("raise", httpx.ReadError("connection reset by peer"), ChargerConnectionError),
    ("raise", httpx.RemoteProtocolError("peer closed connection"), ChargerConnectionError),
    ("raise", httpx.ReadTimeout("timed out"), ChargerTimeoutError),
    ("raise", httpx.ConnectTimeout("timed out"), ChargerTimeoutError),
]


@pytest.mark.parametrize(("how", "what", "expected"), ERROR_CASES)
async def test_errors_are_translated_once_and_never_show_the_pin(
    recorder: Recorder, clock: FakeClock, how: str, what: Any, expected: type[ChargerError]
) -> None:
    recorder.json("DevInfo", devinfo())
    if how == "status":
        recorder.raw("ChargeData", b"{}", status=what)
    elif how == "body":
        recorder.raw("ChargeData", what)
    else:
        recorder.fail("ChargeData", what)
    with pytest.raises(expected) as info:
        await driver(recorder, clock).read(full=True)
    err = info.value
    assert err.charger == "amtron-1"
    assert str(err).startswith("charger amtron-1: ")
    assert PIN not in str(err)
    assert err.__cause__ is None
    assert err.__context__ is None or err.__suppress_context__  # no httpx text in tracebacks
    is_permanent = expected in (AuthError, ConfigError)
    assert isinstance(err, PermanentError if is_permanent else TransientError)


async def test_an_exception_text_with_the_url_is_scrubbed(
    recorder: Recorder, clock: FakeClock
) -> None:
    recorder.json("DevInfo", devinfo())
    recorder.fail(
        "ChargeData",
        httpx.ConnectError(f"failed http://192.0.2.10:25000/MHCP/1.0/ChargeData?DevKey={PIN}"),
    )
    with pytest.raises(ChargerConnectionError) as info:
        await driver(recorder, clock).read(full=True)
    assert PIN not in str(info.value)
    assert "DevKey=***" in str(info.value)


async def test_auth_error_names_charger_and_pin_reference(
    recorder: Recorder, clock: FakeClock
) -> None:
    recorder.raw("DevInfo", b"", status=403)
    with pytest.raises(AuthError) as info:
        await driver(recorder, clock).read(full=True)
    message = str(info.value)
    assert "amtron-1" in message
    assert "env AMTRON_1_PIN" in message
    assert "403" in message
    assert PIN not in message


def test_construction_validates_without_io(recorder: Recorder, clock: FakeClock) -> None:
    with pytest.raises(ConfigError, match="needs a PIN"):
        MhcpDriver(DriverSpec("amtron-1", "http://x:25000"), recorder.client())
    with pytest.raises(ConfigError, match="unknown MHCP option"):
        driver(recorder, clock, colour="red")
    with pytest.raises(ConfigError, match="http"):
        MhcpDriver(DriverSpec("amtron-1", "ftp://x", pin=SecretStr(PIN)), recorder.client())
    assert recorder.requests == []


async def test_api_path_option(answering: Recorder, clock: FakeClock) -> None:
    answering.requests.clear()
    d = driver(answering, clock, api_path="/MHCP/1.1/")
    await d.read(full=False)
    assert answering.requests[-1].url.path == "/MHCP/1.1/ChargeData"


# -- issue 16: writes (the Controller capability) --------------------------------------


async def test_a_limit_write_switches_to_remote_first_and_is_not_permanent(
    recorder: Recorder, clock: FakeClock
) -> None:
    import json

    from chargelift_contract.commands import Command
    from chargelift_poller.drivers import Controller

    recorder.json("ChargeData", idle())
    recorder.json("DevInfo", devinfo(DevMode="Time", MaxCurrWb=32))
    d = driver(recorder, clock)
    assert isinstance(d, Controller)  # the capability the poller detects
    assert driver(recorder, clock).hardware_max_current is None  # nothing read yet
    await d.read(full=True)
    assert d.hardware_max_current == 32
    recorder.requests.clear()
    await d.set_current_limit(10, permanent=False)
    posts = [
        (r.method, r.url.path.rsplit("/", 1)[-1], json.loads(r.content)) for r in recorder.requests
    ]
    assert posts == [
        ("POST", "DevInfo", {"Permanent": False, "DevMode": "Remote"}),
        ("POST", "ChargeData", {"Permanent": False, "RemoteCurr": 10}),
    ]
    assert all(r.url.params["DevKey"] == PIN for r in recorder.requests)
    recorder.json("DevInfo", devinfo(DevMode="Remote"))
    await d.read(full=True)
    recorder.requests.clear()
    await d.set_current_limit(12, permanent=True)  # already Remote: one write
    await d.pause()
    await d.resume()
    await d.stop()
    bodies = [json.loads(r.content) for r in recorder.requests]
    assert bodies == [
        {"Permanent": True, "RemoteCurr": 12},
        {"Permanent": False, "ChgState": "Pause"},
        {"Permanent": False, "ChgState": "Continue"},
        {"Permanent": False, "ChgState": "Terminate"},
    ]
    reading = await d.read(full=True)
    assert d.shows(reading, Command.CURRENT_LIMIT, 13) is None  # RemoteCurr, in Remote
    assert "not 99 A" in (d.shows(reading, Command.CURRENT_LIMIT, 99) or "")


async def test_write_errors_are_charger_errors_without_the_pin(
    recorder: Recorder, clock: FakeClock
) -> None:
    recorder.json("DevInfo", devinfo())
    recorder.json("ChargeData", {}, status=401)
    d = driver(recorder, clock)
    with pytest.raises(AuthError, match="refused the PIN") as auth:
        await d.pause()
    recorder.json("ChargeData", {}, status=500)
    with pytest.raises(ChargerHttpError, match="POST ChargeData: HTTP 500") as http:
        await d.stop()
    recorder.fail("ChargeData", httpx.ConnectError(f"boom DevKey={PIN}"))
    with pytest.raises(ChargerConnectionError) as conn:
        await d.resume()
    for exc in (auth, http, conn):
        assert PIN not in str(exc.value)
