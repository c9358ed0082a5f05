"""Issue 16: ingest stores every command seen and every result exactly once (the audit).

Real Mosquitto (its ACL: the ``api`` identity is a controller, a charger may only
publish its results) and real PostgreSQL, ingest as a process logged in as its own role.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from chargelift_contract.commands import (
    Command,
    CommandResult,
    Outcome,
    command_topic,
    encode_command,
    encode_result,
    result_topic,
)
from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_runtime.mqtt import MqttClient, MqttError, PublishRefusedError
from tests.integration.ingest.conftest import (
    IngestProcess,
    PubackProxy,
    Publisher,
    count_rows,
    ingest_env,
    wait_rows,
)
from tests.integration.poller.support import eventually
from tests.support.certs import TestCerts
from tests.support.db import as_role

pytestmark = pytest.mark.integration

CONTROLLER = "api"  # the API's identity is a controller of every charger
CHARGER = "charger-a"
ISSUED = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
LIMIT_TOPIC = command_topic(CHARGER, Command.CURRENT_LIMIT)


def limit(value: float, command_id: str, issuer: str | None = "evcc") -> bytes:
    return encode_command(
        Command.CURRENT_LIMIT,
        value,
        command_id=command_id,
        issued_at=ISSUED,
        expires_at=ISSUED + timedelta(seconds=30),
        valid_for=60,
        issuer=issuer,
    )


def result(command_id: str, outcome: Outcome, seconds: int = 1) -> bytes:
    return encode_result(
        CommandResult(
            command_id,
            outcome,
            f"{outcome.value} by the edge",
            ISSUED + timedelta(seconds=seconds),
            value=10.0 if outcome is Outcome.APPLIED else 16.0,
            lease_end=ISSUED + timedelta(seconds=61) if outcome is Outcome.APPLIED else None,
        )
    )


async def wait_metric(ingest: IngestProcess, name: str, at_least: float) -> None:
    async def reached() -> bool:
        return await ingest.metric(name) >= at_least

    await eventually(reached, 30, f"{name} >= {at_least}")


async def test_a_command_and_its_results_are_recorded_once_each(
    ingest: IngestProcess, publisher: Publisher, db: str
) -> None:
    topic = command_topic(CHARGER, Command.CURRENT_LIMIT)
    results = result_topic(CHARGER, Command.CURRENT_LIMIT)
    # The same command twice (a controller's retry): one row.
    await publisher.publish([(CONTROLLER, topic, limit(10, "evcc-1"))] * 2, retain=False)
    await wait_metric(ingest, "ingest_command_duplicates_total", 1)
    # Its result twice (the edge's redelivery), then the lease ran out: two rows.
    await publisher.publish(
        [(CHARGER, results, result("evcc-1", Outcome.APPLIED))] * 2, retain=False
    )
    await publisher.publish(
        [(CHARGER, results, result("evcc-1", Outcome.REVERTED, 61))], retain=False
    )
    await wait_metric(ingest, "ingest_command_duplicates_total", 2)
    assert await wait_rows(db, 2, table="command_results") == 2
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch("SELECT * FROM commands")
        assert [dict(r) | {"received_at": None} for r in rows] == [
            {
                "charger": CHARGER,
                "command_id": "evcc-1",
                "command": "CurrentLimit",
                "value": 10.0,
                "issued_at": ISSUED,
                "expires_at": ISSUED + timedelta(seconds=30),
                "valid_for": 60.0,
                "issuer": "evcc",
                "via": "mqtt",
                "received_at": None,
            }
        ]
        stored = await conn.fetch(
            "SELECT charger, command_id, outcome, reason, at, value, lease_end"
            " FROM command_results ORDER BY at"
        )
        assert [tuple(r) for r in stored] == [
            (
                CHARGER,
                "evcc-1",
                "applied",
                "applied by the edge",
                ISSUED + timedelta(seconds=1),
                10.0,
                ISSUED + timedelta(seconds=61),
            ),
            (
                CHARGER,
                "evcc-1",
                "reverted",
                "reverted by the edge",
                ISSUED + timedelta(seconds=61),
                16.0,
                None,
            ),
        ]
    finally:
        await conn.close()
    assert await ingest.metric("ingest_commands_stored_total") == 1
    assert await ingest.metric("ingest_command_results_stored_total") == 2
    assert await count_rows(db, "dead_letters") == 0


async def test_a_command_without_an_id_delivered_twice_is_one_command(
    ingest: IngestProcess, publisher: Publisher, db: str
) -> None:
    # No CommandId, no IssuedAt: the id is derived from the bytes, so the broker's
    # redelivery (the same bytes again) is the same command.
    payload = b'{"Value":null}'
    topic = command_topic(CHARGER, Command.PAUSE)
    await publisher.publish([(CONTROLLER, topic, payload)] * 3, retain=False)
    await wait_metric(ingest, "ingest_command_duplicates_total", 2)
    assert await count_rows(db, "commands") == 1
    conn = await asyncpg.connect(db)
    try:
        row = await conn.fetchrow("SELECT command_id, command, value, issuer FROM commands")
    finally:
        await conn.close()
    assert row is not None
    assert row["command_id"].startswith("sha256:")
    assert (row["command"], row["value"], row["issuer"]) == ("Pause", None, None)


async def test_start_and_availability_commands_and_their_results_are_recorded(
    ingest: IngestProcess, publisher: Publisher, db: str
) -> None:
    # Schema 0010: the audit keeps the three commands added for OCPP (issue 17).
    sent = [Command.START, Command.OPERATIVE, Command.INOPERATIVE]
    messages = [
        (CONTROLLER, command_topic(CHARGER, c), encode_command(c, command_id=f"n-{c.value}"))
        for c in sent
    ]
    scheduled = CommandResult(
        "n-Inoperative", Outcome.APPLIED, "ChangeAvailability Inoperative: Scheduled", ISSUED
    )
    messages.append((CHARGER, result_topic(CHARGER, Command.INOPERATIVE), encode_result(scheduled)))
    await publisher.publish(messages, retain=False)
    await wait_rows(db, 1, table="command_results")
    await wait_rows(db, 3, table="commands")
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch("SELECT command_id, command, value FROM commands")
        outcome = await conn.fetchval("SELECT outcome FROM command_results")
    finally:
        await conn.close()
    assert {(r["command_id"], r["command"], r["value"]) for r in rows} == {
        (f"n-{c.value}", c.value, None) for c in sent
    }
    assert outcome == "applied"
    assert await count_rows(db, "dead_letters") == 0


async def _api_inserts(db: str, command_id: str, issuer: str | None) -> None:
    """What the API does before it publishes: its own role, via 'api'."""
    conn = await asyncpg.connect(as_role(db, "chargelift_api"))
    try:
        await conn.execute(
            "INSERT INTO commands (charger, command_id, command, value, issued_at, expires_at,"
            " valid_for, issuer, via) VALUES ($1, $2, 'CurrentLimit', 10, $3, $4, 60, $5, 'api')"
            " ON CONFLICT DO NOTHING",
            CHARGER,
            command_id,
            ISSUED,
            ISSUED + timedelta(seconds=30),
            issuer,
        )
    finally:
        await conn.close()


async def test_a_command_the_api_recorded_first_keeps_its_via_and_issuer(
    ingest: IngestProcess, publisher: Publisher, db: str
) -> None:
    await _api_inserts(db, "api-1", "token:ops")
    await _api_inserts(db, "api-2", None)
    topic = command_topic(CHARGER, Command.CURRENT_LIMIT)
    await publisher.publish(
        [
            (CONTROLLER, topic, limit(10, "api-1", issuer="somebody-else")),
            (CONTROLLER, topic, limit(10, "api-2", issuer="api")),
        ],
        retain=False,
    )
    await wait_metric(ingest, "ingest_command_duplicates_total", 2)
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch("SELECT command_id, via, issuer FROM commands ORDER BY 1")
    finally:
        await conn.close()
    # The API's issuer stays; one it did not know is filled in; via stays 'api'.
    assert [tuple(r) for r in rows] == [("api-1", "api", "token:ops"), ("api-2", "api", "api")]
    assert await ingest.metric("ingest_commands_stored_total") == 0


async def test_malformed_commands_and_results_are_dead_letters_and_the_rest_is_stored(
    ingest: IngestProcess, publisher: Publisher, db: str
) -> None:
    bad = [
        (CONTROLLER, f"chargers/{CHARGER}/set/Reboot", b'{"Value":null}', "bad_command"),
        (CONTROLLER, LIMIT_TOPIC, b'{"Value":NaN}', "bad_command"),
        (CONTROLLER, LIMIT_TOPIC, b'{"Value":"10"}', "bad_command"),
        (CONTROLLER, LIMIT_TOPIC, b'{"Value":10,"CommandId":"no spaces"}', "bad_command"),
        (CHARGER, result_topic(CHARGER, Command.PAUSE), b'{"Outcome":"done"}', "bad_result"),
        (
            CONTROLLER,
            command_topic(CHARGER, Command.PAUSE),
            b'{"Value":null,"Issuer":"' + b"x" * 60_000 + b'"}',
            "too_large",
        ),
    ]  # fmt: skip
    good = (CONTROLLER, command_topic(CHARGER, Command.STOP), b'{"Value":null,"CommandId":"s"}')
    await publisher.publish([(i, t, p) for i, t, p, _ in bad] + [good], retain=False)
    assert await wait_rows(db, len(bad), table="dead_letters") == len(bad)
    assert await wait_rows(db, 1, table="commands") == 1
    conn = await asyncpg.connect(db)
    try:
        reasons = await conn.fetch("SELECT topic, reason FROM dead_letters ORDER BY id")
    finally:
        await conn.close()
    assert sorted((r["topic"], r["reason"]) for r in reasons) == sorted(
        (t, reason) for _, t, _, reason in bad
    )


async def test_a_charger_cannot_publish_a_command_so_none_is_recorded(
    ingest: IngestProcess,
    publisher: Publisher,
    own_broker: MosquittoServer,
    certs: TestCerts,
    db: str,
) -> None:
    for target in (CHARGER, "charger-b"):  # its own, and another's
        client = MqttClient(
            host=own_broker.host,
            port=own_broker.port,
            client_id=f"intruder-{uuid.uuid4().hex[:6]}",
            tls=certs.tls(CHARGER),
        )
        async with client:
            await client.wait_connected()
            with pytest.raises(MqttError) as err:
                await client.publish(
                    command_topic(target, Command.STOP), b'{"Value":null,"CommandId":"x"}'
                )
            if isinstance(err.value, PublishRefusedError):
                assert err.value.reason_code == 0x87
    # A marker after the refused ones: once it is stored, nothing refused is in flight.
    marker = (CONTROLLER, command_topic(CHARGER, Command.RESUME), b'{"Value":null}')
    await publisher.publish([marker], retain=False)
    assert await wait_rows(db, 1, table="commands") == 1
    conn = await asyncpg.connect(db)
    try:
        assert await conn.fetchval("SELECT command FROM commands") == "Resume"
    finally:
        await conn.close()


async def test_a_command_and_a_result_redelivered_after_a_kill_before_the_puback_are_stored_once(
    own_broker: MosquittoServer,
    certs: TestCerts,
    publisher: Publisher,
    db: str,
    tmp_path: Path,
) -> None:
    env = ingest_env(own_broker, certs, db)
    results = result_topic(CHARGER, Command.CURRENT_LIMIT)
    sent = [
        (CONTROLLER, LIMIT_TOPIC, limit(12, "evcc-kill")),
        (CHARGER, results, result("evcc-kill", Outcome.APPLIED)),
    ]
    async with PubackProxy(own_broker.port) as proxy:
        first = IngestProcess({**env, "MQTT_PORT": str(proxy.port)}, tmp_path / "first.log")
        first.start()
        try:
            await first.ready()
            proxy.upstream_open = False  # from now on ingest's PUBACKs are lost
            await publisher.publish(sent, retain=False)
            assert await wait_rows(db, 1, table="command_results", timeout=20) == 1
            await asyncio.sleep(0.3)  # committed, and the PUBACKs swallowed
        finally:
            first.kill()  # SIGKILL after the commit, before the broker got the PUBACKs
    # The same session again, straight to the broker: it redelivers both.
    second = IngestProcess(env, tmp_path / "second.log")
    second.start()
    try:
        await second.ready()
        await wait_metric(second, "ingest_command_duplicates_total", 2)
        assert await second.metric("ingest_commands_stored_total") == 0
        assert await second.metric("ingest_command_results_stored_total") == 0
    finally:
        second.kill()
    assert await count_rows(db, "commands") == 1
    assert await count_rows(db, "command_results") == 1
    assert await count_rows(db, "dead_letters") == 0
