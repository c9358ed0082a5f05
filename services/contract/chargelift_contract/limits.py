"""The broker's packet limit and what it bounds (no I/O).

Mosquitto's ``max_packet_size`` (mosquitto/mosquitto.conf.template, and compose.conf)
is :data:`MAX_PACKET_BYTES`; a test checks that both files say so. Over the limit the
broker does not refuse a PUBLISH with a reason code: it drops the connection (MQTT 5
§3.1.2.11.4), so a publisher must know the limit before it sends.
"""

from __future__ import annotations

from chargelift_contract.topics import MAX_ID_CHARS, edge_chargers_topic

#: The broker's packet limit (bytes per MQTT packet, Mosquitto ``max_packet_size``).
MAX_PACKET_BYTES = 65536


def _varint_size(n: int) -> int:
    size = 1
    while n >= 128:
        n //= 128
        size += 1
    return size


def publish_packet_size(topic: str, payload: bytes, *, qos: int = 1, properties: int = 0) -> int:
    """Bytes of the MQTT 5 PUBLISH packet that carries ``payload`` to ``topic``.

    What a broker compares with its packet limit (Mosquitto ``max_packet_size``): fixed
    header, topic, packet id (QoS > 0), properties (``properties`` bytes of them;
    chargelift's client sends none) and payload.
    """
    remaining = 2 + len(topic.encode()) + (2 if qos else 0)
    remaining += _varint_size(properties) + properties + len(payload)
    return 1 + _varint_size(remaining) + remaining


def max_payload_bytes(topic: str, *, limit: int = MAX_PACKET_BYTES, qos: int = 1) -> int:
    """The largest payload whose PUBLISH to ``topic`` (QoS ``qos``, no properties) is
    at most ``limit`` bytes (0 if not even an empty one fits)."""
    size = limit - publish_packet_size(topic, b"", qos=qos)  # an upper bound
    while size > 0 and publish_packet_size(topic, b"x" * size, qos=qos) > limit:
        size -= 1  # the packet's length field grew by a byte or more
    return max(size, 0)


#: The longest topic of an edge's charger list (``edges/{edge}/chargers``, the longest
#: edge id).
_LONGEST_EDGE_CHARGERS_TOPIC = edge_chargers_topic("x" * MAX_ID_CHARS)
#: The most bytes of an edge's charger list (its retained JSON payload) that fits in
#: one packet whatever the edge id: the poller refuses a longer list at start-up.
MAX_EDGE_CHARGERS_BYTES = max_payload_bytes(_LONGEST_EDGE_CHARGERS_TOPIC)
