"""Topics are built and parsed only by the contract."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargelift_contract.topics import (
    AvailabilityTopic,
    FieldTopic,
    TopicError,
    availability_topic,
    charger_filter,
    field_topic,
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
