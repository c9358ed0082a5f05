"""The Modbus TCP drivers hcc3 and bender: register tables, units, states, hostile values,
pacing and control, against recorded register dumps served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chargelift_contract import OperationState
from chargelift_contract.commands import Command
from chargelift_poller.config import load_config
from chargelift_poller.drivers import REGISTRY, Controller
from chargelift_poller.drivers._modbus import Block, Register, decode
from chargelift_poller.drivers.bender import BenderDriver
from chargelift_poller.drivers.hcc3 import Hcc3Driver
from chargelift_poller.errors import ConfigError, TransientError
from chargelift_poller.models import ChargerReading, DriverSpec
from chargelift_simulator.faults import Fault, FaultKind
from tests.support.modbus import RecordedMap, load_dump, recorded_device
from tests.unit.poller.conftest import FIXTURES

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def spec(port: int, **options: Any) -> DriverSpec:
    return DriverSpec(
        charger_id="mb-1",
        url=f"tcp://127.0.0.1:{port}",
        options={"request_interval": 0.0, **options},
        clock=lambda: NOW,
        timeout=2.0,
    )


@asynccontextmanager
async def device(
    name: str, doc: dict[str, Any] | None = None, fault: Fault | None = None, **options: Any
) -> AsyncIterator[tuple[Any, RecordedMap]]:
    doc = doc if doc is not None else load_dump(FIXTURES / name / "registers.json")
    async with recorded_device(doc, fault) as (server, regmap):
        driver = REGISTRY.create(name, spec(server.port, **options), None)  # type: ignore[arg-type]
        try:
            yield driver, regmap
        finally:
            await driver.aclose()  # type: ignore[attr-defined]


def u32(value: int, *, low_first: bool) -> tuple[int, int]:
    hi, lo = value >> 16, value & 0xFFFF
    return (lo, hi) if low_first else (hi, lo)


# -- the register tables --------------------------------------------------------------


def test_word_order_and_scale_come_from_the_table() -> None:
    value = 1_234_567  # > 65,535: the two orders give different numbers
    low = Register("low", 10, "u32", low_word_first=True)
    high = Register("high", 12, "u32")
    milli = Register("milli", 14, "u32", scale=0.001)
    block = Block("holding", 10, 6)
    words = [
        *u32(value, low_first=True),
        *u32(value, low_first=False),
        *u32(15_640, low_first=False),
    ]
    assert decode((low, high, milli), {block: words}) == {
        "low": value,
        "high": value,
        "milli": 15.64,
    }
    # the same words with the other order are nonsense: the table decides
    swapped = Register("low", 10, "u32")
    assert decode((swapped,), {block: words})["low"] != value


def test_invalid_marker_and_strings_decode_safely() -> None:
    block = Block("holding", 0, 6)
    regs = (
        Register("nv", 0, "u32", invalid=0xFFFFFFFF),
        Register("swapped", 2, "string", words=2, byte_swapped=True),
        Register("hostile", 4, "string", words=2),
    )
    words = [0xFFFF, 0xFFFF, ord("b") << 8 | ord("A"), ord("C"), 0x07FF, 0x4100]
    out = decode(regs, {block: words})
    assert out["nv"] is None
    assert out["swapped"] == "AbC"
    assert out["hostile"] == "A"  # control character and non-ASCII byte dropped


def test_registers_of_unread_blocks_are_absent() -> None:
    out = decode((Register("a", 0), Register("b", 100)), {Block("holding", 0, 1): [7]})
    assert out == {"a": 7}


# -- the recorded devices -------------------------------------------------------------


async def test_hcc3_reading_has_the_right_units_and_word_order() -> None:
    async with device("hcc3") as (driver, _m):
        reading = await driver.read(full=True)
        assert driver.hardware_max_current == 16.0
    assert reading.sampling_time == NOW
    assert dict(reading.values) == {
        "OperationState": "charging",
        "ConnectedVehicle": True,
        "VendorState": "Charging",
        "ErrorCode": 0,
        "PowerOutput": 11040,
        "TotalEnergyConsumption": 1_234_567,  # low word first: 54919 + 18 * 65536
        "MaximumOutputCurrent": 16,
        "SerialNumber": "420100001",
        "ChargerVendor": "MENNEKES",
    }


async def test_bender_reading_has_the_right_units_and_word_order() -> None:
    async with device("bender") as (driver, _m):
        full = await driver.read(full=True)
        quick = await driver.read(full=False)
    assert full.values["OutputCurrentL1"] == 15.6  # mA -> A, fractions kept
    assert full.values["OutputCurrentL2"] == 15.64
    assert full.values["OutputCurrentL3"] == 15.68
    assert full.values["OutputCurrent"] == 15.68  # the highest phase
    assert full.values["TotalEnergyConsumption"] == 2_345_678  # high word first
    assert full.values["PowerOutput"] == 10792
    assert (full.values["VoltageL1"], full.values["VoltageL2"]) == (230, 231)
    assert full.values["SessionEnergy"] == 5120
    assert full.values["IdTag"] == "04191A2B3C"
    assert full.values["StateOfCharge"] == 57
    assert full.values["MaximumOutputCurrent"] == 16
    assert full.values["OperationState"] == "charging"
    assert full.values["VendorState"] == "C"
    assert full.values["ChargerModel"] == "CC612_2S0R_CC"
    assert "ChargerModel" not in quick.values  # the model name is read on full reads only


async def test_bender_without_session_registers_skips_them() -> None:
    doc = load_dump(FIXTURES / "bender" / "registers.json")
    for address in range(716, 731):
        del doc["holding"][str(address)]  # a 4You: reading them would fail
    async with device("bender", doc, session_registers=False) as (driver, _m):
        reading = await driver.read(full=False)
    assert "IdTag" not in reading.values
    assert "StateOfCharge" not in reading.values
    assert reading.values["PowerOutput"] == 10792


@pytest.mark.parametrize(
    ("cp", "state", "connected"),
    [
        (1, "idle", False),
        (2, "idle", False),
        (3, "idle", True),
        (4, "idle", True),
        (5, "charging", True),
        (6, "charging", True),
        (7, "charging", True),
        (8, "charging", True),
        (0, "unknown", None),
        (65535, "unknown", None),
    ],
)
async def test_hcc3_iec_61851_states(cp: int, state: str, connected: bool | None) -> None:
    doc = load_dump(FIXTURES / "hcc3" / "registers.json")
    doc["input"]["770"] = cp
    async with device("hcc3", doc) as (driver, _m):
        reading = await driver.read(full=False)
    assert reading.values["OperationState"] == state
    assert reading.values.get("ConnectedVehicle") == connected


@pytest.mark.parametrize(
    ("cp", "state", "connected", "soc"),
    [
        (1, "idle", False, None),  # no car: the SoC register is not the car's
        (2, "idle", True, 57),
        (3, "charging", True, 57),
        (4, "charging", True, 57),
        (5, "unscheduled_downtime", None, None),
        (6, "unscheduled_downtime", None, None),
        (9, "unknown", None, None),
    ],
)
async def test_bender_iec_61851_states(
    cp: int, state: str, connected: bool | None, soc: int | None
) -> None:
    doc = load_dump(FIXTURES / "bender" / "registers.json")
    doc["holding"]["122"] = cp
    async with device("bender", doc) as (driver, _m):
        reading = await driver.read(full=False)
    assert reading.values["OperationState"] == state
    assert reading.values.get("ConnectedVehicle") == connected
    assert reading.values.get("StateOfCharge") == soc


async def test_hcc3_error_code_is_downtime() -> None:
    doc = load_dump(FIXTURES / "hcc3" / "registers.json")
    doc["input"]["772"] = 13  # overtemperature
    async with device("hcc3", doc) as (driver, _m):
        reading = await driver.read(full=False)
    assert reading.values["OperationState"] == OperationState.UNSCHEDULED_DOWNTIME.value
    assert reading.values["ErrorCode"] == 13


async def test_unknown_cp_state_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    doc = load_dump(FIXTURES / "bender" / "registers.json")
    doc["holding"]["122"] = 42
    caplog.set_level(logging.WARNING)
    async with device("bender", doc) as (driver, _m):
        for _ in range(3):
            await driver.read(full=False)
    assert caplog.text.count("unknown CP state 42") == 1


# -- hostile values (the simulator's "crafted" switch: registers the box should not send)


async def test_bender_no_value_markers_and_absurd_registers_are_not_published() -> None:
    crafted = {str(a): "65535" for a in (212, 213, 218, 219, 220, 221, 730)}
    crafted.update({"720": "7", "721": "65535"})  # a control character and 0xFF bytes
    fault = Fault(FaultKind.CRAFTED, raw=tuple(crafted.items()))
    async with device("bender", fault=fault) as (driver, _m):
        reading = await driver.read(full=False)
    values = reading.values
    for absent in ("OutputCurrentL1", "TotalEnergyConsumption", "PowerOutput", "StateOfCharge"):
        assert absent not in values
    assert values["OutputCurrent"] == 15.68  # the phases that have a value
    assert "IdTag" not in values  # nothing printable is left of the tag
    ChargerReading(reading.sampling_time, values)  # the coordinator's own check passes


async def test_hcc3_largest_register_values_stay_valid_readings() -> None:
    crafted = {str(a): "65535" for a in range(770, 796)}
    async with device("hcc3", fault=Fault(FaultKind.CRAFTED, raw=tuple(crafted.items()))) as (
        driver,
        _m,
    ):
        reading = await driver.read(full=False)
    assert reading.values["TotalEnergyConsumption"] == 0xFFFFFFFF  # a wrap: the gate's job
    assert reading.values["OperationState"] == "unscheduled_downtime"  # error 65535
    assert "VendorState" not in reading.values  # no such AMTRON state


# -- pacing -----------------------------------------------------------------------------


async def test_requests_are_at_least_the_configured_interval_apart() -> None:
    """A lower bound on the gaps (the device's tolerance), not a speed assertion."""
    doc = load_dump(FIXTURES / "bender" / "registers.json")
    seen: list[float] = []
    async with recorded_device(doc) as (server, regmap):
        original = regmap.read

        def timed(function: int, address: int, count: int) -> list[int] | int:
            seen.append(time.monotonic())
            return original(function, address, count)

        regmap.read = timed  # type: ignore[method-assign]
        driver = BenderDriver(spec(server.port, request_interval=0.05))
        try:
            await driver.read(full=True)
            await driver.read(full=False)
        finally:
            await driver.aclose()
    assert len(seen) == 9  # 5 blocks on a full read, 4 on the others
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert min(gaps) >= 0.045


# -- control ----------------------------------------------------------------------------


def reading(**values: Any) -> ChargerReading:
    return ChargerReading(NOW, values)


async def test_hcc3_control_writes_the_documented_registers() -> None:
    async with device("hcc3") as (driver, regmap):
        assert isinstance(driver, Hcc3Driver)
        await driver.set_current_limit(10.0, permanent=False)
        await driver.pause()
        await driver.resume()
        await driver.stop()
        assert regmap.writes == [(1024, 10), (1025, 1), (1025, 2), (1025, 3)]
        after = await driver.read(full=True)
    assert after.values["MaximumOutputCurrent"] == 10
    assert driver.shows(after, Command.CURRENT_LIMIT, 10.0) is None
    assert driver.shows(after, Command.CURRENT_LIMIT, 16.0) is not None
    assert driver.shows(reading(VendorState="Paused"), Command.PAUSE, None) is None
    assert driver.shows(reading(VendorState="Charging"), Command.PAUSE, None) is not None


async def test_bender_pause_is_zero_amperes_and_resume_restores_the_limit() -> None:
    async with device("bender") as (driver, regmap):
        assert isinstance(driver, BenderDriver)
        await driver.read(full=False)  # the box's limit: 16 A
        await driver.pause()
        paused = await driver.read(full=False)
        await driver.resume()
        await driver.set_current_limit(10.0, permanent=False)
        await driver.pause()
        await driver.resume()
        assert regmap.writes == [(1000, 0), (1000, 16), (1000, 10), (1000, 0), (1000, 10)]
    assert driver.shows(paused, Command.PAUSE, None) is None
    assert driver.shows(paused, Command.RESUME, None) is not None


async def test_bender_cannot_stop_nor_resume_without_a_known_limit() -> None:
    driver = BenderDriver(spec(1))
    with pytest.raises(ConfigError, match="no limit known"):
        await driver.resume()
    with pytest.raises(ConfigError, match="cannot stop a session"):
        await driver.stop()
    assert driver.shows(reading(), Command.STOP, None) is not None


def test_the_modbus_drivers_declare_what_their_registers_can_do() -> None:
    # The poller rejects anything else before a write ("the bender driver cannot ...").
    common = {Command.CURRENT_LIMIT, Command.PAUSE, Command.RESUME}
    assert Hcc3Driver(spec(1)).commands == frozenset({*common, Command.STOP})
    assert BenderDriver(spec(1)).commands == frozenset(common)


def test_construction_does_no_io_and_both_drivers_control() -> None:
    assert isinstance(Hcc3Driver(spec(1)), Controller)
    assert isinstance(BenderDriver(spec(1)), Controller)


def test_the_documented_chargers_file_entries_load_and_build(tmp_path: Path) -> None:
    """The sample of docs/drivers/modbus.md: no PIN, tcp:// urls, options, built drivers."""
    doc = (Path(__file__).parents[3] / "docs" / "drivers" / "modbus.md").read_text()
    sample = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "chargers.toml"
    path.write_text(sample)
    config = load_config(path, {})
    assert [(c.driver, c.pin) for c in config.chargers] == [("hcc3", None), ("bender", None)]
    for c in config.chargers:
        driver = REGISTRY.create(
            c.driver,
            DriverSpec(charger_id=c.id, url=c.url, options=c.options, timeout=c.timeout),
            None,  # type: ignore[arg-type]
        )
        assert isinstance(driver, Controller)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda fc: bytes([fc, 2, 0, 6]), id="one register for many"),
        pytest.param(lambda fc: bytes([fc, 0]), id="no register"),
        pytest.param(lambda fc: bytes([fc ^ 0x01, 2, 0, 6]), id="another function"),
    ],
)
@pytest.mark.usefixtures("quiet_libraries")
async def test_a_well_framed_answer_with_the_wrong_content_is_transient(
    answer: Callable[[int], bytes],
) -> None:
    """A frame that parses but does not answer the request: never a reading, never a crash."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    head = await reader.readexactly(7)
                    tid, _proto, length, unit = struct.unpack(">HHHB", head)
                    pdu = await reader.readexactly(length - 1)
                    body = answer(pdu[0])
                    writer.write(struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body)
                    await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        for driver in (Hcc3Driver(spec(port)), BenderDriver(spec(port))):
            driver.link.timeout = 0.5
            with pytest.raises(TransientError, match="mb-1"):
                await driver.read(full=True)
            await driver.aclose()
    finally:
        server.close()
        await server.wait_closed()
