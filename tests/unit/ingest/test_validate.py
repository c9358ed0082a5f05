"""Validation of every message against the contract (no servers)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargelift_contract import CATALOGUE, Envelope, FieldSpec, FieldType, OperationState, encode
from chargelift_contract.limits import MAX_PACKET_BYTES
from chargelift_ingest.validate import (
    REASONS,
    Availability,
    Cleared,
    DeadLetter,
    EdgeAvailability,
    EdgeChargers,
    Item,
    Reading,
    validate,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
_TIME = b'{"SamplingTime":"2026-11-24T11:00:00Z",'
T = datetime(2026, 11, 24, 11, 59, 30, 123456, tzinfo=UTC)


def check(topic: str, payload: bytes) -> Item | Cleared:
    return validate(topic, payload, now=NOW, max_bytes=4096, max_future=timedelta(minutes=5))


def dead_reason(topic: str, payload: bytes) -> str:
    item = check(topic, payload)
    assert isinstance(item, DeadLetter), item
    assert item.topic == topic
    assert item.payload == payload
    assert item.detail
    return item.reason


@pytest.mark.parametrize(
    ("field", "value", "column", "stored"),
    [
        ("PowerOutput", 11000, "value_num", 11000.0),
        ("PowerOutput", 1.5e3, "value_num", 1500.0),
        ("ErrorCode", 0, "value_num", 0.0),
        ("OperationState", "charging", "value_text", "charging"),
        ("Tariff", "T2", "value_text", "T2"),
        ("ConnectedVehicle", False, "value_bool", False),
    ],
)
def test_a_valid_reading_lands_in_the_column_of_its_type(
    field: str, value: object, column: str, stored: object
) -> None:
    item = check(
        f"chargers/amtron-1/{field}", orjson.dumps({"SamplingTime": T.isoformat(), "Value": value})
    )
    assert isinstance(item, Reading)
    assert (item.charger, item.field, item.time) == ("amtron-1", field, T)
    values = {
        "value_num": item.value_num,
        "value_text": item.value_text,
        "value_bool": item.value_bool,
    }
    assert values.pop(column) == stored
    assert set(values.values()) == {None}


def test_null_is_a_reading_with_no_value() -> None:
    item = check("chargers/a/PowerOutput", b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":null}')
    assert isinstance(item, Reading)
    assert (item.value_num, item.value_text, item.value_bool) == (None, None, None)


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-24T12:59:30.123456789+01:00",  # Go: nanoseconds and a local offset
        "2026-11-24T06:29:30.123456-05:30",
        "2026-11-24t11:59:30.1234567z",
        "2026-11-24 11:59:30.123456Z",
    ],
)
def test_any_rfc3339_time_is_accepted_and_stored_in_utc(stamp: str) -> None:
    payload = orjson.dumps({"SamplingTime": stamp, "Value": 1, "Unit": "W", "x": [1]})
    item = check("chargers/a/PowerOutput", payload)
    assert isinstance(item, Reading)
    assert item.time == T


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (
            "chargers/a/PowerOutput/extra",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":1}',
            "bad_topic",
        ),
        (
            "chargers/a/poweroutput",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":1}',
            "bad_topic",
        ),
        (
            "chargers/A/PowerOutput",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":1}',
            "bad_topic",
        ),
        ("chargers/a/set/MaximumOutputCurrent", b"16", "bad_command"),  # no such command
        ("other/a/PowerOutput", b"{}", "bad_topic"),
        ("chargers/a/Bogus", b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":1}', "unknown_field"),
        ("chargers/a/PowerOutput", b"{not json", "bad_json"),
        ("chargers/a/Bogus", b"", "unknown_field"),
        ("chargers/A/PowerOutput", b"", "bad_topic"),
        ("edges/site-1/extra", b"", "bad_topic"),
        ("chargers/a/PowerOutput", b"\xff\xfe", "bad_json"),
        ("chargers/a/PowerOutput", b"[1, 2]", "bad_envelope"),
        ("chargers/a/PowerOutput", b'{"Value":1}', "bad_envelope"),
        ("chargers/a/PowerOutput", b'{"SamplingTime":"2026-11-24T11:00:00Z"}', "bad_envelope"),
        ("chargers/a/PowerOutput", b'{"SamplingTime":"yesterday","Value":1}', "bad_envelope"),
        ("chargers/a/PowerOutput", b'{"SamplingTime":1700000000,"Value":1}', "bad_envelope"),
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":[1]}',
            "bad_envelope",
        ),
        ("chargers/a/availability", b"maybe", "bad_envelope"),
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":1e308}',
            "out_of_range",
        ),
        (
            "chargers/a/TotalEnergyConsumption",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":-1}',
            "out_of_range",
        ),
        (
            "chargers/a/EnergyPrice",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":-1e308}',
            "out_of_range",
        ),
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":NaN}',
            "non_finite",
        ),
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":Infinity}',
            "non_finite",
        ),
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":-Infinity}',
            "non_finite",
        ),
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":1e999}',
            "non_finite",
        ),
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":"11 kW"}',
            "wrong_type",
        ),
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":true}',
            "wrong_type",
        ),
        (
            "chargers/a/ConnectedVehicle",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":1}',
            "wrong_type",
        ),
        (
            "chargers/a/OperationState",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":"Charging"}',
            "wrong_type",
        ),
        (
            "chargers/a/Tariff",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":"T\\u00001"}',
            "wrong_type",
        ),
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"2026-11-24T12:05:01Z","Value":1}',
            "future_time",
        ),
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"2999-01-01T00:00:00Z","Value":1}',
            "future_time",
        ),
        # Issue 14, finding 10: a clock that was never set (or a hostile client).
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"0001-01-01T00:00:00Z","Value":1}',
            "implausible_time",
        ),
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"1999-12-31T23:59:59.999999Z","Value":1}',
            "implausible_time",
        ),
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":1,"pad":"' + b"x" * 5000 + b'"}',
            "too_large",
        ),
        # Found by review: each of these used to raise out of validate() (a poison message
        # that is never acknowledged) or got the wrong reason.
        ("chargers/a/PowerOutput", b"[" * 3000, "bad_json"),  # nesting beyond both parsers
        (
            "chargers/a/PowerOutput",
            _TIME + b'"Value":' + b"[" * 1100 + b"]" * 1100 + b"}",
            "bad_json",
        ),
        ("chargers/a/Tariff", _TIME + b'"Value":"T\xed\xa0\x80"}', "bad_json"),  # not UTF-8
        ("chargers/a/Tariff", _TIME + b'"Value":"\\ud800"}', "bad_json"),  # lone surrogate
        ("chargers/a/PowerOutput", (_TIME.decode() + '"Value":1}').encode("utf-16"), "bad_json"),
        ("chargers/a/PowerOutput", _TIME + b'"Value":1' + b"0" * 400 + b"}", "non_finite"),
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"9999-12-31T23:00:00-05:00","Value":1}',  # past 9999 in UTC
            "bad_envelope",
        ),
        (
            "chargers/a/PowerOutput",
            b'{"SamplingTime":"0001-01-01T00:00:00+05:00","Value":1}',  # before year 1 in UTC
            "bad_envelope",
        ),
    ],
)
def test_every_bad_input_kind_is_a_dead_letter_with_its_reason(
    topic: str, payload: bytes, reason: str
) -> None:
    assert dead_reason(topic, payload) == reason
    assert reason in REASONS


def test_a_time_within_the_future_allowance_is_accepted() -> None:
    payload = b'{"SamplingTime":"2026-11-24T12:04:59Z","Value":1}'
    assert isinstance(check("chargers/a/PowerOutput", payload), Reading)


@pytest.mark.parametrize(
    ("payload", "online"), [(b"online", True), (b"offline", False), (b"online\n", True)]
)
def test_availability_is_never_a_dead_letter(payload: bytes, online: bool) -> None:
    item = check("chargers/amtron-1/availability", payload)
    assert item == Availability("amtron-1", online, NOW)


# -- properties ------------------------------------------------------------------------

# Numbers are drawn within the field's bounds (outside: test_out_of_range_...).
_value_for = {
    FieldType.NUMBER: st.one_of(
        st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False)
    ),
    FieldType.STRING: st.text().filter(lambda s: "\x00" not in s),
    FieldType.BOOLEAN: st.booleans(),
    FieldType.STATE: st.sampled_from([s.value for s in OperationState]),
}


@st.composite
def valid_messages(draw: st.DrawFn) -> tuple[str, str, bytes, object, datetime]:
    charger = draw(st.from_regex(r"[a-z0-9_-]{1,64}", fullmatch=True))
    spec = draw(st.sampled_from(list(CATALOGUE.values())))
    values = _value_for[spec.type]
    if spec.bounds is not None:
        lo, hi = spec.bounds
        values = st.one_of(
            st.integers(math.ceil(lo), math.floor(hi)),
            st.floats(lo, hi, allow_nan=False, allow_infinity=False),
        )
    value = draw(st.one_of(st.none(), values))
    t = draw(
        st.datetimes(
            min_value=datetime(2000, 1, 1),
            max_value=datetime(2026, 11, 24, 12),
            timezones=st.just(UTC),
        )
    )
    offset = draw(st.integers(-14 * 60, 14 * 60))
    local = t.astimezone(timezone(timedelta(minutes=offset)))
    return charger, spec.name, encode(Envelope(local, value)), value, t


@given(valid_messages())
@settings(max_examples=300)
def test_every_valid_message_is_a_reading_with_its_value(
    msg: tuple[str, str, bytes, object, datetime],
) -> None:
    charger, field, payload, value, t = msg
    item = check(f"chargers/{charger}/{field}", payload)
    assert isinstance(item, Reading), item
    assert (item.charger, item.field, item.time) == (charger, field, t)
    stored = [v for v in (item.value_num, item.value_text, item.value_bool) if v is not None]
    if value is None:
        assert stored == []
    elif isinstance(value, bool | str):
        assert stored == [value]
    else:
        assert isinstance(value, int | float)
        assert isinstance(stored[0], float)
        assert math.isclose(stored[0], value)


@given(topic=st.text(max_size=80), payload=st.binary(max_size=200))
@settings(max_examples=500)
def test_arbitrary_input_never_raises(topic: str, payload: bytes) -> None:
    item = check(topic, payload)
    if isinstance(item, DeadLetter):
        assert item.reason in REASONS


@given(
    field=st.sampled_from(list(CATALOGUE)),
    doc=st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=8,
    ),
)
@settings(max_examples=500)
def test_arbitrary_json_on_a_field_topic_never_raises(field: str, doc: object) -> None:
    # The standard library writes what orjson refuses: NaN, Infinity, huge integers.
    payload = json.dumps({"SamplingTime": "2026-11-24T11:00:00Z", "Value": doc}).encode()
    item = check(f"chargers/a/{field}", payload)
    assert isinstance(item, Reading | DeadLetter)


_SAMPLE = {
    FieldType.NUMBER: 7,
    FieldType.STRING: "x",
    FieldType.BOOLEAN: True,
    FieldType.STATE: OperationState.IDLE.value,
}
# The readings column of each field type (docs/schema.md); a new FieldType fails here
# until it has a column.
_COLUMN = {
    FieldType.NUMBER: "value_num",
    FieldType.STRING: "value_text",
    FieldType.BOOLEAN: "value_bool",
    FieldType.STATE: "value_text",
}


def test_every_field_type_has_a_column() -> None:
    assert set(_COLUMN) == set(FieldType)
    assert set(_SAMPLE) == set(FieldType)


@pytest.mark.parametrize("spec", list(CATALOGUE.values()), ids=list(CATALOGUE))
def test_every_catalogue_field_is_stored_in_the_column_of_its_type(spec: FieldSpec) -> None:
    payload = orjson.dumps({"SamplingTime": T.isoformat(), "Value": _SAMPLE[spec.type]})
    item = check(f"chargers/a/{spec.name}", payload)
    assert isinstance(item, Reading), item
    columns = {
        "value_num": item.value_num,
        "value_text": item.value_text,
        "value_bool": item.value_bool,
    }
    assert [c for c, v in columns.items() if v is not None] == [_COLUMN[spec.type]]


_TIMESTAMPS = st.from_regex(
    r"\A\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z"
)


@given(stamp=_TIMESTAMPS)
@settings(max_examples=500)
def test_any_rfc3339_shaped_time_is_a_reading_or_a_dead_letter(stamp: str) -> None:
    # Out-of-range parts (month 13, offset 24:00, year 0, or a time whose UTC equivalent
    # leaves years 1..9999) are dead letters, never an exception.
    payload = orjson.dumps({"SamplingTime": stamp, "Value": 1})
    item = check("chargers/a/PowerOutput", payload)
    assert isinstance(item, Reading | DeadLetter)
    if isinstance(item, DeadLetter):
        assert item.reason in ("bad_envelope", "future_time", "implausible_time")


# --- edges ----------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "online"), [(b"online", True), (b"offline", False)])
def test_edge_availability(payload: bytes, online: bool) -> None:
    assert check("edges/site-1/availability", payload) == EdgeAvailability("site-1", online, NOW)


def test_edge_charger_list() -> None:
    item = check("edges/site-1/chargers", b'["amtron-2", "amtron-1"]')
    assert item == EdgeChargers("site-1", ("amtron-1", "amtron-2"), NOW)


def test_an_edge_charger_list_may_exceed_the_reading_size_limit() -> None:
    ids = [f"charger-{i:04d}" for i in range(1000)]
    payload = orjson.dumps(ids)
    assert 4096 < len(payload) < MAX_PACKET_BYTES
    item = check("edges/site-1/chargers", payload)
    assert isinstance(item, EdgeChargers)
    assert len(item.chargers) == 1000
    assert dead_reason("edges/site-1/chargers", b" " * (MAX_PACKET_BYTES + 1)) == ("too_large")
    assert dead_reason("edges/site-1/availability", b" " * 5000) == "too_large"


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("edges/site-1/availability", b"maybe", "bad_envelope"),
        ("edges/site-1/availability", b'{"Value": "online"}', "bad_envelope"),
        ("edges/site-1/chargers", b"not json", "bad_envelope"),
        ("edges/site-1/chargers", b'{"chargers": []}', "bad_envelope"),
        ("edges/site-1/chargers", b'["Amtron 1"]', "bad_envelope"),
        ("edges/site-1/chargers", b"[1]", "bad_envelope"),
        ("edges/site-1/chargers", b"\xff\xfe", "bad_envelope"),
        ("edges/site-1/chargers", b"[" * 2000, "bad_envelope"),
        ("edges/Site 1/availability", b"offline", "bad_topic"),
        ("edges/site-1/PowerOutput", b"{}", "bad_topic"),
        ("edges/site-1", b"offline", "bad_topic"),
        ("edges/site-1/availability/x", b"offline", "bad_topic"),
    ],
)
def test_bad_edge_messages_are_dead_letters(topic: str, payload: bytes, reason: str) -> None:
    assert dead_reason(topic, payload) == reason


@given(payload=st.binary(max_size=200))
def test_edge_messages_never_raise(payload: bytes) -> None:
    for topic in ("edges/site-1/chargers", "edges/site-1/availability"):
        item = check(topic, payload)
        assert isinstance(item, EdgeChargers | EdgeAvailability | DeadLetter | Cleared)


@pytest.mark.parametrize(
    "topic",
    ["chargers/a/PowerOutput", "chargers/a/availability", "edges/site-1/availability"],
)
def test_a_zero_length_message_is_a_deleted_retained_value_not_a_dead_letter(topic: str) -> None:
    assert check(topic, b"") == Cleared(topic)


def test_a_zero_length_charger_list_empties_the_edge() -> None:
    assert check("edges/site-1/chargers", b"") == EdgeChargers("site-1", (), NOW)


@given(
    field=st.sampled_from([s.name for s in CATALOGUE.values() if s.bounds is not None]),
    value=st.floats(allow_nan=False, allow_infinity=False),
)
@settings(max_examples=300)
def test_a_number_outside_its_fields_bounds_is_out_of_range_inside_a_reading(
    field: str, value: float
) -> None:
    # The hostile value this stops: a finite number such as 1e308 that overflows
    # every sum, average and energy delta of the API (issue 14, finding 12).
    payload = encode(Envelope(T, value))
    item = check(f"chargers/a/{field}", payload)
    if CATALOGUE[field].in_bounds(value):
        assert isinstance(item, Reading)
        assert item.value_num == value
    else:
        assert isinstance(item, DeadLetter)
        assert item.reason == "out_of_range"
        assert field in item.detail
