"""What each identity may do on the broker, as (access, topic filter) grants (no I/O).

chargelift-certs writes the Mosquitto ACL (``topic <access> <filter>``) from these, so
the topic filters are written here, beside the topics, and nowhere else.

=============  ===========================================================================
Identity       Grants
=============  ===========================================================================
charger ``c``  readwrite ``chargers/c/+`` (its fields and availability); read
               ``chargers/c/set/+`` (its commands); write ``chargers/c/result/+``
edge ``e``     the grants of each listed charger, and readwrite ``edges/e/#``
controller     write ``chargers/c/set/+`` and read ``chargers/c/#`` for each listed charger,
               or for every charger (``+``) when it lists none
reader         read ``chargers/#`` and ``edges/#`` (ingest)
monitor        a reader's grants and read ``$SYS/#``
bridge         read ``chargers/#``, ``edges/#``, ``homeassistant/status``; readwrite
               ``chargelift/ha/#`` and ``homeassistant/+/+/+/config``
homeassistant  read ``chargelift/ha/#``, ``homeassistant/#``, ``chargers/+/availability``;
               write ``homeassistant/status``; with listed chargers (control allowed):
               write ``chargers/c/set/+`` and read ``chargers/c/result/+`` of each
=============  ===========================================================================

No identity but a controller may publish a command: a charger's own grant is
``chargers/c/+``, one level, which ``chargers/c/set/Pause`` does not match.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from chargelift_contract.commands import RESULT, SET
from chargelift_contract.topics import (
    AVAILABILITY_FILTER,
    BRIDGE_FILTER,
    EDGES_ROOT,
    HA_DISCOVERY_FILTER,
    HA_DISCOVERY_PREFIX,
    HA_STATUS,
    MONITOR_FILTERS,
    READER_FILTERS,
    ROOT,
    validate_charger_id,
)

Access = Literal["read", "write", "readwrite"]
Grant = tuple[Access, str]


def charger_grants(charger: str) -> tuple[Grant, ...]:
    """A charger's own identity: its fields and availability, its commands, its results."""
    c = validate_charger_id(charger)
    return (
        ("readwrite", f"{ROOT}/{c}/+"),
        ("read", f"{ROOT}/{c}/{SET}/+"),
        ("write", f"{ROOT}/{c}/{RESULT}/+"),
    )


def edge_grants(edge: str, chargers: Iterable[str]) -> tuple[Grant, ...]:
    """An edge identity: each listed charger's grants, then the edge's own topics."""
    out: list[Grant] = [g for c in chargers for g in charger_grants(c)]
    out.append(("readwrite", f"{EDGES_ROOT}/{validate_charger_id(edge)}/#"))
    return tuple(out)


def controller_grants(chargers: Iterable[str] = ()) -> tuple[Grant, ...]:
    """A controller: publish commands to the listed chargers (all when none are listed),
    and read their state and results."""
    listed = [validate_charger_id(c) for c in chargers] or ["+"]
    out: list[Grant] = []
    for c in listed:
        out += [("write", f"{ROOT}/{c}/{SET}/+"), ("read", f"{ROOT}/{c}/#")]
    return tuple(out)


def reader_grants() -> tuple[Grant, ...]:
    return tuple(("read", f) for f in READER_FILTERS)


def monitor_grants() -> tuple[Grant, ...]:
    return tuple(("read", f) for f in MONITOR_FILTERS)


def bridge_grants() -> tuple[Grant, ...]:
    """The Home Assistant bridge: read every charger and edge and Home Assistant's birth
    message; write its own output and the discovery documents (and read them back: the
    retained ones seed its watermarks and its list of published documents)."""
    return (
        *reader_grants(),
        ("read", HA_STATUS),
        ("readwrite", BRIDGE_FILTER),
        ("readwrite", HA_DISCOVERY_FILTER),
    )


def homeassistant_grants(chargers: Iterable[str] = ()) -> tuple[Grant, ...]:
    """Home Assistant (or evcc): read the bridge's output, the discovery documents and the
    chargers' availability; publish its birth message; and, for each listed charger (none
    listed: no control at all), publish commands and read their results."""
    out: list[Grant] = [
        ("read", BRIDGE_FILTER),
        ("read", f"{HA_DISCOVERY_PREFIX}/#"),
        ("read", AVAILABILITY_FILTER),
        ("write", HA_STATUS),
    ]
    for c in (validate_charger_id(c) for c in chargers):
        out += [("write", f"{ROOT}/{c}/{SET}/+"), ("read", f"{ROOT}/{c}/{RESULT}/+")]
    return tuple(out)


def acl_lines(grants: Iterable[Grant]) -> list[str]:
    """Mosquitto ACL lines of ``grants``."""
    return [f"topic {access} {topic}" for access, topic in grants]
