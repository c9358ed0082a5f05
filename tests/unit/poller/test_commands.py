"""The commander with a fake charger: stages, restarts, leases, refusals (no broker)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from chargelift_contract.commands import (
    Command,
    CommandResult,
    Outcome,
    command_topic,
    decode_result,
    derived_command_id,
    encode_command,
)
from chargelift_edge.commands import CommandStore, Lease
from chargelift_edge.outbox import Outbox
from chargelift_poller.commands import Commander, Device
from chargelift_poller.config import ControlConfig
from chargelift_poller.drivers.mhcp import COMMANDS as MHCP_COMMANDS
from chargelift_poller.metrics import PollerMetrics
from chargelift_poller.models import ChargerReading
from chargelift_runtime.mqtt import Message
from tests.support.clock import FakeClock
from tests.unit.poller.conftest import sample

CHARGER = "amtron-1"


@dataclass
class FakeBox:
    """A charger with the Controller capability that remembers every write."""

    clock: FakeClock
    limit: float = 16.0
    state: str = "Charging"
    hardware_max: float | None = 16.0
    writes: list[tuple[str, float | None]] = field(default_factory=list)
    ignore_writes: bool = False
    #: What this fake declares it can do: what MHCP can, unless a test says otherwise.
    commands: frozenset[Command] = MHCP_COMMANDS

    @property
    def hardware_max_current(self) -> float | None:
        return self.hardware_max

    async def read(self, *, full: bool) -> ChargerReading:
        return ChargerReading(
            self.clock.now(), {"MaximumOutputCurrent": self.limit, "VendorState": self.state}
        )

    async def set_current_limit(self, amps: float, *, permanent: bool) -> None:
        self.writes.append(("limit", amps))
        if not self.ignore_writes:
            self.limit = amps

    async def pause(self) -> None:
        self.writes.append(("pause", None))
        if not self.ignore_writes:
            self.state = "Paused"

    async def resume(self) -> None:
        self.writes.append(("resume", None))
        self.state = "Charging"

    async def stop(self) -> None:
        self.writes.append(("stop", None))
        self.state = "Terminated"

    async def start(self) -> None:
        self.writes.append(("start", None))
        self.state = "Charging"

    async def set_operative(self, operative: bool) -> None:
        self.writes.append(("operative" if operative else "inoperative", None))

    def shows(self, reading: ChargerReading, command: Command, value: float | None) -> str | None:
        values = reading.values
        if command is Command.CURRENT_LIMIT:
            ok = values["MaximumOutputCurrent"] == value
        elif command is Command.PAUSE:
            ok = values["VendorState"] != "Charging"
        else:
            ok = True
        return None if ok else f"reads back {dict(values)}"


class ReadOnly:
    """A driver without the Controller capability."""

    async def read(self, *, full: bool) -> ChargerReading:
        raise AssertionError("never read")


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox.open(tmp_path / "outbox.sqlite") as box:
        yield box


def results(outbox: Outbox) -> list[CommandResult]:
    rows = outbox.load(CHARGER, after=0, limit=10_000)
    return [decode_result(r.payload) for r in rows if "/result/" in r.topic]


def outcome(outbox: Outbox, command_id: str) -> Outcome | None:
    found = [r.outcome for r in results(outbox) if r.command_id == command_id]
    return found[-1] if found else None


def command(cmd: Command, value: float | None = None, **kw: object) -> Message:
    return Message(command_topic(CHARGER, cmd), encode_command(cmd, value, **kw), 1, False)  # type: ignore[arg-type]


def commander(
    outbox: Outbox,
    driver: Any,
    clock: FakeClock,
    metrics: PollerMetrics,
    *,
    up: bool | None = True,
    driver_name: str | None = None,
    **control: Any,
) -> Commander:
    device = Device(asyncio.Lock(), lambda: up, timeout=1.0)
    return Commander(
        CHARGER,
        driver,
        ControlConfig(**control),
        outbox,
        device,
        metrics,
        clock=clock,
        driver_name=driver_name,
    )


@contextlib.asynccontextmanager
async def running(c: Commander) -> AsyncIterator[Commander]:
    task = asyncio.create_task(c.run())
    try:
        yield c
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settle(predicate: object, what: str) -> None:
    for _ in range(2000):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never: {what}")


async def test_a_malformed_command_is_rejected_with_the_reason_and_an_id_from_its_bytes(
    outbox: Outbox, clock: FakeClock, metrics: PollerMetrics
) -> None:
    box = FakeBox(clock)
    c = commander(outbox, box, clock, metrics)
    topic = command_topic(CHARGER, Command.CURRENT_LIMIT)
    await c.receive(Message(topic, b'{"Value": "ten"}', 1, False))
    await c.receive(Message(topic, b'{"Value": 99999, "CommandId": "mine-1"}', 1, False))
    (first, second) = results(outbox)
    assert first.command_id == derived_command_id(topic, b'{"Value": "ten"}')
    assert first.outcome is Outcome.REJECTED
    assert "Value must be a number" in first.reason
    assert (second.command_id, second.outcome) == ("mine-1", Outcome.REJECTED)
    rows = outbox.load(CHARGER, after=0, limit=10)
    assert [r.retain for r in rows] == [False, False]  # results are never retained
    assert box.writes == []
    # A malformed payload reusing a known id does not give that command a second outcome.
    await c.receive(Message(topic, b'{"Value": null, "CommandId": "mine-1"}', 1, False))
    assert results(outbox)[2] == second  # its one result, again


async def test_a_command_found_applying_after_a_crash_is_read_back_never_written_again(
    outbox: Outbox, clock: FakeClock, metrics: PollerMetrics
) -> None:
    box = FakeBox(clock, limit=10.0)
    store = CommandStore(outbox, CHARGER)
    c = commander(outbox, box, clock, metrics)
    # Two commands the crash left "applying": the box shows the first, not the second.
    for cid, value in (("shown", 10.0), ("lost", 12.0)):
        await c.receive(command(Command.CURRENT_LIMIT, value, command_id=cid))
        outbox.execute([store.stage(cid, "applying", clock.now().timestamp())])
    restarted = commander(outbox, box, clock, metrics)
    async with running(restarted):
        await settle(lambda: outcome(outbox, "lost") is not None, "both settled")
    assert outcome(outbox, "shown") is Outcome.APPLIED
    assert outcome(outbox, "lost") is Outcome.FAILED
    (lost,) = [r for r in results(outbox) if r.command_id == "lost"]
    assert lost.reason == "interrupted by a restart"
    assert box.writes == []  # at most once: neither is written again
    assert restarted.values()["CurrentLimit"] == 10.0


async def test_a_command_found_received_after_a_restart_is_applied_or_expired(
    outbox: Outbox, clock: FakeClock, metrics: PollerMetrics
) -> None:
    box = FakeBox(clock)
    c = commander(outbox, box, clock, metrics)
    now = clock.now()
    await c.receive(command(Command.CURRENT_LIMIT, 8, command_id="kept"))
    await c.receive(
        command(
            Command.PAUSE, command_id="stale", issued_at=now, expires_at=now + timedelta(seconds=5)
        )
    )
    clock.advance(30)  # down for a while: "stale" expired meanwhile
    async with running(commander(outbox, box, clock, metrics)):
        await settle(lambda: outcome(outbox, "kept") is not None, "kept settled")
        await settle(lambda: outcome(outbox, "stale") is not None, "stale settled")
    assert outcome(outbox, "kept") is Outcome.APPLIED
    assert outcome(outbox, "stale") is Outcome.EXPIRED
    assert box.writes == [("limit", 8)]


async def test_a_write_the_charger_does_not_show_fails_with_what_it_shows(
    outbox: Outbox, clock: FakeClock, metrics: PollerMetrics
) -> None:
    box = FakeBox(clock, ignore_writes=True)
    c = commander(outbox, box, clock, metrics)
    async with running(c):
        await c.receive(command(Command.CURRENT_LIMIT, 8, command_id="ignored"))
        await settle(lambda: outcome(outbox, "ignored") is not None, "a result")
    (result,) = results(outbox)
    assert result.outcome is Outcome.FAILED
    assert "MaximumOutputCurrent" in result.reason
    assert c.values()["CurrentLimit"] is None
    assert sample(metrics, "poller_commands_total", command="CurrentLimit", outcome="failed") == 1
    assert sample(metrics, "poller_charger_writes_total", charger=CHARGER) == 1


async def test_without_a_maximum_a_limit_is_rejected_and_a_driver_without_control_refuses(
    outbox: Outbox, clock: FakeClock, metrics: PollerMetrics
) -> None:
    box = FakeBox(clock, hardware_max=None)  # the real Xtra reports MaxCurrWb 0
    c = commander(outbox, box, clock, metrics)
    await c.receive(command(Command.CURRENT_LIMIT, 8, command_id="no-max"))
    assert outcome(outbox, "no-max") is Outcome.REJECTED
    assert "set max_current" in results(outbox)[0].reason
    ro = commander(outbox, ReadOnly(), clock, metrics)
    await ro.receive(command(Command.STOP, command_id="ro-1"))
    assert results(outbox)[-1].reason == "the driver cannot control this charger"
    configured = commander(outbox, box, clock, metrics, max_current=11)
    await configured.receive(command(Command.CURRENT_LIMIT, 11.5, command_id="above"))
    assert "above the charger's maximum of 11 A" in results(outbox)[-1].reason


@pytest.mark.parametrize(
    ("cmd", "why"),
    [
        (Command.START, "the mhcp driver cannot start a session"),
        (Command.OPERATIVE, "the mhcp driver cannot make a charger operative"),
        (Command.INOPERATIVE, "the mhcp driver cannot make a charger inoperative"),
    ],
)
async def test_a_command_the_driver_does_not_declare_is_rejected_counted_and_never_sent(
    outbox: Outbox, clock: FakeClock, metrics: PollerMetrics, cmd: Command, why: str
) -> None:
    box = FakeBox(clock)  # declares what MHCP declares: no Start, Operative, Inoperative
    c = commander(outbox, box, clock, metrics, driver_name="mhcp")
    async with running(c):
        await c.receive(command(cmd, command_id="nope-1"))
        await c.receive(command(cmd, True, command_id="nope-2"))
        await c.receive(command(Command.PAUSE, command_id="then-a-pause"))
        await settle(lambda: outcome(outbox, "then-a-pause") is not None, "the pause")
    assert [(r.command_id, r.outcome, r.reason) for r in results(outbox)[:2]] == [
        ("nope-1", Outcome.REJECTED, why),
        ("nope-2", Outcome.REJECTED, why),
    ]
    assert box.writes == [("pause", None)]  # nothing of the refused ones reached the box
    assert sample(metrics, "poller_commands_total", command=cmd.value, outcome="rejected") == 2
    assert sample(metrics, "poller_charger_writes_total", charger=CHARGER) == 1
    # Without the driver's name the reason still says what it cannot do.
    anonymous = commander(outbox, box, clock, metrics)
    await anonymous.receive(command(cmd, command_id="nope-3"))
    assert results(outbox)[-1].reason == why.replace("the mhcp driver", "the driver")


@pytest.mark.parametrize(
    ("cmd", "write"),
    [
        (Command.START, "start"),
        (Command.OPERATIVE, "operative"),
        (Command.INOPERATIVE, "inoperative"),
    ],
)
async def test_a_driver_that_declares_a_command_gets_it_applied(
    outbox: Outbox, clock: FakeClock, metrics: PollerMetrics, cmd: Command, write: str
) -> None:
    box = FakeBox(clock, commands=frozenset(Command))  # a coming Modbus driver, say
    c = commander(outbox, box, clock, metrics)
    async with running(c):
        await c.receive(command(cmd, command_id="yes-1"))
        await settle(lambda: outcome(outbox, "yes-1") is not None, "its result")
    assert outcome(outbox, "yes-1") is Outcome.APPLIED
    assert box.writes == [(write, None)]


async def test_a_lease_survives_a_restart_and_reverts_to_the_default_when_it_ended(
    outbox: Outbox, clock: FakeClock, metrics: PollerMetrics
) -> None:
    box = FakeBox(clock)
    c = commander(outbox, box, clock, metrics, default_current=13, min_write_interval=0)
    async with running(c):
        await c.receive(command(Command.CURRENT_LIMIT, 7, command_id="lease", valid_for=20))
        await settle(lambda: outcome(outbox, "lease") is not None, "applied")
    assert outcome(outbox, "lease") is Outcome.APPLIED
    assert c.values()["CurrentLimit"] == 7
    assert c.values()["CurrentLimitLeaseEnd"] is not None
    clock.advance(25)  # the poller was down when the lease ended
    restarted = commander(outbox, box, clock, metrics, default_current=13, min_write_interval=0)
    lease = restarted.lease
    assert isinstance(lease, Lease)
    assert lease.value == 7
    async with running(restarted):
        await settle(lambda: outcome(outbox, "lease") is Outcome.REVERTED, "reverted")
    assert box.limit == 13
    assert results(outbox)[-1].value == 13
    assert restarted.values() == {"CurrentLimit": None, "CurrentLimitLeaseEnd": None}
    assert commander(outbox, box, clock, metrics).lease is None  # persisted


async def test_writes_are_paced_and_waiting_limits_coalesced(
    outbox: Outbox, clock: FakeClock, metrics: PollerMetrics
) -> None:
    box = FakeBox(clock)
    c = commander(outbox, box, clock, metrics, min_write_interval=2.0)
    async with running(c):
        for i in range(20):
            await c.receive(command(Command.CURRENT_LIMIT, 6 + i % 5, command_id=f"b-{i}"))
        await c.receive(command(Command.PAUSE, command_id="p"))
        await settle(lambda: len(results(outbox)) == 21, "21 results")
    assert outcome(outbox, "b-19") is Outcome.APPLIED
    assert outcome(outbox, "p") is Outcome.APPLIED
    rejected = [r for r in results(outbox) if r.outcome is Outcome.REJECTED]
    assert len(rejected) == 19
    assert {r.reason for r in rejected} == {"superseded by b-19"}
    assert box.writes == [("limit", 10.0), ("pause", None)]
    assert 2.0 in clock.sleeps  # the second write waited for min_write_interval


async def test_a_command_for_a_charger_not_polled_yet_waits_for_the_first_poll(
    outbox: Outbox, clock: FakeClock, metrics: PollerMetrics
) -> None:
    box = FakeBox(clock)
    state: dict[str, bool | None] = {"up": None}
    device = Device(asyncio.Lock(), lambda: state["up"], timeout=1.0)
    c = Commander(CHARGER, box, ControlConfig(), outbox, device, metrics, clock=clock)
    now = clock.now()
    day = now + timedelta(hours=23)
    async with running(c):
        await c.receive(
            command(Command.CURRENT_LIMIT, 9, command_id="early", issued_at=now, expires_at=day)
        )
        await asyncio.sleep(0.01)
        assert box.writes == []  # not "offline": not polled yet, so it waits
        assert results(outbox) == []
        state["up"] = True
        await settle(lambda: outcome(outbox, "early") is not None, "a result")
    assert outcome(outbox, "early") is Outcome.APPLIED
    assert box.writes == [("limit", 9)]


async def test_commands_waiting_for_one_charger_are_bounded(
    outbox: Outbox, clock: FakeClock, metrics: PollerMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chargelift_poller.commands as commands

    monkeypatch.setattr(commands, "MAX_OPEN", 2)
    c = commander(outbox, FakeBox(clock), clock, metrics)  # not running: nothing is applied
    for i in range(3):
        await c.receive(command(Command.PAUSE, command_id=f"w-{i}"))
    (result,) = results(outbox)
    assert (result.command_id, result.outcome) == ("w-2", Outcome.REJECTED)
    assert "too many commands waiting" in result.reason


async def test_writes_and_read_backs_hold_the_device_lock_polls_hold(
    outbox: Outbox, clock: FakeClock, metrics: PollerMetrics
) -> None:
    lock = asyncio.Lock()
    held: list[bool] = []

    class Watched(FakeBox):
        async def read(self, *, full: bool) -> ChargerReading:
            held.append(lock.locked())
            return await super().read(full=full)

        async def set_current_limit(self, amps: float, *, permanent: bool) -> None:
            held.append(lock.locked())
            await super().set_current_limit(amps, permanent=permanent)

    box = Watched(clock)
    device = Device(lock, lambda: True, timeout=1.0)
    c = Commander(CHARGER, box, ControlConfig(), outbox, device, metrics, clock=clock)
    async with running(c):
        await c.receive(command(Command.CURRENT_LIMIT, 9, command_id="locked"))
        await settle(lambda: outcome(outbox, "locked") is not None, "a result")
    assert held == [True, True]  # the write, then the read-back
