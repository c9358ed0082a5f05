"""The chargelift contract: what travels between the services.

Everything a service needs to speak to another one lives here and nowhere else:

* :mod:`.topics` builds and parses MQTT topics (nothing else writes a topic string);
* :mod:`.envelope` encodes and decodes the ``{"SamplingTime", "Value"}`` payload;
* :mod:`.fields` is the field catalogue (name, type, unit, description);
* :mod:`.states` is the generic :class:`OperationState`;
* :mod:`.identity` says how a certificate names the chargers it may write for;
* :mod:`.limits` is the broker's packet limit and the size of a PUBLISH packet;
* :mod:`.errors` is the one base exception, :class:`ContractError`.

Pure: no module here does I/O or imports another chargelift package (``make check``
enforces it). How a service talks MQTT is :mod:`chargelift_runtime`.
"""

from chargelift_contract.envelope import (
    Envelope,
    EnvelopeError,
    decode,
    encode,
    format_time,
    parse_time,
)
from chargelift_contract.errors import ContractError
from chargelift_contract.fields import CATALOGUE, FieldSpec, FieldType, FieldValueError, field_spec
from chargelift_contract.states import OperationState
from chargelift_contract.topics import (
    AVAILABILITY,
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
    validate_charger_id,
)

__all__ = [
    "AVAILABILITY",
    "CATALOGUE",
    "AvailabilityTopic",
    "ContractError",
    "EdgeAvailabilityTopic",
    "EdgeChargersTopic",
    "Envelope",
    "EnvelopeError",
    "FieldSpec",
    "FieldTopic",
    "FieldType",
    "FieldValueError",
    "OperationState",
    "TopicError",
    "availability_topic",
    "charger_filter",
    "decode",
    "decode_edge_chargers",
    "edge_availability_topic",
    "edge_chargers_topic",
    "encode",
    "encode_edge_chargers",
    "field_spec",
    "field_topic",
    "format_time",
    "parse_edge_topic",
    "parse_time",
    "parse_topic",
    "validate_charger_id",
]
