"""Validation of every message against the contract: a reading, an availability (of a
charger or of an edge), an edge's charger list, a command or a command's result (the
audit), or a dead letter with a reason (a fixed set: it is a Prometheus label)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import orjson

from chargelift_contract import CATALOGUE, FieldType
from chargelift_contract.commands import (
    MAX_COMMAND_BYTES,
    RESULT,
    Command,
    CommandMessage,
    CommandResult,
    decode_result,
    is_command_or_result_topic,
    parse_command,
    parse_command_topic,
)
from chargelift_contract.envelope import EnvelopeError, from_document
from chargelift_contract.errors import ContractError
from chargelift_contract.fields import FieldValueError
from chargelift_contract.limits import MAX_PACKET_BYTES
from chargelift_contract.topics import (
    EDGES_ROOT,
    MAX_TOPIC_CHARS,
    AvailabilityTopic,
    EdgeAvailabilityTopic,
    EdgeChargersTopic,
    FieldTopic,
    TopicError,
    decode_edge_chargers,
    parse_edge_topic,
    parse_topic,
    quoted,
)

Reason = Literal[
    "bad_topic",
    "bad_json",
    "bad_envelope",
    "non_finite",
    "wrong_type",
    "unknown_field",
    "too_large",
    "future_time",
    "implausible_time",
    "db_rejected",
    "out_of_range",
    "bad_command",
    "bad_result",
]
REASONS: tuple[Reason, ...] = get_args(Reason)


@dataclass(frozen=True, slots=True)
class Reading:
    charger: str
    field: str
    time: datetime
    value_num: float | None
    value_text: str | None
    value_bool: bool | None

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.charger, self.field, self.time)


@dataclass(frozen=True, slots=True)
class Availability:
    charger: str
    online: bool
    received: datetime


@dataclass(frozen=True, slots=True)
class EdgeAvailability:
    """``edges/{edge}/availability``: offline means every charger of the edge is."""

    edge: str
    online: bool
    received: datetime


@dataclass(frozen=True, slots=True)
class EdgeChargers:
    """``edges/{edge}/chargers``: the chargers an edge serves (replaces the earlier list)."""

    edge: str
    chargers: tuple[str, ...]
    received: datetime


@dataclass(frozen=True, slots=True)
class Cleared:
    """A zero-length message on a charger's topic or an edge's availability: MQTT's way
    to delete a retained value (a retired device's shadow). Nothing to store; it is
    counted and acknowledged. (On ``edges/{edge}/chargers`` it is an empty list.)"""

    topic: str


#: No charger read anything before this: an earlier SamplingTime comes from a clock that
#: was never set (1970, 0001) or from a hostile client, and would rewrite
#: chargers.first_seen and every time bucket (INGEST_MIN_SAMPLING_TIME overrides it).
MIN_SAMPLING_TIME = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    payload: bytes
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class ChargerResult:
    """A result on ``chargers/{charger}/result/{command}``."""

    charger: str
    command: Command
    result: CommandResult


#: Changes of state, written in arrival order (an edge's "offline" after its list).
StateChange = Availability | EdgeAvailability | EdgeChargers
#: The audit: a command seen on ``chargers/{charger}/set/{Command}`` (a
#: :class:`~chargelift_contract.commands.CommandMessage`, as parsed) or a result.
Audit = CommandMessage | ChargerResult
Item = Reading | StateChange | DeadLetter | Audit


def _loads(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        error = f"payload is not JSON: {exc}"
    # orjson refuses NaN, Infinity and numbers that overflow a double; the standard
    # library reads them, and its hooks tell such a number from broken JSON. UTF-8 only
    # (RFC 8259 §8.1; the standard library would also guess UTF-16 and UTF-32). Its
    # recursion limit (deep nesting, which orjson refuses at 1,024 levels) means broken
    # JSON too: nothing may escape from here as an exception.
    try:
        json.loads(
            payload.decode("utf-8"),
            parse_constant=_non_finite,
            parse_float=_finite_float,
            parse_int=_finite_int,
        )
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _Dead("bad_json", error) from None
    # Read by the standard library with every number finite: something else orjson
    # refuses, such as a lone surrogate escape ("\ud800"), which is not valid text.
    raise _Dead("bad_json", error)


def _non_finite(literal: str) -> float:
    raise _Dead("non_finite", f"{literal} is not a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Dead("non_finite", f"{text[:40]} overflows a double")
    return value


def _finite_int(text: str) -> int:
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise _Dead("non_finite", f"{text[:40]}... overflows a double") from None
    return value


class _Dead(Exception):  # noqa: N818 - internal control flow, never escapes
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# A site has a few hundred distinct topics; parsing each once saves two regular
# expressions and two dataclasses per message. Bounded in *bytes*, not entries: any
# client may publish distinct topics of up to 64 KiB under its own prefix (issue 14,
# finding 4: 100,000 entries of ~93 KB each would have been 9 GB). A topic longer than
# any valid one is refused without being cached; the cache is cleared when full.
Parsed = FieldTopic | AvailabilityTopic | EdgeAvailabilityTopic | EdgeChargersTopic | TopicError
_TOPIC_CACHE: dict[str, Parsed] = {}
#: What the cache may hold (topics, parsed values and error texts, with overheads).
TOPIC_CACHE_MAX_BYTES = 16 * 1024 * 1024
# Per entry: a dict slot, the str header, a parsed dataclass or an exception object.
_ENTRY_OVERHEAD = 400
_topic_cache_bytes = 0
_EDGES_PREFIX = EDGES_ROOT + "/"


def topic_cache_bytes() -> int:
    """What the topic cache holds now, as counted against TOPIC_CACHE_MAX_BYTES."""
    return _topic_cache_bytes


def clear_topic_cache() -> None:
    """Empty the topic cache."""
    global _topic_cache_bytes
    _TOPIC_CACHE.clear()
    _topic_cache_bytes = 0


def _parse_topic(topic: str) -> Parsed:
    global _topic_cache_bytes
    parsed = _TOPIC_CACHE.get(topic)
    if parsed is not None:
        return parsed
    if len(topic) > MAX_TOPIC_CHARS:  # never cached: no valid topic is that long
        return TopicError(
            f"topic {quoted(topic)} is longer than any valid topic ({MAX_TOPIC_CHARS} characters)"
        )
    try:
        edge = topic.startswith(_EDGES_PREFIX)
        parsed = parse_edge_topic(topic) if edge else parse_topic(topic)
    except TopicError as exc:
        parsed = exc.with_traceback(None)  # a kept traceback would keep its frames
    cost = _ENTRY_OVERHEAD + len(topic) + (len(str(parsed)) if isinstance(parsed, Exception) else 0)
    if _topic_cache_bytes + cost > TOPIC_CACHE_MAX_BYTES:
        clear_topic_cache()
    _TOPIC_CACHE[topic] = parsed
    _topic_cache_bytes += cost
    return parsed


def _online(payload: bytes) -> bool:
    state = payload.strip().lower()
    if state not in (b"online", b"offline"):
        raise _Dead("bad_envelope", "availability payload must be online or offline")
    return state == b"online"


def validate(
    topic: str,
    payload: bytes,
    *,
    now: datetime,
    max_bytes: int,
    max_future: timedelta,
    min_time: datetime = MIN_SAMPLING_TIME,
) -> Item | Cleared:
    """Classify one message. Never raises."""
    try:
        return _validate(topic, payload, now, max_bytes, max_future, min_time)
    except _Dead as dead:
        return DeadLetter(topic, payload, dead.reason, dead.detail)


def _validate(
    topic: str,
    payload: bytes,
    now: datetime,
    max_bytes: int,
    max_future: timedelta,
    min_time: datetime,
) -> Item | Cleared:
    if len(payload) > max_bytes or len(payload) > MAX_COMMAND_BYTES:
        limit = max_bytes
        if is_command_or_result_topic(topic):
            # Commands and results have the contract's own bound, whatever
            # INGEST_MAX_PAYLOAD_BYTES says (a long Reason must not lose a result).
            limit = MAX_COMMAND_BYTES
        elif isinstance(_parse_topic(topic), EdgeChargersTopic):
            # An edge's charger list may exceed INGEST_MAX_PAYLOAD_BYTES (a site of 1,000
            # chargers: ~15 KB); the broker's packet limit bounds it.
            limit = max(max_bytes, MAX_PACKET_BYTES)
        if len(payload) > limit:
            raise _Dead("too_large", f"payload of {len(payload)} bytes exceeds {limit}")
    parsed = _parse_topic(topic)
    if isinstance(parsed, TopicError):
        # Checked only when the topic is not a field's or an availability's: the
        # readings' path pays nothing for the commands.
        if is_command_or_result_topic(topic):
            return _audit(topic, payload, now)
        raise _Dead("bad_topic", str(parsed))
    if not payload:  # a retained value deleted (only on a valid topic: else a dead letter)
        if isinstance(parsed, EdgeChargersTopic):
            return EdgeChargers(parsed.edge, (), now)  # the edge serves no charger now
        if isinstance(parsed, FieldTopic) and parsed.field not in CATALOGUE:
            raise _Dead("unknown_field", f"unknown field {parsed.field!r}")
        return Cleared(topic)
    if isinstance(parsed, AvailabilityTopic):
        return Availability(parsed.charger, _online(payload), now)
    if isinstance(parsed, EdgeAvailabilityTopic):
        return EdgeAvailability(parsed.edge, _online(payload), now)
    if isinstance(parsed, EdgeChargersTopic):
        try:
            chargers = decode_edge_chargers(payload)
        except TopicError as exc:
            raise _Dead("bad_envelope", str(exc)) from None
        return EdgeChargers(parsed.edge, chargers, now)
    spec = CATALOGUE.get(parsed.field)
    if spec is None:
        raise _Dead("unknown_field", f"unknown field {parsed.field!r}")
    doc = _loads(payload)
    try:
        env = from_document(doc)
    except EnvelopeError as exc:  # also a time outside years 1..9999 in UTC (parse_time)
        raise _Dead("bad_envelope", str(exc)) from None
    try:
        value = spec.check(env.value)
    except FieldValueError as exc:
        raise _Dead("wrong_type", str(exc)) from None
    if env.sampling_time > now + max_future:
        raise _Dead("future_time", f"SamplingTime {env.sampling_time.isoformat()} is in the future")
    if env.sampling_time < min_time:
        raise _Dead(
            "implausible_time",
            f"SamplingTime {env.sampling_time.isoformat()} is before "
            f"{min_time.date().isoformat()}: the charger's clock is not set",
        )
    if isinstance(value, str) and "\x00" in value:
        # Valid JSON (\u0000) that PostgreSQL text cannot hold.
        raise _Dead("wrong_type", f"{parsed.field}: a string with a NUL character")
    num = text = flag = None
    if value is not None:
        if spec.type is FieldType.NUMBER:
            num = float(value)
            if not spec.in_bounds(num):
                raise _Dead("out_of_range", f"{parsed.field}: {num!r} outside {spec.bounds}")
        elif spec.type is FieldType.BOOLEAN:
            flag = bool(value)
        else:
            text = str(value)
    return Reading(parsed.charger, parsed.field, env.sampling_time, num, text, flag)


def _audit(topic: str, payload: bytes, now: datetime) -> Audit | Cleared:
    """A command or a result (its size is already bounded); ``now`` is its arrival.

    Whatever is wrong with it, its topic included (an unknown command, a bad charger
    id), makes it a ``bad_command`` or ``bad_result`` dead letter."""
    result = topic.split("/")[2] == RESULT
    reason: Reason = "bad_result" if result else "bad_command"
    try:
        parsed = parse_command_topic(topic)
        if not payload:
            return Cleared(topic)  # a retained command or result deleted: nothing to store
        if not result:
            return parse_command(topic, payload, received_at=now)
        decoded = decode_result(payload)
    except ContractError as exc:  # CommandError and TopicError
        raise _Dead(reason, str(exc)) from None
    if "\x00" in decoded.reason:
        # Valid JSON (\u0000) that PostgreSQL text cannot hold.
        raise _Dead(reason, "Reason has a NUL character")
    return ChargerResult(parsed.charger, parsed.command, decoded)
