"""What the Modbus TCP drivers (:mod:`.hcc3`, :mod:`.bender`) share.

* :class:`ModbusLink`: ONE TCP connection per device, opened on the first request and
  kept open; a minimum interval between two requests (``request_interval``); every
  pymodbus outcome translated once into :mod:`chargelift_poller.errors`. After anything
  but a clean exception response the connection is dropped (a late answer, half a
  frame or garbage would put the next request out of step) and reopened by the next
  request.
* :class:`Register` / :class:`Block`: a device's register table. A driver declares
  its registers (address, type, word order, scale) and the blocks they are read in;
  :func:`decode` turns the blocks' words into numbers and strings. No I/O.

Exception codes (Modbus application protocol 1.1b3, section 7) → errors:

====  ==========================  ==========================================
1     illegal function            :class:`ConfigError` (not this device's map)
2     illegal data address        :class:`ConfigError` (wrong map or firmware)
3     illegal data value          :class:`ChargerDeviceError`
4     server device failure       :class:`ChargerDeviceError`
5, 6  acknowledge / busy          :class:`ChargerDeviceError`
10,11 gateway path / target       :class:`ChargerDeviceError` (check ``unit_id``)
====  ==========================  ==========================================

A timeout is :class:`ChargerTimeoutError`; refused, reset or closed is
:class:`ChargerConnectionError`; a short, garbage or wrong-length answer is
:class:`ChargerProtocolError`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from chargelift_poller.errors import (
    ChargerConnectionError,
    ChargerDeviceError,
    ChargerProtocolError,
    ChargerTimeoutError,
    ConfigError,
)
from chargelift_poller.models import DriverSpec

log = logging.getLogger(__name__)

DEFAULT_PORT = 502
#: Options every Modbus driver accepts (``[chargers.options]``).
OPTIONS = frozenset({"unit_id", "request_interval"})
#: Seconds between two requests to one device unless configured: the Amtron boxes are
#: known not to like being stressed, and some serve one client at a time.
DEFAULT_REQUEST_INTERVAL = 0.1

Function = Literal["input", "holding"]
Kind = Literal["u16", "u32", "string"]

_EXCEPTIONS: Mapping[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge (busy with a long operation)",
    6: "server device busy",
    10: "gateway path unavailable (check unit_id)",
    11: "gateway target device failed to respond (check unit_id)",
}


@dataclass(frozen=True, slots=True)
class Register:
    """One value of a device's map.

    ``u32`` is two registers; ``low_word_first`` says their order (HCC3: yes, Bender:
    no). ``scale`` multiplies the raw integer (mA → A: 0.001). ``invalid``: the raw
    value the device sends for "no value" (Bender: 0xFFFFFFFF); it decodes to ``None``.
    ``string`` is ``words`` registers of ASCII, two bytes each (``byte_swapped``: the
    low byte first, as the HCC3 sends them), NUL-padded.
    """

    key: str
    address: int
    kind: Kind = "u16"
    words: int = 1
    scale: float = 1.0
    low_word_first: bool = False
    byte_swapped: bool = False
    invalid: int | None = None

    def __post_init__(self) -> None:
        if self.kind == "u32":
            object.__setattr__(self, "words", 2)


@dataclass(frozen=True, slots=True)
class Block:
    """Consecutive registers read with one request (at most 125)."""

    function: Function
    start: int
    count: int
    #: Read only on full reads (device info that does not change).
    full_only: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.count <= 125:
            raise ValueError(f"a block is 1..125 registers, not {self.count}")

    def holds(self, register: Register) -> bool:
        return self.start <= register.address and (
            register.address + register.words <= self.start + self.count
        )


Decoded = int | float | str | None


def decode(
    registers: Sequence[Register], blocks: Mapping[Block, Sequence[int]]
) -> dict[str, Decoded]:
    """Each register's value from the words read (registers of unread blocks: absent)."""
    out: dict[str, Decoded] = {}
    for reg in registers:
        for block, words in blocks.items():
            if not block.holds(reg):
                continue
            offset = reg.address - block.start
            out[reg.key] = _value(reg, words[offset : offset + reg.words])
            break
    return out


def _value(reg: Register, words: Sequence[int]) -> Decoded:
    if reg.kind == "string":
        raw = bytearray()
        for w in words:
            hi, lo = w >> 8, w & 0xFF
            raw += bytes((lo, hi) if reg.byte_swapped else (hi, lo))
        text = raw.split(b"\x00", 1)[0].decode("ascii", "replace")
        # A control character or a replaced byte is not a name: keep what is printable.
        return "".join(c for c in text if c.isprintable() and c != "\ufffd").strip()
    if reg.kind == "u32":
        first, second = words
        raw_int = (second << 16) | first if reg.low_word_first else (first << 16) | second
    else:
        raw_int = words[0]
    if reg.invalid is not None and raw_int == reg.invalid:
        return None
    if reg.scale == 1.0:
        return raw_int
    return round(raw_int * reg.scale, 6)


def parse_url(spec: DriverSpec) -> tuple[str, int]:
    """``tcp://host[:port]`` → (host, port); anything else is a :class:`ConfigError`."""
    try:
        parts = urlsplit(spec.url)
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ConfigError(spec.charger_id, "the url is not tcp://host[:port]") from None
    if parts.scheme != "tcp" or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(spec.charger_id, "a Modbus url is tcp://host[:port] (port 502)")
    return parts.hostname, port


