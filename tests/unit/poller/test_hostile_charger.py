"""Issue 14, finding 2: one odd charger answer must not stop the site, and whatever a
charger sends, the poller's memory and log volume stay bounded."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import tracemalloc

import pytest

from chargelift_poller.coordinator import Coordinator, Timing
from chargelift_poller.drivers.mhcp import MAX_BODY_BYTES, MAX_UNKNOWN_STATES
from chargelift_poller.errors import ChargerProtocolError
from chargelift_poller.metrics import PollerMetrics
from chargelift_poller.models import ChargerReading
from tests.support.clock import FakeClock
from tests.unit.poller.conftest import Recorder, fixture_json, sample
from tests.unit.poller.test_coordinator import Sink
from tests.unit.poller.test_mhcp import driver


def answering(recorder: Recorder, **charge: object) -> Recorder:
    recorder.json("ChargeData", {**fixture_json("mhcp", "ChargeData"), **charge})
    recorder.json("DevInfo", fixture_json("mhcp", "DevInfo"))
    return recorder


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("ActPwr", "NaN"),
        ("ActPwr", "Infinity"),
        ("ChgNrg", "-Infinity"),
        ("ActCurr", "1e400"),
        ("ChgDuration", str(2**70)),
        ("Price", "1" + "0" * 400),
    ],
)
async def test_a_value_out_of_the_number_range_refuses_the_reading_naming_the_field(
    recorder: Recorder, clock: FakeClock, metrics: PollerMetrics, key: str, raw: str
) -> None:
    body = json.dumps({**fixture_json("mhcp", "ChargeData"), key: "@"}).replace('"@"', raw)
    recorder.raw("ChargeData", body.encode())
    recorder.json("DevInfo", fixture_json("mhcp", "DevInfo"))
    sink = Sink()
    coordinator = Coordinator(
        "amtron-1",
        driver(recorder, clock),
        sink,
        metrics,
        timing=Timing(interval=1.0, timeout=1.0),
        snapshot_interval=300,
        clock=clock,
    )
    await coordinator.poll_once()  # used to raise EnvelopeError, TypeError, OverflowError
    status = coordinator.status
    assert status.up is False
    assert status.last_error is not None
    assert status.last_error.startswith("charger amtron-1: ChargeData: malformed response")
    assert f"; {key}: " in status.last_error
    assert sample(metrics, "poller_charger_up", charger="amtron-1") == 0
    assert sample(metrics, "poller_polls_failed_total", charger="amtron-1", error="protocol") == 1
    assert [e.payload for batch in sink.batches for e in batch] == [b"offline"]


async def test_a_body_over_the_limit_is_refused_without_being_kept(
    recorder: Recorder, clock: FakeClock
) -> None:
    answering(recorder, ChgState="x" * 256 * 1024)
    with pytest.raises(ChargerProtocolError, match=f"larger than {MAX_BODY_BYTES} bytes"):
        await driver(recorder, clock).read(full=True)


async def test_ever_new_unknown_states_keep_memory_and_logs_bounded(
    recorder: Recorder, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # A charger that answers a new 256 KB ChgState on every poll grew the poller by the
    # whole value per poll (kept in the set of states already logged) and logged each
    # one whole: ~5 MB/s at 20 polls/s.
    d = driver(answering(recorder), clock)
    await d.read(full=True)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with caplog.at_level(logging.WARNING):
            for i in range(200):
                state = f"{i:04d}" + "s" * 250  # within the string limit: each one mapped
                answering(recorder, ChgState=state)
                reading = await d.read(full=False)
                assert reading.values["OperationState"] == "unknown"
                answering(recorder, ChgState=f"{i:06d}" + "x" * 256 * 1024)
                with pytest.raises(ChargerProtocolError):
                    await d.read(full=False)
                recorder.requests.clear()  # the test's own record
        answering(recorder)  # and its last 256 KB answer
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100_000, grown  # 51 MB before: every 256 KB state was kept
    logged = [r.getMessage() for r in caplog.records if "unknown MHCP ChgState" in r.getMessage()]
    assert len(logged) == MAX_UNKNOWN_STATES
    assert max(len(m) for m in logged) < 400
    assert "further ones are not logged" in logged[-1]


class Buggy:
    """A driver whose mapping meets a bug on this charger's answers."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls = 0

    async def read(self, *, full: bool) -> ChargerReading:
        self.calls += 1
        raise ZeroDivisionError("division by zero")


