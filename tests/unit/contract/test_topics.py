"""Topics are built and parsed only by the contract."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargelift_contract.topics import (
    AvailabilityTopic,
    EdgeAvailabilityTopic,
    EdgeChargersTopic,
    FieldTopic,
    TopicError,
    availability_topic,
    charger_filter,
    decode_edge_chargers,
    edge_availability_topic,
    edge_chargers_topic,
    encode_edge_chargers,
    field_topic,
    parse_edge_topic,
    parse_topic,
)

charger_ids = st.from_regex(r"[a-z0-9_-]{1,64}", fullmatch=True)
field_names = st.from_regex(r"[A-Z][A-Za-z0-9]{0,63}", fullmatch=True)


@given(charger=charger_ids, field=field_names)
def test_field_topic_round_trip(charger: str, field: str) -> None:
    assert parse_topic(field_topic(charger, field)) == FieldTopic(charger, field)


@given(charger=charger_ids)
def test_availability_topic_round_trip(charger: str) -> None:
    assert parse_topic(availability_topic(charger)) == AvailabilityTopic(charger)
    assert charger_filter(charger) == f"chargers/{charger}/#"


@pytest.mark.parametrize(
    "topic",
    [
        "chargers/amtron-1",
        "chargers/amtron-1/PowerOutput/extra",
        "charger/amtron-1/PowerOutput",
        "chargers//PowerOutput",
        "chargers/Amtron-1/PowerOutput",
        "chargers/amtron 1/PowerOutput",
        "chargers/amtron-1/powerOutput",
        "chargers/amtron-1/Power Output",
        "chargers/amtron-1/",
        "chargers/+/PowerOutput",
        "chargers/#",
        "/chargers/amtron-1/PowerOutput",
        "chargers/" + "a" * 65 + "/PowerOutput",
        "",
    ],
)
def test_malformed_topics_are_rejected(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(topic)


@given(topic=st.text(max_size=100))
def test_parse_never_raises_anything_but_topic_error(topic: str) -> None:
    try:
        parsed = parse_topic(topic)
    except TopicError:
        return
    assert str(parsed) == topic


def test_builders_validate() -> None:
    with pytest.raises(TopicError):
        field_topic("UPPER", "PowerOutput")
    with pytest.raises(TopicError):
        field_topic("amtron-1", "x/y")


# --- edge topics ----------------------------------------------------------------------


@given(edge=charger_ids)
def test_edge_topics_round_trip(edge: str) -> None:
    assert parse_edge_topic(edge_availability_topic(edge)) == EdgeAvailabilityTopic(edge)
    assert parse_edge_topic(edge_chargers_topic(edge)) == EdgeChargersTopic(edge)
    assert edge_availability_topic(edge) == f"edges/{edge}/availability"
    assert edge_chargers_topic(edge) == f"edges/{edge}/chargers"


@pytest.mark.parametrize(
    "topic",
    [
        "edges/site-1",
        "edges/site-1/availability/x",
        "edges/site-1/PowerOutput",
        "edges/Site/availability",
        "edges/+/availability",
        "chargers/site-1/availability",
        "edge/site-1/availability",
    ],
)
def test_malformed_edge_topics_are_rejected(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_edge_topic(topic)


@given(topic=st.text(max_size=100))
def test_parse_edge_topic_never_raises_anything_but_topic_error(topic: str) -> None:
    try:
        parsed = parse_edge_topic(topic)
    except TopicError:
        return
    assert str(parsed) == topic


@given(chargers=st.lists(charger_ids, max_size=20))
def test_edge_charger_list_round_trip(chargers: list[str]) -> None:
    assert decode_edge_chargers(encode_edge_chargers(chargers)) == tuple(sorted(set(chargers)))


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b'{"a": 1}', b'"amtron-1"', b"[1, 2]", b'["Amtron"]', b'["a/b"]', b"[null]"],
)
def test_malformed_edge_charger_lists_are_rejected(payload: bytes) -> None:
    with pytest.raises(TopicError):
        decode_edge_chargers(payload)
