"""Fuzzing the MHCP driver and its coordinator over the whole JSON value space (issues 8, 14).

Whatever a charger answers — NaN, ±Infinity, ``1e400``, ``2**70``, a 400-digit
``Price``, huge or ever-new strings, wrong types, deep nesting, in place of any key of
ChargeData or DevInfo, or arbitrary bytes — one poll through
:class:`~chargelift_poller.coordinator.Coordinator` ends in exactly one of two ways:

* the reading is accepted, and every outbox payload is a valid envelope of a catalogue
  field with a finite number within ±2**53; or
* the reading is refused: the charger is marked down (``charger_up`` 0, the error
  counted by kind), and the error names the charger and, when the fault is in one
  key's value, that key.

Nothing else may escape: the coordinator runs *without* ``contain_driver_faults`` here,
so any other exception fails the test. No value is skipped.

``make test`` runs the default profile (>= 1,000 examples in this module); ``make fuzz``
sets ``HYPOTHESIS_PROFILE=fuzz`` (tests/conftest.py), >= 100,000 examples.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from chargelift_contract import CATALOGUE, decode
from chargelift_edge.outbox import Entry
from chargelift_poller.coordinator import Coordinator, Timing
from chargelift_poller.drivers.mhcp import MhcpDriver
from chargelift_poller.metrics import PollerMetrics
from chargelift_poller.models import MAX_MAGNITUDE, DriverSpec
from tests.support.clock import FakeClock
from tests.unit.poller.conftest import PIN, Recorder, fixture_json

CHARGER = "amtron-1"
CHARGE_DATA = fixture_json("mhcp", "ChargeData")
DEV_INFO = fixture_json("mhcp", "DevInfo")

#: The profile's max_examples (100 by default, 10,000 with HYPOTHESIS_PROFILE=fuzz).
BUDGET = settings().max_examples
#: Per key of the answers (61 keys): 17 each by default, 1,666 each when fuzzing.
PER_KEY = max(17, BUDGET // 6)
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- the JSON value space, as text (NaN, Infinity and 400-digit numbers are not what a
# JSON encoder writes, but a charger's firmware may) -----------------------------------

_SPECIAL = st.sampled_from(
    [
        "NaN", "-NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E999", "4.9e-325",
        str(2**53 + 1), str(2**63), str(2**64), str(2**70), "-" + str(2**70),
        "1" + "0" * 400, "-" + "9" * 4000, "0." + "0" * 400 + "1", "1e-400",
        "-0", "0.0", "1.0e+308", "1.8e308", "true", "false", "null", '""',
    ]
)  # fmt: skip
_NUMBERS = st.one_of(
    st.integers().map(str),
    st.integers(-(10**60), 10**60).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: json.dumps(f)),
    st.builds(lambda d, e: f"{d}e{e}", st.integers(-99, 99), st.integers(-9999, 9999)),
)
_STRINGS = st.one_of(
    st.text(max_size=40).map(json.dumps),
    st.uuids().map(lambda u: json.dumps(str(u))),  # ever-new values
    st.builds(lambda c, n: json.dumps(c * n), st.characters(), st.integers(200, 300_000)),
    st.sampled_from(['"\\ud800"', '"\\u0000"', '"Charging\\u0000"', '"\\"']),
)
_DEEP = st.builds(
    lambda n, open_, close: open_ * n + close * n,
    st.integers(1, 5000),
    st.just("["),
    st.just("]"),
) | st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n)


def _json_values() -> st.SearchStrategy[str]:
    leaves = _SPECIAL | _NUMBERS | _STRINGS
    return (
        st.recursive(
            leaves,
            lambda inner: (
                st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
                | st.lists(st.tuples(st.text(max_size=8), inner), max_size=4).map(
                    lambda kvs: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in kvs) + "}"
                )
            ),
            max_leaves=6,
        )
        | _DEEP
    )


JSON_VALUES = _json_values()


def document(base: dict[str, Any], replaced: dict[str, str], dropped: Sequence[str] = ()) -> bytes:
    """``base`` as JSON text with some keys' values replaced by raw JSON text."""
    parts = [
        f"{json.dumps(k)}:{replaced[k] if k in replaced else json.dumps(v)}"
        for k, v in base.items()
        if k not in dropped
    ]
    parts += [f"{json.dumps(k)}:{v}" for k, v in replaced.items() if k not in base]
    return ("{" + ",".join(parts) + "}").encode("utf-8", "surrogatepass")


# -- one poll, and what it must end as ----------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def append(self, entries: Sequence[Entry]) -> object:
        self.entries += entries
        return None


