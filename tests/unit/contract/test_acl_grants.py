"""The broker grants of each identity (chargelift_contract.acl), as topic matching sees them."""

from __future__ import annotations

import pytest

from chargelift_contract.acl import (
    acl_lines,
    charger_grants,
    controller_grants,
    edge_grants,
    reader_grants,
)
from chargelift_contract.topics import TopicError


def matches(sub: str, topic: str) -> bool:
    """MQTT topic-filter matching (+ one level, # the rest)."""
    s, t = sub.split("/"), topic.split("/")
    for i, part in enumerate(s):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(s) == len(t)


def may(grants: tuple[tuple[str, str], ...], access: str, topic: str) -> bool:
    return any(a in (access, "readwrite") and matches(f, topic) for a, f in grants)


def test_a_charger_publishes_its_fields_and_results_never_a_command() -> None:
    g = charger_grants("amtron-1")
    assert may(g, "write", "chargers/amtron-1/PowerOutput")
    assert may(g, "write", "chargers/amtron-1/availability")
    assert may(g, "write", "chargers/amtron-1/result/CurrentLimit")
    assert may(g, "read", "chargers/amtron-1/set/CurrentLimit")
    assert not may(g, "write", "chargers/amtron-1/set/CurrentLimit")
    assert not may(g, "write", "chargers/amtron-2/set/CurrentLimit")
    assert not may(g, "read", "chargers/amtron-2/set/CurrentLimit")
    assert not may(g, "write", "chargers/amtron-2/PowerOutput")
    assert not may(g, "read", "chargers/amtron-1/result/CurrentLimit")


def test_an_edge_has_its_chargers_grants_and_its_own_topics() -> None:
    g = edge_grants("site-1", ["a", "b"])
    assert may(g, "read", "chargers/b/set/Pause")
    assert may(g, "write", "chargers/b/result/Pause")
    assert not may(g, "write", "chargers/a/set/Pause")
    assert not may(g, "read", "chargers/c/set/Pause")
    assert may(g, "write", "edges/site-1/chargers")
    assert acl_lines(g)[0] == "topic readwrite chargers/a/+"


def test_a_controller_commands_its_chargers_or_all() -> None:
    listed = controller_grants(["a"])
    assert may(listed, "write", "chargers/a/set/Stop")
    assert not may(listed, "write", "chargers/b/set/Stop")
    assert not may(listed, "write", "chargers/a/PowerOutput")
    assert not may(listed, "write", "chargers/a/result/Stop")
    assert may(listed, "read", "chargers/a/result/Stop")
    every = controller_grants()
    assert may(every, "write", "chargers/zz/set/Stop")
    assert not may(every, "write", "chargers/zz/result/Stop")


def test_a_reader_writes_nothing() -> None:
    g = reader_grants()
    assert may(g, "read", "chargers/a/set/Stop")
    assert not may(g, "write", "chargers/a/set/Stop")


@pytest.mark.parametrize("bad", ["", "A", "a/b", "+", "#", "x" * 65])
def test_ids_are_checked(bad: str) -> None:
    with pytest.raises(TopicError):
        charger_grants(bad)
    with pytest.raises(TopicError):
        controller_grants([bad])
