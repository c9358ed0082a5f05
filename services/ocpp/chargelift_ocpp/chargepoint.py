"""One OCPP 1.6J connection: the Central System's handlers for what a charge point sends.

:class:`OcppChargePoint` is an ``ocpp.v16.ChargePoint`` (schema validation, routing,
snake_case keyword arguments) with the gateway's rules on top:

- every handler passes the payload exactly as it came on the wire (camelCase) to the
  charge point's mapper and the readings to the :class:`~.sink.ReadingSink` before it
  answers; a sink that fails makes the answer an InternalError CALLERROR, so the charger
  sends the message again (nothing lost);
- a call that breaks the schema or names an unknown action gets the OCPP CALLERROR
  (``FormationViolation``, ``TypeConstraintViolation``, ``ProtocolError``;
  ``NotImplemented`` for an unknown action, ``NotSupported`` for a 1.6 action the
  gateway does not handle, as OCPP-J 1.6 defines them) with a short description
  (never the payload echoed back), is counted, and the connection carries on; a
  frame that is no OCPP message at all (not JSON, no unique id) is counted and
  dropped: it cannot be answered;
- a connection that sends faster than ``OCPP_MESSAGE_RATE`` is read more slowly
  (backpressure: nothing is dropped);
- StartTransaction answers the same transactionId to the same start (replays),
  StopTransaction answers Accepted to every stop, known or not
  (:mod:`~.transactions`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, MessageType, unpack
from ocpp.messages import _validate_payload as validate_payload
from ocpp.routing import on as _ocpp_on
from ocpp.v16 import ChargePoint
from ocpp.v16 import call_result as result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

from chargelift_ocpp.auth import printable
from chargelift_ocpp.metrics import OcppMetrics
from chargelift_ocpp.registry import ChargePointEntry
from chargelift_ocpp.sink import Mapper, ReadingSink
from chargelift_ocpp.transactions import TransactionStore

log = logging.getLogger(__name__)

#: OCPP-J: a unique id is a string of at most 36 characters.
MAX_UNIQUE_ID = 36
_MAX_CAUSE = 200
#: The OCPP 1.6J spelling of the library's error codes (it uses the 2.0 names).
_V16_CODES = {"FormatViolation": "FormationViolation"}

_V16_ACTIONS = frozenset(a.value for a in Action)

F = TypeVar("F", bound=Callable[..., Any])


def on(action: Action) -> Callable[[F], F]:
    """``ocpp.routing.on`` with its type (the library has no type hints)."""
    return cast(Callable[[F], F], _ocpp_on(action))


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; :meth:`delay` says how long to wait."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self._clock = rate, float(burst), clock
        self.tokens, self._at = float(burst), clock()

    def delay(self) -> float:
        """Take one token; the seconds until it was available (0: at once)."""
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class OcppChargePoint(ChargePoint):  # type: ignore[misc]  # ocpp has no type hints
    """The Central System side of one connected charge point."""

    def __init__(
        self,
        entry: ChargePointEntry,
        connection: Any,
        *,
        mapper: Mapper,
        mapping_error: type[Exception],
        sink: ReadingSink,
        transactions: TransactionStore,
        metrics: OcppMetrics,
        heartbeat_interval: int,
        id_tags: frozenset[str] = frozenset(),
        message_rate: float = 20.0,
        message_burst: int = 100,
        response_timeout: float = 30.0,
    ) -> None:
        super().__init__(entry.id, connection, response_timeout=response_timeout, logger=log)
        self.entry = entry
        self.mapper = mapper
        self.mapping_error = mapping_error
        self.sink = sink
        self.transactions = transactions
        self.metrics = metrics
        self.heartbeat_interval = heartbeat_interval
        self.id_tags = id_tags
        self._bucket = TokenBucket(message_rate, message_burst)
        #: The payload of the call being handled, as on the wire.
        self._payload: Mapping[str, Any] = {}
        #: When the message being handled was read from the connection (unix s).
        self._received_at: float | None = None

    # -- the receive loop and the error answers ---------------------------------------

    async def start(self) -> None:
        """Read and answer calls until the connection closes (ConnectionClosed)."""
        while True:
            message = await self._connection.recv()
            # Its readings' ocpp_reading_publish_seconds start here: schema validation (in
            # the library's thread pool), the rate limit, mapping and the outbox count.
            self._received_at = time.time()
            wait = self._bucket.delay()
            if wait > 0:
                self.metrics.rate_limited.inc()
                await asyncio.sleep(wait)
            await self.route_message(message)

    async def route_message(self, raw_msg: str | bytes) -> None:
        try:
            msg = unpack(raw_msg)
        except OCPPError as exc:
            self._unparseable(type(exc).__name__)
            return
        if msg.message_type_id != MessageType.Call:
            # An answer to a call of ours; dropped when no call waits (bounded queue).
            if self._call_lock.locked() and self._response_queue.qsize() < 8:
                self._response_queue.put_nowait(msg)
            return
        if not isinstance(msg.unique_id, str) or not 0 < len(msg.unique_id) <= MAX_UNIQUE_ID:
            self._unparseable("unique id")
            return
        if not isinstance(msg.action, str) or not isinstance(msg.payload, dict):
            await self._answer_error(msg.unique_id, "FormationViolation", "not an OCPP call")
            return
        if msg.action not in self.route_map:
            # OCPP-J 1.6, 4.2.3: NotImplemented = the action is not known, NotSupported =
            # known but not supported (the library answers the other way round).
            known = msg.action in _V16_ACTIONS
            code = "NotSupported" if known else "NotImplemented"
            await self._answer_error(msg.unique_id, code, f"{code}: no handler for this action")
            log.info("%s: %s answered %s", self.id, _action_label(msg), code)
            return
        try:
            await self._handle_call(msg)
        except OCPPError as exc:
            code = _V16_CODES.get(exc.code, exc.code)
            cause = exc.details.get("cause") if isinstance(exc.details, dict) else None
            await self._answer_error(msg.unique_id, code, exc.description, cause)
            log.info("%s: %s answered %s", self.id, _action_label(msg), code)
            return
        self.metrics.messages.labels(msg.action).inc()

    def _unparseable(self, why: str) -> None:
        self.metrics.unparseable.inc()
        log.warning("%s: dropped a frame that is no OCPP message (%s)", self.id, why)

    async def _answer_error(
        self, unique_id: str, code: str, description: str, cause: object = None
    ) -> None:
        details = {"cause": str(cause)[:_MAX_CAUSE]} if cause else {}
        await self._send(CallError(unique_id, code, description, details).to_json())

    async def _handle_call(self, msg: Call) -> None:
        """Validate, call the handler, validate and send its answer (``route_message``
        has checked that there is a handler; an invalid call raises OCPPError).

        The library's own ``_handle_call``, with three costs of its taken out (about
        half the CPU of a MeterValues call, docs/benchmarks.md "OCPP"): the schema
        validation runs here, not in the default thread pool (it holds the GIL either
        way; the hop added a thread switch each way, twice per call, and queued behind
        whatever else used the pool); only the top-level keys become snake_case keyword
        arguments (the handlers read nested values from the payload as on the wire);
        a handler's signature is not inspected on every call. No ``@after`` hooks.
        """
        self._payload = msg.payload
        handlers = self.route_map[msg.action]
        validate = not handlers.get("_skip_schema_validation", False)
        if validate:
            validate_payload(msg, self._ocpp_version)
        handler = handlers["_on_action"]
        try:
            response = handler(**_keyword_arguments(msg.payload))
            if inspect.isawaitable(response):
                response = await response
        except Exception as exc:
            # The library logs the whole message here; the payload is untrusted input.
            log.exception("%s: the %s handler failed", self.id, _action_label(msg))
            await self._send(msg.create_call_error(exc).to_json())
            return
        answer = msg.create_call_result(
            snake_to_camel_case(remove_nones(serialize_as_dict(response)))
        )
        if validate:
            validate_payload(answer, self._ocpp_version)
        await self._send(answer.to_json())

    async def _send(self, message: str) -> None:
        if message.startswith("[4,"):  # every CALLERROR we send, ours and the library's
            try:
                code = json.loads(message)[2]
            except (ValueError, IndexError):  # pragma: no cover - we built it
                code = "InternalError"
            self.metrics.call_errors.labels(str(code)).inc()
        await self._connection.send(message)

    # -- mapping ----------------------------------------------------------------------

    def _deliver(self, action: str, build: Callable[[], Sequence[Any]]) -> None:
        """Map one call and hand its readings to the sink (raises if the sink fails)."""
        try:
            readings = build()
        except self.mapping_error as exc:
            self.metrics.mapping_errors.labels(action).inc()
            log.warning("%s: %s not mapped: %s", self.id, action, str(exc)[:_MAX_CAUSE])
            return
        except Exception:
            # A bug of the mapper: an error answer would make the charger resend this
            # message for ever and hold back its queue behind it. Counted, logged, answered.
            self.metrics.mapping_errors.labels(action).inc()
            log.exception("%s: %s not mapped (mapper failed)", self.id, action)
            return
        listed = self.entry.chargers
        if listed:
            kept = [r for r in readings if r.charger in listed]
            if len(kept) != len(readings):
                self.metrics.readings_refused.inc(len(readings) - len(kept))
                log.warning(
                    "%s: %d readings for chargers it is not registered for, dropped",
                    self.id,
                    len(readings) - len(kept),
                )
            readings = kept
        if readings:
            self.sink.submit(readings, received_at=self._received_at)
            self.metrics.readings.inc(len(readings))

    def _id_tag_status(self, id_tag: str) -> AuthorizationStatus:
        if not self.id_tags or id_tag in self.id_tags:
            return AuthorizationStatus.accepted
        return AuthorizationStatus.invalid

    # -- the handlers -----------------------------------------------------------------

    @on(Action.boot_notification)
    def on_boot_notification(self, **_: Any) -> result.BootNotification:
        now, payload = _now(), self._payload
        self._deliver("BootNotification", lambda: self.mapper.boot_notification(payload, now))
        return result.BootNotification(
            current_time=_iso(now),
            interval=self.heartbeat_interval,
            status=RegistrationStatus.accepted,
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **_: Any) -> result.Heartbeat:
        return result.Heartbeat(current_time=_iso(_now()))

    @on(Action.status_notification)
    def on_status_notification(self, **_: Any) -> result.StatusNotification:
        now, payload = _now(), self._payload
        self._deliver("StatusNotification", lambda: self.mapper.status_notification(payload, now))
        return result.StatusNotification()

    @on(Action.meter_values)
    def on_meter_values(self, **_: Any) -> result.MeterValues:
        now, payload = _now(), self._payload
        self._deliver("MeterValues", lambda: self.mapper.meter_values(payload, now))
        return result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str, **_: Any) -> result.Authorize:
        now, payload = _now(), self._payload
        self._deliver("Authorize", lambda: self.mapper.authorize(payload, now))
        return result.Authorize(id_tag_info={"status": self._id_tag_status(id_tag)})

    @on(Action.start_transaction)
    def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any
    ) -> result.StartTransaction:
        now, payload = _now(), self._payload
        started = self.transactions.start(self.id, connector_id, timestamp, meter_start, id_tag)
        self.metrics.transactions.labels("started" if started.new else "replayed").inc()
        tx = started.transaction_id
        self._deliver("StartTransaction", lambda: self.mapper.start_transaction(payload, tx, now))
        return result.StartTransaction(
            transaction_id=tx, id_tag_info={"status": self._id_tag_status(id_tag)}
        )

    @on(Action.stop_transaction)
    def on_stop_transaction(
        self,
        transaction_id: int,
        meter_stop: int,
        timestamp: str,
        id_tag: str | None = None,
        **_: Any,
    ) -> result.StopTransaction:
        now, payload = _now(), self._payload
        outcome = self.transactions.stop(self.id, transaction_id, timestamp, meter_stop)
        self.metrics.transactions.labels(outcome).inc()
        # A replayed stop is delivered again: the gateway may have died after the store
        # committed it and before its readings reached the outbox. The same stop maps to
        # the same readings at the same instants, which ingest stores once.
        self._deliver("StopTransaction", lambda: self.mapper.stop_transaction(payload, now))
        # Accepted even for an unknown or stopped transaction: the charger must stop
        # re-sending it (OCPP 1.6, 5.16 / 4.10: the answer is about the id tag).
        if id_tag is None:
            return result.StopTransaction()
        return result.StopTransaction(id_tag_info={"status": AuthorizationStatus.accepted})


_SNAKE: dict[str, str] = {}


def _keyword_arguments(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level keys of a (schema-valid) payload in snake_case, as the library
    spells them (``connectorId`` -> ``connector_id``); the names are cached (a schema
    allows only its own keys, so the cache stays small)."""
    out: dict[str, Any] = {}
    for key, value in payload.items():
        name = _SNAKE.get(key)
        if name is None:
            name = next(iter(camel_to_snake_case({key: None})))
            if len(_SNAKE) < 1024:
                _SNAKE[key] = name
        out[name] = value
    return out


def _action_label(msg: Call) -> str:
    return printable(msg.action) if isinstance(msg.action, str) else "?"
