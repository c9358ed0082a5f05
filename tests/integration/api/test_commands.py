"""Commands through the real API process, with real PostgreSQL and Mosquitto.

The API logs in to the database as ``chargelift_api`` (SELECT + INSERT on commands) and
to the broker as the identity ``api`` (a controller); a watcher of role monitor sees
what reaches the set topics. Ingest's part (results from the edge) is simulated by
inserting ``command_results`` rows as the schema owner.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from chargelift_api.auth import hash_token
from chargelift_certs import pki
from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_devstack.postgres import PostgresServer
from chargelift_runtime.mqtt import Message, MqttClient
from tests.conftest import scratch
from tests.integration.api.conftest import LiveApi, start_api
from tests.support.certs import TestCerts
from tests.support.db import as_role, fresh_database, plant_readings, reading_row
from tests.support.metrics import parse_metrics

pytestmark = pytest.mark.integration

READ = "it-cmd-read-" + uuid.uuid4().hex
CONTROL = "it-cmd-control-" + uuid.uuid4().hex
TOKENS = f"grafana:read:{hash_token(READ)},evcc:control:{hash_token(CONTROL)}"
CHARGER = "amtron-1"
URL = f"/api/v1/chargers/{CHARGER}/commands"
WATCHER = "cmd-watch"
SET_TOPICS = "chargers/+/set/+"
T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


def mqtt_env(broker: MosquittoServer, certs: TestCerts) -> dict[str, str]:
    return {
        "MQTT_HOST": broker.host,
        "MQTT_PORT": str(broker.port),
        "MQTT_CA_FILE": str(certs.ca_file),
        "MQTT_CERTS_DIR": str(certs.dir),
    }


async def command_db(postgres: PostgresServer) -> str:
    dsn = await fresh_database(postgres, "cmd")
    await plant_readings(
        dsn,
        [
            reading_row(T0, CHARGER, "PowerOutput", 7360.0),
            reading_row(T0, CHARGER, "CurrentLimit", 16.0),
            reading_row(T0, CHARGER, "CurrentLimitLeaseEnd", "2026-12-01T12:05:00Z"),
        ],
    )
    return dsn


@pytest.fixture(scope="module")
def dsn(postgres: PostgresServer) -> str:
    return asyncio.run(command_db(postgres))


@pytest.fixture(scope="module")
def api(dsn: str, broker: MosquittoServer, certs: TestCerts, base_dir: Path) -> Iterator[LiveApi]:
    certs.issue_reader(WATCHER, role="monitor")
    broker.reload()
    live = start_api(
        as_role(dsn, "chargelift_api"),
        scratch(base_dir, "api-cmd"),
        API_TOKENS=TOKENS,
        **mqtt_env(broker, certs),
    )
    yield live
    live.stop()


class Inbox:
    """Messages on the set topics, by command id."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = asyncio.Event()

    async def handle(self, msg: Message) -> None:
        self.messages.append(msg)
        self._changed.set()

    def ids(self) -> list[str]:
        return [orjson.loads(m.payload).get("CommandId") for m in self.messages]

    async def wait_for(self, command_id: str, timeout: float = 15.0) -> Message:
        async with asyncio.timeout(timeout):
            while True:
                for msg in self.messages:
                    if orjson.loads(msg.payload).get("CommandId") == command_id:
                        return msg
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def watcher(
    broker: MosquittoServer, certs: TestCerts, *, persistent: bool = False
) -> AsyncIterator[tuple[MqttClient, Inbox]]:
    inbox = Inbox()
    async with MqttClient(
        host=broker.host,
        port=broker.port,
        client_id=WATCHER,
        tls=certs.tls(WATCHER),
        subscriptions=(SET_TOPICS,),
        on_message=inbox.handle,
        persistent_session=persistent,
    ) as c:
        async with asyncio.timeout(10):
            await c.wait_connected()
        yield c, inbox


def http(api: LiveApi, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=api.url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10.0,
        trust_env=False,
    )


@dataclass
class Db:
    dsn: str

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()


