"""Commands through the API: the request, its id, its status, and the way to the broker.

No HTTP and no SQL here (routes/commands.py and repository.py):

* :class:`CommandRequest` is the body of ``POST /api/v1/chargers/{id}/commands``;
  :func:`build` turns it into the contract's payload (``encode_command``: the same checks
  as the edge's, so what the API accepts the edge can parse).
* :func:`command_id_for` derives the id of a request with an ``Idempotency-Key``
  (the same token, charger and key give the same id); :func:`random_command_id` is the
  id of one without.
* :func:`derive_status` is a command's status from its results (docs/api.md,
  "Commands").
* :class:`CommandPublisher` holds the accepted commands in a bounded queue and
  publishes them, one after the other, QoS 1, not retained, once the broker is up; a
  command that could not be published before its ``ExpiresAt`` is dropped (the edge
  would refuse it anyway, and an edge with a slow clock might not).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from chargelift_api.metrics import ApiMetrics
from chargelift_contract.commands import (
    COMMAND_ID_RE,
    MAX_EXPIRY,
    Command,
    Outcome,
    command_topic,
    encode_command,
)
from chargelift_runtime.mqtt import MqttError, PublishRefusedError

log = logging.getLogger(__name__)

ApiCommand = Literal[
    "set_current_limit", "pause", "resume", "stop", "start", "set_operative", "set_inoperative"
]

#: The API's names of the contract's commands.
COMMANDS: dict[str, Command] = {
    "set_current_limit": Command.CURRENT_LIMIT,
    "pause": Command.PAUSE,
    "resume": Command.RESUME,
    "stop": Command.STOP,
    "start": Command.START,
    "set_operative": Command.OPERATIVE,
    "set_inoperative": Command.INOPERATIVE,
}
API_NAMES: dict[Command, str] = {c: name for name, c in COMMANDS.items()}

#: Prefix of every id the API makes.
ID_PREFIX = "api:"
#: The longest ``Idempotency-Key`` (printable ASCII).
MAX_IDEMPOTENCY_KEY = 255
DEFAULT_EXPIRES_IN = 60.0

Status = Literal["pending", "applied", "rejected", "expired", "failed"]


class CommandRequest(BaseModel):
    """What a client asks: a command, its value, its lease and how long it may wait."""

    # Strict: a string is not a number ("10" is refused, not read as 10 A).
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {"command": "set_current_limit", "value": 10, "valid_for": 300, "expires_in": 30},
                {"command": "pause"},
                {"command": "start"},
                {"command": "set_inoperative", "expires_in": 300},
            ]
        },
    )

    command: ApiCommand = Field(
        description="set_current_limit, pause, resume, stop (end the session), start (start a "
        "session on a charger with a vehicle plugged in), set_operative or set_inoperative "
        "(the charger's availability; inoperative: no new session, a running one may finish)"
    )
    value: StrictInt | StrictFloat | StrictBool | None = Field(
        None,
        description="set_current_limit: amperes per phase (the charger's own range is "
        "checked by the edge); the others: none, null or true",
    )
    valid_for: float | None = Field(
        None,
        description="set_current_limit only: a lease in seconds (5 to 86400); the limit "
        "reverts to the charger's default unless renewed in time",
    )
    expires_in: float = Field(
        DEFAULT_EXPIRES_IN,
        gt=0,
        le=MAX_EXPIRY.total_seconds(),
        description="seconds the command may wait to be applied; later the edge refuses it",
    )

    @property
    def contract_command(self) -> Command:
        return COMMANDS[self.command]

    def contract_value(self) -> float | None:
        """The value as the contract takes it (``true`` for the others means none)."""
        v = self.value
        if self.contract_command is not Command.CURRENT_LIMIT and v is True:
            return None
        return v  # a bool left here (a limit of true) is refused by the contract


@dataclass(frozen=True, slots=True)
class Built:
    """A request made into the contract's command."""

    command: Command
    value: float | None
    command_id: str
    issued_at: datetime
    expires_at: datetime
    valid_for: float | None
    issuer: str
    topic: str
    payload: bytes

    def outgoing(self) -> Outgoing:
        return Outgoing(self.topic, self.payload, self.command_id, self.expires_at)


def issuer_of(token_name: str) -> str:
    """The ``Issuer`` of the commands a token sends (the audit names it)."""
    return f"token:{token_name}"