class Good:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls = 0

    async def read(self, *, full: bool) -> ChargerReading:
        self.calls += 1
        return ChargerReading(self.clock.now(), {"PowerOutput": self.calls})


def coordinator(
    name: str, drv: Buggy | Good, clock: FakeClock, metrics: PollerMetrics, *, contain: bool
) -> Coordinator:
    return Coordinator(
        name,
        drv,
        Sink(),
        metrics,
        timing=Timing(interval=1.0, timeout=1.0, max_backoff=4.0),
        snapshot_interval=300,
        clock=clock,
        contain_driver_faults=contain,
    )


async def test_an_unexpected_driver_exception_is_a_charger_fault_and_the_others_poll_on(
    clock: FakeClock, metrics: PollerMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    buggy, good = Buggy(clock), Good(clock)
    bad_c = coordinator("amtron-1", buggy, clock, metrics, contain=True)
    good_c = coordinator("amtron-2", good, clock, metrics, contain=True)
    with caplog.at_level(logging.DEBUG):
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(bad_c.run()), tg.create_task(good_c.run())]
            while good.calls < 30:
                await asyncio.sleep(0)
            for t in tasks:
                t.cancel()
    assert buggy.calls >= 5  # retried with backoff, never stopped
    assert bad_c.status.up is False
    assert bad_c.status.last_error == (
        "charger amtron-1: unexpected ZeroDivisionError in the driver or its mapping (a bug)"
    )
    assert sample(metrics, "poller_charger_up", charger="amtron-1") == 0
    assert sample(metrics, "poller_charger_up", charger="amtron-2") == 1
    failed = sample(metrics, "poller_polls_failed_total", charger="amtron-1", error="driver_fault")
    assert failed == buggy.calls
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1  # logged once, with the charger's name and the traceback
    assert "amtron-1" in tracebacks[0].getMessage()
    # The backoff grows up to max_backoff (4 s) between the buggy charger's attempts.
    assert 4.0 in clock.sleeps


async def test_without_containment_a_driver_bug_fails_loudly(
    clock: FakeClock, metrics: PollerMetrics
) -> None:
    # What unit tests of coordinators get by default: a bug is not "charger offline".
    with pytest.raises(ZeroDivisionError):
        await coordinator("amtron-1", Buggy(clock), clock, metrics, contain=False).poll_once()


class Returns:
    def __init__(self, clock: FakeClock, values: dict[str, object]) -> None:
        self.clock = clock
        self.values = values

    async def read(self, *, full: bool) -> ChargerReading:
        return ChargerReading(self.clock.now(), self.values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), 2**70, -(2**64), [1], {"a": 1}, "11 kW"]
)
async def test_the_coordinator_refuses_a_reading_any_driver_could_return(
    clock: FakeClock, metrics: PollerMetrics, value: object
) -> None:
    # Any driver, not only MHCP: the values are checked before anything is written.
    sink = Sink()
    c = Coordinator(
        "amtron-1",
        Returns(clock, {"OperationState": "idle", "PowerOutput": value}),
        sink,
        metrics,
        timing=Timing(interval=1.0, timeout=1.0),
        snapshot_interval=300,
        clock=clock,
    )
    await c.poll_once()
    assert c.status.up is False
    assert c.status.last_error is not None
    assert c.status.last_error.startswith("charger amtron-1: reading refused: PowerOutput: ")
    assert [e.payload for batch in sink.batches for e in batch] == [b"offline"]
