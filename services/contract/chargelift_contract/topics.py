"""MQTT topics of chargelift, built and parsed in one place.

Layout::

    chargers/{charger}/{Field}        a field's value (retained envelope)
    chargers/{charger}/availability   "online" / "offline" (retained; the edge's last will)

``{charger}`` is lower-case letters, digits, ``-`` and ``_`` (1..64). ``{Field}`` is
PascalCase; whether it is in the catalogue is a separate question
(:func:`chargelift_contract.fields.field_spec`), so that a reader can tell a malformed
topic from an unknown field. ``availability`` is lower-case and so can never clash
with a field name.
"""

import re
from dataclasses import dataclass

ROOT = "chargers"
AVAILABILITY = "availability"
ONLINE = b"online"
OFFLINE = b"offline"
SUBSCRIBE_ALL = f"{ROOT}/#"

_CHARGER_RE = re.compile(r"[a-z0-9_-]{1,64}")
_FIELD_RE = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")


class TopicError(ValueError):
    """A topic (or a part of one) does not follow the contract."""


def validate_charger_id(charger: str) -> str:
    """Return ``charger`` if it is a valid charger id, else raise :class:`TopicError`."""
    if not _CHARGER_RE.fullmatch(charger):
        raise TopicError(f"invalid charger id {charger!r}: use 1-64 of a-z, 0-9, '-', '_'")
    return charger


def _validate_field_name(field: str) -> str:
    if not _FIELD_RE.fullmatch(field):
        raise TopicError(f"invalid field name {field!r}: PascalCase letters and digits")
    return field


@dataclass(frozen=True, slots=True)
class FieldTopic:
    """``chargers/{charger}/{field}``."""

    charger: str
    field: str

    def __post_init__(self) -> None:
        validate_charger_id(self.charger)
        _validate_field_name(self.field)

    def __str__(self) -> str:
        return f"{ROOT}/{self.charger}/{self.field}"


@dataclass(frozen=True, slots=True)
class AvailabilityTopic:
    """``chargers/{charger}/availability``."""

    charger: str

    def __post_init__(self) -> None:
        validate_charger_id(self.charger)

    def __str__(self) -> str:
        return f"{ROOT}/{self.charger}/{AVAILABILITY}"


def field_topic(charger: str, field: str) -> str:
    """The topic string of ``field`` of ``charger`` (validated)."""
    return str(FieldTopic(charger, field))


def availability_topic(charger: str) -> str:
    """The availability topic string of ``charger`` (validated)."""
    return str(AvailabilityTopic(charger))


def charger_filter(charger: str) -> str:
    """Subscription filter for every topic of one charger."""
    return f"{ROOT}/{validate_charger_id(charger)}/#"


def parse_topic(topic: str) -> FieldTopic | AvailabilityTopic:
    """Parse a concrete topic; raise :class:`TopicError` with the reason if it is not ours."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != ROOT:
        raise TopicError(f"topic {topic!r} is not chargers/<charger>/<Field>")
    _, charger, leaf = parts
    if leaf == AVAILABILITY:
        return AvailabilityTopic(charger)
    return FieldTopic(charger, leaf)