def command_id_for(token_name: str, charger: str, key: str) -> str:
    """The id of a request with ``Idempotency-Key: key``: the same token, charger and key
    always give the same id; another token or charger a different one."""
    digest = hashlib.sha256(f"{token_name}\n{charger}\n{key}".encode()).hexdigest()
    return ID_PREFIX + digest


def random_command_id() -> str:
    """The id of a request without an ``Idempotency-Key``: fresh, 128 random bits."""
    return ID_PREFIX + secrets.token_hex(16)


def valid_idempotency_key(key: str) -> bool:
    """1-255 printable ASCII characters (RFC 9110 field values, without controls)."""
    return 0 < len(key) <= MAX_IDEMPOTENCY_KEY and all(" " <= ch <= "~" for ch in key)


def build(
    request: CommandRequest, charger: str, command_id: str, token_name: str, now: datetime
) -> Built:
    """The payload of ``request``; raises ``CommandError`` (a 422) with the contract's reason."""
    command = request.contract_command
    value = request.contract_value()
    expires_at = now + timedelta(seconds=request.expires_in)
    issuer = issuer_of(token_name)
    payload = encode_command(
        command,
        value,
        command_id=command_id,
        issued_at=now,
        expires_at=expires_at,
        valid_for=request.valid_for,
        issuer=issuer,
    )
    return Built(
        command=command,
        value=None if value is None else float(value),
        command_id=command_id,
        issued_at=now,
        expires_at=expires_at,
        valid_for=request.valid_for,
        issuer=issuer,
        topic=command_topic(charger, command),
        payload=payload,
    )


# --- stored commands and their status -------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandRow:
    """A row of ``commands``."""

    charger: str
    command_id: str
    command: str
    value: float | None
    issued_at: datetime
    expires_at: datetime
    valid_for: float | None
    issuer: str | None
    via: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class ResultRow:
    """A row of ``command_results``."""

    command_id: str
    outcome: str
    reason: str
    at: datetime
    value: float | None
    lease_end: datetime | None


def same_request(row: CommandRow, built: Built) -> bool:
    """True if ``row`` (stored under an ``Idempotency-Key``) asks what ``built`` asks:
    command, value, lease, issuer and the time it may wait (to the millisecond)."""
    waited = (row.expires_at - row.issued_at).total_seconds()
    asked = (built.expires_at - built.issued_at).total_seconds()
    return (
        row.command == built.command.value
        and row.value == built.value
        and row.valid_for == built.valid_for
        and row.issuer == built.issuer
        and abs(waited - asked) < 0.001
    )


def outgoing_of(row: CommandRow) -> Outgoing:
    """The message of a stored command (the same bytes as when it was accepted)."""
    command = Command(row.command)
    value = row.value
    payload = encode_command(
        command,
        value,
        command_id=row.command_id,
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        valid_for=row.valid_for,
        issuer=row.issuer,
    )
    return Outgoing(command_topic(row.charger, command), payload, row.command_id, row.expires_at)


@dataclass(frozen=True, slots=True)
class CommandStatus:
    """Where a command stands (docs/api.md, "Commands")."""

    status: Status
    reason: str | None = None
    result_at: datetime | None = None
    value: float | None = None
    lease_end: datetime | None = None
    reverted_at: datetime | None = None
    reverted_reason: str | None = None


#: Final outcomes in the order one is chosen if an edge ever reported two.
_FINAL: tuple[Outcome, ...] = (Outcome.APPLIED, Outcome.FAILED, Outcome.REJECTED, Outcome.EXPIRED)
EXPIRED_WITHOUT_RESULT = "not applied before it expired (no result from the edge)"


def derive_status(row: CommandRow, results: Sequence[ResultRow], now: datetime) -> CommandStatus:
    """The final outcome the edge reported, if any; else ``expired`` once ``now`` has
    reached ``expires_at`` (the edge can never apply it any more); else ``pending``.
    A ``reverted`` result (a lease that ran out) is reported beside ``applied``."""
    by = {r.outcome: r for r in results}
    reverted = by.get(Outcome.REVERTED.value)
    for outcome in _FINAL:
        r = by.get(outcome.value)
        if r is not None:
            return CommandStatus(
                status=outcome.value,  # type: ignore[arg-type]  # a member of Status
                reason=r.reason,
                result_at=r.at,
                value=r.value,
                lease_end=r.lease_end,
                reverted_at=None if reverted is None else reverted.at,
                reverted_reason=None if reverted is None else reverted.reason,
            )
    if now >= row.expires_at:
        return CommandStatus(status="expired", reason=EXPIRED_WITHOUT_RESULT)
    return CommandStatus(status="pending")


