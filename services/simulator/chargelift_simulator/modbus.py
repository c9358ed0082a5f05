"""Modbus TCP for simulated chargers: the HCC3 and the Bender register maps.

A simulated charger (:class:`~chargelift_simulator.mhcp.SimCharger`) may serve, beside
or instead of MHCP, one Modbus TCP server per register map, each on its own port, all
reading the *same* :class:`~chargelift_simulator.model.ChargerModel` (one car, one
session, one meter) and the same fault switches (:mod:`chargelift_simulator.faults`).

The maps (docs/drivers/modbus.md has the full tables and where the facts come from):

* ``hcc3`` — AMTRON Xtra/Premium: *input* registers 768..806 (function 4), 32-bit
  values low word first, strings byte-swapped in each register; *holding* register
  1024 current limit (A, 0 = no charging) and 1025 charge-state command (1 Pause,
  2 Continue, 3 Terminate, 4 Start).
* ``bender`` — AMTRON Professional / Charge Control (Bender CC612/613): *holding*
  registers (function 3), big-endian, 32-bit values high word first, ``0xFFFFFFFF`` =
  no value; currents in mA; 1000 current limit (A), 1001 the same in 0.1 A.

Why not pymodbus' server: its custom-datastore path (``ModbusServerContext``) is
deprecated for pymodbus 4, and the fault switches need the frame itself (garbage,
half a frame, a held request, a reset). The MBAP framing served here is small: a
7-byte header (transaction, protocol 0, length, unit id) and the PDU; functions 3, 4,
6 and 16; anything else is answered with exception 1 (illegal function).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import struct
from collections.abc import Callable
from typing import ClassVar, Protocol

from chargelift_simulator.faults import Fault, FaultKind, FaultSlot
from chargelift_simulator.model import (
    VOLTAGE_V,
    ChargerModel,
    ChgState,
    Command,
    DevMode,
    PauseReason,
)

log = logging.getLogger(__name__)

MAPS = ("hcc3", "bender")

#: Exception codes (Modbus application protocol v1.1b3, section 7).
ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
DEVICE_FAILURE = 4

READ_HOLDING = 3
READ_INPUT = 4
WRITE_SINGLE = 6
WRITE_MULTIPLE = 16

#: Largest MBAP length field (unit id + PDU of at most 253 bytes).
MAX_LENGTH = 254
#: Default unit id of both maps (the vendors' documents; some Bender boxes use 1).
DEFAULT_UNIT_ID = 255

Registers = list[int]


class RegisterMap(Protocol):
    """One device's registers, computed from the model at every request."""

    name: str

    def read(self, function: int, address: int, count: int) -> Registers | int:
        """The registers, or an exception code."""
        ...

    def write(self, address: int, values: Registers) -> int | None:
        """Apply a write; ``None`` or an exception code."""
        ...


def _u32_low_first(value: float) -> Registers:
    v = int(value) & 0xFFFFFFFF
    return [v & 0xFFFF, v >> 16]


def _u32_high_first(value: float) -> Registers:
    v = int(value) & 0xFFFFFFFF
    return [v >> 16, v & 0xFFFF]


def _string(text: str, words: int, *, swapped: bool) -> Registers:
    raw = text.encode("ascii", "replace")[: 2 * words].ljust(2 * words, b"\x00")
    regs = []
    for i in range(words):
        a, b = raw[2 * i], raw[2 * i + 1]
        regs.append((b << 8) | a if swapped else (a << 8) | b)
    return regs


def _current_a(model: ChargerModel) -> float:
    return model.power_w / (model.settings.phases * VOLTAGE_V)


