"""The broker's packet limit and the PUBLISH packet size (chargelift_contract.limits).

That mosquitto/*.conf set ``max_packet_size`` to :data:`MAX_PACKET_BYTES` is checked by
test_contract_doc.py (with the figure docs/contract.md quotes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargelift_contract.limits import (
    MAX_EDGE_CHARGERS_BYTES,
    MAX_PACKET_BYTES,
    max_payload_bytes,
    publish_packet_size,
)
from chargelift_contract.topics import (
    CHARGER_ID_PATTERN,
    MAX_ID_CHARS,
    MONITOR_FILTERS,
    READER_FILTERS,
    TopicError,
    edge_chargers_topic,
    encode_edge_chargers,
)


def test_publish_packet_size_counts_every_part() -> None:
    # fixed header 1 + length 1, topic length 2 + 3, packet id 2, properties length 1
    assert publish_packet_size("a/b", b"xy") == 1 + 1 + 2 + 3 + 2 + 1 + 2
    assert publish_packet_size("a/b", b"xy", qos=0) == 1 + 1 + 2 + 3 + 1 + 2
    assert publish_packet_size("a/b", b"x" * 200) == 1 + 2 + 2 + 3 + 2 + 1 + 200


@given(topic_chars=st.integers(1, 300), limit=st.integers(200, 70_000))
def test_max_payload_bytes_is_the_largest_that_fits(topic_chars: int, limit: int) -> None:
    topic = "t" * topic_chars
    size = max_payload_bytes(topic, limit=limit)
    if publish_packet_size(topic, b"") > limit:
        assert size == 0
        return
    assert publish_packet_size(topic, b"x" * size) <= limit
    assert publish_packet_size(topic, b"x" * (size + 1)) > limit


def test_the_edge_charger_list_bound_fits_any_edge_id() -> None:
    longest = edge_chargers_topic("e" * MAX_ID_CHARS)
    assert publish_packet_size(longest, b"x" * MAX_EDGE_CHARGERS_BYTES) == MAX_PACKET_BYTES
    assert max_payload_bytes(longest) == MAX_EDGE_CHARGERS_BYTES
    with pytest.raises(TopicError):
        edge_chargers_topic("e" * (MAX_ID_CHARS + 1))
    # a site of 1,000 chargers with long ids is far below it
    assert len(encode_edge_chargers(f"charger-{i:04d}" for i in range(1000))) < 20_000


def test_the_charger_id_pattern_is_the_rule() -> None:
    assert CHARGER_ID_PATTERN == "[a-z0-9_-]{1,64}"


def test_acl_filters() -> None:
    assert READER_FILTERS == ("chargers/#", "edges/#")
    assert MONITOR_FILTERS == ("chargers/#", "edges/#", "$SYS/#")
