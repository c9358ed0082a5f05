"""The per-charger coordinator, with a fake driver, a fake clock and an in-memory sink."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

import orjson
import pytest

from chargelift_contract import decode
from chargelift_edge.clock import SystemClock
from chargelift_edge.outbox import Entry
from chargelift_poller.coordinator import Coordinator, Timing
from chargelift_poller.errors import (
    AuthError,
    ChargerConnectionError,
    ChargerError,
    ChargerProtocolError,
)
from chargelift_poller.metrics import PollerMetrics
from chargelift_poller.models import ChargerReading
from tests.support.clock import FakeClock
from tests.unit.poller.conftest import sample


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[Entry]] = []

    def append(self, entries: Sequence[Entry]) -> object:
        self.batches.append(list(entries))
        return None

    def topics(self) -> list[list[str]]:
        return [[e.topic.rsplit("/", 1)[1] for e in batch] for batch in self.batches]


class FakeDriver:
    """Answers from a script: a dict of values, or an exception to raise."""

    def __init__(
        self, clock: FakeClock | SystemClock, script: list[dict[str, object] | ChargerError]
    ):
        self.clock = clock
        self.script = script
        self.calls: list[bool] = []
        self.hang = False

    async def read(self, *, full: bool) -> ChargerReading:
        self.calls.append(full)
        if self.hang:
            await asyncio.sleep(3600)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, ChargerError):
            raise step
        return ChargerReading(self.clock.now(), step)  # type: ignore[arg-type]


VALUES = {"OperationState": "idle", "PowerOutput": 0, "Tariff": "T1"}


def make(
    clock: FakeClock, metrics: PollerMetrics, script: list[dict[str, object] | ChargerError],
    **timing: float,
) -> tuple[Coordinator, FakeDriver, Sink]:  # fmt: skip
    driver = FakeDriver(clock, script)
    sink = Sink()
    t = Timing(**{"interval": 1.0, "timeout": 0.5, "max_backoff": 8.0, **timing})
    coordinator = Coordinator(
        "amtron-1", driver, sink, metrics, timing=t, snapshot_interval=300, clock=clock
    )
    return coordinator, driver, sink


async def test_first_poll_is_full_and_marks_the_charger_online(
    clock: FakeClock, metrics: PollerMetrics
) -> None:
    coordinator, driver, sink = make(clock, metrics, [VALUES])
    assert coordinator.availability() is None
    delay = await coordinator.poll_once()
    assert delay == pytest.approx(1.0)
    assert driver.calls == [True]
    assert sink.topics() == [["availability", "OperationState", "PowerOutput", "Tariff"]]
    first = sink.batches[0]
    assert first[0].payload == b"online"
    envelope = decode(first[2].payload)
    assert envelope.value == 0
    assert envelope.sampling_time == clock.now()
    assert first[2].sampled_at == clock.now().timestamp()
    assert coordinator.availability() == b"online"
    assert sample(metrics, "poller_charger_up", charger="amtron-1") == 1
    assert sample(metrics, "poller_polls_ok_total", charger="amtron-1") == 1
    assert sample(metrics, "poller_samples_total", charger="amtron-1") == 3


async def test_only_changes_between_snapshots_then_a_full_snapshot(
    clock: FakeClock, metrics: PollerMetrics
) -> None:
    script: list[dict[str, object] | ChargerError] = [
        VALUES, VALUES, {**VALUES, "PowerOutput": 7000}, {**VALUES, "PowerOutput": 7000},
    ]  # fmt: skip
    coordinator, driver, sink = make(clock, metrics, script)
    for _ in range(4):
        clock.advance(await coordinator.poll_once())
    assert sink.topics()[1:] == [[], ["PowerOutput"], []]
    clock.advance(300)
    await coordinator.poll_once()
    assert driver.calls[-1] is True
    assert sink.topics()[-1] == ["OperationState", "PowerOutput", "Tariff"]


async def test_down_and_up_are_logged_once_each(
    clock: FakeClock, metrics: PollerMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="chargelift_poller")
    failure = ChargerConnectionError("amtron-1", "ChargeData: ConnectError")
    script: list[dict[str, object] | ChargerError] = [
        VALUES,
        failure,
        failure,
        failure,
        VALUES,
        VALUES,
    ]
    coordinator, driver, sink = make(clock, metrics, script)
    for _ in range(6):
        clock.advance(await coordinator.poll_once())
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert sum("marked down" in m for m in messages) == 1
    assert sum("up again" in m for m in messages) == 1
    assert [r.levelname for r in caplog.records if "still down" in r.getMessage()] == ["DEBUG"] * 2
    availability = [e.payload for b in sink.batches for e in b if e.topic.endswith("availability")]
    assert availability == [b"online", b"offline", b"online"]
    # the first read after the recovery is a full snapshot
    assert driver.calls == [True, False, True, True, True, False]
    assert sample(metrics, "poller_polls_failed_total", charger="amtron-1", error="connection") == 3
    assert sample(metrics, "poller_charger_up", charger="amtron-1") == 1


async def test_first_poll_failing_marks_down(clock: FakeClock, metrics: PollerMetrics) -> None:
    coordinator, _, sink = make(clock, metrics, [ChargerProtocolError("amtron-1", "bad")])
    await coordinator.poll_once()
    assert coordinator.availability() == b"offline"
    assert sink.batches == [[Entry("amtron-1", "chargers/amtron-1/availability", b"offline",
                                   clock.now().timestamp())]]  # fmt: skip
    assert coordinator.status.up is False
    assert coordinator.status.last_error == "charger amtron-1: bad"


async def test_backoff_doubles_and_is_bounded(clock: FakeClock, metrics: PollerMetrics) -> None:
    failure = ChargerConnectionError("amtron-1", "refused")
    coordinator, _, _ = make(clock, metrics, [failure])
    delays = []
    for _ in range(8):
        delays.append(await coordinator.poll_once())
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]


async def test_auth_error_takes_the_charger_out_of_fast_rotation_and_logs_loudly_once(
    clock: FakeClock, metrics: PollerMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="chargelift_poller")
    failure = AuthError("amtron-1", "ChargeData: the charger refused the PIN (HTTP 403)")
    coordinator, _, _ = make(clock, metrics, [failure], permanent_retry=300)
    delays = [await coordinator.poll_once() for _ in range(3)]
    assert delays == [300, 300, 300]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "amtron-1" in errors[0].getMessage()
    assert "refused the PIN" in errors[0].getMessage()
    assert sample(metrics, "poller_polls_failed_total", charger="amtron-1", error="auth") == 3


async def test_a_permanent_error_after_a_transient_one_is_still_logged_loudly(
    clock: FakeClock, metrics: PollerMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chargelift_poller")
    script: list[dict[str, object] | ChargerError] = [
        ChargerConnectionError("amtron-1", "refused"), AuthError("amtron-1", "403"),
        AuthError("amtron-1", "403"),
    ]  # fmt: skip
    coordinator, _, _ = make(clock, metrics, script)
    for _ in range(3):
        await coordinator.poll_once()
    assert [r.levelname for r in caplog.records] == ["WARNING", "ERROR"]


async def test_cadence_keeps_its_phase_and_skips_missed_ticks(
    clock: FakeClock, metrics: PollerMetrics
) -> None:
    coordinator, _, _ = make(clock, metrics, [VALUES])
    assert await coordinator.poll_once() == pytest.approx(1.0)
    clock.advance(1.0)
    clock.advance(0.25)  # this poll started late...
    assert await coordinator.poll_once() == pytest.approx(0.75)  # ...next one stays on phase
    clock.advance(0.75)
    clock.advance(3.4)  # a very slow poll: ticks 4, 5, 6 are skipped, not bursted
    assert await coordinator.poll_once() == pytest.approx(0.6)


async def test_a_hanging_charger_is_cut_by_the_timeout(metrics: PollerMetrics) -> None:
    clock = SystemClock()
    driver = FakeDriver(clock, [VALUES])
    driver.hang = True
    sink = Sink()
    coordinator = Coordinator(
        "amtron-1", driver, sink, metrics,
        timing=Timing(interval=1.0, timeout=0.05), snapshot_interval=300, clock=clock,
    )  # fmt: skip
    async with asyncio.timeout(2):
        await coordinator.poll_once()
    assert coordinator.status.up is False
    assert "no answer within 0.05 s" in (coordinator.status.last_error or "")
    assert sample(metrics, "poller_polls_failed_total", charger="amtron-1", error="timeout") == 1


async def test_one_failing_charger_does_not_slow_down_another(metrics: PollerMetrics) -> None:
    clock = SystemClock()
    good = FakeDriver(clock, [VALUES])
    bad = FakeDriver(clock, [VALUES])
    bad.hang = True
    coordinators = [
        Coordinator(
            name,
            driver,
            Sink(),
            metrics,
            timing=Timing(interval=0.02, timeout=0.2, max_backoff=0.2),
            snapshot_interval=300,
            clock=clock,
        )
        for name, driver in (("good", good), ("bad", bad))
    ]
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(c.run()) for c in coordinators]
        await asyncio.sleep(0.5)
        for t in tasks:
            t.cancel()
    assert len(good.calls) >= 15  # ~25 at 50 Hz; the hanging neighbour changes nothing
    assert coordinators[0].status.up is True
    assert coordinators[1].status.up is False
    assert sample(metrics, "poller_charger_up", charger="good") == 1
    assert sample(metrics, "poller_charger_up", charger="bad") == 0


async def test_a_driver_bug_is_not_swallowed(clock: FakeClock, metrics: PollerMetrics) -> None:
    class Buggy:
        async def read(self, *, full: bool) -> ChargerReading:
            raise KeyError("ActPwr")

    coordinator = Coordinator(
        "amtron-1", Buggy(), Sink(), metrics,
        timing=Timing(interval=1, timeout=1), snapshot_interval=300, clock=clock,
    )  # fmt: skip
    with pytest.raises(KeyError):
        await coordinator.poll_once()


async def test_status_since_is_a_datetime(clock: FakeClock, metrics: PollerMetrics) -> None:
    coordinator, _, _ = make(clock, metrics, [VALUES])
    await coordinator.poll_once()
    assert isinstance(coordinator.status.since, datetime)
    assert orjson.dumps(coordinator.status.since)
