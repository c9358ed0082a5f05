"""Commands to a charger and their results: topics, payloads, outcomes (no I/O).

Layout::

    chargers/{charger}/set/{Command}      a command (QoS 1, never retained)
    chargers/{charger}/result/{Command}   its result (QoS 1, never retained)

Commands (``{Command}``, PascalCase like a field):

==============  ==========================  ==========================================
Command         ``Value``                   Effect
==============  ==========================  ==========================================
CurrentLimit    number, amperes per phase   set the charging current limit
Pause           ``null`` or ``true``        pause charging (the session stays open)
Resume          ``null`` or ``true``        resume a paused session
Stop            ``null`` or ``true``        end the session
Start           ``null`` or ``true``        start a session (a vehicle must be plugged in)
Operative       ``null`` or ``true``        make the charger available again
Inoperative     ``null`` or ``true``        take the charger out of service (no new
                                            session; a running one may finish first)
==============  ==========================  ==========================================

A command's payload is a JSON object::

    {"Value": 10,                              required (null for all but CurrentLimit)
     "CommandId": "evcc-7f3a",                 optional; 1-80 of A-Z a-z 0-9 . _ : -
     "IssuedAt": "2026-12-02T10:00:00Z",       optional RFC 3339
     "ExpiresAt": "2026-12-02T10:01:00Z",      optional; default IssuedAt + 60 s
     "ValidFor": 300,                          CurrentLimit only: a lease, in seconds
     "Issuer": "evcc"}                         optional; who sent it, for the audit

Without a ``CommandId`` the id is derived from the topic and the payload's bytes
(``sha256:…``), so a message delivered twice is one command; a client that repeats a
command on purpose gives it a new ``CommandId`` or ``IssuedAt``. Without ``IssuedAt``
the receiver's clock at receipt stands in for it.

A result's payload::

    {"CommandId": "evcc-7f3a", "Outcome": "applied", "Reason": "...",
     "At": "2026-12-02T10:00:01.250000Z", "Value": 10, "LeaseEnd": "..."}

``Outcome`` is one of :class:`Outcome`; ``Value`` is what is in force afterwards (for
CurrentLimit) and ``LeaseEnd`` when the limit reverts unless renewed. ``reverted`` is
the second result of a CurrentLimit whose lease ran out: the charger went back to its
default limit.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

from chargelift_contract.envelope import EnvelopeError, format_time, parse_time
from chargelift_contract.errors import ContractError
from chargelift_contract.topics import ROOT, TopicError, quoted, validate_charger_id

SET = "set"
RESULT = "result"


class Command(StrEnum):
    """What a controller may ask of a charger."""

    CURRENT_LIMIT = "CurrentLimit"
    PAUSE = "Pause"
    RESUME = "Resume"
    STOP = "Stop"
    START = "Start"
    OPERATIVE = "Operative"
    INOPERATIVE = "Inoperative"


class Outcome(StrEnum):
    """How a command ended. ``reverted`` follows ``applied`` when a lease runs out."""

    APPLIED = "applied"
    REJECTED = "rejected"
    EXPIRED = "expired"
    FAILED = "failed"
    REVERTED = "reverted"


class CommandError(ContractError):
    """A command or result topic or payload does not follow the contract."""


#: A command's life when its sender gives no ``ExpiresAt``.
DEFAULT_EXPIRY = timedelta(seconds=60)
#: The longest a command may wait to be applied (``ExpiresAt - IssuedAt``).
MAX_EXPIRY = timedelta(hours=24)
#: The longest lease (``ValidFor``), in seconds.
MAX_VALID_FOR = 86_400.0
#: The shortest lease, in seconds: the edge needs time to apply and renew.
MIN_VALID_FOR = 5.0
#: The largest command or result payload, in bytes.
MAX_COMMAND_BYTES = 4096
#: The most characters of a command id (a derived id has 71).
MAX_COMMAND_ID_CHARS = 80
COMMAND_ID_PATTERN = rf"[A-Za-z0-9._:-]{{1,{MAX_COMMAND_ID_CHARS}}}"
COMMAND_ID_RE = re.compile(COMMAND_ID_PATTERN)
#: The most characters of an issuer and of a result's reason.
MAX_ISSUER_CHARS = 128
MAX_REASON_CHARS = 500
#: The widest current limit the contract accepts at all (a charger's own range is
#: narrower; the edge checks it).
MAX_CURRENT_A = 3000.0

_DERIVED_PREFIX = "sha256:"


@dataclass(frozen=True, slots=True)
class CommandTopic:
    """``chargers/{charger}/set/{command}``."""

    charger: str
    command: Command

    def __str__(self) -> str:
        return f"{ROOT}/{self.charger}/{SET}/{self.command.value}"


@dataclass(frozen=True, slots=True)
class ResultTopic:
    """``chargers/{charger}/result/{command}``."""

    charger: str
    command: Command

    def __str__(self) -> str:
        return f"{ROOT}/{self.charger}/{RESULT}/{self.command.value}"


def command_topic(charger: str, command: Command) -> str:
    return str(CommandTopic(validate_charger_id(charger), Command(command)))


def result_topic(charger: str, command: Command) -> str:
    return str(ResultTopic(validate_charger_id(charger), Command(command)))


def command_filter(charger: str) -> str:
    """Subscription filter for every command to one charger."""
    return f"{ROOT}/{validate_charger_id(charger)}/{SET}/+"


def result_filter(charger: str) -> str:
    """Subscription filter for every result of one charger."""
    return f"{ROOT}/{validate_charger_id(charger)}/{RESULT}/+"


#: Every command and every result, of every charger.
ALL_COMMANDS = f"{ROOT}/+/{SET}/+"
ALL_RESULTS = f"{ROOT}/+/{RESULT}/+"


def is_command_or_result_topic(topic: str) -> bool:
    """True for ``chargers/x/set/y`` and ``chargers/x/result/y`` shapes (not validated)."""
    parts = topic.split("/")
    return len(parts) == 4 and parts[0] == ROOT and parts[2] in (SET, RESULT)


def parse_command_topic(topic: str) -> CommandTopic | ResultTopic:
    """Parse a set or result topic; raise :class:`TopicError` with the reason if it is not."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != ROOT or parts[2] not in (SET, RESULT):
        raise TopicError(f"topic {quoted(topic)} is not chargers/<charger>/set|result/<Command>")
    _, charger, kind, leaf = parts
    validate_charger_id(charger)
    try:
        command = Command(leaf)
    except ValueError:
        known = ", ".join(c.value for c in Command)
        raise TopicError(f"unknown command {quoted(leaf)}; known: {known}") from None
    return CommandTopic(charger, command) if kind == SET else ResultTopic(charger, command)