class Hcc3Map:
    """AMTRON Xtra/Premium (HCC3 controller, firmware >= 1.13)."""

    name = "hcc3"
    INPUT = range(768, 807)
    HOLDING = range(1024, 1026)
    #: AMTRON state register 773: same names as MHCP ChgState.
    STATES: ClassVar[dict[ChgState, int]] = {
        ChgState.IDLE: 0,
        ChgState.STANDBY_AUTHORIZE: 1,
        ChgState.STANDBY_CONNECT: 2,
        ChgState.CHARGING: 3,
        ChgState.PAUSED: 4,
        ChgState.TERMINATED: 5,
    }
    COMMANDS: ClassVar[dict[int, Command]] = {
        1: Command.PAUSE,
        2: Command.CONTINUE,
        3: Command.TERMINATE,
        4: Command.START,
    }

    def __init__(self, model: ChargerModel) -> None:
        self.model = model

    def cp_state(self) -> int:
        """Register 770: 1 A1, 2 A2, 3 B1, 4 B2, 5 C1, 6 C2 (7/8 D: never simulated)."""
        m = self.model
        if m.vehicle is None:
            return 1
        if m.state is ChgState.CHARGING:
            return 6
        if m.state is ChgState.PAUSED and m.pause_reason is PauseReason.VEHICLE:
            return 4
        return 3

    def input_registers(self) -> dict[int, int]:
        m, s = self.model, self.model.settings
        regs = dict.fromkeys(self.INPUT, 0)
        regs[768], regs[769] = 31, 18  # HMI temperatures, degC
        regs[770] = self.cp_state()
        regs[771] = 3 if m.vehicle is not None else 1  # PP: 20 A cable / open
        regs[772] = 0  # HCC3 error code: none
        regs[773] = self.STATES.get(m.state, 6)
        regs[776] = s.phases
        regs[777] = regs[778] = s.max_curr_wb
        regs[779], regs[780] = _u32_low_first(s.serial)
        regs[781], regs[782] = _u32_low_first(m.meter_wh)
        regs[783], regs[784] = _u32_low_first(round(m.power_w))
        for i, word in enumerate(_string(s.dev_name, 11, swapped=True)):
            regs[785 + i] = word
        regs[797] = s.max_curr_t1
        regs[805], regs[806] = 6, s.max_curr_wb
        return regs

    def read(self, function: int, address: int, count: int) -> Registers | int:
        if function == READ_INPUT:
            table = self.input_registers()
        elif function == READ_HOLDING:
            table = {1024: int(self.model.settings.remote_curr), 1025: 0}
        else:
            return ILLEGAL_FUNCTION
        if any(a not in table for a in (address, address + count - 1)):
            return ILLEGAL_ADDRESS
        return [table[a] for a in range(address, address + count)]

    def write(self, address: int, values: Registers) -> int | None:
        for offset, value in enumerate(values):
            where = address + offset
            if where == 1024:
                if value > 80:
                    return ILLEGAL_VALUE
                _set_limit(self.model, float(value))
            elif where == 1025:
                command = self.COMMANDS.get(value)
                if command is None:
                    return ILLEGAL_VALUE
                self.model.command(command)
            else:
                return ILLEGAL_ADDRESS
        return None


def _set_limit(model: ChargerModel, amps: float) -> None:
    # The Modbus limit is the box's remote limit (what MHCP RemoteCurr sets): the same
    # control path, so both protocols act on one model.
    if model.settings.dev_mode is not DevMode.REMOTE:
        model.set_dev_mode(DevMode.REMOTE)
    model.set_remote_current(amps)


