"""Issue 5, "Must show" 5: each kind of bad input becomes a dead-letter row with a clear
reason and is counted, and the good messages around it are all stored."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from chargelift_contract import availability_topic
from tests.integration.ingest.conftest import IngestProcess, Publisher, messages, wait_rows

pytestmark = pytest.mark.integration

GOOD_TIME = b'"SamplingTime":"2026-11-24T10:00:00Z"'
# (topic under charger-a's own prefix -- the ACL allows nothing else --, payload, reason).
# A deeper topic (chargers/charger-a/PowerOutput/extra) no longer reaches ingest from a
# charger: its grant is chargers/charger-a/+ (issue 16), and the broker refuses it (0x87);
# ingest's answer to it is a unit test (test_validate.py).
BAD = [
    ("chargers/charger-a/poweroutput", b"{" + GOOD_TIME + b',"Value":1}', "bad_topic"),
    ("chargers/charger-a/Bogus", b"{" + GOOD_TIME + b',"Value":1}', "unknown_field"),
    ("chargers/charger-a/PowerOutput", b"{not json", "bad_json"),
    ("chargers/charger-a/OutputCurrent", b'{"Value":1}', "bad_envelope"),
    ("chargers/charger-a/PowerOutput", b"{" + GOOD_TIME + b',"Value":NaN}', "non_finite"),
    ("chargers/charger-a/PowerOutput", b"{" + GOOD_TIME + b',"Value":"11 kW"}', "wrong_type"),
    (
        "chargers/charger-a/OperationState",
        b"{" + GOOD_TIME + b',"Value":"Charging"}',
        "wrong_type",
    ),
    (
        "chargers/charger-a/PowerOutput",
        b'{"SamplingTime":"2999-01-01T00:00:00Z","Value":1}',
        "future_time",
    ),
    (
        "chargers/charger-a/PowerOutput",
        b"{" + GOOD_TIME + b',"Value":1,"pad":"' + b"x" * 5000 + b'"}',
        "too_large",
    ),
]


async def test_each_bad_input_kind_is_a_dead_letter_and_the_good_ones_around_it_are_stored(
    ingest: IngestProcess, publisher: Publisher, db: str
) -> None:
    good = messages(10)  # 300 good messages, published around and between the bad ones
    mixed: list[tuple[str, str, bytes]] = []
    per_gap = len(good) // len(BAD)
    for i, (topic, payload, _) in enumerate(BAD):
        mixed += good[i * per_gap : (i + 1) * per_gap]
        mixed.append(("charger-a", topic, payload))
    mixed += good[len(BAD) * per_gap :]
    mixed.append(("charger-a", availability_topic("charger-a"), b"offline"))
    await publisher.publish(mixed, window=20)

    assert await wait_rows(db, len(BAD), table="dead_letters") == len(BAD)
    # + 1: the availability change is kept as an "Availability" reading as well
    assert await wait_rows(db, len(good) + 1) == len(good) + 1
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch(
            "SELECT topic, payload, reason, detail FROM dead_letters ORDER BY id"
        )
        charger = await conn.fetchrow("SELECT * FROM chargers WHERE charger = 'charger-a'")
    finally:
        await conn.close()
    # Stored payloads are cut to INGEST_DEAD_LETTER_MAX_BYTES (1024), and detail says so.
    assert [(r["topic"], bytes(r["payload"]), r["reason"]) for r in rows] == [
        (t, p[:1024], reason) for t, p, reason in BAD
    ]
    assert all(r["detail"] for r in rows)
    too_large = next(r for r in rows if r["reason"] == "too_large")
    assert too_large["detail"].endswith(f"[payload truncated to 1024 of {len(BAD[-1][1])} bytes]")
    assert charger["availability"] == "offline"

    await asyncio.sleep(0.2)
    async with httpx.AsyncClient() as http:
        text = (await http.get(ingest.metrics_url)).text
    for reason in {r for _, _, r in BAD}:
        want = sum(1 for _, _, r in BAD if r == reason)
        assert f'ingest_dead_letters_total{{reason="{reason}"}} {float(want)}' in text, reason
    # Field readings written (the Availability pseudo-reading is counted separately).
    assert f"ingest_rows_written_total {float(len(good))}" in text
    assert "ingest_availability_messages_total 1.0" in text


async def test_an_implausibly_old_sampling_time_is_a_dead_letter_and_keeps_first_seen(
    ingest: IngestProcess, publisher: Publisher, db: str
) -> None:
    # Issue 14, finding 10: a year-0001 reading (a charger whose clock was never set, or a
    # hostile client) was stored and rewrote chargers.first_seen to 0001-01-01.
    good = messages(2, chargers=("charger-a",))
    old = [
        b'{"SamplingTime":"0001-01-01T00:00:00Z","Value":1}',
        b'{"SamplingTime":"1970-01-01T00:00:00Z","Value":2}',
        b'{"SamplingTime":"1999-12-31T23:59:59.999999Z","Value":3}',
    ]
    await publisher.publish(
        [*good, *(("charger-a", "chargers/charger-a/PowerOutput", p) for p in old)], window=20
    )

    assert await wait_rows(db, len(old), table="dead_letters") == len(old)
    assert await wait_rows(db, len(good)) == len(good)
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch("SELECT payload, reason, detail FROM dead_letters ORDER BY id")
        first_seen = await conn.fetchval(
            "SELECT first_seen FROM chargers WHERE charger = 'charger-a'"
        )
        oldest = await conn.fetchval("SELECT min(time) FROM readings")
    finally:
        await conn.close()
    assert [(bytes(r["payload"]), r["reason"]) for r in rows] == [
        (p, "implausible_time") for p in old
    ]
    assert all("before 2000-01-01" in r["detail"] for r in rows)
    assert first_seen.year == 2026
    assert oldest.year == 2026
    async with httpx.AsyncClient() as http:
        text = (await http.get(ingest.metrics_url)).text
    assert f'ingest_dead_letters_total{{reason="implausible_time"}} {float(len(old))}' in text


async def test_huge_distinct_topics_are_dead_letters_with_short_details(
    ingest: IngestProcess, publisher: Publisher, db: str
) -> None:
    # Issue 14, finding 4: any certificate may publish distinct 30 KB topics under its own
    # prefix; each one's error text used to quote it whole, kept in ingest's topic cache
    # (~93 KB per topic) and in the dead letter's detail.
    good = messages(2, chargers=("charger-a",))
    huge = [("charger-a", f"chargers/charger-a/{i:03d}" + "x" * 30_000, b"{}") for i in range(20)]
    await publisher.publish([*huge, *good], window=10)

    assert await wait_rows(db, len(huge), table="dead_letters") == len(huge)
    assert await wait_rows(db, len(good)) == len(good)
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch("SELECT topic, reason, detail FROM dead_letters ORDER BY id")
    finally:
        await conn.close()
    # stored topics are cut to 1,024 characters (the dead-letter bounds, docs/ingest.md)
    assert sorted(r["topic"] for r in rows) == sorted(t[:1024] + "…" for _, t, _ in huge)
    assert {r["reason"] for r in rows} == {"bad_topic"}
    assert max(len(r["detail"]) for r in rows) < 300
    assert all("30022 characters" in r["detail"] for r in rows)


def _reading(field: str, second: int, value: str) -> tuple[str, str, bytes]:
    time = f'"SamplingTime":"2026-11-24T10:00:{second:02d}Z"'.encode()
    return (
        "charger-a",
        f"chargers/charger-a/{field}",
        b"{" + time + b',"Value":' + value.encode() + b"}",
    )


async def test_a_number_outside_its_fields_bounds_is_an_out_of_range_dead_letter(
    ingest: IngestProcess, publisher: Publisher, db: str
) -> None:
    # Issue 14, finding 12: a finite 1e308 was stored and overflowed the API's sums.
    # Out of range (dead letters) between values at the very bounds (stored).
    out = [
        _reading("PowerOutput", 1, "1e308"),
        _reading("PowerOutput", 2, "-1e308"),
        _reading("TotalEnergyConsumption", 3, "1e13"),
        _reading("SessionEnergy", 4, "-0.5"),
        _reading("EnergyPrice", 5, "123456789"),
    ]
    at_bounds = [
        _reading("PowerOutput", 6, "4000000"),
        _reading("TotalEnergyConsumption", 7, "1e12"),
        _reading("SessionEnergy", 8, "0"),
        _reading("EnergyPrice", 9, "-10000"),
    ]
    await publisher.publish(
        [m for pair in zip(at_bounds, out, strict=False) for m in pair] + out[4:]
    )
    assert await wait_rows(db, len(out), table="dead_letters") == len(out)
    assert await wait_rows(db, len(at_bounds)) == len(at_bounds)
    conn = await asyncpg.connect(db)
    try:
        dead = await conn.fetch("SELECT topic, payload, reason, detail FROM dead_letters")
        stored = await conn.fetch("SELECT field, value_num FROM readings ORDER BY time")
    finally:
        await conn.close()
    assert sorted((r["topic"], bytes(r["payload"])) for r in dead) == sorted(
        (t, p) for _, t, p in out
    )
    assert {r["reason"] for r in dead} == {"out_of_range"}
    assert all("outside" in r["detail"] for r in dead)
    assert [(r["field"], r["value_num"]) for r in stored] == [
        ("PowerOutput", 4e6),
        ("TotalEnergyConsumption", 1e12),
        ("SessionEnergy", 0.0),
        ("EnergyPrice", -10000.0),
    ]
    await asyncio.sleep(0.2)
    async with httpx.AsyncClient() as http:
        text = (await http.get(ingest.metrics_url)).text
    assert f'ingest_dead_letters_total{{reason="out_of_range"}} {float(len(out))}' in text
