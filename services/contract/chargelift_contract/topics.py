"""MQTT topics of chargelift, built and parsed in one place.

Layout::

    chargers/{charger}/{Field}        a field's value (retained envelope)
    chargers/{charger}/availability   "online" / "offline" (retained; the edge's last will)
    edges/{edge}/availability         "online" / "offline" (retained; an edge identity's
                                      last will: "offline" means all its chargers are)
    edges/{edge}/chargers             JSON list of the edge's charger ids (retained)

``{charger}`` is lower-case letters, digits, ``-`` and ``_`` (1..64). ``{Field}`` is
PascalCase; whether it is in the catalogue is a separate question
(:func:`chargelift_contract.fields.field_spec`), so that a reader can tell a malformed
topic from an unknown field. ``availability`` is lower-case and so can never clash
with a field name.

The ``edges/`` topics exist only for the *edge identity* (one MQTT connection for all
the chargers of a site, docs/poller.md): a connection's last will can cover only the
connection, so the edge announces which chargers it serves, and a consumer that sees
the edge ``offline`` treats each of them as offline. ``{edge}`` follows the charger id
rules.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from chargelift_contract.errors import ContractError

ROOT = "chargers"
AVAILABILITY = "availability"
ONLINE = b"online"
OFFLINE = b"offline"
SUBSCRIBE_ALL = f"{ROOT}/#"
EDGES_ROOT = "edges"
EDGE_CHARGERS = "chargers"
SUBSCRIBE_EDGES = f"{EDGES_ROOT}/#"

#: The most characters of a charger id (an edge id follows the same rule).
MAX_ID_CHARS = 64
#: The charger id rule as a regular expression, for ``fullmatch`` (a FastAPI
#: ``Path(pattern=...)`` anchors it: ``f"^{CHARGER_ID_PATTERN}$"``). Certificate
#: identities (chargelift-certs) and simulated chargers follow the same rule.
CHARGER_ID_PATTERN = rf"[a-z0-9_-]{{1,{MAX_ID_CHARS}}}"
CHARGER_ID_RE = re.compile(CHARGER_ID_PATTERN)
#: What the rule says, for error texts.
CHARGER_ID_RULE = f"use 1-{MAX_ID_CHARS} of a-z, 0-9, '-', '_'"
#: The most characters of a field name (PascalCase letters and digits).
MAX_FIELD_CHARS = 64
_FIELD_RE = re.compile(rf"[A-Z][A-Za-z0-9]{{0,{MAX_FIELD_CHARS - 1}}}")
#: The longest valid topic: ``chargers/``, the longest charger id, ``/``, the longest
#: field name (``availability`` is shorter, and so is every ``edges/`` topic).
MAX_TOPIC_CHARS = len(f"{ROOT}/") + MAX_ID_CHARS + 1 + MAX_FIELD_CHARS


class TopicError(ContractError):
    """A topic (or a part of one) does not follow the contract."""


#: Characters of a topic (or part) quoted in an error text: a topic may be 64 KiB, and
#: error texts are kept (ingest's topic cache, dead-letter details, logs).
QUOTE_MAX = 80


def quoted(text: str, limit: int = QUOTE_MAX) -> str:
    """``repr(text)``, cut to ``limit`` characters with the full length said when longer."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def validate_charger_id(charger: str) -> str:
    """Return ``charger`` if it is a valid charger id, else raise :class:`TopicError`."""
    if not CHARGER_ID_RE.fullmatch(charger):
        raise TopicError(f"invalid charger id {quoted(charger)}: {CHARGER_ID_RULE}")
    return charger


def _validate_field_name(field: str) -> str:
    if not _FIELD_RE.fullmatch(field):
        raise TopicError(f"invalid field name {quoted(field)}: PascalCase letters and digits")
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


def edge_filter(edge: str) -> str:
    """Subscription filter for every topic of one edge (``edges/{edge}/#``)."""
    return f"{EDGES_ROOT}/{validate_charger_id(edge)}/#"


# --- the broker's ACL: which topic filters each role may use ---------------------------
# chargelift_contract.acl turns these into each role's grants.

#: The broker's own statistics (Mosquitto's ``$SYS`` tree).
SUBSCRIBE_BROKER_STATS = "$SYS/#"
#: What a reading service (ingest) may read: every charger's topics and every edge's.
READER_FILTERS: tuple[str, ...] = (SUBSCRIBE_ALL, SUBSCRIBE_EDGES)
#: What a monitor (dashboards, people, the broker's health check) may read.
MONITOR_FILTERS: tuple[str, ...] = (*READER_FILTERS, SUBSCRIBE_BROKER_STATS)