class Harness:
    """One event loop, HTTP client and metrics registry for every example (speed: a
    fresh loop, client and registry per example cost ~6 ms of the ~8)."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.runner = asyncio.Runner()
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(self.recorder.handler))
        self.metrics = PollerMetrics(CollectorRegistry())
        self.metrics.declare_charger(CHARGER)

    # From the two metrics themselves: a walk of the whole registry costs ~3 ms.
    def up(self) -> float:
        (family,) = self.metrics.charger_up.collect()
        return next(s.value for s in family.samples if s.labels["charger"] == CHARGER)

    def failures(self) -> float:
        (family,) = self.metrics.polls_failed.collect()
        return sum(
            s.value
            for s in family.samples
            if s.name.endswith("_total") and s.labels["charger"] == CHARGER
        )

    def poll(self, charge_data: bytes, dev_info: bytes) -> tuple[Coordinator, Sink]:
        self.recorder.raw("ChargeData", charge_data)
        self.recorder.raw("DevInfo", dev_info)
        self.recorder.requests.clear()
        clock = FakeClock()
        spec = DriverSpec(
            charger_id=CHARGER,
            url="http://192.0.2.10:25000",
            pin=SecretStr(PIN),
            pin_ref="env AMTRON_1_PIN",
            options={},
            clock=clock.now,
        )
        sink = Sink()
        coordinator = Coordinator(
            CHARGER,
            MhcpDriver(spec, self.http),
            sink,
            self.metrics,
            timing=Timing(interval=1.0, timeout=5.0),
            snapshot_interval=300,
            clock=clock,
        )  # contain_driver_faults=False: anything outside ChargerError fails the test
        self.runner.run(coordinator.poll_once())
        return coordinator, sink

    def close(self) -> None:
        self.runner.run(self.http.aclose())
        self.runner.close()


_harness: Harness | None = None


@pytest.fixture(scope="module", autouse=True)
def _close_harness() -> Iterator[None]:
    yield
    global _harness
    if _harness is not None:
        _harness.close()
        _harness = None


def harness() -> Harness:
    global _harness
    if _harness is None:
        _harness = Harness()
    return _harness


def check(charge_data: bytes, dev_info: bytes, key: str | None = None) -> None:
    h = harness()
    failed_before = h.failures()
    coordinator, sink = h.poll(charge_data, dev_info)
    status = coordinator.status
    up = h.up()
    if status.up:
        assert up == 1
        assert status.last_error is None
        published = [e for e in sink.entries if not e.topic.endswith("/availability")]
        assert published
        for entry in published:
            assert len(entry.payload) < 1024
            envelope = decode(entry.payload)
            CATALOGUE[entry.topic.rsplit("/", 1)[1]].check(envelope.value)
            if isinstance(envelope.value, int | float):
                assert abs(envelope.value) <= MAX_MAGNITUDE
        return
    assert status.up is False
    assert up == 0
    message = status.last_error
    assert message is not None
    assert message.startswith(f"charger {CHARGER}: ")
    assert PIN not in message
    assert len(message) < 400
    assert h.failures() == failed_before + 1
    assert [e.payload for e in sink.entries] == [b"offline"]
    if key is not None and "malformed response" in message and "body:" not in message:
        assert f"; {key}" in message, message  # the refused key is named


# -- the properties -----------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(CHARGE_DATA))
@settings(FUZZ, max_examples=PER_KEY)
@given(value=JSON_VALUES)
def test_any_value_of_any_charge_data_key(key: str, value: str) -> None:
    check(document(CHARGE_DATA, {key: value}), document(DEV_INFO, {}), key)


@pytest.mark.parametrize("key", sorted(DEV_INFO))
@settings(FUZZ, max_examples=PER_KEY)
@given(value=JSON_VALUES)
def test_any_value_of_any_devinfo_key(key: str, value: str) -> None:
    check(document(CHARGE_DATA, {}), document(DEV_INFO, {key: value}), key)


def _mutations(base: dict[str, Any]) -> st.SearchStrategy[tuple[dict[str, str], list[str]]]:
    keys = sorted(base)
    return st.tuples(
        st.dictionaries(st.sampled_from(keys) | st.text(min_size=1, max_size=10), JSON_VALUES,
                        max_size=5),
        st.lists(st.sampled_from(keys), max_size=4),
    )  # fmt: skip


@settings(FUZZ, max_examples=BUDGET)
@given(charge=_mutations(CHARGE_DATA), dev=_mutations(DEV_INFO))
def test_mutated_answers_never_escape(
    charge: tuple[dict[str, str], list[str]], dev: tuple[dict[str, str], list[str]]
) -> None:
    check(document(CHARGE_DATA, *charge), document(DEV_INFO, *dev))


@settings(FUZZ, max_examples=BUDGET)
@given(body=st.binary(max_size=300) | JSON_VALUES.map(str.encode))
def test_arbitrary_bodies_never_escape(body: bytes) -> None:
    check(body, document(DEV_INFO, {}))
    check(document(CHARGE_DATA, {}), body)
