"""A Modbus TCP device serving a recorded register dump (``fixtures/<driver>/registers.json``).

It is the simulator's :class:`~chargelift_simulator.modbus.ModbusServer` (framing and
fault switches) with a fixed table instead of a simulated charger: what a unit test of
a Modbus driver talks to, over 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from chargelift_simulator.faults import Fault, FaultSlot
from chargelift_simulator.modbus import (
    ILLEGAL_ADDRESS,
    ILLEGAL_FUNCTION,
    READ_HOLDING,
    READ_INPUT,
    ModbusServer,
)


class RecordedMap:
    """Registers from a dump; writes land in the holding table (and are recorded)."""

    name = "recorded"

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.input = {int(k): int(v) for k, v in doc.get("input", {}).items()}
        self.holding = {int(k): int(v) for k, v in doc.get("holding", {}).items()}
        self.writes: list[tuple[int, int]] = []

    def read(self, function: int, address: int, count: int) -> list[int] | int:
        if function == READ_INPUT:
            table = self.input
        elif function == READ_HOLDING:
            table = self.holding
        else:
            return ILLEGAL_FUNCTION
        wanted = range(address, address + count)
        if any(a not in table for a in wanted):
            return ILLEGAL_ADDRESS
        return [table[a] for a in wanted]

    def write(self, address: int, values: list[int]) -> int | None:
        for offset, value in enumerate(values):
            if address + offset not in self.holding:
                return ILLEGAL_ADDRESS
            self.holding[address + offset] = value
            self.writes.append((address + offset, value))
        return None


def load_dump(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict)
    return doc


@asynccontextmanager
async def recorded_device(
    doc: Mapping[str, Any], fault: Fault | None = None
) -> AsyncIterator[tuple[ModbusServer, RecordedMap]]:
    """Serve ``doc`` on a free port of 127.0.0.1 (``server.port``), with ``fault`` set."""
    regmap = RecordedMap(doc)
    faults = FaultSlot()
    if fault is not None:
        faults.set(fault)
    server = ModbusServer(regmap, faults, "127.0.0.1", 0, unit_id=int(doc.get("unit_id", 255)))
    await server.start()
    try:
        yield server, regmap
    finally:
        await server.close()
