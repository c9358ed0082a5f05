"""The envelope every field value travels in: ``{"SamplingTime": ..., "Value": ...}``.

Writers (:func:`encode`) always produce UTC with ``Z`` and six fractional digits.
Readers (:func:`decode`) accept any RFC 3339 date-time: any offset, ``Z``/``z``, a
``T``/``t`` or space separator, 0 to 9 fractional digits (Go's ``time.Time`` writes
nanoseconds), and ignore keys they do not know (``"Unit"`` and the like).

Nanoseconds are *truncated* to microseconds, the resolution of Python and of
PostgreSQL's ``timestamptz``; truncation (not rounding) keeps the order of two
samples and never moves a sample into the next second.
"""

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from chargelift_contract.errors import ContractError

Value = bool | int | float | str | None

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # RFC 3339 digits are ASCII; Python's \d would also take "２０２６"
)


class EnvelopeError(ContractError):
    """A payload is not a valid envelope; the message says why."""


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 date-time into an aware UTC :class:`datetime`."""
    # Fast path for what our publishers write, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``: the
    # shape is checked here, the digits by fromisoformat (ASCII only, after isascii);
    # anything else, or a value it refuses (a leap second), takes the general path.
    # ≈ 0.3 µs instead of ≈ 2 µs per message at ingest.
    if (
        len(text) == 27
        and text[26] == "Z"
        and text[10] == "T"
        and text[19] == "."
        and text[4] == text[7] == "-"
        and text[13] == text[16] == ":"
        and text.isascii()
    ):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    return _parse_time_general(text)


def _parse_time_general(text: str) -> datetime:
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise EnvelopeError(f"SamplingTime {text!r} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    micro = int((m.group(7) or "0").ljust(6, "0")[:6])
    if m.group(8):
        tz = UTC
    else:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            raise EnvelopeError(f"SamplingTime {text!r} has an invalid offset")
        delta = timedelta(hours=oh, minutes=om)
        tz = timezone(-delta if m.group(9) == "-" else delta)
    leap = second == 60  # RFC 3339 allows a leap second; Python does not.
    try:
        parsed = datetime(year, month, day, hour, minute, 59 if leap else second, micro, tz)
    except ValueError as exc:
        raise EnvelopeError(f"SamplingTime {text!r}: {exc}") from None
    if leap:
        parsed = parsed.replace(microsecond=999_999)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00 is past year 9999 in UTC
        raise EnvelopeError(f"SamplingTime {text!r} is out of range") from None


def format_time(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with ``Z`` and microseconds."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: SamplingTime needs a time zone")
    # isoformat, not strftime("%Y…"): glibc's %Y does not pad years before 1000.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A value and the moment the edge read it from the charger."""

    sampling_time: datetime
    value: Value

    def __post_init__(self) -> None:
        if self.sampling_time.tzinfo is None:
            raise ValueError("naive datetime: SamplingTime needs a time zone")
        check_value(self.value)


def check_value(value: object) -> Value:
    """Return ``value`` if it may be an envelope's Value, else raise :class:`EnvelopeError`."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EnvelopeError(f"Value {value!r} is not a finite number")
        return value
    raise EnvelopeError(
        f"Value must be a number, string, boolean or null, not {type(value).__name__}"
    )


def encode(envelope: Envelope) -> bytes:
    """Serialise an envelope to the JSON bytes published on MQTT."""
    return orjson.dumps(
        {"SamplingTime": format_time(envelope.sampling_time), "Value": envelope.value}
    )


def decode(payload: bytes | str) -> Envelope:
    """Parse and validate an envelope; raise :class:`EnvelopeError` saying what is wrong."""
    try:
        doc: Any = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"payload is not JSON: {exc}") from None
    return from_document(doc)


def from_document(doc: Any) -> Envelope:
    """Validate an already parsed JSON document as an envelope."""
    if not isinstance(doc, dict):
        raise EnvelopeError("payload is not a JSON object")
    if "SamplingTime" not in doc:
        raise EnvelopeError("payload has no SamplingTime")
    if "Value" not in doc:
        raise EnvelopeError("payload has no Value")
    raw_time = doc["SamplingTime"]
    if not isinstance(raw_time, str):
        raise EnvelopeError("SamplingTime is not a string")
    return Envelope(parse_time(raw_time), check_value(doc["Value"]))
