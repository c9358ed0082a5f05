"""Bender CC612/613-based boxes (AMTRON Professional, Charge Control, AMEDIO) over Modbus TCP.

Endpoint: ``tcp://<box>:502`` (503: a twin box's second charging point), unit id 255
(some firmwares: 1, option ``unit_id``), no credentials; the box's "Register Address
Set" must be the Ebee/Bender/MENNEKES one and "Allow UID Disclose" on for the id tag
(docs/drivers/modbus.md has the register table and its sources). All registers are
*holding* registers (function 3), big-endian, 32-bit values HIGH word first,
``0xFFFFFFFF`` = no value. Each poll reads four blocks on one kept-open connection, at
least ``request_interval`` apart (the map's gaps are not known to be readable, so the
blocks do not span them)::

    122        (1)   CP state                 1 A, 2 B, 3 C, 4 D, 5 E
    200..227   (28)  meters: 212/214/216 currents mA, 218 energy Wh, 220 power W,
                     222/224/226 voltages V
    716..730   (15)  session: 716 energy Wh, 720 id tag (20 ASCII bytes), 730 SoC %
    1000       (1)   current limit A (read back)
    142..151   (10)  model name, full reads only

Annotated sample (charging at 11 kW)::

    122  3               -> OperationState charging, ConnectedVehicle true, VendorState "C"
    212  0, 16000        -> OutputCurrentL1 16.0 A (mA / 1000); OutputCurrent: the highest
    218  1, 62144        -> TotalEnergyConsumption 127680 Wh
    220  0, 11040        -> PowerOutput 11040 W
    222  0, 230          -> VoltageL1 230 V
    716  0, 5120         -> SessionEnergy 5120 Wh
    720  "04191A2B3C"    -> IdTag (published when not empty: the current or last one)
    730  57              -> StateOfCharge 57 % (0: the car does not say; not published)
    1000 16              -> MaximumOutputCurrent 16 A

Device quirks:

* Currents are mA: fractional amperes are real (15.6 A), never rounded.
* 218/220 exist from firmware 5.22; older boxes answer 0xFFFFFFFF (no value) there.
* 4You/4Business boxes close the connection when 730/740 are read: option
  ``session_registers = false`` skips the session block.
* Writes: 1000 is the current limit in A; 0 stops charging (pause), and resume writes
  back the limit in force before the pause. There is no register that ends a session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import httpx

from chargelift_contract import OperationState
from chargelift_contract.commands import Command
from chargelift_contract.envelope import Value
from chargelift_poller.drivers._modbus import (
    OPTIONS,
    Block,
    Decoded,
    ModbusLink,
    Register,
    check_options,
    decode,
)
from chargelift_poller.drivers.base import limit_shown, not_declared
from chargelift_poller.errors import ConfigError
from chargelift_poller.models import ChargerReading, DriverSpec

log = logging.getLogger(__name__)

UNIT_ID = 255
NO_VALUE = 0xFFFFFFFF
CP = Block("holding", 122, 1)
METERS = Block("holding", 200, 28)
SESSION = Block("holding", 716, 15)
LIMIT = Block("holding", 1000, 1)
INFO = Block("holding", 142, 10, full_only=True)
LIMIT_REGISTER = 1000
_BENDER_OPTIONS = OPTIONS | {"session_registers"}


def _u32(key: str, address: int, scale: float = 1.0) -> Register:
    return Register(key, address, "u32", scale=scale, invalid=NO_VALUE)


#: The one table of this device: address, type, word order (high first), scale.
REGISTERS: tuple[Register, ...] = (
    Register("cp", 122),
    Register("model", 142, "string", words=10),
    _u32("current_l1", 212, 0.001),
    _u32("current_l2", 214, 0.001),
    _u32("current_l3", 216, 0.001),
    _u32("energy_wh", 218),
    _u32("power_w", 220),
    _u32("voltage_l1", 222),
    _u32("voltage_l2", 224),
    _u32("voltage_l3", 226),
    _u32("session_wh", 716),
    Register("id_tag", 720, "string", words=10),
    Register("soc", 730),
    Register("limit_a", 1000),
)

#: Register 122 → IEC 61851 state letter.
CP_LETTERS: Mapping[int, str] = MappingProxyType({1: "A", 2: "B", 3: "C", 4: "D", 5: "E", 6: "F"})
IEC_STATES: Mapping[str, OperationState] = MappingProxyType(
    {
        "A": OperationState.IDLE,
        "B": OperationState.IDLE,
        "C": OperationState.CHARGING,
        "D": OperationState.CHARGING,
        "E": OperationState.UNSCHEDULED_DOWNTIME,
        "F": OperationState.UNSCHEDULED_DOWNTIME,
    }
)
MAX_UNKNOWN_STATES = 32


@dataclass(frozen=True, slots=True)
class _Sample:
    regs: Mapping[str, Decoded]
    letter: str | None
    state: OperationState


def _connected(s: _Sample) -> Value:
    if s.letter is None or s.letter in "EF":
        return None
    return s.letter != "A"


def _highest_current(s: _Sample) -> Value:
    phases = [s.regs.get(f"current_l{i}") for i in (1, 2, 3)]
    known = [p for p in phases if isinstance(p, int | float)]
    return max(known) if known else None


def _soc(s: _Sample) -> Value:
    soc = s.regs.get("soc")
    if not isinstance(soc, int) or not 0 < soc <= 100 or s.letter not in ("B", "C", "D"):
        return None
    return soc


def _text(key: str) -> Callable[[_Sample], Value]:
    return lambda s: s.regs.get(key) or None


@dataclass(frozen=True, slots=True)
class BenderField:
    """How one catalogue field is read from a decoded Bender sample (``None``: absent)."""

    name: str
    read: Callable[[_Sample], Value]


FIELDS: tuple[BenderField, ...] = (
    BenderField("OperationState", lambda s: s.state.value),
    BenderField("ConnectedVehicle", _connected),
    BenderField("VendorState", lambda s: s.letter),
    BenderField("PowerOutput", lambda s: s.regs.get("power_w")),
    BenderField("TotalEnergyConsumption", lambda s: s.regs.get("energy_wh")),
    BenderField("SessionEnergy", lambda s: s.regs.get("session_wh")),
    BenderField("OutputCurrent", _highest_current),
    BenderField("OutputCurrentL1", lambda s: s.regs.get("current_l1")),
    BenderField("OutputCurrentL2", lambda s: s.regs.get("current_l2")),
    BenderField("OutputCurrentL3", lambda s: s.regs.get("current_l3")),
    BenderField("VoltageL1", lambda s: s.regs.get("voltage_l1")),
    BenderField("VoltageL2", lambda s: s.regs.get("voltage_l2")),
    BenderField("VoltageL3", lambda s: s.regs.get("voltage_l3")),
    BenderField("IdTag", _text("id_tag")),
    BenderField("StateOfCharge", _soc),
    BenderField("MaximumOutputCurrent", lambda s: s.regs.get("limit_a")),
    BenderField("ChargerModel", _text("model")),
)


#: The commands a Bender box can apply over this register set (the Controller
#: capability): a limit, pause as 0 A, resume. Not Stop (no register ends a session),
#: Start, Operative or Inoperative: the poller rejects those and writes nothing.
COMMANDS: frozenset[Command] = frozenset({Command.CURRENT_LIMIT, Command.PAUSE, Command.RESUME})


class BenderDriver:
    """Reads (and controls) a Bender-based box over Modbus TCP. No I/O on construction.

    ``http`` is the registry's uniform argument; this driver has its own connection.
    """

    #: What this driver can do of the commands (:data:`COMMANDS`).
    commands: frozenset[Command] = COMMANDS

    def __init__(self, spec: DriverSpec, http: httpx.AsyncClient | None = None) -> None:
        del http  # not HTTP: the link below is this driver's one connection
        check_options(spec, _BENDER_OPTIONS, "bender")
        session = spec.options.get("session_registers", True)
        if not isinstance(session, bool):
            raise ConfigError(spec.charger_id, "option session_registers must be true or false")
        self._id = spec.charger_id
        self._clock = spec.clock
        self.link = ModbusLink(spec, default_unit_id=UNIT_ID)
        self._blocks = (CP, METERS, *((SESSION,) if session else ()), LIMIT, INFO)
        self._limit: int | None = None  # the last non-zero limit read back (resume)
        self._unknown: set[int] = set()

    async def read(self, *, full: bool) -> ChargerReading:
        """Four requests (five on full reads: the model name)."""
        blocks = [b for b in self._blocks if full or not b.full_only]
        words = {block: await self.link.read(block) for block in blocks}
        sampling_time = self._clock()
        regs = decode(REGISTERS, words)
        limit = regs.get("limit_a")
        if isinstance(limit, int) and limit > 0:
            self._limit = limit
        raw = regs.get("cp")
        letter = CP_LETTERS.get(raw) if isinstance(raw, int) else None
        sample = _Sample(regs, letter, self._state(raw, letter))
        values = {f.name: v for f in FIELDS if (v := f.read(sample)) is not None}
        return ChargerReading(sampling_time, values)

    async def aclose(self) -> None:
        """Close the connection."""
        await self.link.aclose()

    # -- writes (Controller) ---------------------------------------------------------

    @property
    def hardware_max_current(self) -> float | None:
        """Unknown over this map: the chargers file's ``max_current`` applies."""
        return None

    async def set_current_limit(self, amps: float, *, permanent: bool) -> None:
        """Register 1000, whole amperes (``permanent`` changes nothing)."""
        del permanent
        await self.link.write(LIMIT_REGISTER, max(0, int(amps)))
        if int(amps) > 0:
            self._limit = int(amps)

    async def pause(self) -> None:
        """0 A: the box stops offering current; the session stays open."""
        await self.link.write(LIMIT_REGISTER, 0)

    async def resume(self) -> None:
        """The limit in force before the pause (known from a read or a write)."""
        if self._limit is None:
            raise ConfigError(self._id, "no limit known to resume with: set a CurrentLimit")
        await self.link.write(LIMIT_REGISTER, self._limit)

    async def stop(self) -> None:
        """Not in :data:`COMMANDS`: this register set has no command that ends a session."""
        raise not_declared("bender", self._id, Command.STOP)

    async def start(self) -> None:
        """Not in :data:`COMMANDS`: the poller never calls it."""
        raise not_declared("bender", self._id, Command.START)

    async def set_operative(self, operative: bool) -> None:
        """Not in :data:`COMMANDS`: the poller never calls it."""
        command = Command.OPERATIVE if operative else Command.INOPERATIVE
        raise not_declared("bender", self._id, command)

    def shows(self, reading: ChargerReading, command: Command, value: float | None) -> str | None:
        """Whether ``reading`` (a full read after the write) shows ``command`` in effect."""
        limit = reading.values.get("MaximumOutputCurrent")
        match command:
            case Command.CURRENT_LIMIT:
                return limit_shown(reading, value)
            case Command.PAUSE:
                if limit == 0:
                    return None
            case Command.RESUME:
                if isinstance(limit, int | float) and limit > 0:
                    return None
            case _:
                return f"the bender driver cannot apply {command.value}"
        return f"the charger reads back a limit of {limit!r} A"

    def _state(self, raw: Decoded, letter: str | None) -> OperationState:
        if letter is not None:
            return IEC_STATES[letter]
        unseen = isinstance(raw, int) and raw not in self._unknown
        if unseen and isinstance(raw, int) and len(self._unknown) < MAX_UNKNOWN_STATES:
            self._unknown.add(raw)
            log.warning("charger %s: unknown CP state %d (logged once)", self._id, raw)
        return OperationState.UNKNOWN
