"""Mennekes AMTRON Xtra / Premium (controller HCC3) over MHCP, the ChargeApp's JSON/HTTP API.

Endpoints (port 25000; PIN1 — the "APP-Pin" — as query parameter ``DevKey``; the
device wants ``Accept: application/json``; a wrong PIN gives 403 on GET)::

    GET /MHCP/1.0/ChargeData?DevKey=<PIN>   every poll
    GET /MHCP/1.0/DevInfo?DevKey=<PIN>      full reads (start, recovery, each snapshot),
                                            and every poll while an error is reported

``ChargeData`` sample (a real Xtra, values of a charging session; annotations ours,
see docs/reference/charger-protocols.md §1.3)::

    {
      "ChgState": "Charging",  # Idle | StandbyConnect | StandbyAuthorize | Charging
                               #   | Paused | Terminated  (+ "Error", inferred from Modbus)
      "Tariff": "T1",          # tariff in force: T1 main, T2 off-peak
      "Price": 270,            # 0.1 ct/kWh          -> EnergyPrice 27.0 ct/kWh
      "Uid": "",               # RFID of the session (not published)
      "ChgDuration": 18613,    # s (unit inferred)   -> SessionDuration, current OR LAST session
      "ChgNrg": 12648,         # Wh                  -> SessionEnergy, current OR LAST session
      "ActPwr": 11040,         # W (unit inferred)   -> PowerOutput
      "ActCurr": 16,           # A per phase         -> OutputCurrent (docs: actual or set?)
      "MaxCurrT1": 16,         # A per phase, limit in tariff T1 (DevMode Time/HomeManager)
      "MaxCurrT2": 10,         # A per phase, limit in tariff T2
      "RemoteCurr": 16,        # A per phase, limit in DevMode Remote ("App control")
      "HCCP": "C21",           # HCC3 control-pilot state; first letter = IEC 61851 A-D
      "NrgDemand": 0, "Solar": 0, "EmTime": 1440, "RemTime": 1440, ...   # ignored
    }

``DevInfo`` sample (§1.4)::

    {"DevName": "Wall-e", "Hcc3": "HCC3 V1.13",  # -> FirmwareVersion
     "DevMode": "Remote",                         # Remote | HomeManager | Time
     "Err": 0,                                    # -> ErrorCode, 0 = none
     "ChgState": "Idle", "Phases": 3, "MaxCurr": 0, ...}

Writes (the :class:`~chargelift_poller.drivers.base.Controller` capability; §1.5 of
the reference; the same ``DevKey``; the box answers 200 without a body)::

    POST /MHCP/1.0/ChargeData?DevKey=<PIN>  {"Permanent": false, "RemoteCurr": 10}
                                            {"Permanent": false, "ChgState": "Pause"}
                                            (Start, Pause, Continue, Terminate)
    POST /MHCP/1.0/DevInfo?DevKey=<PIN>     {"Permanent": false, "DevMode": "Remote"}

``RemoteCurr`` is the limit only in ``DevMode`` Remote ("App control"): a limit write
first switches the box to Remote when the last DevInfo read showed another mode.
``Permanent`` (save to flash) is false unless the poller is told otherwise (the
chargers file's ``permanent_writes``): the box's flash is not worn by every change.
``MaxCurrWb`` of DevInfo is the box's own highest limit (:attr:`hardware_max_current`).
A wrong PIN answers 401 on POST (403 on GET).

Device quirks this driver respects:

* "Amtron wallboxes don't like to be stressed with requests": DevInfo is read only on
  full reads; the HTTP client is shared and keeps the connection alive.
* ``ChgNrg``/``ChgDuration`` keep the *last* session's values while idle; MHCP has no
  lifetime meter, so ``TotalEnergyConsumption`` is never published by this driver.
* The PIN is in the query string: no URL may ever be logged or put in an error
  message, which is why every httpx exception is translated ``from None``.

Hostile or broken answers (issue 14) end as a :class:`ChargerProtocolError` naming the
charger and the key, never as another exception: a body over :data:`MAX_BODY_BYTES`
(read in chunks, compressed bodies refused), NaN, ±Infinity, a number beyond ±2**53 (a
double's exact integers: ingest stores doubles; ``1e400``, ``2**70``, a 400-digit
``Price``), a string over :data:`MAX_STRING_CHARS`, a wrong type. Unknown ChgStates are
logged once each, at most :data:`MAX_UNKNOWN_STATES` of them, shortened.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, TypeVar

import httpx
import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from chargelift_contract import OperationState
from chargelift_contract.commands import Command
from chargelift_contract.envelope import Value
from chargelift_poller.drivers.base import not_declared, state_shown
from chargelift_poller.errors import (
    AuthError,
    ChargerConnectionError,
    ChargerHttpError,
    ChargerProtocolError,
    ChargerTimeoutError,
    ConfigError,
)
from chargelift_poller.models import MAX_MAGNITUDE, ChargerReading, DriverSpec

log = logging.getLogger(__name__)

DEFAULT_API_PATH = "/MHCP/1.0"
_OPTIONS = frozenset({"api_path"})

#: A real ChargeData is ~700 bytes, DevInfo ~600: anything this large is not MHCP.
MAX_BODY_BYTES = 64 * 1024
#: Longest string accepted in a key we read (states, tariff, firmware: a few characters).
MAX_STRING_CHARS = 256
#: Distinct unknown ChgStates remembered (each logged once); further ones are not logged.
MAX_UNKNOWN_STATES = 32
#: Characters of a vendor value shown in a log line.
_SHOWN_CHARS = 64


def _bounded(value: int | float) -> int | float:
    # An AfterValidator: its message (never the input) is in the ChargerProtocolError.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise ValueError("number out of range (beyond ±2**53)")
    return value


Number = Annotated[int | float, AfterValidator(_bounded)]
Integer = Annotated[int, AfterValidator(_bounded)]

#: MHCP ChgState → generic OperationState. Everything that is neither charging nor a
#: fault counts as "idle": the charger is available. ``Paused`` is usually the energy
#: manager (or the car) holding back, not a fault; ``Terminated`` means the session
#: ended and the car is still plugged in. ``Error`` exists in the HCC3 Modbus state
#: enum, so MHCP may report it too.
STATE_MAP: Mapping[str, OperationState] = MappingProxyType(
    {
        "Idle": OperationState.IDLE,
        "StandbyConnect": OperationState.IDLE,
        "StandbyAuthorize": OperationState.IDLE,
        "Charging": OperationState.CHARGING,
        "Paused": OperationState.IDLE,
        "Terminated": OperationState.IDLE,
        "Error": OperationState.UNSCHEDULED_DOWNTIME,
    }
)

#: States in which a vehicle is plugged in (StandbyConnect waits *for* the plug).
VEHICLE_STATES = frozenset({"StandbyAuthorize", "Charging", "Paused", "Terminated"})

#: HCCP's first letter is the IEC 61851 control-pilot state: A = no vehicle,
#: B = connected, C/D = charging (D: with ventilation).
_CP_CONNECTED = frozenset("BCD")


class _ChargeData(BaseModel):
    """The keys of ``GET ChargeData`` we use; others are ignored, wrong types rejected."""

    model_config = ConfigDict(
        strict=True, extra="ignore", frozen=True, str_max_length=MAX_STRING_CHARS
    )

    chg_state: str = Field(alias="ChgState")
    tariff: str | None = Field(default=None, alias="Tariff")
    price: Number | None = Field(default=None, alias="Price")
    chg_duration: Number | None = Field(default=None, alias="ChgDuration")
    chg_nrg: Number | None = Field(default=None, alias="ChgNrg")
    act_pwr: Number | None = Field(default=None, alias="ActPwr")
    act_curr: Number | None = Field(default=None, alias="ActCurr")
    max_curr_t1: Number | None = Field(default=None, alias="MaxCurrT1")
    max_curr_t2: Number | None = Field(default=None, alias="MaxCurrT2")
    remote_curr: Number | None = Field(default=None, alias="RemoteCurr")
    hccp: str | None = Field(default=None, alias="HCCP")


class _DevInfo(BaseModel):
    """The keys of ``GET DevInfo`` we use."""

    model_config = ConfigDict(
        strict=True, extra="ignore", frozen=True, str_max_length=MAX_STRING_CHARS
    )

    err: Integer | None = Field(default=None, alias="Err")
    hcc3: str | None = Field(default=None, alias="Hcc3")
    dev_mode: str | None = Field(default=None, alias="DevMode")
    max_curr_wb: Number | None = Field(default=None, alias="MaxCurrWb")


@dataclass(frozen=True, slots=True)
class _Sample:
    """What one read saw: ChargeData, the latest DevInfo, and whether it is from now."""

    charge: _ChargeData
    dev: _DevInfo | None
    dev_fresh: bool
    state: OperationState


def _vehicle_connected(s: _Sample) -> bool:
    cp = (s.charge.hccp or "")[:1]
    return s.charge.chg_state in VEHICLE_STATES or cp in _CP_CONNECTED


def _max_current(s: _Sample) -> Value:
    # In "Remote" (app control) mode RemoteCurr is the limit; in the other modes the
    # tariff in force selects MaxCurrT1/T2. DevMode comes from the last DevInfo read.
    if s.dev is not None and s.dev.dev_mode == "Remote":
        return s.charge.remote_curr
    match s.charge.tariff:
        case "T1":
            return s.charge.max_curr_t1
        case "T2":
            return s.charge.max_curr_t2
        case _:
            return None


def _price(s: _Sample) -> Value:
    return None if s.charge.price is None else s.charge.price / 10  # 0.1 ct/kWh -> ct/kWh


def _fresh_dev(read: Callable[[_DevInfo], Value]) -> Callable[[_Sample], Value]:
    # DevInfo fields are published only when DevInfo was read in this very poll, so that
    # their SamplingTime is honest.
    return lambda s: read(s.dev) if s.dev is not None and s.dev_fresh else None


@dataclass(frozen=True, slots=True)
class MhcpField:
    """How one catalogue field is read from an MHCP sample (``None``: not reported)."""

    name: str
    read: Callable[[_Sample], Value]


#: The MHCP → catalogue mapping; adding a field is one line.
FIELDS: tuple[MhcpField, ...] = (
    MhcpField("OperationState", lambda s: s.state.value),
    MhcpField("VendorState", lambda s: s.charge.chg_state),
    MhcpField("ConnectedVehicle", _vehicle_connected),
    MhcpField("PowerOutput", lambda s: s.charge.act_pwr),
    MhcpField("OutputCurrent", lambda s: s.charge.act_curr),
    MhcpField("MaximumOutputCurrent", _max_current),
    MhcpField("SessionEnergy", lambda s: s.charge.chg_nrg),
    MhcpField("SessionDuration", lambda s: s.charge.chg_duration),
    MhcpField("EnergyPrice", _price),
    MhcpField("Tariff", lambda s: s.charge.tariff),
    MhcpField("ErrorCode", _fresh_dev(lambda d: d.err)),
    MhcpField("FirmwareVersion", _fresh_dev(lambda d: d.hcc3)),
)

_M = TypeVar("_M", bound=BaseModel)
_DEVKEY = re.compile(r"(DevKey|Pin)=[^&\s]*", re.IGNORECASE)


#: The commands MHCP can apply (the Controller capability). Not Start (the reference
#: lists a ``ChgState`` "Start" but it needs a UID and is unconfirmed on real boxes),
#: nor Operative/Inoperative (MHCP has no availability switch): the poller rejects those
#: ("the mhcp driver cannot start a session") and sends nothing.
COMMANDS: frozenset[Command] = frozenset(
    {Command.CURRENT_LIMIT, Command.PAUSE, Command.RESUME, Command.STOP}
)


class MhcpDriver:
    """Reads an AMTRON Xtra/Premium over MHCP. Construction does no I/O."""

    #: What this driver can do of the commands (:data:`COMMANDS`).
    commands: frozenset[Command] = COMMANDS

    def __init__(self, spec: DriverSpec, http: httpx.AsyncClient) -> None:
        if spec.pin is None:
            raise ConfigError(spec.charger_id, "the MHCP driver needs a PIN (pin_env or pin_file)")
        unknown = set(spec.options) - _OPTIONS
        if unknown:
            raise ConfigError(
                spec.charger_id,
                f"unknown MHCP option(s) {sorted(unknown)}; known: {sorted(_OPTIONS)}",
            )
        if not spec.url.startswith(("http://", "https://")):
            raise ConfigError(spec.charger_id, "the MHCP url must start with http:// or https://")
        api_path = str(spec.options.get("api_path", DEFAULT_API_PATH))
        self._id = spec.charger_id
        self._base = spec.url.rstrip("/") + "/" + api_path.strip("/")
        self._pin = spec.pin
        self._pin_ref = spec.pin_ref
        self._clock = spec.clock
        self._http = http
        # Built once: URL parsing is a measurable share of a poll's CPU. The URLs hold
        # the PIN; they are never logged (see _get).
        self._urls = {
            endpoint: httpx.URL(
                f"{self._base}/{endpoint}", params={"DevKey": spec.pin.get_secret_value()}
            )
            for endpoint in ("ChargeData", "DevInfo")
        }
        # identity: the body bound counts what arrives; a compressed body could expand
        # a thousandfold past it.
        self._headers = httpx.Headers({"Accept": "application/json", "Accept-Encoding": "identity"})
        self._post_headers = httpx.Headers(
            {
                "Accept": "application/json",
                "Accept-Encoding": "identity",
                "Content-Type": "application/json",
            }
        )
        self._dev: _DevInfo | None = None
        self._in_error = False  # last ChargeData said "Error": read DevInfo every poll
        self._unknown_states: set[str] = set()

    async def read(self, *, full: bool) -> ChargerReading:
        """Read ChargeData (and DevInfo when ``full`` or while an error is reported)."""
        dev_fresh = full or self._dev is None or bool(self._dev.err) or self._in_error
        if dev_fresh:
            body = await self._get("DevInfo")
            self._dev = self._parse(_DevInfo, "DevInfo", body)
        body = await self._get("ChargeData")
        sampling_time = self._clock()  # the moment the response arrived
        charge = self._parse(_ChargeData, "ChargeData", body)
        self._in_error = charge.chg_state == "Error"
        sample = _Sample(charge, self._dev, dev_fresh, self._state(charge.chg_state))
        values: dict[str, Value] = {}
        for f in FIELDS:
            value = f.read(sample)
            if value is not None:
                values[f.name] = value
        return ChargerReading(sampling_time, values)

    # -- writes (Controller) ---------------------------------------------------------

    @property
    def hardware_max_current(self) -> float | None:
        """DevInfo ``MaxCurrWb`` of the last DevInfo read (A)."""
        dev = self._dev
        if dev is None or dev.max_curr_wb is None or dev.max_curr_wb <= 0:
            return None
        return float(dev.max_curr_wb)

    async def set_current_limit(self, amps: float, *, permanent: bool) -> None:
        """``RemoteCurr``, after switching ``DevMode`` to Remote if it is not."""
        if self._dev is None or self._dev.dev_mode != "Remote":
            await self._post("DevInfo", {"Permanent": permanent, "DevMode": "Remote"})
            self._dev = None  # read DevInfo again on the next read
        await self._post("ChargeData", {"Permanent": permanent, "RemoteCurr": amps})

    async def pause(self) -> None:
        await self._post("ChargeData", {"Permanent": False, "ChgState": "Pause"})

    async def resume(self) -> None:
        await self._post("ChargeData", {"Permanent": False, "ChgState": "Continue"})

    async def stop(self) -> None:
        await self._post("ChargeData", {"Permanent": False, "ChgState": "Terminate"})

    async def start(self) -> None:
        """Not in :data:`COMMANDS`: the poller never calls it."""
        raise not_declared("mhcp", self._id, Command.START)

    async def set_operative(self, operative: bool) -> None:
        """Not in :data:`COMMANDS`: the poller never calls it."""
        command = Command.OPERATIVE if operative else Command.INOPERATIVE
        raise not_declared("mhcp", self._id, command)

    def shows(self, reading: ChargerReading, command: Command, value: float | None) -> str | None:
        """Whether ``reading`` (a full read after the write) shows ``command`` in effect."""
        return state_shown("mhcp", reading, command, value, "ChgState")

    async def _post(self, endpoint: str, body: Mapping[str, object]) -> None:
        content = orjson.dumps(dict(body))
        try:
            async with self._http.stream(
                "POST",
                self._urls[endpoint],
                headers=self._post_headers,
                content=content,
            ) as response:
                status = response.status_code
                if status in (401, 403):
                    raise AuthError(
                        self._id,
                        f"POST {endpoint}: the charger refused the PIN (HTTP {status}); "
                        f"check {self._pin_ref}",
                    )
                if status != 200:
                    raise ChargerHttpError(self._id, f"POST {endpoint}: HTTP {status}")
                await self._body(endpoint, response)
        except httpx.TimeoutException:
            raise ChargerTimeoutError(self._id, f"POST {endpoint}: no answer in time") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise ConfigError(
                self._id, f"POST {endpoint}: the configured url is not usable"
            ) from None
        except httpx.TransportError as exc:
            raise ChargerConnectionError(
                self._id, f"POST {endpoint}: {type(exc).__name__}: {self._scrub(str(exc))}"
            ) from None
        except httpx.HTTPError as exc:
            raise ChargerProtocolError(
                self._id, f"POST {endpoint}: {type(exc).__name__}: {self._scrub(str(exc))[:200]}"
            ) from None

    def _state(self, vendor: str) -> OperationState:
        if self._dev is not None and self._dev.err:
            return OperationState.UNSCHEDULED_DOWNTIME
        state = STATE_MAP.get(vendor)
        if state is not None:
            return state
        if vendor not in self._unknown_states and len(self._unknown_states) < MAX_UNKNOWN_STATES:
            self._unknown_states.add(vendor)
            shown = repr(vendor[:_SHOWN_CHARS]) + ("..." if len(vendor) > _SHOWN_CHARS else "")
            log.warning(
                "charger %s: unknown MHCP ChgState %s, published as OperationState unknown "
                "(logged once per value%s)",
                self._id,
                shown,
                ""
                if len(self._unknown_states) < MAX_UNKNOWN_STATES
                else f"; the {MAX_UNKNOWN_STATES}th distinct one: further ones are not logged",
            )
        return OperationState.UNKNOWN

    async def _get(self, endpoint: str) -> bytes:
        try:
            async with self._http.stream(
                "GET", self._urls[endpoint], headers=self._headers
            ) as response:
                self._check_status(endpoint, response.status_code)
                return await self._body(endpoint, response)
        except httpx.TimeoutException:
            raise ChargerTimeoutError(self._id, f"{endpoint}: no answer in time") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise ConfigError(self._id, f"{endpoint}: the configured url is not usable") from None
        except httpx.TransportError as exc:
            raise ChargerConnectionError(
                self._id, f"{endpoint}: {type(exc).__name__}: {self._scrub(str(exc))}"
            ) from None
        except httpx.HTTPError as exc:  # e.g. DecodingError: an answer we cannot read
            raise ChargerProtocolError(
                self._id, f"{endpoint}: {type(exc).__name__}: {self._scrub(str(exc))[:200]}"
            ) from None

    def _check_status(self, endpoint: str, status: int) -> None:
        if status in (401, 403):
            raise AuthError(
                self._id,
                f"{endpoint}: the charger refused the PIN (HTTP {status}); check {self._pin_ref}",
            )
        if status == 404:
            raise ConfigError(
                self._id, f"{endpoint}: not found (HTTP 404); is {self._base} an MHCP charger?"
            )
        if status != 200:
            raise ChargerHttpError(self._id, f"{endpoint}: HTTP {status}")

    async def _body(self, endpoint: str, response: httpx.Response) -> bytes:
        """The body, read in chunks and refused beyond MAX_BODY_BYTES (memory stays bounded)."""
        too_large = ChargerProtocolError(
            self._id, f"{endpoint}: response body larger than {MAX_BODY_BYTES} bytes"
        )
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise ChargerProtocolError(
                self._id, f"{endpoint}: compressed response ({encoding[:20]!r}) not accepted"
            )
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():  # no decoding: identity only (above)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, model: type[_M], endpoint: str, body: bytes) -> _M:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            # Built from loc/msg only: pydantic's own text quotes the input.
            first = exc.errors(include_input=False, include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])[:_SHOWN_CHARS] or "body"
            raise ChargerProtocolError(
                self._id,
                f"{endpoint}: malformed response ({exc.error_count()} error(s); "
                f"{where}: {first['msg']})",
            ) from None

    def _scrub(self, text: str) -> str:
        text = _DEVKEY.sub(r"\1=***", text)
        return text.replace(self._pin.get_secret_value(), "***")