@dataclass(frozen=True, slots=True)
class CommandMessage:
    """A command, validated. ``expires_at`` is always set (defaulted on parsing)."""

    charger: str
    command: Command
    value: float | None
    command_id: str
    issued_at: datetime
    expires_at: datetime
    valid_for: float | None = None
    issuer: str | None = None

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def _check_id(command_id: object) -> str:
    if not isinstance(command_id, str) or not COMMAND_ID_RE.fullmatch(command_id):
        shown = quoted(command_id) if isinstance(command_id, str) else type(command_id).__name__
        raise CommandError(
            f"CommandId {shown} must be 1-{MAX_COMMAND_ID_CHARS} of A-Z a-z 0-9 . _ : -"
        )
    return command_id


def check_command_id(command_id: str) -> str:
    """Return ``command_id`` if it is a valid command id, else raise :class:`CommandError`."""
    return _check_id(command_id)


def _check_value(command: Command, value: object) -> float | None:
    if command is Command.CURRENT_LIMIT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CommandError("CurrentLimit: Value must be a number of amperes")
        limit = float(value)
        if not math.isfinite(limit) or not 0 < limit <= MAX_CURRENT_A:
            raise CommandError(
                f"CurrentLimit: Value {value!r} is not a current above 0 and at most "
                f"{MAX_CURRENT_A:g} A"
            )
        return limit
    if value is None or value is True:
        return None
    raise CommandError(f"{command.value}: Value must be null or true, not {value!r}")


def _time(doc: dict[str, Any], key: str) -> datetime | None:
    raw = doc.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > 64:
        raise CommandError(f"{key} must be an RFC 3339 date-time string")
    try:
        return parse_time(raw)
    except EnvelopeError as exc:
        raise CommandError(f"{key}: {exc}") from None


def _text(doc: dict[str, Any], key: str, limit: int) -> str | None:
    raw = doc.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.isprintable() or not 0 < len(raw) <= limit:
        raise CommandError(f"{key} must be 1-{limit} printable characters")
    return raw


def derived_command_id(topic: str, payload: bytes) -> str:
    """The id of a command sent without ``CommandId``: a hash of its topic and bytes."""
    digest = hashlib.sha256(topic.encode() + b"\n" + payload).hexdigest()
    return _DERIVED_PREFIX + digest


