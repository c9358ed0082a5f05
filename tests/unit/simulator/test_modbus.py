"""The simulator's Modbus TCP maps (HCC3, Bender) on the model, and its server's framing."""

from __future__ import annotations

import asyncio
import struct

import pytest

from chargelift_simulator import FleetConfig
from chargelift_simulator.faults import Fault, FaultKind, FaultSlot
from chargelift_simulator.modbus import (
    ILLEGAL_ADDRESS,
    ILLEGAL_VALUE,
    READ_HOLDING,
    READ_INPUT,
    BenderMap,
    Hcc3Map,
    ModbusServer,
    build_map,
)
from chargelift_simulator.model import ChargerModel, ChgState
from tests.unit.simulator.conftest import charging, manual_fleet


def u32_low_first(words: list[int]) -> int:
    return words[0] | words[1] << 16


def u32_high_first(words: list[int]) -> int:
    return words[0] << 16 | words[1]


def test_hcc3_map_serves_the_model_low_word_first() -> None:
    fleet = manual_fleet()
    model = charging(fleet)
    regs = Hcc3Map(model).read(READ_INPUT, 770, 26)
    assert isinstance(regs, list)
    assert regs[0] == 6  # C2
    assert regs[3] == 3  # AMTRON state Charging
    assert u32_low_first(regs[9:11]) == model.settings.serial
    assert u32_low_first(regs[11:13]) == int(model.meter_wh)
    assert model.meter_wh > 65_535
    assert u32_low_first(regs[13:15]) == round(model.power_w)


def test_bender_map_serves_milliamperes_high_word_first() -> None:
    fleet = manual_fleet()
    model = charging(fleet)
    regs = BenderMap(model).read(READ_HOLDING, 200, 28)
    assert isinstance(regs, list)
    current_ma = u32_high_first(regs[12:14])
    assert current_ma == round(model.power_w / (3 * 230) * 1000)
    assert u32_high_first(regs[18:20]) == int(model.meter_wh)
    assert u32_high_first(regs[22:24]) == 230


def state_of(model: ChargerModel) -> ChgState:
    return model.state  # read anew (mypy narrows an attribute across calls)


def test_limit_writes_act_on_the_model_like_mhcp() -> None:
    fleet = manual_fleet()
    model = charging(fleet)
    assert Hcc3Map(model).write(1024, [8]) is None
    fleet.step(10)
    assert model.limit_a() == 8
    assert round(model.power_w) == 8 * 3 * 230
    assert BenderMap(model).write(1000, [0]) is None  # 0 A: the session pauses
    fleet.step(1)
    assert state_of(model) is ChgState.PAUSED
    assert BenderMap(model).write(1001, [105]) is None  # 10.5 A in 0.1 A
    fleet.step(10)
    assert state_of(model) is ChgState.CHARGING
    assert model.limit_a() == 10.5
    assert Hcc3Map(model).write(1025, [1]) is None  # Pause command
    assert state_of(model) is ChgState.PAUSED
    assert Hcc3Map(model).write(1024, [81]) == ILLEGAL_VALUE
    assert Hcc3Map(model).write(1030, [1]) == ILLEGAL_ADDRESS


def test_unknown_addresses_and_maps_are_refused() -> None:
    model = manual_fleet().chargers[0].model
    assert Hcc3Map(model).read(READ_INPUT, 700, 2) == ILLEGAL_ADDRESS
    assert BenderMap(model).read(READ_HOLDING, 2040, 10) == ILLEGAL_ADDRESS
    with pytest.raises(ValueError, match="unknown Modbus map"):
        build_map("sunspec", model)
    with pytest.raises(ValueError, match="unknown Modbus map"):
        FleetConfig(count=1, modbus=("sunspec",))


async def _request(port: int, pdu: bytes, unit: int = 255) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(struct.pack(">HHHB", 7, 0, len(pdu) + 1, unit) + pdu)
        await writer.drain()
        return await asyncio.wait_for(reader.read(300), 2)
    finally:
        writer.close()


async def test_server_frames_answers_exceptions_and_faults() -> None:
    model = manual_fleet().chargers[0].model
    faults = FaultSlot()
    server = ModbusServer(Hcc3Map(model), faults)
    await server.start()
    try:
        answer = await _request(server.port, struct.pack(">BHH", READ_INPUT, 770, 1))
        assert answer == struct.pack(">HHHBBBH", 7, 0, 5, 255, READ_INPUT, 2, 1)
        wrong_unit = await _request(server.port, struct.pack(">BHH", READ_INPUT, 770, 1), unit=1)
        assert wrong_unit[7:] == bytes([READ_INPUT | 0x80, 0x0B])
        bad_function = await _request(server.port, b"\x2b\x0e\x01\x00")
        assert bad_function[7:] == bytes([0x2B | 0x80, 1])
        faults.set(Fault(FaultKind.EXCEPTION, raw=(("code", "6"),), remaining=1))
        busy = await _request(server.port, struct.pack(">BHH", READ_INPUT, 770, 1))
        assert busy[7:] == bytes([READ_INPUT | 0x80, 6])
        faults.set(Fault(FaultKind.MALFORMED, remaining=1))
        garbage = await _request(server.port, struct.pack(">BHH", READ_INPUT, 770, 1))
        assert garbage[2:4] != b"\x00\x00"  # not a Modbus TCP frame
        faults.set(Fault(FaultKind.TRUNCATED, remaining=1))
        half = await _request(server.port, struct.pack(">BHH", READ_INPUT, 770, 1))
        assert 0 < len(half) < len(answer)
    finally:
        await server.close()
    assert server.requests == 6


async def test_fleet_serves_the_configured_maps_per_charger() -> None:
    fleet = manual_fleet(count=2, modbus={"amtron-2": ("hcc3", "bender")})
    async with fleet:
        first, second = fleet.chargers
        assert first.modbus == {}
        assert set(second.modbus) == {"hcc3", "bender"}
        assert second.modbus_url("bender").startswith("tcp://127.0.0.1:")
        assert second.info()["modbus"]["hcc3"] == second.modbus["hcc3"].port