async def test_a_command_is_on_record_and_on_the_set_topic(
    api: LiveApi, dsn: str, broker: MosquittoServer, certs: TestCerts
) -> None:
    async with watcher(broker, certs) as (_, inbox), http(api, CONTROL) as c:
        body = {"command": "set_current_limit", "value": 10, "valid_for": 60, "expires_in": 30}
        r = await c.post(URL, json=body)
        assert r.status_code == 202, r.text
        doc = r.json()
        cid = doc["id"]
        assert r.headers["location"] == f"{URL}/{cid}"
        assert (doc["status"], doc["issuer"]) == ("pending", "token:evcc")
        msg = await inbox.wait_for(cid)
    assert msg.topic == f"chargers/{CHARGER}/set/CurrentLimit"
    assert (msg.qos, msg.retain) == (1, False)
    payload = orjson.loads(msg.payload)
    assert (payload["Value"], payload["ValidFor"], payload["Issuer"]) == (10, 60, "token:evcc")
    [row] = await Db(dsn).fetch("SELECT * FROM commands WHERE command_id = $1", cid)
    assert (row["charger"], row["command"], row["value"], row["via"], row["issuer"]) == (
        CHARGER, "CurrentLimit", 10.0, "api", "token:evcc",
    )  # fmt: skip
    assert row["expires_at"] - row["issued_at"] == timedelta(seconds=30)


async def test_start_and_availability_reach_the_broker_with_the_contract_payload(
    api: LiveApi, dsn: str, broker: MosquittoServer, certs: TestCerts
) -> None:
    sent = {"start": "Start", "set_operative": "Operative", "set_inoperative": "Inoperative"}
    before = await Db(dsn).fetch("SELECT count(*) AS n FROM commands")
    async with watcher(broker, certs) as (_, inbox), http(api, CONTROL) as c:
        # A value other than null or true is refused, nothing recorded or sent.
        for bad in (16, False, "yes", [True]):
            r = await c.post(URL, json={"command": "start", "value": bad})
            assert r.status_code == 422, (bad, r.text)
        ids = {}
        for name, value in zip(sent, (None, True, None), strict=True):
            r = await c.post(URL, json={"command": name, "value": value, "expires_in": 120})
            assert r.status_code == 202, r.text
            assert (r.json()["command"], r.json()["status"]) == (name, "pending")
            ids[name] = r.json()["id"]
        messages = {name: await inbox.wait_for(cid) for name, cid in ids.items()}
        # Listed in the audit under their API names.
        audit = {d["id"]: d["command"] for d in (await c.get(URL)).json()["commands"]}
    for name, contract in sent.items():
        msg = messages[name]
        assert msg.topic == f"chargers/{CHARGER}/set/{contract}"
        assert (msg.qos, msg.retain) == (1, False)
        payload = orjson.loads(msg.payload)
        assert (payload["Value"], payload["CommandId"], payload["Issuer"]) == (
            None, ids[name], "token:evcc",
        )  # fmt: skip
        assert "ValidFor" not in payload
        assert audit[ids[name]] == name
    rows = await Db(dsn).fetch(
        "SELECT command_id, command, value FROM commands WHERE command_id = ANY($1)",
        list(ids.values()),
    )
    assert {(r["command_id"], r["command"], r["value"]) for r in rows} == {
        (ids[name], contract, None) for name, contract in sent.items()
    }
    after = await Db(dsn).fetch("SELECT count(*) AS n FROM commands")
    assert after[0]["n"] == before[0]["n"] + 3  # the refused ones are not on record


async def test_a_read_only_token_gets_403_and_nothing_is_sent(
    api: LiveApi, dsn: str, broker: MosquittoServer, certs: TestCerts
) -> None:
    before = await Db(dsn).fetch("SELECT count(*) AS n FROM commands")
    async with watcher(broker, certs) as (_, inbox), http(api, READ) as c:
        r = await c.post(URL, json={"command": "stop"})
        assert r.status_code == 403
        assert r.headers["content-type"] == "application/problem+json"
        async with http(api, CONTROL) as ctl:  # a marker: once it arrives, nothing is behind
            marker = (await ctl.post(URL, json={"command": "resume"})).json()["id"]
        await inbox.wait_for(marker)
        assert inbox.ids() == [marker]
    after = await Db(dsn).fetch("SELECT count(*) AS n FROM commands")
    assert after[0]["n"] == before[0]["n"] + 1


