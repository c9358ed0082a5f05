"""Capability protocols of drivers and the registry they are listed in.

A driver is one class per charger protocol. It is constructed with a
:class:`~chargelift_poller.models.DriverSpec` and an injected ``httpx.AsyncClient``
(an HTTP driver never makes one of its own; a driver of another protocol, Modbus TCP,
ignores it and owns its one connection, closed by :class:`Closeable`), returns typed
:class:`~chargelift_poller.models.ChargerReading` objects, raises only
:mod:`chargelift_poller.errors`, and knows nothing of MQTT, SQL or metrics.

Capabilities are small protocols: :class:`Driver` (``read``) is required; control
(:class:`Controller`) is optional and detected with ``isinstance(driver, Controller)``:
a charger whose driver lacks it rejects every command ("the driver cannot control this
charger"). A controller declares the commands it can apply (:attr:`Controller.commands`,
a frozenset constant of the class, e.g. MHCP's
:data:`~chargelift_poller.drivers.mhcp.COMMANDS`); any other command is rejected before
anything reaches the charger ("the mhcp driver cannot start a session"), so a driver
implements only the writes it declares (the methods of the others may raise).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import httpx

from chargelift_contract.commands import Command
from chargelift_poller.errors import ConfigError
from chargelift_poller.models import ChargerReading, DriverSpec

#: What each command asks of a charger, for the reason of a refusal ("the <driver>
#: driver cannot <action>").
ACTIONS: Mapping[Command, str] = MappingProxyType(
    {
        Command.CURRENT_LIMIT: "set a current limit",
        Command.PAUSE: "pause charging",
        Command.RESUME: "resume charging",
        Command.STOP: "stop a session",
        Command.START: "start a session",
        Command.OPERATIVE: "make a charger operative",
        Command.INOPERATIVE: "make a charger inoperative",
    }
)


def not_declared(driver: str, charger: str, command: Command) -> ConfigError:
    """The error of a write a driver does not declare (the poller never asks for it)."""
    return ConfigError(charger, f"the {driver} driver cannot {ACTIONS[command]}")


def limit_shown(reading: ChargerReading, value: float | None) -> str | None:
    """A CurrentLimit's read-back: ``None`` when the reading's ``MaximumOutputCurrent``
    is ``value`` (to 0.01 A), else what it shows instead."""
    limit = reading.values.get("MaximumOutputCurrent")
    if isinstance(limit, int | float) and value is not None and abs(limit - value) < 0.01:
        return None
    asked = "no value" if value is None else f"{value:g} A"
    return f"the charger reads back a limit of {limit!r} A, not {asked}"


def state_shown(
    driver: str, reading: ChargerReading, command: Command, value: float | None, label: str
) -> str | None:
    """The read-back of a driver whose ``VendorState`` says ``Charging`` and ``Paused``
    (MHCP ``ChgState``, HCC3's state): ``None`` when ``reading`` shows ``command`` in
    effect, else what it shows (``label`` names the state in the message)."""
    state = reading.values.get("VendorState")
    match command:
        case Command.CURRENT_LIMIT:
            return limit_shown(reading, value)
        case Command.PAUSE:
            ok = state != "Charging"
        case Command.RESUME:
            ok = state != "Paused"
        case Command.STOP:
            ok = state not in ("Charging", "Paused")
        case _:
            return f"the {driver} driver cannot {ACTIONS[command]}"
    return None if ok else f"the charger reads back {label} {state!r}"


class Driver(Protocol):
    """The one required capability: read the charger's current values."""

    async def read(self, *, full: bool) -> ChargerReading:
        """Read the charger.

        ``full`` is set for the first read, after a recovery and for every periodic
        snapshot: the driver then also reads what changes slowly (device info,
        firmware), which it may skip otherwise to spare the device.
        """
        ...


@runtime_checkable
class Controller(Protocol):
    """Optional capability: write to the charger (the poller's commands).

    Every write raises :class:`~chargelift_poller.errors.ChargerError` on failure. A
    write is not its confirmation: the poller reads the charger back afterwards and asks
    :meth:`shows` whether the reading shows the command in effect.
    """

    @property
    def commands(self) -> frozenset[Command]:
        """The commands this driver can apply (a class constant); the poller rejects any
        other at once, without a write."""
        ...

    @property
    def hardware_max_current(self) -> float | None:
        """The charger's own highest current limit (A), if a read has shown it."""
        ...

    async def set_current_limit(self, amps: float, *, permanent: bool) -> None:
        """Set the charging current limit per phase (A); ``permanent``: save it to flash."""
        ...

    async def pause(self) -> None:
        """Pause charging; the session stays open."""
        ...

    async def resume(self) -> None:
        """Resume a paused session."""
        ...

    async def stop(self) -> None:
        """End the session."""
        ...

    async def start(self) -> None:
        """Start a session (a vehicle is plugged in)."""
        ...

    async def set_operative(self, operative: bool) -> None:
        """Make the charger operative (``True``) or take it out of service (``False``)."""
        ...

    def shows(self, reading: ChargerReading, command: Command, value: float | None) -> str | None:
        """``None`` if ``reading`` shows ``command`` in effect, else what it shows instead."""
        ...


@runtime_checkable
class Closeable(Protocol):
    """Optional capability: the driver owns a connection (not the injected HTTP client).

    The poller calls :meth:`aclose` once at shutdown, after the last read or write.
    """

    async def aclose(self) -> None:
        """Close the driver's connection(s); never raises."""
        ...


class DriverFactory(Protocol):
    """How the registry builds a driver: usually the driver class itself."""

    def __call__(self, spec: DriverSpec, http: httpx.AsyncClient) -> Driver: ...


class DriverRegistryError(LookupError):
    """A driver name is registered twice, or is not registered at all."""


class DriverRegistry:
    """Explicit name → factory table. Names come from the chargers file, never the wire."""

    def __init__(self) -> None:
        self._factories: dict[str, DriverFactory] = {}

    def register(self, name: str, factory: DriverFactory) -> None:
        """Add a driver; registering a name twice is a programming error."""
        if name in self._factories:
            raise DriverRegistryError(f"driver {name!r} is already registered")
        self._factories[name] = factory

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._factories))

    def factory(self, name: str) -> DriverFactory:
        """The factory of ``name``; an unknown name raises, listing the known ones."""
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise DriverRegistryError(f"unknown driver {name!r}; known drivers: {known}") from None

    def create(self, name: str, spec: DriverSpec, http: httpx.AsyncClient) -> Driver:
        """Build the driver ``name`` for one charger."""
        return self.factory(name)(spec, http)
