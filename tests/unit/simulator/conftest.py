"""Helpers for the simulator's unit tests: fleets on a manual clock, never bound to ports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chargelift_simulator import Fleet, FleetConfig
from chargelift_simulator.model import ChargerModel

#: A winter Monday noon, local time of the chargers (Europe/Berlin, CET = UTC+1).
WINTER_NOON = datetime(2026, 1, 12, 12, 0)


def manual_fleet(**overrides: Any) -> Fleet:
    """A one-charger fleet that moves only by ``step`` (construction does no I/O)."""
    config: dict[str, Any] = {
        "count": 1,
        "seed": 1,
        "start": WINTER_NOON,
        "auto_tick": False,
        "random_traffic": False,
    }
    config.update(overrides)
    return Fleet(FleetConfig(**config))


def charging(fleet: Fleet, *, soc: float = 0.1, capacity_wh: float = 200_000) -> ChargerModel:
    """Plug a car in (battery as given, so nothing tapers unless asked), let it ramp up."""
    model = fleet.chargers[0].model
    assert model.plug()
    vehicle = model.vehicle
    assert vehicle is not None
    vehicle.soc, vehicle.capacity_wh = soc, capacity_wh
    fleet.step(3)  # handshake
    fleet.step(10)  # ramp
    return model