async def test_the_same_idempotency_key_is_one_command(
    api: LiveApi, dsn: str, broker: MosquittoServer, certs: TestCerts
) -> None:
    key = "evcc-" + uuid.uuid4().hex
    body = {"command": "set_current_limit", "value": 12}
    async with watcher(broker, certs) as (_, inbox), http(api, CONTROL) as c:
        first = await c.post(URL, json=body, headers={"Idempotency-Key": key})
        again = await c.post(URL, json=body, headers={"Idempotency-Key": key})
        other = await c.post(URL, json={**body, "value": 13}, headers={"Idempotency-Key": key})
        assert (first.status_code, again.status_code, other.status_code) == (202, 202, 422)
        cid = first.json()["id"]
        assert again.json()["id"] == cid
        assert again.headers["idempotent-replayed"] == "true"
        await inbox.wait_for(cid)
    rows = await Db(dsn).fetch("SELECT value FROM commands WHERE command_id = $1", cid)
    assert [r["value"] for r in rows] == [12.0]
    # Published again while pending, with the same id: the edge applies it once.
    assert {orjson.loads(m.payload)["Value"] for m in inbox.messages} == {12}


async def test_status_follows_the_results(api: LiveApi, dsn: str) -> None:
    async with http(api, CONTROL) as c:
        cid = (await c.post(URL, json={"command": "set_current_limit", "value": 8})).json()["id"]
    async with http(api, READ) as c:
        doc = (await c.get(f"{URL}/{cid}")).json()
        assert doc["status"] == "pending"
        at = datetime.now(UTC)
        lease_end = at + timedelta(seconds=60)
        conn = await asyncpg.connect(dsn)  # the schema owner, as ingest would write it
        try:
            await conn.execute(
                """INSERT INTO command_results (charger, command_id, outcome, reason, at,
                                                value, lease_end)
                   VALUES ($1, $2, 'applied', 'read back 8 A', $3, 8, $4)""",
                CHARGER, cid, at, lease_end,
            )  # fmt: skip
        finally:
            await conn.close()
        doc = (await c.get(f"{URL}/{cid}")).json()
    assert (doc["status"], doc["reason"], doc["result_value"]) == ("applied", "read back 8 A", 8)
    assert datetime.fromisoformat(doc["result_at"]) == at
    assert datetime.fromisoformat(doc["lease_end"]) == lease_end
    assert doc["reverted"] is None


async def test_the_audit_is_newest_first_and_paginates(api: LiveApi, dsn: str) -> None:
    async with http(api, CONTROL) as c:
        posted = [
            (await c.post(URL, json={"command": "pause", "expires_in": 5 + i})).json()["id"]
            for i in range(5)
        ]
    async with http(api, READ) as c:
        seen: list[dict[str, object]] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, str | int] = {"limit": 2}
            if cursor:
                params["before"] = cursor
            page = (await c.get(URL, params=params)).json()
            pages += 1
            assert len(page["commands"]) <= 2
            seen += page["commands"]
            cursor = page["next"]
            if cursor is None:
                break
        assert (await c.get(URL, params={"before": "x!"})).status_code == 422
        assert (await c.get(URL, params={"limit": 201})).status_code == 422
    ids = [str(s["id"]) for s in seen]
    assert len(ids) == len(set(ids))  # no command on two pages
    assert ids[:5] == posted[::-1]  # newest first
    rows = await Db(dsn).fetch("SELECT command_id FROM commands WHERE charger = $1", CHARGER)
    assert set(ids) == {r["command_id"] for r in rows}  # every one, once
    assert pages >= 3
    received = [datetime.fromisoformat(str(s["received_at"])) for s in seen]
    assert received == sorted(received, reverse=True)
    assert all(s["issuer"] == "token:evcc" for s in seen[:5])