def parse_command(topic: str, payload: bytes, *, received_at: datetime) -> CommandMessage:
    """Validate a command; raise :class:`CommandError` (or :class:`TopicError`) saying why.

    ``received_at`` stands in for a missing ``IssuedAt``.
    """
    parsed = parse_command_topic(topic)
    if not isinstance(parsed, CommandTopic):
        raise TopicError(f"topic {quoted(topic)} is a result topic, not a command topic")
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"command payload of {len(payload)} bytes > {MAX_COMMAND_BYTES}")
    try:
        doc: Any = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"command payload is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CommandError("command payload is not a JSON object")
    if "Value" not in doc:
        raise CommandError("command payload has no Value")
    value = _check_value(parsed.command, doc["Value"])
    command_id = (
        _check_id(doc["CommandId"])
        if doc.get("CommandId") is not None
        else derived_command_id(topic, payload)
    )
    issued_at = _time(doc, "IssuedAt") or received_at
    expires_at = _time(doc, "ExpiresAt") or issued_at + DEFAULT_EXPIRY
    if expires_at <= issued_at:
        raise CommandError("ExpiresAt is not after IssuedAt")
    if expires_at - issued_at > MAX_EXPIRY:
        raise CommandError(f"ExpiresAt is more than {MAX_EXPIRY} after IssuedAt")
    valid_for: float | None = None
    raw_valid = doc.get("ValidFor")
    if raw_valid is not None:
        if parsed.command is not Command.CURRENT_LIMIT:
            raise CommandError(f"{parsed.command.value} takes no ValidFor")
        if isinstance(raw_valid, bool) or not isinstance(raw_valid, int | float):
            raise CommandError("ValidFor must be a number of seconds")
        valid_for = float(raw_valid)
        if not math.isfinite(valid_for) or not MIN_VALID_FOR <= valid_for <= MAX_VALID_FOR:
            raise CommandError(
                f"ValidFor must be {MIN_VALID_FOR:g} to {MAX_VALID_FOR:g} seconds, "
                f"not {raw_valid!r}"
            )
    return CommandMessage(
        charger=parsed.charger,
        command=parsed.command,
        value=value,
        command_id=command_id,
        issued_at=issued_at,
        expires_at=expires_at,
        valid_for=valid_for,
        issuer=_text(doc, "Issuer", MAX_ISSUER_CHARS),
    )


def encode_command(
    command: Command,
    value: float | None = None,
    *,
    command_id: str | None = None,
    issued_at: datetime | None = None,
    expires_at: datetime | None = None,
    valid_for: float | None = None,
    issuer: str | None = None,
) -> bytes:
    """The payload of a command (what a controller publishes); checked like a received one."""
    doc: dict[str, Any] = {"Value": value}
    if command_id is not None:
        doc["CommandId"] = _check_id(command_id)
    if issued_at is not None:
        doc["IssuedAt"] = format_time(issued_at)
    if expires_at is not None:
        doc["ExpiresAt"] = format_time(expires_at)
    if valid_for is not None:
        doc["ValidFor"] = valid_for
    if issuer is not None:
        doc["Issuer"] = issuer
    payload = orjson.dumps(doc)
    # The same checks as the receiver's (value range, times, lease, sizes).
    parse_command(
        f"{ROOT}/x/{SET}/{Command(command).value}",
        payload,
        received_at=issued_at
        or (expires_at - DEFAULT_EXPIRY if expires_at else datetime.fromtimestamp(0, UTC)),
    )
    return payload


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What became of a command."""

    command_id: str
    outcome: Outcome
    reason: str
    at: datetime
    value: float | None = None
    lease_end: datetime | None = None


def encode_result(result: CommandResult) -> bytes:
    doc: dict[str, Any] = {
        "CommandId": _check_id(result.command_id),
        "Outcome": Outcome(result.outcome).value,
        "Reason": result.reason[:MAX_REASON_CHARS],
        "At": format_time(result.at),
        "Value": result.value,
    }
    if result.lease_end is not None:
        doc["LeaseEnd"] = format_time(result.lease_end)
    return orjson.dumps(doc)


def decode_result(payload: bytes) -> CommandResult:
    """Validate a result payload; raise :class:`CommandError` saying why."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"result payload of {len(payload)} bytes > {MAX_COMMAND_BYTES}")
    try:
        doc: Any = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"result payload is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CommandError("result payload is not a JSON object")
    try:
        outcome = Outcome(str(doc.get("Outcome")))
    except ValueError:
        known = ", ".join(o.value for o in Outcome)
        raise CommandError(f"Outcome must be one of {known}") from None
    reason = doc.get("Reason")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        raise CommandError(f"Reason must be a string of at most {MAX_REASON_CHARS} characters")
    at = _time(doc, "At")
    if at is None:
        raise CommandError("result payload has no At")
    raw_value = doc.get("Value")
    value: float | None = None
    if raw_value is not None:
        if isinstance(raw_value, bool) or not isinstance(raw_value, int | float):
            raise CommandError("result Value must be a number or null")
        value = float(raw_value)
        if not math.isfinite(value):
            raise CommandError("result Value is not finite")
    return CommandResult(
        command_id=_check_id(doc.get("CommandId")),
        outcome=outcome,
        reason=reason,
        at=at,
        value=value,
        lease_end=_time(doc, "LeaseEnd"),
    )