# --- the audit's pages ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page of the audit starts: after this command (newest first)."""

    received_at: datetime
    command_id: str

    def encode(self) -> str:
        raw = f"{self.received_at.isoformat()}|{self.command_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Raise ValueError unless ``text`` is a cursor this API made."""
        if len(text) > 200:
            raise ValueError("cursor too long")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("not a cursor") from None
        at, sep, command_id = raw.partition("|")
        if not sep or not COMMAND_ID_RE.fullmatch(command_id):
            raise ValueError("not a cursor")
        when = datetime.fromisoformat(at)  # ValueError if not a time
        if when.tzinfo is None:
            raise ValueError("not a cursor")
        return cls(when, command_id)


# --- the way to the broker --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A command waiting to be published."""

    topic: str
    payload: bytes
    command_id: str
    expires_at: datetime


class QueueFullError(Exception):
    """``API_CONTROL_QUEUE`` commands are waiting already."""


class Broker(Protocol):
    """What the publisher needs of :class:`chargelift_runtime.mqtt.MqttClient`."""

    @property
    def is_connected(self) -> bool: ...

    async def wait_connected(self) -> None: ...

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None: ...


#: Longest wait for one PUBACK before the publish is tried again (the edge removes
#: duplicates by command id).
PUBLISH_TIMEOUT_S = 10.0
#: Pause after a lost connection before waiting for the next one.
RETRY_PAUSE_S = 0.2


class CommandPublisher:
    """A bounded queue of accepted commands and the task that publishes them.

    :meth:`submit` never waits (a full queue is :class:`QueueFullError`, a 503);
    :meth:`run` publishes in order, each QoS 1 and not retained, waiting for the
    broker while it is down, and drops a command whose ``ExpiresAt`` has passed.
    """

    def __init__(
        self,
        broker: Broker,
        capacity: int,
        metrics: ApiMetrics,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        publish_timeout: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        self.broker = broker
        self.capacity = capacity
        self.metrics = metrics
        self.clock = clock
        self.publish_timeout = publish_timeout
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=capacity)

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self.broker.is_connected

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def has_room(self) -> bool:
        return not self._queue.full()

    def submit(self, item: Outgoing) -> None:
        """Queue ``item``; raise :class:`QueueFullError` if the queue is full."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.metrics.command_publish_failures.labels("queue_full").inc()
            raise QueueFullError from None
        self.metrics.command_queue_depth.set(self._queue.qsize())

    async def run(self) -> None:
        """Publish for ever (cancel to stop)."""
        while True:
            item = await self._queue.get()
            try:
                await self._send(item)
            finally:
                self._queue.task_done()
                self.metrics.command_queue_depth.set(self._queue.qsize())

    async def drain(self, seconds: float) -> bool:
        """Wait up to ``seconds`` until every queued command is handled; True if so."""
        try:
            async with asyncio.timeout(seconds):
                await self._queue.join()
        except TimeoutError:
            log.warning("commands: %d not published at shutdown", self._queue.qsize())
            return False
        return True

    def _remaining(self, item: Outgoing) -> float:
        return (item.expires_at - self.clock()).total_seconds()

    async def _send(self, item: Outgoing) -> None:
        while True:
            left = self._remaining(item)
            if left <= 0:
                self._expired(item)
                return
            try:
                async with asyncio.timeout(left):
                    await self.broker.wait_connected()
            except TimeoutError:
                self._expired(item)
                return
            try:
                async with asyncio.timeout(min(self.publish_timeout, max(left, 0.001))):
                    await self.broker.publish(item.topic, item.payload, qos=1, retain=False)
            except PublishRefusedError as exc:
                log.error("commands: %s %s: %s", item.topic, item.command_id, exc)
                self.metrics.command_publish_failures.labels("refused").inc()
                return
            except (MqttError, TimeoutError) as exc:
                log.warning("commands: %s %s not acknowledged (%s); retrying",
                            item.topic, item.command_id, type(exc).__name__)  # fmt: skip
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            self.metrics.commands_published.inc()
            return

    def _expired(self, item: Outgoing) -> None:
        log.warning(
            "commands: %s %s expired before the broker took it; not published",
            item.topic,
            item.command_id,
        )
        self.metrics.command_publish_failures.labels("expired").inc()