@dataclass(frozen=True, slots=True)
class EdgeAvailabilityTopic:
    """``edges/{edge}/availability``."""

    edge: str

    def __post_init__(self) -> None:
        validate_charger_id(self.edge)

    def __str__(self) -> str:
        return f"{EDGES_ROOT}/{self.edge}/{AVAILABILITY}"


@dataclass(frozen=True, slots=True)
class EdgeChargersTopic:
    """``edges/{edge}/chargers``."""

    edge: str

    def __post_init__(self) -> None:
        validate_charger_id(self.edge)

    def __str__(self) -> str:
        return f"{EDGES_ROOT}/{self.edge}/{EDGE_CHARGERS}"


def edge_availability_topic(edge: str) -> str:
    """The availability topic string of edge ``edge`` (validated)."""
    return str(EdgeAvailabilityTopic(edge))


def edge_chargers_topic(edge: str) -> str:
    """The topic string of the charger list of edge ``edge`` (validated)."""
    return str(EdgeChargersTopic(edge))


def encode_edge_chargers(chargers: Iterable[str]) -> bytes:
    """The payload of ``edges/{edge}/chargers``: a JSON list of charger ids, sorted."""
    ids = sorted({validate_charger_id(c) for c in chargers})
    return orjson.dumps(ids)


def decode_edge_chargers(payload: bytes) -> tuple[str, ...]:
    """Read an ``edges/{edge}/chargers`` payload; raise :class:`TopicError` if malformed."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise TopicError(f"charger list is not JSON: {exc}") from None
    if not isinstance(doc, list) or not all(isinstance(c, str) for c in doc):
        raise TopicError("charger list must be a JSON array of charger ids")
    return tuple(sorted({validate_charger_id(c) for c in doc}))


def parse_edge_topic(topic: str) -> EdgeAvailabilityTopic | EdgeChargersTopic:
    """Parse an ``edges/...`` topic; raise :class:`TopicError` with the reason if it is not."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != EDGES_ROOT:
        raise TopicError(f"topic {quoted(topic)} is not edges/<edge>/availability or .../chargers")
    _, edge, leaf = parts
    if leaf == AVAILABILITY:
        return EdgeAvailabilityTopic(edge)
    if leaf == EDGE_CHARGERS:
        return EdgeChargersTopic(edge)
    raise TopicError(f"topic {quoted(topic)}: unknown edge topic {quoted(leaf)}")


def parse_topic(topic: str) -> FieldTopic | AvailabilityTopic:
    """Parse a concrete topic; raise :class:`TopicError` with the reason if it is not ours."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != ROOT:
        raise TopicError(f"topic {quoted(topic)} is not chargers/<charger>/<Field>")
    _, charger, leaf = parts
    if leaf == AVAILABILITY:
        return AvailabilityTopic(charger)
    return FieldTopic(charger, leaf)


# --- Home Assistant and evcc (services/bridge) ------------------------------------------
# The bridge (chargelift-bridge) reads chargers/# and republishes, per charger and field,
# only samples newer than the last one it published there, plus Home Assistant's MQTT
# discovery documents (docs/integrations/home-assistant.md).

#: The bridge's output: ``chargelift/ha/{charger}/{Field}`` (a catalogue field, the
#: envelope) and ``chargelift/ha/{charger}/{derived}`` (lower-case: ``status``,
#: ``enabled``, ``power``, ``energy`` for evcc), retained.
BRIDGE_ROOT = "chargelift/ha"
BRIDGE_FILTER = f"{BRIDGE_ROOT}/#"
#: The bridge's own availability (its last will: ``offline``), retained.
BRIDGE_STATUS = f"{BRIDGE_ROOT}/status"
#: Home Assistant's MQTT discovery prefix (its default).
HA_DISCOVERY_PREFIX = "homeassistant"
#: ``homeassistant/<component>/<node_id>/<object_id>/config``: what the bridge writes.
HA_DISCOVERY_FILTER = f"{HA_DISCOVERY_PREFIX}/+/+/+/config"
#: Home Assistant's birth (``online``) and last will (``offline``).
HA_STATUS = f"{HA_DISCOVERY_PREFIX}/status"
#: Every charger's availability.
AVAILABILITY_FILTER = f"{ROOT}/+/{AVAILABILITY}"
