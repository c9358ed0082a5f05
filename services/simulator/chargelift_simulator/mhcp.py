"""One simulated box on its own TCP port: the MHCP API, its faults and its ground truth.

Endpoints (``docs/reference/charger-protocols.md`` §1; PIN1, the "APP-Pin", as the
query parameter ``DevKey`` on every request)::

    GET  /MHCP/1.0/ChargeData?DevKey=   live data          wrong/missing key → 403
    GET  /MHCP/1.0/DevInfo?DevKey=      device info        wrong/missing key → 403
    POST /MHCP/1.0/ChargeData?DevKey=   Start/Pause/Continue/Terminate, RemoteCurr, AutoChg
    POST /MHCP/1.0/DevInfo?DevKey=      DevMode, DevName, Battery (the rest is accepted)
                                        POST: wrong key → 401, bad body → 400, ok → 200

Quirks kept on purpose: the box answers JSON whatever ``Accept`` says (clients are told
to send ``Accept: application/json``; we do not insist), GET and POST disagree on the
status for a bad key (403 vs 401), and a successful POST answers 200 with no body.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from chargelift_simulator.faults import Fault, FaultKind, FaultSlot
from chargelift_simulator.modbus import ModbusServer, build_map
from chargelift_simulator.model import ChargerModel, ChgState, Command, DevMode, Session
from chargelift_simulator.truth import TruthLog
from chargelift_simulator.wire import Connection, HttpServer, Request, response

API = "/MHCP/1.0"
CHARGE_DATA = f"{API}/ChargeData"
DEV_INFO = f"{API}/DevInfo"

#: Unknown keys of every JSON type, appended by the ``extra_fields`` fault (a newer
#: firmware adds keys; a poller must ignore what it does not know).
EXTRA_FIELDS = (
    b'"FwBuild":"1.13.7-sim","XTemp":31.5,"XFlags":[1,2,3],"XDebug":{"Heap":23456},"XNull":null'
)

#: Highest RemoteCurr accepted; anything above MaxCurrWb is capped when applied.
MAX_REMOTE_CURR_A = 80.0


class InvalidBodyError(ValueError):
    """A POST body the box refuses with 400 (the message says why)."""


@dataclass(frozen=True, slots=True)
class ChargeDataPost:
    """``POST /ChargeData``; every field but ``Permanent`` may be null = no change."""

    permanent: bool
    remote_curr: float | None = None
    auto_chg: bool | None = None
    chg_state: Command | None = None
    uid: str | None = None


@dataclass(frozen=True, slots=True)
class DevInfoPost:
    """``POST /DevInfo``; only the fields the simulator acts on are kept."""

    dev_name: str | None = None
    battery_wh: int | None = None
    dev_mode: DevMode | None = None
    permanent: bool = False


def _object(body: bytes, allowed: frozenset[str]) -> dict[str, Any]:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidBodyError("body is not JSON") from None
    if not isinstance(obj, dict):
        raise InvalidBodyError("body is not a JSON object")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise InvalidBodyError(f"unknown keys: {', '.join(unknown)}")
    return obj


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _optional(obj: dict[str, Any], key: str, kind: type) -> Any:
    """``obj[key]`` if it is null/absent or of ``kind`` (bool is not an int here)."""
    value = obj.get(key)
    if value is None:
        return None
    ok = (
        isinstance(value, bool)
        if kind is bool
        else (isinstance(value, kind) and not isinstance(value, bool))
    )
    if not ok:
        raise InvalidBodyError(f"{key} has the wrong type")
    return value


_CHARGE_DATA_KEYS = frozenset({"Permanent", "RemoteCurr", "AutoChg", "ChgState", "Uid"})
_DEV_INFO_KEYS = frozenset(
    {
        "Permanent",
        "DevName",
        "LocTime",
        "Summer",
        "Tz",
        "FixedVehCosts",
        "OldVehCosts",
        "Battery",
        "DevMode",
    }
)


def parse_charge_data_post(body: bytes) -> ChargeDataPost:
    """Validate a ``POST /ChargeData`` body as strictly as the documented shape."""
    obj = _object(body, _CHARGE_DATA_KEYS)
    permanent = obj.get("Permanent")
    if not isinstance(permanent, bool):
        raise InvalidBodyError("Permanent must be true or false")
    remote = obj.get("RemoteCurr")
    if remote is not None and not (
        _is_number(remote) and math.isfinite(remote) and 0 <= remote <= MAX_REMOTE_CURR_A
    ):
        raise InvalidBodyError(f"RemoteCurr must be a number of A, 0..{MAX_REMOTE_CURR_A:g}")
    state = obj.get("ChgState")
    if state is not None and state not in Command.__members__.values():
        raise InvalidBodyError("ChgState must be Start, Pause, Continue, Terminate or null")
    return ChargeDataPost(
        permanent=permanent,
        remote_curr=remote,
        auto_chg=_optional(obj, "AutoChg", bool),
        chg_state=None if state is None else Command(state),
        uid=_optional(obj, "Uid", str),
    )


def parse_dev_info_post(body: bytes) -> DevInfoPost:
    """Validate a ``POST /DevInfo`` body; time and cost fields are checked, then ignored."""
    obj = _object(body, _DEV_INFO_KEYS)
    permanent = bool(_optional(obj, "Permanent", bool))
    _optional(obj, "Summer", bool)
    for key in ("Tz", "FixedVehCosts", "OldVehCosts"):
        value = obj.get(key)
        if value is not None and not _is_number(value):
            raise InvalidBodyError(f"{key} must be a number or null")
    loc_time = obj.get("LocTime")
    if loc_time is not None and not (_is_number(loc_time) or isinstance(loc_time, str)):
        raise InvalidBodyError("LocTime must be a timestamp or null")
    name = _optional(obj, "DevName", str)
    if name is not None and not 0 < len(name) <= 32:
        raise InvalidBodyError("DevName must have 1..32 characters")
    battery = _optional(obj, "Battery", int)
    if battery is not None and not 0 <= battery <= 250_000:
        raise InvalidBodyError("Battery must be 0..250000 Wh")
    mode = obj.get("DevMode")
    if mode is not None and mode not in DevMode.__members__.values():
        raise InvalidBodyError("DevMode must be Remote, HomeManager, Time or null")
    return DevInfoPost(
        dev_name=name,
        battery_wh=battery,
        dev_mode=None if mode is None else DevMode(mode),
        permanent=permanent,
    )


def _malformed(body: bytes) -> bytes:
    # What a flaky embedded JSON writer produces: the first key loses its opening quote.
    return b"{" + body[2:]


def _crafted(body: bytes, raw: tuple[tuple[str, str], ...]) -> bytes:
    # The real document, some values replaced by raw text (NaN, 1e400: not valid JSON, so
    # not something a JSON encoder can write).
    doc = orjson.loads(body)
    replaced = dict(raw)
    parts = [
        orjson.dumps(k) + b":" + (replaced[k].encode() if k in replaced else orjson.dumps(v))
        for k, v in doc.items()
    ]
    parts += [orjson.dumps(k) + b":" + v.encode() for k, v in raw if k not in doc]
    return b"{" + b",".join(parts) + b"}"


class SimCharger:
    """A simulated AMTRON: model + HTTP server + faults + ground truth. No I/O until started."""

    def __init__(
        self,
        model: ChargerModel,
        *,
        pin: str,
        host: str,
        port: int,
        truth_log: TruthLog,
        truth_memory: int | None = None,
        idle_timeout: float = 30.0,
        wall_clock: Callable[[], float] = time.time,
        modbus: Sequence[str] = (),
        modbus_ports: Sequence[int] | None = None,
    ) -> None:
        self.model = model
        self.id = model.id
        self.host = host
        self._pin = pin.encode()
        self._truth_log = truth_log
        self._truth_memory = truth_memory
        self._truth: list[bytes] = []
        self._id_json = orjson.dumps(self.id)
        self._wall_clock = wall_clock
        self._faults = FaultSlot()
        #: Successful POSTs (ChargeData and DevInfo): what a poller wrote to the box.
        self.writes = 0
        #: Successful POSTs that asked for the change to be saved to flash (Permanent).
        self.permanent_writes = 0
        self.server = HttpServer(self.handle, host, port, idle_timeout=idle_timeout, name=self.id)
        #: Modbus TCP servers by register map name (``hcc3``, ``bender``): same model,
        #: same fault switches, each on its own port (0: a free one).
        ports = list(modbus_ports) if modbus_ports is not None else [0] * len(modbus)
        self.modbus: dict[str, ModbusServer] = {
            name: ModbusServer(
                build_map(name, model),
                self._faults,
                host,
                mb_port,
                idle_timeout=idle_timeout,
                on_write=self._modbus_written,
            )
            for name, mb_port in zip(modbus, ports, strict=True)
        }

    def __repr__(self) -> str:  # never shows the PIN
        return f"SimCharger({self.id!r}, port={self.port}, state={self.state.value!r})"

    # -- what tests and the control endpoint see -----------------------------------

    @property
    def port(self) -> int:
        """The TCP port (the bound one once the fleet has started)."""
        return self.server.port

    @property
    def url(self) -> str:
        """Base URL a client uses, e.g. ``http://127.0.0.1:25000`` (no PIN, no path)."""
        host = self.host
        if host in ("0.0.0.0", "", "::"):  # noqa: S104 - mapping a wildcard to loopback
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def modbus_url(self, name: str) -> str:
        """``tcp://host:port`` of the Modbus server of map ``name`` (KeyError if none)."""
        host = self.url.split("//", 1)[1].rsplit(":", 1)[0]
        return f"tcp://{host}:{self.modbus[name].port}"

    async def start(self) -> None:
        """Bind the MHCP port and every Modbus port."""
        await self.server.start()
        for server in self.modbus.values():
            await server.start()

    async def close(self) -> None:
        """Close every port and connection."""
        for server in self.modbus.values():
            await server.close()
        await self.server.close()

    def _modbus_written(self) -> None:
        self.writes += 1

    @property
    def state(self) -> ChgState:
        """MHCP ``ChgState`` now (a ``str`` enum: ``charger.state == "Charging"``)."""
        return self.model.state

    @property
    def truth(self) -> list[dict[str, Any]]:
        """Every ChargeData object served, oldest first (bounded by ``truth_memory``)."""
        bodies = self._truth
        if self._truth_memory is not None:
            bodies = bodies[max(0, len(bodies) - self._truth_memory) :]
        return [orjson.loads(body) for body in bodies]

    @property
    def sessions(self) -> list[Session]:
        """Finished sessions (times in simulated seconds since the fleet's start)."""
        return list(self.model.sessions)

    @property
    def fault(self) -> Fault:
        """The fault in force (``remaining`` counts down)."""
        return self._faults.current

    def set_fault(self, fault: Fault) -> None:
        """Switch the fault in force; ``Fault()`` / ``Fault(FaultKind.NONE)`` heals."""
        self._faults.set(fault)

    def plug(self) -> bool:
        """Force a car to arrive now; False if one is plugged in already."""
        return self.model.plug()

    def unplug(self) -> bool:
        """Force the car to leave now; False if none is plugged in."""
        return self.model.unplug()

    def info(self) -> dict[str, Any]:
        """The control endpoint's view of this charger (``modbus``: only when it serves it)."""
        info = {
            "id": self.id,
            "port": self.port,
            "url": self.url,
            "state": self.state.value,
            "plugged": self.model.vehicle is not None,
            "fault": self.fault.to_json(),
            "dev_mode": self.model.settings.dev_mode.value,
            "remote_current": self.model.settings.remote_curr,
            "current_limit": self.model.limit_a(),
            "writes": self.writes,
            "permanent_writes": self.permanent_writes,
        }
        if self.modbus:
            info["modbus"] = {name: server.port for name, server in self.modbus.items()}
        return info

    # -- HTTP ----------------------------------------------------------------------

    async def handle(self, request: Request, conn: Connection) -> bool:
        """Answer one request (or misbehave); True keeps the connection open."""
        fault = self._faults.take()
        kind = fault.kind
        keep = request.keep_alive
        if kind is FaultKind.LATENCY:
            await asyncio.sleep(fault.latency_s)
            if conn.peer_gone():
                return False  # the client gave up: nothing served, nothing recorded
        elif kind is FaultKind.TIMEOUT:
            await conn.hold(fault.latency_s or None)
            return False
        elif kind is FaultKind.RESET:
            conn.reset()
            return False
        elif kind is FaultKind.HTTP500 or kind is FaultKind.EXCEPTION:
            await conn.send(response(500, b"", content_type="text/html", keep_alive=keep))
            return keep

        status, body, is_charge_data = self._route(request)
        if status == 200 and body:
            if kind is FaultKind.MALFORMED:
                body, is_charge_data = _malformed(body), False
            elif kind is FaultKind.TRUNCATED:
                half = body[: len(body) // 2]
                await conn.send(response(200, half, content_length=len(body), keep_alive=keep))
                return False
            elif kind is FaultKind.EXTRA_FIELDS:
                body = body[:-1] + b"," + EXTRA_FIELDS + b"}"
            elif kind is FaultKind.CRAFTED and is_charge_data:
                body, is_charge_data = _crafted(body, fault.raw), False
        # Errors and POST answers have no body; only a body is labelled JSON.
        content_type = "application/json" if body else "text/plain"
        await conn.send(response(status, body, content_type=content_type, keep_alive=keep))
        if is_charge_data:
            self._record(body)
        return keep

    def _authorised(self, request: Request) -> bool:
        key = request.query.get("DevKey")
        return key is not None and hmac.compare_digest(key.encode(), self._pin)

    def _route(self, request: Request) -> tuple[int, bytes, bool]:
        """(status, body, whether the body is a ChargeData object to record)."""
        path, method = request.path, request.method
        if path not in (CHARGE_DATA, DEV_INFO):
            return 404, b"", False
        if method == "GET":
            if not self._authorised(request):
                return 403, b"", False
            if path == CHARGE_DATA:
                return 200, orjson.dumps(self.model.charge_data()), True
            return 200, orjson.dumps(self.model.dev_info()), False
        if method == "POST":
            if not self._authorised(request):
                return 401, b"", False
            try:
                if path == CHARGE_DATA:
                    post = parse_charge_data_post(request.body)
                    self._apply_charge_data(post)
                    permanent = post.permanent
                else:
                    info = parse_dev_info_post(request.body)
                    self._apply_dev_info(info)
                    permanent = info.permanent
            except InvalidBodyError:
                return 400, b"", False
            self.writes += 1
            self.permanent_writes += int(permanent)
            return 200, b"", False
        return 405, b"", False

    def _apply_charge_data(self, post: ChargeDataPost) -> None:
        # "Permanent" only decides whether the box stores the value across a power
        # cycle; the simulator never power-cycles, so it has no visible effect.
        model = self.model
        if post.auto_chg is not None:
            model.set_auto_charge(post.auto_chg)
        if post.remote_curr is not None:
            model.set_remote_current(post.remote_curr)
        if post.chg_state is not None:
            model.command(post.chg_state, post.uid)

    def _apply_dev_info(self, post: DevInfoPost) -> None:
        settings = self.model.settings
        if post.dev_name is not None:
            settings.dev_name = post.dev_name
        if post.battery_wh is not None:
            settings.battery_wh = post.battery_wh
        if post.dev_mode is not None:
            self.model.set_dev_mode(post.dev_mode)

    def _record(self, body: bytes) -> None:
        self._truth_log.served(self._id_json, self._wall_clock(), self.model.clock.timestamp, body)
        limit = self._truth_memory
        if limit == 0:
            return
        truth = self._truth
        # An idle box serves the same bytes again and again: keep one object for them.
        truth.append(truth[-1] if truth and truth[-1] == body else body)
        if limit is not None and len(truth) > 2 * limit:
            del truth[: len(truth) - limit]  # amortised: trim once per `limit` appends