class BenderMap:
    """AMTRON Professional / Charge Control / AMEDIO (Bender CC612/613 register set)."""

    name = "bender"
    #: Registers 0..2047 answer (0 where nothing is simulated); beyond: illegal address.
    SIZE = 2048

    def __init__(self, model: ChargerModel) -> None:
        self.model = model

    def cp_state(self) -> int:
        """Register 122: 1 A, 2 B, 3 C, 4 D, 5 E."""
        m = self.model
        if m.vehicle is None:
            return 1
        return 3 if m.state is ChgState.CHARGING else 2

    def id_tag(self) -> str:
        """The RFID of the open session; sessions the box starts itself get a card too."""
        m = self.model
        if m.session_start is None:
            return ""
        return m.uid or f"04{m.settings.serial:08X}"

    def registers(self) -> dict[int, int]:
        m, s = self.model, self.model.settings
        regs: dict[int, int] = {}
        regs[100] = 522  # firmware 5.22
        regs[104] = 3 if m.state is ChgState.CHARGING else (2 if m.vehicle else 1)
        regs[120] = 0x0100
        regs[122] = self.cp_state()
        regs[124] = 1
        regs[140] = 1 if m.state is ChgState.CHARGING else 0
        for i, word in enumerate(_string("CC612_2S0R_CC", 10, swapped=False)):
            regs[142 + i] = word
        per_phase_w = m.power_w / s.phases
        current_ma = _current_a(m) * 1000
        for phase in range(3):
            on = phase < s.phases
            regs[206 + 2 * phase], regs[207 + 2 * phase] = _u32_high_first(
                round(per_phase_w) if on else 0
            )
            regs[212 + 2 * phase], regs[213 + 2 * phase] = _u32_high_first(
                round(current_ma) if on else 0
            )
            regs[222 + 2 * phase], regs[223 + 2 * phase] = _u32_high_first(VOLTAGE_V)
        regs[218], regs[219] = _u32_high_first(m.meter_wh)
        regs[220], regs[221] = _u32_high_first(round(m.power_w))
        regs[706] = int(m.limit_a())
        regs[712], regs[715] = 6, s.max_curr_wb
        regs[716], regs[717] = _u32_high_first(m.energy_wh if m.session_start is not None else 0)
        regs[718], regs[719] = _u32_high_first(m.duration_s if m.session_start is not None else 0)
        for i, word in enumerate(_string(self.id_tag(), 10, swapped=False)):
            regs[720 + i] = word
        v = m.vehicle
        regs[730] = 0 if v is None else min(100, round(v.soc * 100))
        regs[1000] = int(s.remote_curr)
        regs[1001] = round(s.remote_curr * 10)
        return regs

    def read(self, function: int, address: int, count: int) -> Registers | int:
        if function != READ_HOLDING:
            return ILLEGAL_FUNCTION
        if address + count > self.SIZE:
            return ILLEGAL_ADDRESS
        table = self.registers()
        return [table.get(a, 0) for a in range(address, address + count)]

    def write(self, address: int, values: Registers) -> int | None:
        for offset, value in enumerate(values):
            where = address + offset
            if where == 1000:
                amps = float(value)
            elif where == 1001:
                amps = value / 10
            else:
                return ILLEGAL_ADDRESS
            if amps > 80:
                return ILLEGAL_VALUE
            _set_limit(self.model, amps)
        return None


def build_map(name: str, model: ChargerModel) -> RegisterMap:
    """The register map ``name`` (one of :data:`MAPS`) over ``model``."""
    if name == "hcc3":
        return Hcc3Map(model)
    if name == "bender":
        return BenderMap(model)
    raise ValueError(f"unknown Modbus map {name!r}; known: {', '.join(MAPS)}")


def _crafted(regs: Registers, address: int, raw: tuple[tuple[str, str], ...]) -> Registers:
    out = list(regs)
    for key, text in raw:
        with contextlib.suppress(ValueError):
            where, value = int(key), int(text)
            if address <= where < address + len(out) and 0 <= value <= 0xFFFF:
                out[where - address] = value
    return out


def _exception(function: int, code: int) -> bytes:
    return bytes([(function | 0x80) & 0xFF, code & 0xFF])


