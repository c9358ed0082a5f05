"""Mennekes AMTRON Xtra / Premium (controller HCC3, firmware >= 1.13) over Modbus TCP.

Endpoint: ``tcp://<box>:502``, unit id 255, no credentials (docs/drivers/modbus.md has
the register table and its sources). Each poll is two requests on one kept-open
connection, at least ``request_interval`` apart::

    read input registers 770..795 (function 4, 26 registers)
    read holding register 1024    (function 3)

Annotated sample (a box charging at 11 kW; 32-bit values come LOW word first)::

    770  6                CP state 6 = C2        -> OperationState charging,
                                                    ConnectedVehicle true
    772  0                HCC3 error code        -> ErrorCode (0: none)
    773  3                AMTRON state Charging  -> VendorState "Charging"
    776  3                phases
    777  16               rated current, A       -> hardware_max_current
    779  14241, 6410      serial 420100001       -> SerialNumber "420100001"
    781  62144, 1         meter 127680 Wh        -> TotalEnergyConsumption 127680
    783  11040, 0         power 11040 W          -> PowerOutput 11040
    785  11 registers     wallbox name, 2 ASCII bytes each, low byte first
    1024 16               current limit, A       -> MaximumOutputCurrent 16 (0: disabled)

Device quirks:

* 32-bit values are word-swapped (low word first): a value above 65,535 decoded in
  the other order is nonsense (the unit tests prove it with such values).
* Register 781 is a meter in Wh; the sources disagree whether it counts the session
  or the box's life. It is published as ``TotalEnergyConsumption`` as read; the API's
  energy rules decide what a drop means (a drop and back bills nothing), and sessions
  come from the CP state and the register: HCC3 Modbus has no session registers.
* No voltages or per-phase currents in this map.
* Writes: holding 1024 is the current limit (whole A; 0 stops charging; the box needs
  >= 6 A to charge), holding 1025 a state command (1 Pause, 2 Continue, 3 Terminate,
  4 Start). Phase switching is not possible over this Modbus.
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
from chargelift_poller.drivers.base import not_declared, state_shown
from chargelift_poller.models import ChargerReading, DriverSpec

log = logging.getLogger(__name__)

UNIT_ID = 255
STATUS = Block("input", 770, 26)
LIMIT = Block("holding", 1024, 1)
BLOCKS = (STATUS, LIMIT)
LIMIT_REGISTER = 1024
COMMAND_REGISTER = 1025
PAUSE, CONTINUE, TERMINATE = 1, 2, 3

#: The one table of this device: address, type, word order, scale.
REGISTERS: tuple[Register, ...] = (
    Register("cp", 770),
    Register("error", 772),
    Register("state", 773),
    Register("phases", 776),
    Register("rated_current", 777),
    Register("serial", 779, "u32", low_word_first=True),
    Register("energy_wh", 781, "u32", low_word_first=True),
    Register("power_w", 783, "u32", low_word_first=True),
    Register("name", 785, "string", words=11, byte_swapped=True),
    Register("limit_a", 1024),
)

#: Register 770 → IEC 61851 state letter (1/2 A1/A2, 3/4 B, 5/6 C, 7/8 D).
CP_LETTERS: Mapping[int, str] = MappingProxyType(
    {1: "A", 2: "A", 3: "B", 4: "B", 5: "C", 6: "C", 7: "D", 8: "D"}
)
#: IEC 61851 state → OperationState (E/F: the box or the car reports an error).
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
#: Register 773, the AMTRON state: the MHCP ChgState names.
VENDOR_STATES: Mapping[int, str] = MappingProxyType(
    {
        0: "Idle",
        1: "StandbyAuthorize",
        2: "StandbyConnect",
        3: "Charging",
        4: "Paused",
        5: "Terminated",
        6: "Error",
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


def _serial(s: _Sample) -> Value:
    serial = s.regs.get("serial")
    return None if serial is None else str(serial)


@dataclass(frozen=True, slots=True)
class Hcc3Field:
    """How one catalogue field is read from a decoded HCC3 sample (``None``: absent)."""

    name: str
    read: Callable[[_Sample], Value]


FIELDS: tuple[Hcc3Field, ...] = (
    Hcc3Field("OperationState", lambda s: s.state.value),
    Hcc3Field("ConnectedVehicle", _connected),
    Hcc3Field("VendorState", lambda s: VENDOR_STATES.get(_int(s.regs.get("state")) or 0)),
    Hcc3Field("ErrorCode", lambda s: s.regs.get("error")),
    Hcc3Field("PowerOutput", lambda s: s.regs.get("power_w")),
    Hcc3Field("TotalEnergyConsumption", lambda s: s.regs.get("energy_wh")),
    Hcc3Field("MaximumOutputCurrent", lambda s: s.regs.get("limit_a")),
    Hcc3Field("SerialNumber", _serial),
    Hcc3Field("ChargerVendor", lambda _s: "MENNEKES"),
)


def _int(value: Decoded) -> int | None:
    return value if isinstance(value, int) else None


#: The commands HCC3 can apply (the Controller capability). Not Start (register 1025's
#: "4 Start" is unconfirmed on real boxes), nor Operative/Inoperative (no availability
#: register): the poller rejects those and writes nothing.
COMMANDS: frozenset[Command] = frozenset(
    {Command.CURRENT_LIMIT, Command.PAUSE, Command.RESUME, Command.STOP}
)


class Hcc3Driver:
    """Reads (and controls) an AMTRON Xtra/Premium over Modbus TCP. No I/O on construction.

    ``http`` is the registry's uniform argument; this driver has its own connection.
    """

    #: What this driver can do of the commands (:data:`COMMANDS`).
    commands: frozenset[Command] = COMMANDS

    def __init__(self, spec: DriverSpec, http: httpx.AsyncClient | None = None) -> None:
        del http  # not HTTP: the link below is this driver's one connection
        check_options(spec, OPTIONS, "hcc3")
        self._id = spec.charger_id
        self._clock = spec.clock
        self.link = ModbusLink(spec, default_unit_id=UNIT_ID)
        self._rated: int | None = None
        self._unknown: set[int] = set()

    async def read(self, *, full: bool) -> ChargerReading:
        """Two requests; everything is cheap to read, so ``full`` changes nothing."""
        words = {
            block: await self.link.read(block) for block in BLOCKS if full or not block.full_only
        }
        sampling_time = self._clock()
        regs = decode(REGISTERS, words)
        rated = _int(regs.get("rated_current"))
        self._rated = rated if rated else None
        letter = CP_LETTERS.get(_int(regs.get("cp")) or 0)
        state = self._state(regs, letter)
        sample = _Sample(regs, letter, state)
        values = {f.name: v for f in FIELDS if (v := f.read(sample)) is not None}
        return ChargerReading(sampling_time, values)

    async def aclose(self) -> None:
        """Close the connection."""
        await self.link.aclose()

    # -- writes (Controller) ---------------------------------------------------------

    @property
    def hardware_max_current(self) -> float | None:
        """Register 777, the rated current (A), of the last read."""
        return None if self._rated is None else float(self._rated)

    async def set_current_limit(self, amps: float, *, permanent: bool) -> None:
        """Holding 1024, whole amperes (the box stores it; ``permanent`` changes nothing)."""
        del permanent
        await self.link.write(LIMIT_REGISTER, max(0, int(amps)))

    async def pause(self) -> None:
        await self.link.write(COMMAND_REGISTER, PAUSE)

    async def resume(self) -> None:
        await self.link.write(COMMAND_REGISTER, CONTINUE)

    async def stop(self) -> None:
        await self.link.write(COMMAND_REGISTER, TERMINATE)

    async def start(self) -> None:
        """Not in :data:`COMMANDS`: the poller never calls it."""
        raise not_declared("hcc3", self._id, Command.START)

    async def set_operative(self, operative: bool) -> None:
        """Not in :data:`COMMANDS`: the poller never calls it."""
        command = Command.OPERATIVE if operative else Command.INOPERATIVE
        raise not_declared("hcc3", self._id, command)

    def shows(self, reading: ChargerReading, command: Command, value: float | None) -> str | None:
        """Whether ``reading`` (a full read after the write) shows ``command`` in effect."""
        return state_shown("hcc3", reading, command, value, "the state")

    def _state(self, regs: Mapping[str, Decoded], letter: str | None) -> OperationState:
        if regs.get("error") or regs.get("state") == 6:
            return OperationState.UNSCHEDULED_DOWNTIME
        if letter is not None:
            return IEC_STATES[letter]
        raw = _int(regs.get("cp"))
        if raw is not None and raw not in self._unknown and len(self._unknown) < MAX_UNKNOWN_STATES:
            self._unknown.add(raw)
            log.warning("charger %s: unknown CP state %d (logged once)", self._id, raw)
        return OperationState.UNKNOWN
