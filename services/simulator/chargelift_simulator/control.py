"""The control endpoint: switch faults and force cars in or out, over JSON/HTTP.

Separate port, no authentication, so it binds to loopback unless told otherwise::

    GET  /chargers                 {"chargers": [{"id", "port", "url", "state", "plugged",
                                                  "fault": {"kind", "latency_s", "remaining"},
                                                  "dev_mode", "remote_current",
                                                  "current_limit", "writes",
                                                  "permanent_writes"}]}
    GET  /chargers/<id>            one of those objects
    POST /chargers/<id>/fault      body {"kind": "none"|"latency"|..., "latency_s": 0.0,
                                         "remaining": null|n, "raw": {key: text}}
                                   → the charger's object (raw: kind "crafted" only)
    POST /chargers/<id>/plug       a car arrives now   → {"changed": bool, "charger": {...}}
    POST /chargers/<id>/unplug     the car leaves now  → {"changed": bool, "charger": {...}}

``current_limit`` is the limit in force (A; 0 below 6 A), ``remote_current`` the
``RemoteCurr`` last written, ``writes`` the POSTs the box accepted (``permanent_writes``:
those with ``Permanent`` true).

Errors: 404 unknown charger or path, 405 wrong method, 400 bad body (``{"error": ...}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from chargelift_simulator.faults import Fault, FaultKind
from chargelift_simulator.mhcp import SimCharger
from chargelift_simulator.wire import Connection, HttpServer, Request, response

_FAULT_KEYS = frozenset({"kind", "latency_s", "remaining", "raw"})


def parse_fault(body: bytes) -> Fault:
    """A control-endpoint fault body → :class:`Fault` (ValueError with the reason)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("body is not JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("body is not a JSON object")  # noqa: TRY004 - answered as 400
    unknown = sorted(set(obj) - _FAULT_KEYS)
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(unknown)}")
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in FaultKind.__members__.values():
        raise ValueError(f"kind must be one of {', '.join(k.value for k in FaultKind)}")
    latency = obj.get("latency_s")
    try:
        raw = obj.get("raw") or {}
        if not isinstance(raw, dict):
            raise ValueError(  # noqa: TRY004 - answered as 400
                "raw must be an object of ChargeData key -> raw JSON text"
            )
        return Fault(
            FaultKind(kind),
            0.0 if latency is None else latency,
            obj.get("remaining"),
            tuple(raw.items()),
        )
    except TypeError as e:
        raise ValueError(str(e)) from None


class ControlServer:
    """Serves the control API for a fleet's chargers."""

    def __init__(
        self, chargers: Mapping[str, SimCharger], host: str, port: int, idle_timeout: float = 30.0
    ) -> None:
        self.chargers = chargers
        self.server = HttpServer(self.handle, host, port, idle_timeout=idle_timeout, name="control")

    @property
    def port(self) -> int:
        return self.server.port

    async def handle(self, request: Request, conn: Connection) -> bool:
        status, payload = self._route(request)
        body = orjson.dumps(payload)
        await conn.send(response(status, body, keep_alive=request.keep_alive))
        return request.keep_alive

    def _route(self, request: Request) -> tuple[int, Any]:
        parts = request.path.strip("/").split("/")
        if parts[0] != "chargers" or len(parts) > 3:
            return 404, {"error": "not found"}
        if len(parts) == 1:
            if request.method != "GET":
                return 405, {"error": "use GET"}
            return 200, {"chargers": [c.info() for c in self.chargers.values()]}
        charger = self.chargers.get(parts[1])
        if charger is None:
            return 404, {"error": f"no charger {parts[1]!r}"}
        if len(parts) == 2:
            if request.method != "GET":
                return 405, {"error": "use GET"}
            return 200, charger.info()
        action = parts[2]
        if action not in ("fault", "plug", "unplug"):
            return 404, {"error": "not found"}
        if request.method != "POST":
            return 405, {"error": "use POST"}
        if action == "fault":
            try:
                fault = parse_fault(request.body)
            except ValueError as e:
                return 400, {"error": str(e)}
            charger.set_fault(fault)
            return 200, charger.info()
        changed = charger.plug() if action == "plug" else charger.unplug()
        return 200, {"changed": changed, "charger": charger.info()}