class ModbusServer:
    """One Modbus TCP port serving one register map, with the charger's fault switches."""

    def __init__(
        self,
        regmap: RegisterMap,
        faults: FaultSlot,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        unit_id: int = DEFAULT_UNIT_ID,
        idle_timeout: float = 30.0,
        on_write: Callable[[], None] | None = None,
    ) -> None:
        self.map = regmap
        self.faults = faults
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.idle_timeout = idle_timeout
        self.on_write = on_write
        #: Requests answered (correctly or with a fault) and connections accepted: what a
        #: test counts.
        self.requests = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def open_connections(self) -> int:
        """Client connections open now."""
        return len(self._writers)

    async def start(self) -> None:
        """Bind and listen; ``port`` becomes the bound port."""
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and end every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await server.wait_closed()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        header = await reader.readexactly(7)
                        tid, proto, length, unit = struct.unpack(">HHHB", header)
                        if proto != 0 or not 2 <= length <= MAX_LENGTH:
                            return  # not Modbus TCP: drop the connection
                        pdu = await reader.readexactly(length - 1)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                if not await self._answer(writer, tid, unit, pdu):
                    return
        except asyncio.CancelledError:
            return  # closing: close() cancelled this connection and waits for it
        finally:
            if task is not None:
                self._tasks.discard(task)
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, tid: int, unit: int, pdu: bytes) -> bool:
        """Answer one request (or misbehave); False closes the connection."""
        self.requests += 1
        fault = self.faults.take()
        kind = fault.kind
        if kind is FaultKind.LATENCY:
            await asyncio.sleep(fault.latency_s)
        elif kind is FaultKind.TIMEOUT:
            await asyncio.sleep(fault.latency_s if fault.latency_s > 0 else math.inf)
            return False
        elif kind is FaultKind.RESET:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        elif kind is FaultKind.MALFORMED:
            await self._send(writer, b"\xde\xad\xbe\xef garbage, not Modbus \x00\xff")
            return True
        function = pdu[0]
        if kind in (FaultKind.HTTP500, FaultKind.EXCEPTION):
            code = int(dict(fault.raw).get("code", DEVICE_FAILURE) or DEVICE_FAILURE)
            body = _exception(function, code)
        elif unit != self.unit_id:
            body = _exception(function, 0x0B)  # gateway: target device failed to respond
        else:
            body = self._execute(function, pdu, fault)
        frame = struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body
        if kind is FaultKind.TRUNCATED:
            await self._send(writer, frame[: len(frame) // 2])
            return False
        await self._send(writer, frame)
        return True

    def _execute(self, function: int, pdu: bytes, fault: Fault) -> bytes:
        if function in (READ_HOLDING, READ_INPUT):
            if len(pdu) != 5:
                return _exception(function, ILLEGAL_VALUE)
            address, count = struct.unpack(">HH", pdu[1:5])
            if not 1 <= count <= 125:
                return _exception(function, ILLEGAL_VALUE)
            result = self.map.read(function, address, count)
            if isinstance(result, int):
                return _exception(function, result)
            if fault.kind is FaultKind.CRAFTED:
                result = _crafted(result, address, fault.raw)
            return bytes([function, 2 * count]) + struct.pack(f">{count}H", *result)
        if function == WRITE_SINGLE:
            if len(pdu) != 5:
                return _exception(function, ILLEGAL_VALUE)
            address, value = struct.unpack(">HH", pdu[1:5])
            code = self.map.write(address, [value])
            if code is not None:
                return _exception(function, code)
            self._written()
            return pdu
        if function == WRITE_MULTIPLE:
            if len(pdu) < 6:
                return _exception(function, ILLEGAL_VALUE)
            address, count, nbytes = struct.unpack(">HHB", pdu[1:6])
            if not 1 <= count <= 123 or nbytes != 2 * count or len(pdu) != 6 + nbytes:
                return _exception(function, ILLEGAL_VALUE)
            values = list(struct.unpack(f">{count}H", pdu[6:]))
            code = self.map.write(address, values)
            if code is not None:
                return _exception(function, code)
            self._written()
            return pdu[:5]
        return _exception(function, ILLEGAL_FUNCTION)

    def _written(self) -> None:
        if self.on_write is not None:
            self.on_write()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
