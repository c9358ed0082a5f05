"""The gateway's commander with a fake charge point connection (the integration tests
run the real one): refusals, coalescing, a restart mid-call, hostile commands."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from chargelift_contract.commands import (
    Command,
    CommandResult,
    Outcome,
    command_topic,
    decode_result,
    encode_command,
)
from chargelift_edge.commands import APPLYING, CommandStore
from chargelift_edge.outbox import Outbox
from chargelift_ocpp.control import Control, charge_point_of, connector_of
from chargelift_ocpp.metrics import OcppMetrics
from chargelift_ocpp.transactions import TransactionStore
from chargelift_runtime.mqtt import Message
from tests.support.clock import FakeClock

CP = "cp-a"
CHARGER = CP


@dataclass
class Answer:
    status: str
    transaction_id: int | None = None


@dataclass
class FakeConnection:
    """What the commander needs of an ``OcppChargePoint``: ``call``."""

    calls: list[Any] = field(default_factory=list)
    status: str = "Accepted"

    async def call(self, payload: Any, suppress: bool = True) -> Answer:
        self.calls.append(payload)
        return Answer(self.status)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox.open(tmp_path / "outbox.sqlite") as box:
        yield box


@pytest.fixture
def transactions(tmp_path: Path) -> Iterator[TransactionStore]:
    with TransactionStore(tmp_path / "tx.sqlite3") as store:
        yield store


def control(outbox: Outbox, transactions: TransactionStore, **kw: Any) -> Control:
    metrics = OcppMetrics(CollectorRegistry())
    return Control([CHARGER, f"{CP}__2"], outbox, transactions, metrics, clock=FakeClock(), **kw)


def results(outbox: Outbox) -> list[CommandResult]:
    rows = outbox.load(CHARGER, after=0, limit=10_000)
    return [decode_result(r.payload) for r in rows if "/result/" in r.topic]


def outcome(outbox: Outbox, command_id: str) -> tuple[Outcome, str] | None:
    found = [(r.outcome, r.reason) for r in results(outbox) if r.command_id == command_id]
    return found[-1] if found else None


def command(cmd: Command, value: float | None = None, **kw: Any) -> Message:
    return Message(command_topic(CHARGER, cmd), encode_command(cmd, value, **kw), 1, False)


def raw(payload: bytes, cmd: str = "CurrentLimit") -> Message:
    return Message(f"chargers/{CHARGER}/set/{cmd}", payload, 1, False)


async def run_until(ctl: Control, done: Any) -> None:
    task = asyncio.create_task(ctl.run())
    try:
        async with asyncio.timeout(10):
            while not done():
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_charger_id_scheme_is_inverted() -> None:
    assert (charge_point_of("cp-a"), connector_of("cp-a")) == ("cp-a", 1)
    assert (charge_point_of("cp-a__3"), connector_of("cp-a__3")) == ("cp-a", 3)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"not json", "not JSON"),
        (b'{"Value": "ten"}', "number"),
        (b'{"Value": 1e400}', "not JSON"),
        (b'{"Value": 10, "CommandId": "' + b"x" * 100 + b'"}', "CommandId"),
        (b'{"Value": 10, "ValidFor": 1}', "ValidFor"),
        (b" " * 5000, "bytes"),
    ],
)
async def test_a_malformed_command_is_rejected_and_never_sent(
    outbox: Outbox, transactions: TransactionStore, payload: bytes, why: str
) -> None:
    ctl = control(outbox, transactions)
    conn = FakeConnection()
    ctl.attach(CP, conn)
    await ctl.receive(raw(payload))
    found = results(outbox)
    assert [r.outcome for r in found] == [Outcome.REJECTED]
    assert why in found[0].reason
    await ctl.receive(raw(payload))  # the same bytes: the same command, not again
    assert len(results(outbox)) == 2
    assert conn.calls == []


async def test_limits_out_of_range_are_rejected_at_once(
    outbox: Outbox, transactions: TransactionStore
) -> None:
    ctl = control(outbox, transactions, max_current=16)
    await ctl.receive(command(Command.CURRENT_LIMIT, 5, command_id="low"))
    await ctl.receive(command(Command.CURRENT_LIMIT, 17, command_id="high"))
    low, high = outcome(outbox, "low"), outcome(outbox, "high")
    assert low == (Outcome.REJECTED, "5 A is below the minimum of 6 A")
    assert high == (Outcome.REJECTED, "17 A is above the maximum of 16 A")


async def test_a_burst_of_limits_is_coalesced_newest_wins(
    outbox: Outbox, transactions: TransactionStore
) -> None:
    ctl = control(outbox, transactions)
    for n in range(5):  # not connected yet: they wait
        await ctl.receive(command(Command.CURRENT_LIMIT, 6 + n, command_id=f"l{n}"))
    conn = FakeConnection()
    ctl.attach(CP, conn)
    await run_until(ctl, lambda: outcome(outbox, "l4") is not None)
    assert outcome(outbox, "l4") == (Outcome.APPLIED, "SetChargingProfile 10 A: Accepted")
    for n in range(4):
        assert outcome(outbox, f"l{n}") == (Outcome.REJECTED, "superseded by l4")
    assert len(conn.calls) == 1
    assert conn.calls[0].cs_charging_profiles["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 10.0}
    ]


async def test_a_command_interrupted_by_a_restart_is_failed_and_never_sent_again(
    outbox: Outbox, transactions: TransactionStore
) -> None:
    ctl = control(outbox, transactions)
    await ctl.receive(command(Command.CURRENT_LIMIT, 10, command_id="mid"))
    store = CommandStore(outbox, CHARGER)
    outbox.execute([store.stage("mid", APPLYING, 0.0)])  # killed during the call
    restarted = control(outbox, transactions)
    conn = FakeConnection()
    restarted.attach(CP, conn)
    await run_until(restarted, lambda: outcome(outbox, "mid") is not None)
    assert outcome(outbox, "mid") == (Outcome.FAILED, "interrupted by a restart")
    assert conn.calls == []


async def test_stop_names_the_transaction_running_on_the_connector(
    outbox: Outbox, transactions: TransactionStore
) -> None:
    transactions.start(CP, 2, "2026-12-02T10:00:00Z", 0, "card")  # another connector
    tx = transactions.start(CP, 1, "2026-12-02T10:01:00Z", 0, "card").transaction_id
    ctl = control(outbox, transactions)
    conn = FakeConnection()
    ctl.attach(CP, conn)
    await ctl.receive(command(Command.STOP, command_id="stop"))
    await run_until(ctl, lambda: outcome(outbox, "stop") is not None)
    assert outcome(outbox, "stop") == (Outcome.APPLIED, f"RemoteStopTransaction {tx}: Accepted")
    assert [c.transaction_id for c in conn.calls] == [tx]


async def test_a_detached_old_connection_does_not_remove_the_new_one(
    outbox: Outbox, transactions: TransactionStore
) -> None:
    ctl = control(outbox, transactions)
    old, new = FakeConnection(), FakeConnection()
    ctl.attach(CP, old)
    ctl.attach(CP, new)  # the charger reconnected before the old one closed
    ctl.detach(CP, old)
    assert ctl.connection(CP) is new


@pytest.mark.parametrize(("charger", "connector"), [(CHARGER, 1), (f"{CP}__2", 2)])
@pytest.mark.parametrize(
    ("status", "want"),
    [
        ("Accepted", Outcome.APPLIED),
        ("Rejected", Outcome.REJECTED),
        ("Bogus", Outcome.FAILED),
    ],
)
async def test_start_is_a_remote_start_with_the_gateway_s_id_tag_on_the_connector(
    outbox: Outbox,
    transactions: TransactionStore,
    charger: str,
    connector: int,
    status: str,
    want: Outcome,
) -> None:
    ctl = control(outbox, transactions, remote_id_tag="site-7")
    conn = FakeConnection(status=status)
    ctl.attach(CP, conn)
    topic = command_topic(charger, Command.START)
    await ctl.receive(Message(topic, encode_command(Command.START, command_id="go"), 1, False))

    def rows() -> list[CommandResult]:
        found = outbox.load(charger, after=0, limit=100)
        return [decode_result(r.payload) for r in found if "/result/" in r.topic]

    await run_until(ctl, lambda: bool(rows()))
    [result] = rows()
    assert (result.command_id, result.outcome, result.value) == ("go", want, None)
    assert "RemoteStartTransaction" in result.reason
    if want is Outcome.APPLIED:
        assert "starts when the vehicle is plugged in" in result.reason
    [sent] = conn.calls
    assert (type(sent).__name__, sent.id_tag, sent.connector_id) == (
        "RemoteStartTransaction", "site-7", connector,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("cmd", "status", "want", "says"),
    [
        (
            Command.INOPERATIVE,
            "Accepted",
            Outcome.APPLIED,
            "ChangeAvailability Inoperative: Accepted",
        ),
        (
            Command.INOPERATIVE,
            "Scheduled",
            Outcome.APPLIED,
            "takes effect when the running transaction ends",
        ),
        (Command.INOPERATIVE, "Rejected", Outcome.REJECTED, "Rejected by the charge point"),
        (Command.OPERATIVE, "Accepted", Outcome.APPLIED, "ChangeAvailability Operative: Accepted"),
        (Command.OPERATIVE, "Scheduled", Outcome.APPLIED, "Scheduled"),
        (Command.OPERATIVE, "Rejected", Outcome.REJECTED, "Rejected"),
        (Command.OPERATIVE, "NotSupported", Outcome.FAILED, "NotSupported"),
    ],
)
async def test_availability_is_change_availability_of_the_connector(
    outbox: Outbox,
    transactions: TransactionStore,
    cmd: Command,
    status: str,
    want: Outcome,
    says: str,
) -> None:
    ctl = control(outbox, transactions)
    conn = FakeConnection(status=status)
    ctl.attach(CP, conn)
    await ctl.receive(command(cmd, command_id="avail"))
    await run_until(ctl, lambda: outcome(outbox, "avail") is not None)
    found = outcome(outbox, "avail")
    assert found is not None
    assert found[0] is want
    assert says in found[1]
    [sent] = conn.calls
    assert (type(sent).__name__, sent.connector_id, str(sent.type)) == (
        "ChangeAvailability", 1, cmd.value,
    )  # fmt: skip


async def test_the_remote_id_tag_defaults_to_chargelift(
    outbox: Outbox, transactions: TransactionStore
) -> None:
    ctl = control(outbox, transactions)
    conn = FakeConnection()
    ctl.attach(CP, conn)
    await ctl.receive(command(Command.START, True, command_id="go"))
    await run_until(ctl, lambda: outcome(outbox, "go") is not None)
    assert [c.id_tag for c in conn.calls] == ["chargelift"]