async def test_the_api_role_may_insert_commands_and_nothing_else(dsn: str) -> None:
    conn = await asyncpg.connect(as_role(dsn, "chargelift_api"))
    try:
        for sql in (
            "INSERT INTO command_results (charger, command_id, outcome, reason, at) "
            "VALUES ('amtron-1', 'x', 'applied', '', now())",
            "UPDATE commands SET value = 1",
            "DELETE FROM commands",
            "INSERT INTO readings (time, charger, field) VALUES (now(), 'amtron-1', 'x')",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
    finally:
        await conn.close()


async def test_the_state_shows_the_limit_in_force(api: LiveApi) -> None:
    async with http(api, READ) as c:
        doc = (await c.get(f"/api/v1/chargers/{CHARGER}")).json()
    fields = {f["field"]: f for f in doc["fields"]}
    assert (fields["CurrentLimit"]["value"], fields["CurrentLimit"]["unit"]) == (16.0, "A")
    assert fields["CurrentLimitLeaseEnd"]["value"] == "2026-12-01T12:05:00Z"


async def test_without_mqtt_settings_commands_are_503_and_reads_work(
    dsn: str, base_dir: Path
) -> None:
    live = start_api(as_role(dsn, "chargelift_api"), scratch(base_dir, "api-nomqtt"),
                     API_TOKENS=TOKENS, MQTT_HOST="")  # fmt: skip
    try:
        async with http(live, CONTROL) as c:
            r = await c.post(URL, json={"command": "pause"})
            assert r.status_code == 503
            assert "MQTT_HOST" in r.json()["detail"]
            assert (await c.get(URL)).status_code == 200
    finally:
        live.stop()


async def test_a_read_only_database_role_answers_503_not_500(
    dsn: str, broker: MosquittoServer, certs: TestCerts, base_dir: Path
) -> None:
    # Deployed with the readers' role (INSERT on nothing): a clear 503, never a 500.
    live = start_api(as_role(dsn, "chargelift_reader"), scratch(base_dir, "api-reader"),
                     API_TOKENS=TOKENS, **mqtt_env(broker, certs))  # fmt: skip
    try:
        async with http(live, CONTROL) as c:
            r = await c.post(URL, json={"command": "pause"}, headers={"Idempotency-Key": "ro-1"})
            assert r.status_code == 503, r.text
            assert "chargelift_api" in r.json()["detail"]
    finally:
        live.stop()


#: Must-show 3: the broker is down this long after a command with this expiry was accepted.
BROKER_DOWN_S = 30.0
EXPIRY_S = 10


async def failures(c: httpx.AsyncClient) -> float:
    """The API's count of commands that expired before the broker took them."""
    metrics = parse_metrics((await c.get("/metrics")).text)
    return metrics.get('api_command_publish_failures_total{reason="expired"}', 0.0)


async def test_a_command_accepted_while_the_broker_is_down_expires_and_is_never_sent(
    dsn: str, own_broker: MosquittoServer, certs: TestCerts, base_dir: Path
) -> None:
    certs.issue_reader(WATCHER, role="monitor")
    own_broker.reload()
    live = start_api(as_role(dsn, "chargelift_api"), scratch(base_dir, "api-down"),
                     API_TOKENS=TOKENS, **mqtt_env(own_broker, certs))  # fmt: skip
    try:
        # A persistent session: what the API publishes while the watcher reconnects after
        # the restart is kept for it, so "not seen" means "not published".
        async with (
            watcher(own_broker, certs, persistent=True) as (w, inbox),
            http(live, CONTROL) as c,
        ):
            probe = (await c.post(URL, json={"command": "resume"})).json()["id"]
            await inbox.wait_for(probe)  # the API is connected
            # The API was started on the module's database: it sent again what earlier
            # tests left unfinished, and some of that may have expired while it connected.
            # Everything queued before the probe is handled; count from here.
            before = await failures(c)

            own_broker.stop()
            down = time.monotonic()
            async with asyncio.timeout(10):
                while "api_broker_connected 0.0" not in (await c.get("/metrics")).text:
                    await asyncio.sleep(0.1)
            body = {"command": "set_current_limit", "value": 6, "expires_in": EXPIRY_S}
            r = await c.post(URL, json=body)
            assert r.status_code == 202, r.text  # on record; the broker is down
            cid = r.json()["id"]
            assert (await c.get(f"{URL}/{cid}")).json()["status"] == "pending"
            await asyncio.sleep(EXPIRY_S + 0.5)
            doc = (await c.get(f"{URL}/{cid}")).json()
            assert doc["status"] == "expired"
            assert "expired" in doc["reason"]
            await asyncio.sleep(max(0.0, BROKER_DOWN_S - (time.monotonic() - down)))

            own_broker.start()
            async with asyncio.timeout(30):
                await w.wait_connected()
            marker = (await c.post(URL, json={"command": "resume"})).json()["id"]
            await inbox.wait_for(marker, timeout=30)
            assert cid not in inbox.ids()  # the API never published it
            assert (await c.get(f"{URL}/{cid}")).json()["status"] == "expired"
            after = await failures(c)
            metrics = parse_metrics((await c.get("/metrics")).text)
        assert after - before == 1, f"{before=} {after=}\n{live.log.read_text()[-4000:]}"
        assert metrics["api_broker_connected"] == 1.0
    finally:
        live.stop()


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_generated_commands_never_cause_a_5xx(api: LiveApi, mode: str) -> None:
    """schemathesis against POST …/commands with a control token (docs: test_schemathesis)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operation = schema["/api/v1/chargers/{charger}/commands"]["POST"]
    generation = GenerationMode.NEGATIVE if mode == "negative" else GenerationMode.POSITIVE
    statuses: list[int] = []

    @given(case=operation.as_strategy(generation_mode=generation))
    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def check(case: Any) -> None:
        if mode == "positive":
            case.path_parameters["charger"] = CHARGER
        response = case.call_and_validate(
            headers={"Authorization": f"Bearer {CONTROL}"},
            excluded_checks=[positive_data_acceptance],
            timeout=10,
        )
        statuses.append(response.status_code)

    check()
    assert statuses
    assert max(statuses) < 500
    if mode == "positive":
        assert 202 in statuses, statuses


async def test_a_restarted_api_sends_again_what_is_unfinished(
    dsn: str, broker: MosquittoServer, certs: TestCerts, base_dir: Path
) -> None:
    """Accepted, then the process died with its queue: the next one sends what may still
    be applied (no result, not expired), and nothing else."""
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:8]
    unfinished, expired, done = (f"api:{kind}-{tag}" for kind in ("unfinished", "expired", "done"))
    conn = await asyncpg.connect(dsn)
    try:
        for cid, issued, expires in (
            (unfinished, now, now + timedelta(seconds=60)),
            (expired, now - timedelta(seconds=60), now - timedelta(seconds=1)),
            (done, now, now + timedelta(seconds=60)),
        ):
            await conn.execute(
                """INSERT INTO commands (charger, command_id, command, value, issued_at,
                                         expires_at, issuer, via)
                   VALUES ($1, $2, 'Pause', NULL, $3, $4, 'token:evcc', 'api')""",
                CHARGER, cid, issued, expires,
            )  # fmt: skip
        await conn.execute(
            """INSERT INTO command_results (charger, command_id, outcome, reason, at)
               VALUES ($1, $2, 'applied', 'paused', now())""",
            CHARGER, done,
        )  # fmt: skip
    finally:
        await conn.close()
    # A controller identity of its own: the module's API keeps `api` (one connection each).
    if not (certs.dir / "clients" / "api-again.crt").exists():
        pki.issue_client(certs.dir, "api-again", role="controller")
    broker.reload()
    async with watcher(broker, certs) as (_, inbox):
        live = start_api(as_role(dsn, "chargelift_api"), scratch(base_dir, "api-again"),
                         API_TOKENS=TOKENS, MQTT_IDENTITY="api-again",
                         **mqtt_env(broker, certs))  # fmt: skip
        try:
            msg = await inbox.wait_for(unfinished)
            async with http(live, CONTROL) as c:  # a marker behind them in the queue
                marker = (await c.post(URL, json={"command": "resume"})).json()["id"]
            await inbox.wait_for(marker)
        finally:
            live.stop()
    assert msg.topic == f"chargers/{CHARGER}/set/Pause"
    assert orjson.loads(msg.payload)["Issuer"] == "token:evcc"
    assert expired not in inbox.ids()
    assert done not in inbox.ids()
