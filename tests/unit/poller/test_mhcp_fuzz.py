"""Fuzzing the MHCP response parser (issue 8): whatever a charger answers, the driver
returns a reading of catalogue fields or raises one of its own ChargerErrors."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargelift_contract import CATALOGUE
from chargelift_poller.errors import ChargerError
from tests.unit.poller.conftest import PIN, FakeClock, Recorder, fixture_json
from tests.unit.poller.test_mhcp import driver

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def mutated(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The real sample with some fields replaced, removed or added."""
    keys = sorted(base)
    return st.builds(
        lambda repl, drop, extra: {
            **{k: v for k, v in base.items() if k not in drop},
            **repl,
            **extra,
        },
        st.dictionaries(st.sampled_from(keys), json_values, max_size=4),
        st.sets(st.sampled_from(keys), max_size=3),
        st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=2),
    )


def check(body: bytes, devinfo: bytes) -> None:
    rec = Recorder()
    rec.raw("ChargeData", body)
    rec.raw("DevInfo", devinfo)
    message = None
    try:
        reading = asyncio.run(driver(rec, FakeClock()).read(full=True))
    except ChargerError as exc:
        message = str(exc)
    if message is not None:
        assert PIN not in message
        return
    for name, value in reading.values.items():
        CATALOGUE[name].check(value)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(doc=mutated(fixture_json("mhcp", "ChargeData")))
def test_mutated_charge_data_never_escapes_the_driver(doc: dict[str, Any]) -> None:
    check(orjson.dumps(doc), orjson.dumps(fixture_json("mhcp", "DevInfo")))


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(doc=mutated(fixture_json("mhcp", "DevInfo")))
def test_mutated_devinfo_never_escapes_the_driver(doc: dict[str, Any]) -> None:
    check(orjson.dumps(fixture_json("mhcp", "ChargeData")), orjson.dumps(doc))


@settings(max_examples=100)
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_the_driver(body: bytes) -> None:
    check(body, orjson.dumps(fixture_json("mhcp", "DevInfo")))
