"""A tiny OCPP 1.6J central system for the simulator's tests: records every call it gets.

``CentralSystem`` serves on 127.0.0.1 (a free port), answers every charge point call the
way a plain central system does (StartTransaction: the next transaction id) and keeps
``calls``: (charge point id, action, payload as on the wire) in arrival order, plus the
raw frames and the errors it answered. ``await cs.call(cp_id, payload)`` sends a call to a
connected charge point.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from ocpp.messages import MessageType, unpack
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from chargelift_simulator.ocpp_cp import on


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass
class Record:
    cp_id: str
    action: str
    payload: dict[str, Any]


@dataclass
class CentralSystem:
    heartbeat_interval: int = 30
    calls: list[Record] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)
    peer_subjects: list[Any] = field(default_factory=list)
    scheme: str = "ws"
    connected: dict[str, ChargePoint] = field(default_factory=dict)
    port: int = 0
    #: Answer this many handshakes 503 with ``Retry-After: retry_after`` (a busy gateway).
    busy: int = 0
    retry_after: int = 1
    #: When each handshake came (loop time).
    handshakes: list[float] = field(default_factory=list)
    _tx_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/ocpp"

    def actions(self, cp_id: str | None = None) -> list[str]:
        return [r.action for r in self.calls if cp_id is None or r.cp_id == cp_id]

    def of(self, action: str) -> list[dict[str, Any]]:
        return [r.payload for r in self.calls if r.action == action]

    async def call(self, cp_id: str, payload: Any) -> Any:
        return await self.connected[cp_id].call(payload)

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        self.handshakes.append(asyncio.get_running_loop().time())
        if self.busy > 0:
            self.busy -= 1
            response = ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "busy, retry later\n")
            response.headers["Retry-After"] = str(self.retry_after)
            return response
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        cp_id = ws.request.path.rstrip("/").rsplit("/", 1)[-1]
        self.auth_headers.append(ws.request.headers.get("Authorization"))
        peer = ws.transport.get_extra_info("peercert")
        if peer:
            self.peer_subjects.append(peer.get("subject"))
        cp = _Recorder(cp_id, ws, self)
        self.connected[cp_id] = cp
        try:
            await cp.start()
        except Exception:
            pass
        finally:
            if self.connected.get(cp_id) is cp:
                del self.connected[cp_id]


class _Recorder(ChargePoint):  # type: ignore[misc]
    def __init__(self, cp_id: str, ws: ServerConnection, cs: CentralSystem) -> None:
        super().__init__(cp_id, ws)
        self.cs = cs

    async def route_message(self, raw_msg: str) -> None:
        self.cs.raw.append(raw_msg)
        try:
            msg = unpack(raw_msg)
        except Exception:
            msg = None
        if msg is not None and msg.message_type_id == MessageType.Call:
            self.cs.calls.append(Record(self.id, msg.action, msg.payload))
        await super().route_message(raw_msg)

    @on(Action.boot_notification)
    def boot(self, **_: Any) -> Any:
        return call_result.BootNotification(
            current_time=_now(), interval=self.cs.heartbeat_interval, status="Accepted"
        )

    @on(Action.heartbeat)
    def heartbeat(self) -> Any:
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    def status(self, **_: Any) -> Any:
        return call_result.StatusNotification()

    @on(Action.authorize)
    def authorize(self, id_tag: str) -> Any:
        return call_result.Authorize(id_tag_info={"status": "Accepted"})

    @on(Action.start_transaction)
    def start_transaction(self, **_: Any) -> Any:
        return call_result.StartTransaction(
            transaction_id=next(self.cs._tx_ids), id_tag_info={"status": "Accepted"}
        )

    @on(Action.meter_values)
    def meter_values(self, **_: Any) -> Any:
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    def stop_transaction(self, **_: Any) -> Any:
        return call_result.StopTransaction()


@asynccontextmanager
async def central_system(
    tls: ssl.SSLContext | None = None, **kwargs: Any
) -> AsyncIterator[CentralSystem]:
    cs = CentralSystem(scheme="ws" if tls is None else "wss", **kwargs)
    async with serve(
        cs._handler,
        "127.0.0.1",
        0,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        ssl=tls,
        process_request=cs._process_request,
    ) as server:
        cs.port = next(iter(server.sockets)).getsockname()[1]
        yield cs