def _int_option(spec: DriverSpec, key: str, default: int, low: int, high: int) -> int:
    value = spec.options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(spec.charger_id, f"option {key} must be an integer {low}..{high}")
    return value


def _float_option(spec: DriverSpec, key: str, default: float, low: float, high: float) -> float:
    value = spec.options.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and low <= value <= high)
    ):
        raise ConfigError(spec.charger_id, f"option {key} must be a number {low:g}..{high:g}")
    return float(value)


def check_options(spec: DriverSpec, known: frozenset[str], driver: str) -> None:
    unknown = set(spec.options) - known
    if unknown:
        raise ConfigError(
            spec.charger_id,
            f"unknown {driver} option(s) {sorted(unknown)}; known: {sorted(known)}",
        )


class ModbusLink:
    """One device's Modbus TCP connection. Construction does no I/O."""

    def __init__(self, spec: DriverSpec, *, default_unit_id: int) -> None:
        self.charger_id = spec.charger_id
        self.host, self.port = parse_url(spec)
        self.unit_id = _int_option(spec, "unit_id", default_unit_id, 0, 255)
        self.request_interval = _float_option(
            spec, "request_interval", DEFAULT_REQUEST_INTERVAL, 0.0, 60.0
        )
        self.timeout = spec.timeout
        self._client: AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()
        self._last = -math.inf  # monotonic time the last request ended
        #: Requests sent (what tests and the benchmark count).
        self.requests = 0

    async def read(self, block: Block) -> list[int]:
        """The block's registers."""
        what = f"read {block.function} {block.start}+{block.count}"
        response = await self._request(what, block)
        registers = list(getattr(response, "registers", None) or [])
        if len(registers) != block.count or any(
            not isinstance(r, int) or not 0 <= r <= 0xFFFF for r in registers
        ):
            self._drop()
            raise ChargerProtocolError(
                self.charger_id, f"{what}: {len(registers)} register(s) in the answer"
            )
        return registers

    async def write(self, address: int, value: int) -> None:
        """Write one holding register (function 6)."""
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"register value {value} out of range")
        await self._request(f"write {address}={value}", (address, value))

    async def aclose(self) -> None:
        """Close the connection (the poller calls it at shutdown)."""
        self._drop()

    # -- internals -----------------------------------------------------------------

    async def _request(self, what: str, op: Block | tuple[int, int]) -> ModbusPDU:
        async with self._lock:
            wait = self._last + self.request_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                return await self._send(what, op)
            finally:
                self._last = time.monotonic()

    async def _send(self, what: str, op: Block | tuple[int, int]) -> ModbusPDU:
        client = await self._connected()
        self.requests += 1
        done = False
        try:
            if isinstance(op, Block):
                call = (
                    client.read_input_registers
                    if op.function == "input"
                    else client.read_holding_registers
                )
                response = await call(op.start, count=op.count, device_id=self.unit_id)
            else:
                response = await client.write_register(op[0], op[1], device_id=self.unit_id)
            done = True
        except ConnectionException:
            raise ChargerConnectionError(self.charger_id, f"{what}: connection closed") from None
        except ModbusIOException as exc:
            # pymodbus: no (complete) answer within the timeout, or the link died.
            if "closed" in str(exc).lower() or not client.connected:
                raise ChargerConnectionError(self.charger_id, f"{what}: connection lost") from None
            raise ChargerTimeoutError(self.charger_id, f"{what}: no answer in time") from None
        except ModbusException as exc:
            raise ChargerProtocolError(self.charger_id, f"{what}: {type(exc).__name__}") from None
        except (OSError, asyncio.IncompleteReadError):
            raise ChargerConnectionError(self.charger_id, f"{what}: connection lost") from None
        except Exception:  # noqa: BLE001 - a frame pymodbus could not decode (garbage)
            raise ChargerProtocolError(self.charger_id, f"{what}: undecodable answer") from None
        finally:
            if not done:
                self._drop()  # cancelled too: a late answer would answer the next request
        if response.isError():
            code = int(getattr(response, "exception_code", 0) or 0)
            name = _EXCEPTIONS.get(code, "unknown exception code")
            message = f"{what}: exception {code} ({name})"
            if code in (1, 2):
                raise ConfigError(
                    self.charger_id,
                    f"{message}: the device does not have this register (driver, unit_id "
                    "or firmware)",
                )
            raise ChargerDeviceError(self.charger_id, message)
        return response

    async def _connected(self) -> AsyncModbusTcpClient:
        client = self._client
        if client is not None and client.connected:
            return client
        self._drop()
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            timeout=self.timeout,
            retries=0,
            # No reconnecting behind our back: the coordinator decides when to retry.
            reconnect_delay=0,
            reconnect_delay_max=0,
        )
        try:
            ok = await client.connect()
        except Exception:  # noqa: BLE001 - whatever the connect failed with, the charger is down
            ok = False
        if not ok:
            client.close()
            raise ChargerConnectionError(self.charger_id, "cannot connect (refused or unreachable)")
        self._client = client
        return client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # noqa: BLE001 - closing must not fail a poll
                log.debug("charger %s: closing the Modbus connection: %r", self.charger_id, exc)
