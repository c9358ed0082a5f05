"""Blueprint: copy this file to add a driver (it is not registered).

Steps:

1. Copy to ``drivers/<protocol>.py`` and rename :class:`BlueprintDriver`.
2. At the top, show the endpoint and an annotated sample response *with units*, and
   record every device quirk you learn in a comment where the code deals with it.
3. Declare the mapping as a frozen table (:data:`FIELDS`): one line per catalogue field
   (``chargelift_contract.fields``). Map vendor states onto ``OperationState`` in a
   table; an unknown state becomes ``unknown`` and is logged once per value.
4. Translate every transport/parse error once into :mod:`chargelift_poller.errors`
   (``raise ... from None``; never put a URL that carries a secret in a message).
5. If the device can be written (current limit, pause, start, availability, ...),
   implement the :class:`~chargelift_poller.drivers.base.Controller` capability and
   declare what it can do as a class constant::

       COMMANDS: frozenset[Command] = frozenset({Command.CURRENT_LIMIT, Command.STOP})

       class YourDriver:
           commands: frozenset[Command] = COMMANDS

   The poller rejects every other command at once ("the <name> driver cannot start a
   session") and never calls its method, so those may simply raise
   :class:`~chargelift_poller.errors.ConfigError`. ``shows`` confirms each declared
   command from a reading. This example device is read-only: it declares nothing
   (:data:`COMMANDS` is empty) and is no Controller, so every command is rejected.
6. Register it in ``drivers/__init__.py``: ``REGISTRY.register("<name>", YourDriver)``.
7. Add recorded responses under ``tests/unit/poller/fixtures/<name>/`` (one file per
   endpoint, named after the last path segment, ``.json``) and unit tests of the
   mapping; the contract test (``tests/unit/poller/test_driver_contract.py``) then runs
   over the new driver automatically.

Not HTTP? (Modbus TCP: ``hcc3.py`` and ``bender.py`` over ``_modbus.py`` are the worked
example.) The steps above hold, with these differences:

a. The registry still passes the injected ``httpx.AsyncClient``; ignore it. Own ONE
   connection per device, opened lazily on the first request (construction does no
   I/O), reused across reads, and implement ``async aclose()`` (the optional
   :class:`~chargelift_poller.drivers.base.Closeable` capability): the poller calls it
   at shutdown. Drop the connection after a timeout, a cancellation or a broken answer
   (a late answer would answer the next request); the next read reopens it.
b. Set your client's timeout from ``spec.timeout`` (the chargers file's ``timeout``):
   there is no HTTP client to carry it. The coordinator's ``asyncio.timeout`` around
   ``read`` stays the outer bound.
c. Errors: the protocol's own error answers (a Modbus exception code) are
   :class:`~chargelift_poller.errors.ChargerDeviceError`, or ``ConfigError`` when they
   say the device lacks what was asked (no such register: wrong driver or firmware);
   ``ChargerHttpError`` and ``AuthError`` are HTTP's. Silence a library that logs every
   failure itself (``chargelift_runtime.logs.SILENCED_LOGGERS``).
d. Pace requests if the device needs it (a driver option, e.g. ``request_interval``),
   and declare word order and scaling in one register table, not in the field lambdas.
e. Step 6: record ``tests/unit/poller/fixtures/<name>/registers.json`` (a register
   dump) instead of one file per endpoint; the contract test serves it with a Modbus
   server on 127.0.0.1 and injects the simulator's faults. A protocol that is neither
   HTTP nor Modbus needs its own branch in the contract test.

The example device: ``GET <url>/api/status`` with header ``Authorization: Bearer <PIN>``::

    {"state": "charging",   # "available" | "charging" | "fault"
     "power_w": 7200,       # W
     "energy_wh": 5120}     # Wh, lifetime meter (never reset)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chargelift_contract import OperationState
from chargelift_contract.commands import Command
from chargelift_contract.envelope import Value
from chargelift_poller.errors import (
    AuthError,
    ChargerConnectionError,
    ChargerHttpError,
    ChargerProtocolError,
    ChargerTimeoutError,
    ConfigError,
)
from chargelift_poller.models import ChargerReading, DriverSpec

log = logging.getLogger(__name__)

#: The commands this driver can apply: none (read-only; see step 5).
COMMANDS: frozenset[Command] = frozenset()

STATE_MAP: Mapping[str, OperationState] = MappingProxyType(
    {
        "available": OperationState.IDLE,
        "charging": OperationState.CHARGING,
        "fault": OperationState.UNSCHEDULED_DOWNTIME,
    }
)


class _Status(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    state: str
    power_w: int | float | None = Field(default=None)
    energy_wh: int | float | None = Field(default=None)


@dataclass(frozen=True, slots=True)
class BlueprintField:
    """How one catalogue field is read from the device's payload."""

    name: str
    read: Callable[[_Status, OperationState], Value]


FIELDS: tuple[BlueprintField, ...] = (
    BlueprintField("OperationState", lambda _s, state: state.value),
    BlueprintField("VendorState", lambda s, _state: s.state),
    BlueprintField("PowerOutput", lambda s, _state: s.power_w),
    BlueprintField("TotalEnergyConsumption", lambda s, _state: s.energy_wh),
)


class BlueprintDriver:
    """Example driver; construction does no I/O, the HTTP client is injected."""

    def __init__(self, spec: DriverSpec, http: httpx.AsyncClient) -> None:
        if spec.pin is None:
            raise ConfigError(spec.charger_id, "this driver needs a PIN (pin_env or pin_file)")
        self._id = spec.charger_id
        self._url = spec.url.rstrip("/") + "/api/status"
        self._pin = spec.pin
        self._clock = spec.clock
        self._http = http
        self._unknown: set[str] = set()

    async def read(self, *, full: bool) -> ChargerReading:
        """One GET; this device has nothing slow to read, so ``full`` changes nothing."""
        try:
            response = await self._http.get(
                self._url, headers={"Authorization": f"Bearer {self._pin.get_secret_value()}"}
            )
        except httpx.TimeoutException:
            raise ChargerTimeoutError(self._id, "no answer in time") from None
        except httpx.TransportError as exc:
            raise ChargerConnectionError(self._id, type(exc).__name__) from None
        if response.status_code in (401, 403):
            raise AuthError(self._id, f"credentials refused (HTTP {response.status_code})")
        if response.status_code != 200:
            raise ChargerHttpError(self._id, f"HTTP {response.status_code}")
        sampling_time = self._clock()
        try:
            status = _Status.model_validate_json(response.content)
        except ValidationError as exc:
            raise ChargerProtocolError(
                self._id, f"malformed response ({exc.error_count()} error(s))"
            ) from None
        state = STATE_MAP.get(status.state)
        if state is None:
            state = OperationState.UNKNOWN
            if status.state not in self._unknown:
                self._unknown.add(status.state)
                log.warning("charger %s: unknown state %r (logged once)", self._id, status.state)
        values = {f.name: v for f in FIELDS if (v := f.read(status, state)) is not None}
        return ChargerReading(sampling_time, values)
