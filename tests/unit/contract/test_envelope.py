"""The envelope: strict on what it writes, liberal (within RFC 3339) in what it reads."""

import contextlib
import math
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargelift_contract.envelope import (
    Envelope,
    EnvelopeError,
    _parse_time_general,
    decode,
    encode,
    format_time,
    parse_time,
)

aware_times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
)


@given(moment=aware_times, value=values)
def test_round_trip(moment: datetime, value: object) -> None:
    env = Envelope(moment, value)  # type: ignore[arg-type]
    back = decode(encode(env))
    assert back == env


@given(moment=aware_times)
def test_writer_uses_utc_z_with_microseconds(moment: datetime) -> None:
    text = orjson.loads(encode(Envelope(moment, 1)))["SamplingTime"]
    assert text.endswith("Z")
    assert len(text) == len("2026-11-24T10:00:00.123456Z")


@given(
    moment=aware_times,
    offset_minutes=st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
    nanos=st.integers(min_value=0, max_value=999),
    digits=st.integers(min_value=0, max_value=9),
    sep=st.sampled_from(["T", "t", " "]),
)
def test_reads_any_offset_and_up_to_nanoseconds(
    moment: datetime, offset_minutes: int, nanos: int, digits: int, sep: str
) -> None:
    tz = timezone(timedelta(minutes=offset_minutes))
    local = moment.astimezone(tz)
    frac_ns = f"{local.microsecond:06d}{nanos:03d}"[:digits]
    sign = "-" if offset_minutes < 0 else "+"
    hh, mm = divmod(abs(offset_minutes), 60)
    text = local.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + (f".{frac_ns}" if digits else "")
    text += f"{sign}{hh:02d}:{mm:02d}"
    parsed = parse_time(text)
    expected_micro = int(frac_ns.ljust(6, "0")[:6]) if digits else 0
    assert parsed == moment.replace(microsecond=expected_micro)
    assert parsed.tzinfo is UTC


def test_go_style_nanoseconds_are_truncated_not_rounded() -> None:
    assert parse_time("2026-11-24T10:00:00.999999999Z") == datetime(
        2026, 11, 24, 10, 0, 0, 999999, tzinfo=UTC
    )


def test_leap_second_is_accepted() -> None:
    assert parse_time("2016-12-31T23:59:60Z") == datetime(
        2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC
    )


def test_extra_keys_are_ignored() -> None:
    env = decode(b'{"SamplingTime":"2026-11-24T10:00:00Z","Value":230.5,"Unit":"V","x":[1]}')
    assert env.value == 230.5


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1,2]", "not a JSON object"),
        (b'{"Value": 1}', "no SamplingTime"),
        (b'{"SamplingTime": "2026-11-24T10:00:00Z"}', "no Value"),
        (b'{"SamplingTime": 1732442400, "Value": 1}', "not a string"),
        (b'{"SamplingTime": "2026-11-24 10:00", "Value": 1}', "RFC 3339"),
        (b'{"SamplingTime": "2026-11-24T10:00:00", "Value": 1}', "RFC 3339"),
        (b'{"SamplingTime": "2026-13-24T10:00:00Z", "Value": 1}', "month"),
        (b'{"SamplingTime": "2026-11-24T10:00:00+24:00", "Value": 1}', "offset"),
        (b'{"SamplingTime": "2026-11-24T10:00:00.1234567890Z", "Value": 1}', "RFC 3339"),
        (b'{"SamplingTime": "2026-11-24T10:00:00Z", "Value": NaN}', "not JSON"),
        (b'{"SamplingTime": "2026-11-24T10:00:00Z", "Value": 1e400}', "not JSON"),
        (b'{"SamplingTime": "2026-11-24T10:00:00Z", "Value": {"a": 1}}', "number, string"),
        (b'{"SamplingTime": "2026-11-24T10:00:00Z", "Value": [1]}', "number, string"),
    ],
)
def test_malformed_payloads_are_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError, match=reason):
        decode(payload)


@given(junk=st.binary(max_size=200))
def test_junk_never_crashes_the_decoder(junk: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        decode(junk)


def test_non_finite_values_cannot_be_built() -> None:
    with pytest.raises(EnvelopeError):
        Envelope(datetime.now(UTC), math.inf)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        Envelope(datetime(2026, 1, 1), 1)


@pytest.mark.parametrize(
    "text", ["２０２６-11-24T10:00:00Z", "9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"]
)
def test_non_ascii_digits_and_out_of_range_times_are_envelope_errors(text: str) -> None:
    with pytest.raises(EnvelopeError):
        parse_time(text)


def _general_or_error(text: str) -> datetime | str:
    try:
        return _parse_time_general(text)
    except EnvelopeError:
        return "error"


def _fast_or_error(text: str) -> datetime | str:
    try:
        return parse_time(text)
    except EnvelopeError:
        return "error"


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_fast_path_agrees_with_the_general_parser_on_canonical_times(moment: datetime) -> None:
    text = format_time(moment.replace(tzinfo=UTC))
    assert len(text) == 27
    assert parse_time(text) == _parse_time_general(text) == moment.replace(tzinfo=UTC)


@given(
    st.integers(min_value=0, max_value=26),
    st.characters(codec="utf-8"),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
)
def test_fast_path_agrees_with_the_general_parser_on_any_one_char_change(
    position: int, char: str, moment: datetime
) -> None:
    canonical = format_time(moment.replace(tzinfo=UTC))
    text = canonical[:position] + char + canonical[position + 1 :]
    assert _fast_or_error(text) == _general_or_error(text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-24T10:00:60.123456Z",  # leap second: fromisoformat refuses, general path
        "2026-11-24T10:00:0\u0660.123456Z",  # Arabic-Indic digit: not ASCII
        "2026-11-24t10:00:00.123456Z",
        "2026-11-24T10:00:00.12345+Z",
        "2026-02-30T10:00:00.123456Z",
        "2026-11-24T10:00:00.1234567",
    ],
)
def test_near_canonical_strings_get_the_general_verdict(text: str) -> None:
    assert _fast_or_error(text) == _general_or_error(text)
