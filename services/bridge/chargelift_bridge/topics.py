"""The bridge's topics: built and parsed here, from the contract's roots (no I/O).

::

    chargelift/ha/{charger}/{Field}      a field's newest sample (the envelope), retained
    chargelift/ha/{charger}/{derived}    status | enabled | power | energy (evcc), retained
    chargelift/ha/{charger}/edge         online | offline: through the edges that list it
    chargelift/ha/status                 the bridge's availability (its last will: offline)
    homeassistant/{component}/chargelift_{charger}/{object}/config   discovery, retained
"""

from __future__ import annotations

import re

from chargelift_contract.topics import (
    BRIDGE_ROOT,
    BRIDGE_STATUS,
    HA_DISCOVERY_PREFIX,
    TopicError,
    quoted,
    validate_charger_id,
)

#: The derived values (lower case: they never clash with a PascalCase field).
DERIVED = ("status", "enabled", "power", "energy", "edge")
#: Home Assistant's discovery node id of a charger: ``chargelift_<charger id>``.
NODE_PREFIX = "chargelift_"
_FIELD_RE = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")
_OBJECT_RE = re.compile(r"[a-z0-9_]{1,64}")
_COMPONENT_RE = re.compile(r"[a-z_]{1,32}")


def output_topic(charger: str, leaf: str) -> str:
    """``chargelift/ha/{charger}/{leaf}``: a field name or a derived value."""
    validate_charger_id(charger)
    if leaf not in DERIVED and not _FIELD_RE.fullmatch(leaf):
        raise TopicError(f"invalid output leaf {quoted(leaf)}")
    return f"{BRIDGE_ROOT}/{charger}/{leaf}"


def output_prefix(charger: str) -> str:
    return f"{BRIDGE_ROOT}/{validate_charger_id(charger)}/"


def parse_output_topic(topic: str) -> tuple[str, str] | None:
    """``(charger, leaf)`` of an output topic, None for the bridge's status or anything
    else (raises nothing: this is the bridge's own tree)."""
    if topic == BRIDGE_STATUS or not topic.startswith(BRIDGE_ROOT + "/"):
        return None
    rest = topic[len(BRIDGE_ROOT) + 1 :].split("/")
    if len(rest) != 2:
        return None
    charger, leaf = rest
    try:
        output_topic(charger, leaf)
    except TopicError:
        return None
    return charger, leaf


def node_id(charger: str) -> str:
    return NODE_PREFIX + validate_charger_id(charger)


def discovery_topic(component: str, charger: str, obj: str) -> str:
    """``homeassistant/{component}/chargelift_{charger}/{obj}/config``."""
    if not _COMPONENT_RE.fullmatch(component) or not _OBJECT_RE.fullmatch(obj):
        raise TopicError(f"invalid discovery component or object {quoted(component + '/' + obj)}")
    return f"{HA_DISCOVERY_PREFIX}/{component}/{node_id(charger)}/{obj}/config"


def parse_discovery_topic(topic: str) -> str | None:
    """The charger whose discovery document ``topic`` is (one of ours), else None."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != HA_DISCOVERY_PREFIX or parts[4] != "config":
        return None
    node = parts[2]
    if not node.startswith(NODE_PREFIX):
        return None
    charger = node[len(NODE_PREFIX) :]
    try:
        discovery_topic(parts[1], charger, parts[3])
    except TopicError:
        return None
    return charger
