"""The batcher with a fake writer: batches by size and age, acknowledges only after the
commit, retries while the database is down, isolates a row the database refuses, and
shuts down cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from chargelift_contract.commands import (
    Command,
    CommandMessage,
    CommandResult,
    Outcome,
)
from chargelift_ingest.batcher import Batcher, NotStored
from chargelift_ingest.metrics import IngestMetrics
from chargelift_ingest.validate import (
    Audit,
    Availability,
    ChargerResult,
    DeadLetter,
    EdgeAvailability,
    EdgeChargers,
    Item,
    Reading,
    StateChange,
)
from chargelift_ingest.writer import WriteResult
from chargelift_runtime.retry import Backoff

T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)
FAST = Backoff(initial=0.01, maximum=0.02)


def reading(i: int, charger: str = "a") -> Reading:
    return Reading(charger, "PowerOutput", T0 + timedelta(seconds=i), float(i), None, None)


@dataclass
class FakeWriter:
    """Records committed batches; ``failures`` are raised first, in order."""

    failures: list[BaseException] = field(default_factory=list)
    refuse: set[Reading] = field(default_factory=set)
    batches: list[tuple[list[Reading], list[DeadLetter], list[StateChange]]] = field(
        default_factory=list
    )
    stored: set[tuple[str, str, datetime]] = field(default_factory=set)
    audits: list[list[Audit]] = field(default_factory=list)
    gate: asyncio.Event | None = None

    async def write(
        self,
        readings: Sequence[Reading],
        dead_letters: Sequence[DeadLetter] = (),
        availability: Sequence[StateChange] = (),
        audit: Sequence[Audit] = (),
    ) -> WriteResult:
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        if self.refuse & set(readings):
            raise asyncpg.exceptions.CheckViolationError("refused")
        self.batches.append((list(readings), list(dead_letters), list(availability)))
        self.audits.append(list(audit))
        new = {r.key for r in readings} - self.stored
        self.stored |= new
        commands = sum(isinstance(a, CommandMessage) for a in audit)
        return WriteResult(
            len(new),
            len(readings) - len(new),
            len(dead_letters),
            commands=commands,
            results=len(audit) - commands,
        )


async def test_a_full_batch_is_written_at_once_and_acknowledged_after_commit() -> None:
    writer = FakeWriter()
    batcher = Batcher(
        writer, size=3, age_s=60, backoff=FAST, metrics=IngestMetrics(CollectorRegistry())
    )
    async with asyncio.TaskGroup() as tg:
        tg.create_task(batcher.run())
        subs = [tg.create_task(batcher.submit(reading(i), "t", b"p")) for i in range(7)]
        async with asyncio.timeout(2):
            await asyncio.gather(*subs[:6])
        assert [len(b[0]) for b in writer.batches] == [3, 3]
        assert not subs[6].done()  # waiting for its age
        batcher.close()
    assert [len(b[0]) for b in writer.batches] == [3, 3, 1]
    assert all(s.done() and s.exception() is None for s in subs)


async def test_a_partial_batch_is_written_when_it_reaches_its_age() -> None:
    writer = FakeWriter()
    batcher = Batcher(
        writer, size=1000, age_s=0.05, backoff=FAST, metrics=IngestMetrics(CollectorRegistry())
    )
    runner = asyncio.create_task(batcher.run())
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(*(batcher.submit(reading(i), "t", b"p") for i in range(5)))
    elapsed = loop.time() - start
    assert 0.04 <= elapsed < 1.0
    assert [len(b[0]) for b in writer.batches] == [5]
    batcher.close()
    await runner


async def test_nothing_is_acknowledged_while_the_database_is_down() -> None:
    gate = asyncio.Event()
    writer = FakeWriter(
        failures=[ConnectionRefusedError("down"), asyncpg.exceptions.CannotConnectNowError("x")]
        * 3,
        gate=gate,
    )
    batcher = Batcher(
        writer, size=10, age_s=0.01, backoff=FAST, metrics=IngestMetrics(CollectorRegistry())
    )
    runner = asyncio.create_task(batcher.run())
    subs = [asyncio.create_task(batcher.submit(reading(i), "t", b"p")) for i in range(4)]
    await asyncio.sleep(0.05)
    assert not any(s.done() for s in subs)
    gate.set()  # the writer now fails six times, then works
    async with asyncio.timeout(5):
        await asyncio.gather(*subs)
    assert len(writer.stored) == 4
    assert batcher.database_ok
    batcher.close()
    await runner


async def test_errors_that_do_not_blame_the_data_are_retried_too() -> None:
    # A missing table (e.g. migrations not run yet) needs an operator, not a dead letter.
    writer = FakeWriter(failures=[asyncpg.exceptions.UndefinedTableError("no readings")])
    batcher = Batcher(
        writer, size=10, age_s=0.01, backoff=FAST, metrics=IngestMetrics(CollectorRegistry())
    )
    runner = asyncio.create_task(batcher.run())
    async with asyncio.timeout(5):
        await batcher.submit(reading(1), "t", b"p")
    assert len(writer.stored) == 1
    batcher.close()
    await runner


async def test_a_row_the_database_refuses_becomes_a_dead_letter_and_the_rest_is_stored() -> None:
    bad = reading(2)
    writer = FakeWriter(refuse={bad})
    batcher = Batcher(
        writer, size=10, age_s=0.01, backoff=FAST, metrics=IngestMetrics(CollectorRegistry())
    )
    runner = asyncio.create_task(batcher.run())
    async with asyncio.timeout(5):
        await asyncio.gather(
            *(batcher.submit(reading(i), f"chargers/a/PowerOutput#{i}", b"p") for i in range(5))
        )
    assert writer.stored == {reading(i).key for i in (0, 1, 3, 4)}
    letters = [d for _, dead, _ in writer.batches for d in dead]
    assert [(d.topic, d.reason) for d in letters] == [("chargers/a/PowerOutput#2", "db_rejected")]
    batcher.close()
    await runner


async def test_dead_letters_and_availability_travel_in_the_same_batch() -> None:
    writer = FakeWriter()
    batcher = Batcher(
        writer, size=3, age_s=60, backoff=FAST, metrics=IngestMetrics(CollectorRegistry())
    )
    runner = asyncio.create_task(batcher.run())
    letter = DeadLetter("chargers/a/Bogus", b"{}", "unknown_field", "unknown")
    avail = Availability("a", True, T0)
    async with asyncio.timeout(2):
        await asyncio.gather(
            batcher.submit(reading(1), "t", b"p"),
            batcher.submit(letter, letter.topic, letter.payload),
            batcher.submit(avail, "chargers/a/availability", b"online"),
        )
    assert writer.batches == [([reading(1)], [letter], [avail])]
    batcher.close()
    await runner


async def test_commands_and_results_travel_in_the_batch_and_are_acknowledged_after_it() -> None:
    # The audit takes the readings' path: written in the batch's transaction, each
    # message acknowledged only when that has committed.
    writer = FakeWriter(gate=asyncio.Event())
    registry = CollectorRegistry()
    batcher = Batcher(writer, size=3, age_s=60, backoff=FAST, metrics=IngestMetrics(registry))
    runner = asyncio.create_task(batcher.run())
    command = CommandMessage("a", Command.PAUSE, None, "c-1", T0, T0 + timedelta(minutes=1))
    result = ChargerResult(
        "a", Command.PAUSE, CommandResult("c-1", Outcome.APPLIED, "", T0 + timedelta(seconds=1))
    )
    subs = [
        asyncio.create_task(batcher.submit(command, "chargers/a/set/Pause", b"{}")),
        asyncio.create_task(batcher.submit(reading(1), "t", b"p")),
        asyncio.create_task(batcher.submit(result, "chargers/a/result/Pause", b"{}")),
    ]
    await asyncio.sleep(0.05)
    assert not any(s.done() for s in subs)  # not committed: not acknowledged
    assert writer.gate is not None
    writer.gate.set()
    async with asyncio.timeout(2):
        await asyncio.gather(*subs)
    assert writer.batches == [([reading(1)], [], [])]
    assert writer.audits == [[command, result]]
    assert registry.get_sample_value("ingest_commands_stored_total") == 1
    assert registry.get_sample_value("ingest_command_results_stored_total") == 1
    batcher.close()
    await runner


async def test_after_close_new_messages_are_not_taken_and_queued_ones_are_written() -> None:
    writer = FakeWriter()
    batcher = Batcher(
        writer, size=100, age_s=60, backoff=FAST, metrics=IngestMetrics(CollectorRegistry())
    )
    runner = asyncio.create_task(batcher.run())
    queued = [asyncio.create_task(batcher.submit(reading(i), "t", b"p")) for i in range(3)]
    await asyncio.sleep(0)
    batcher.close()
    with pytest.raises(NotStored):
        await batcher.submit(reading(9), "t", b"p")
    async with asyncio.timeout(2):
        await runner
        await asyncio.gather(*queued)
    assert len(writer.stored) == 3


async def test_abandon_fails_what_was_not_committed() -> None:
    writer = FakeWriter(gate=asyncio.Event())  # the database never answers
    batcher = Batcher(
        writer, size=2, age_s=0.01, backoff=FAST, metrics=IngestMetrics(CollectorRegistry())
    )
    runner = asyncio.create_task(batcher.run())
    subs = [asyncio.create_task(batcher.submit(reading(i), "t", b"p")) for i in range(5)]
    await asyncio.sleep(0.05)
    assert batcher.pending == 5
    runner.cancel()  # what main does when the shutdown timeout expires
    with pytest.raises(asyncio.CancelledError):
        await runner
    batcher.abandon()
    await asyncio.sleep(0)
    # The batch being written was cancelled with its transaction: not acknowledged either.
    assert all(s.done() and isinstance(s.exception(), NotStored) for s in subs)
    assert writer.stored == set()


async def test_state_changes_reach_the_writer_in_arrival_order() -> None:
    # A new session gets the chargers' retained availability before the edge's will:
    # the writer must apply them in that order for the edge's "offline" to win.
    writer = FakeWriter()
    batcher = Batcher(
        writer, size=5, age_s=60, backoff=FAST, metrics=IngestMetrics(CollectorRegistry())
    )
    runner = asyncio.create_task(batcher.run())
    items: list[Item] = [
        EdgeChargers("site-1", ("a", "b"), T0),
        Availability("a", True, T0),
        reading(1),
        EdgeAvailability("site-1", False, T0),
        Availability("b", True, T0),
    ]
    async with asyncio.timeout(5):
        await asyncio.gather(*(batcher.submit(i, "t", b"p") for i in items))
    ((readings, _, changes),) = writer.batches
    assert readings == [reading(1)]
    assert changes == [items[0], items[1], items[3], items[4]]
    batcher.close()
    await runner


async def test_an_unforeseen_client_error_is_retried_and_does_not_kill_the_batcher() -> None:
    # Issue 13, seen in the 20-kill soak: PostgreSQL killed mid-transaction, and asyncpg
    # raised InternalClientError (not an InterfaceError) from the connection's reset.
    # It killed the batcher task, hence ingest, and nothing restarted it.
    error = asyncpg.exceptions.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    )
    writer = FakeWriter(failures=[error, AttributeError("'NoneType' object has no attribute")])
    batcher = Batcher(
        writer, size=10, age_s=0.01, backoff=FAST, metrics=IngestMetrics(CollectorRegistry())
    )
    async with asyncio.TaskGroup() as tg:
        running = tg.create_task(batcher.run())
        async with asyncio.timeout(5):
            await batcher.submit(reading(1), "t", b"p")
        assert not running.done()
        assert batcher.database_ok
        batcher.close()
    assert writer.stored == {reading(1).key}
