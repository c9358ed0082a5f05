"""Commands through the API without a database or broker: scopes, validation, ids,
idempotency, status, the bounded queue and the publisher (fakes for repo and broker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from chargelift_api.app import create_app
from chargelift_api.auth import TokenStore, hash_token, parse_tokens
from chargelift_api.billing import Billing
from chargelift_api.config import Settings
from chargelift_api.control import (
    EXPIRED_WITHOUT_RESULT,
    CommandPublisher,
    CommandRequest,
    CommandRow,
    Cursor,
    Outgoing,
    ResultRow,
    command_id_for,
    derive_status,
    random_command_id,
)
from chargelift_api.deps import Context
from chargelift_api.main import main
from chargelift_api.metrics import ApiMetrics
from chargelift_api.repository import ChargerRow
from chargelift_contract.commands import COMMAND_ID_RE, parse_command
from chargelift_runtime.mqtt import ConnectionLostError, PublishRefusedError

READ, CONTROL, ADMIN = "read-token-1234", "control-token-5678", "admin-token-9012"
TOKENS = (
    f"grafana:read:{hash_token(READ)},evcc:control:{hash_token(CONTROL)},"
    f"ops:admin:{hash_token(ADMIN)}"
)
NOW = datetime(2026, 12, 2, 10, tzinfo=UTC)
URL = "/api/v1/chargers/amtron-1/commands"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class FakeRepo:
    """One charger; commands and results in dicts, as the table would keep them."""

    rows: dict[tuple[str, str], CommandRow] = field(default_factory=dict)
    results_of: dict[str, list[ResultRow]] = field(default_factory=dict)

    async def charger(self, charger: str) -> ChargerRow | None:
        if charger != "amtron-1":
            return None
        return ChargerRow("amtron-1", NOW - timedelta(days=1), NOW, "online", "idle", 0.0)

    async def insert_command(self, charger: str, command_id: str, *args: Any) -> Any:
        key = (charger, command_id)
        if key in self.rows:
            return self.rows[key], False
        command, value, issued, expires, valid_for, issuer = args
        row = CommandRow(
            charger, command_id, command, value, issued, expires, valid_for, issuer, "api", issued
        )
        self.rows[key] = row
        return row, True

    async def command(self, charger: str, command_id: str) -> CommandRow | None:
        return self.rows.get((charger, command_id))

    async def commands(self, charger: str, after: Any, limit: int) -> list[CommandRow]:
        rows = [r for r in self.rows.values() if r.charger == charger]
        return sorted(rows, key=lambda r: r.received_at, reverse=True)[:limit]

    async def results(self, charger: str, ids: list[str]) -> list[ResultRow]:
        return [r for i in ids for r in self.results_of.get(i, [])]

    def for_request(self, max_rows: int) -> FakeRepo:
        return self


class FakeBroker:
    """Connected or not; records what was published; may refuse."""

    def __init__(self, connected: bool = True, refuse: bool = False) -> None:
        self.connected = asyncio.Event()
        if connected:
            self.connected.set()
        self.refuse = refuse
        self.published: list[tuple[str, bytes, int, bool]] = []

    @property
    def is_connected(self) -> bool:
        return self.connected.is_set()

    async def wait_connected(self) -> None:
        await self.connected.wait()

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        if not self.connected.is_set():
            raise ConnectionLostError("not connected")
        if self.refuse:
            raise PublishRefusedError(topic, 0x87)
        self.published.append((topic, payload, qos, retain))


@dataclass
class Api:
    client: httpx.AsyncClient
    repo: FakeRepo
    publisher: CommandPublisher | None
    metrics: ApiMetrics


async def make_api(*, publisher: bool = True, capacity: int = 10) -> AsyncIterator[Api]:
    s = Settings(DATABASE_URL="postgresql://u:secret@127.0.0.1:1/db", tokens=TOKENS)
    metrics = ApiMetrics(CollectorRegistry())
    pub = CommandPublisher(FakeBroker(), capacity, metrics) if publisher else None
    app = create_app(s, metrics=metrics, commands=pub)
    repo = FakeRepo()
    r: Any = repo
    app.state.ctx = Context(
        s, r, Billing(r, timedelta(days=7)), TokenStore(s.token_entries()), metrics, pub
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield Api(c, repo, pub, metrics)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async for a in make_api():
        yield a


def queued(p: CommandPublisher | None) -> list[Outgoing]:
    assert p is not None
    q: Any = p._queue
    return list(q._queue)


# --- scopes --------------------------------------------------------------------------


def test_control_is_a_scope_of_its_own() -> None:
    [read, control, admin] = parse_tokens(TOKENS)
    assert (read.scope, control.scope, admin.scope) == ("read", "control", "admin")
    assert control.grants("control")
    assert control.grants("read")
    assert not read.grants("control")
    assert not admin.grants("control")  # commanding chargers is given by name only


def test_hash_token_makes_a_control_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hash-token", "evcc", "--scope", "control"]) == 0
    lines = capsys.readouterr().out.splitlines()
    token = lines[0].rsplit(" ", 1)[1]
    entry = lines[1].rsplit(" ", 1)[1]
    assert entry == f"evcc:control:{hash_token(token)}"
    assert parse_tokens(entry)[0].grants("control")


@pytest.mark.parametrize("token", [READ, ADMIN])
async def test_a_token_without_control_gets_403_and_nothing_is_sent(api: Api, token: str) -> None:
    r = await api.client.post(URL, json={"command": "pause"}, headers=auth(token))
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert "control" in r.json()["detail"]
    assert api.repo.rows == {}
    assert queued(api.publisher) == []


async def test_without_a_token_a_post_is_401(api: Api) -> None:
    r = await api.client.post(URL, json={"command": "pause"})
    assert r.status_code == 401


async def test_reads_need_only_read(api: Api) -> None:
    r = await api.client.get(URL + "/api:nope", headers=auth(READ))
    assert r.status_code == 404


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"command": "set_current_limit", "value": 0}, "above 0"),
        ({"command": "set_current_limit", "value": -6}, "above 0"),
        ({"command": "set_current_limit", "value": 1e9}, "at most"),
        ({"command": "set_current_limit"}, "number"),
        ({"command": "set_current_limit", "value": True}, "number"),
        ({"command": "set_current_limit", "value": "10"}, "value"),
        ({"command": "set_current_limit", "value": 10, "valid_for": 1}, "ValidFor"),
        ({"command": "set_current_limit", "value": 10, "valid_for": 90000}, "ValidFor"),
        ({"command": "pause", "value": 5}, "null or true"),
        ({"command": "stop", "valid_for": 60}, "takes no ValidFor"),
        ({"command": "explode"}, "command"),
        ({"command": "pause", "expires_in": 0}, "expires_in"),
        ({"command": "pause", "expires_in": 86401}, "expires_in"),
        ({"command": "pause", "surprise": 1}, "surprise"),
        ({"command": "start", "value": 16}, "null or true"),
        ({"command": "start", "value": False}, "null or true"),
        ({"command": "start", "value": "true"}, "value"),
        ({"command": "set_operative", "value": 0}, "null or true"),
        ({"command": "set_inoperative", "value": 2.5}, "null or true"),
        ({"command": "set_inoperative", "valid_for": 60}, "takes no ValidFor"),
        ({"command": "Inoperative"}, "command"),
        ({"command": "remote_start"}, "command"),
    ],
)
async def test_bad_commands_are_422_and_never_recorded(
    api: Api, body: dict[str, Any], says: str
) -> None:
    r = await api.client.post(URL, json=body, headers=auth(CONTROL))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert says in r.text
    assert api.repo.rows == {}
    assert queued(api.publisher) == []


async def test_a_bad_idempotency_key_is_422(api: Api) -> None:
    headers = {**auth(CONTROL), "Idempotency-Key": "x" * 256}
    r = await api.client.post(URL, json={"command": "pause"}, headers=headers)
    assert r.status_code == 422


async def test_an_unknown_charger_is_404(api: Api) -> None:
    r = await api.client.post(
        "/api/v1/chargers/nope/commands", json={"command": "pause"}, headers=auth(CONTROL)
    )
    assert r.status_code == 404


async def test_without_a_broker_commands_are_503_and_reads_still_work() -> None:
    async for api in make_api(publisher=False):
        r = await api.client.post(URL, json={"command": "pause"}, headers=auth(CONTROL))
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        assert "MQTT_HOST" in r.json()["detail"]
        assert api.repo.rows == {}
        r = await api.client.get(URL, headers=auth(READ))
        assert (r.status_code, r.json()["commands"]) == (200, [])


# --- accepted, idempotent --------------------------------------------------------------


async def test_accepted_command_is_recorded_queued_and_located(api: Api) -> None:
    body = {"command": "set_current_limit", "value": 10, "valid_for": 300, "expires_in": 30}
    r = await api.client.post(URL, json=body, headers=auth(CONTROL))
    assert r.status_code == 202, r.text
    doc = r.json()
    assert doc["status"] == "pending"
    assert doc["issuer"] == "token:evcc"
    assert r.headers["location"] == f"{URL}/{doc['id']}"
    assert COMMAND_ID_RE.fullmatch(doc["id"])
    [row] = api.repo.rows.values()
    assert (row.command, row.value, row.valid_for, row.issuer) == (
        "CurrentLimit", 10.0, 300.0, "token:evcc",
    )  # fmt: skip
    assert row.expires_at - row.issued_at == timedelta(seconds=30)
    [item] = queued(api.publisher)
    assert item.topic == "chargers/amtron-1/set/CurrentLimit"
    msg = parse_command(item.topic, item.payload, received_at=NOW)
    assert (msg.command_id, msg.value, msg.valid_for, msg.issuer) == (
        doc["id"], 10.0, 300.0, "token:evcc",
    )  # fmt: skip
    assert msg.expires_at == row.expires_at
    assert api.metrics.commands_accepted.labels("CurrentLimit")._value.get() == 1


@pytest.mark.parametrize(
    ("name", "contract"),
    [("start", "Start"), ("set_operative", "Operative"), ("set_inoperative", "Inoperative")],
)
@pytest.mark.parametrize("value", [None, True, "absent"])
async def test_start_and_availability_are_recorded_and_queued_with_the_contract_payload(
    api: Api, name: str, contract: str, value: object
) -> None:
    body: dict[str, object] = {"command": name}
    if value != "absent":
        body["value"] = value
    r = await api.client.post(URL, json=body, headers=auth(CONTROL))
    assert r.status_code == 202, r.text
    doc = r.json()
    assert (doc["command"], doc["value"], doc["status"]) == (name, None, "pending")
    [row] = api.repo.rows.values()
    assert (row.command, row.value, row.valid_for) == (contract, None, None)
    [item] = queued(api.publisher)
    assert item.topic == f"chargers/amtron-1/set/{contract}"
    assert orjson.loads(item.payload)["Value"] is None
    msg = parse_command(item.topic, item.payload, received_at=NOW)
    assert (msg.command.value, msg.command_id, msg.value) == (contract, doc["id"], None)
    assert api.metrics.commands_accepted.labels(contract)._value.get() == 1


async def test_without_a_key_every_post_is_a_new_command(api: Api) -> None:
    ids = set()
    for _ in range(3):
        r = await api.client.post(URL, json={"command": "pause"}, headers=auth(CONTROL))
        ids.add(r.json()["id"])
    assert len(ids) == 3 == len(api.repo.rows)


async def test_the_same_idempotency_key_is_the_same_command(api: Api) -> None:
    headers = {**auth(CONTROL), "Idempotency-Key": "k-1"}
    body = {"command": "set_current_limit", "value": 16}
    first = await api.client.post(URL, json=body, headers=headers)
    again = await api.client.post(URL, json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert first.headers["location"] == again.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(api.repo.rows) == 1
    # Sent again while pending (the first may have been lost); same id: the edge
    # applies it once.
    assert {i.command_id for i in queued(api.publisher)} == {first.json()["id"]}
    assert api.metrics.commands_accepted.labels("CurrentLimit")._value.get() == 1


async def test_the_same_key_with_another_body_is_422(api: Api) -> None:
    headers = {**auth(CONTROL), "Idempotency-Key": "k-2"}
    await api.client.post(URL, json={"command": "set_current_limit", "value": 16}, headers=headers)
    for other in (
        {"command": "set_current_limit", "value": 10},
        {"command": "set_current_limit", "value": 16, "valid_for": 60},
        {"command": "set_current_limit", "value": 16, "expires_in": 10},
        {"command": "pause"},
    ):
        r = await api.client.post(URL, json=other, headers=headers)
        assert r.status_code == 422, other
        assert "Idempotency-Key" in r.json()["detail"]
    assert len(api.repo.rows) == 1


def test_idempotent_ids_depend_on_token_charger_and_key() -> None:
    a = command_id_for("evcc", "amtron-1", "k")
    assert a == command_id_for("evcc", "amtron-1", "k")
    others = {
        command_id_for("ha", "amtron-1", "k"),
        command_id_for("evcc", "amtron-2", "k"),
        command_id_for("evcc", "amtron-1", "k2"),
    }
    assert a not in others
    assert len(others) == 3
    for cid in (a, random_command_id()):
        assert cid.startswith("api:")
        assert COMMAND_ID_RE.fullmatch(cid)
    assert random_command_id() != random_command_id()


async def test_a_full_queue_is_503() -> None:
    async for api in make_api(capacity=2):
        codes = [
            (
                await api.client.post(URL, json={"command": "pause"}, headers=auth(CONTROL))
            ).status_code
            for _ in range(3)
        ]
        assert codes == [202, 202, 503]
        assert len(api.repo.rows) == 2  # the refused one is not on record
        failures = api.metrics.command_publish_failures.labels("queue_full")
        assert failures._value.get() == 1


# --- status ------------------------------------------------------------------------------


def row(expires_in: float = 60) -> CommandRow:
    return CommandRow(
        "amtron-1", "api:1", "CurrentLimit", 10.0, NOW, NOW + timedelta(seconds=expires_in),
        300.0, "token:evcc", "api", NOW,
    )  # fmt: skip


def result(outcome: str, s: float, reason: str = "r") -> ResultRow:
    return ResultRow("api:1", outcome, reason, NOW + timedelta(seconds=s), 10.0, None)


def test_status_pending_until_it_expires_then_expired() -> None:
    assert derive_status(row(10), [], NOW + timedelta(seconds=9.9)).status == "pending"
    expired = derive_status(row(10), [], NOW + timedelta(seconds=10))
    assert (expired.status, expired.reason) == ("expired", EXPIRED_WITHOUT_RESULT)


@pytest.mark.parametrize("outcome", ["applied", "rejected", "failed", "expired"])
def test_status_is_the_edges_outcome_even_after_expiry(outcome: str) -> None:
    s = derive_status(row(10), [result(outcome, 1, "why")], NOW + timedelta(hours=1))
    assert (s.status, s.reason, s.result_at) == (outcome, "why", NOW + timedelta(seconds=1))


def test_a_reverted_lease_is_shown_beside_applied() -> None:
    s = derive_status(row(), [result("reverted", 300, "lease ran out"), result("applied", 1)], NOW)
    assert s.status == "applied"
    assert (s.reverted_at, s.reverted_reason) == (NOW + timedelta(seconds=300), "lease ran out")


async def test_get_shows_the_status_and_the_reverted_lease(api: Api) -> None:
    r = await api.client.post(
        URL, json={"command": "set_current_limit", "value": 10}, headers=auth(CONTROL)
    )
    cid = r.json()["id"]
    api.repo.results_of[cid] = [
        ResultRow(cid, "applied", "read back 10 A", NOW, 10.0, NOW + timedelta(seconds=300)),
        ResultRow(cid, "reverted", "lease ran out", NOW + timedelta(seconds=300), 16.0, None),
    ]
    doc = (await api.client.get(f"{URL}/{cid}", headers=auth(READ))).json()
    assert (doc["status"], doc["reason"], doc["result_value"]) == ("applied", "read back 10 A", 10)
    assert doc["reverted"]["reason"] == "lease ran out"


def test_request_model_refuses_nan_and_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        CommandRequest.model_validate({"command": "set_current_limit", "value": float("nan")})
    with pytest.raises(ValidationError):
        CommandRequest.model_validate({"command": "pause", "CommandId": "mine"})


def test_cursor_round_trip_and_garbage() -> None:
    c = Cursor(NOW, "api:abc")
    assert Cursor.decode(c.encode()) == c
    for bad in ("", "!!!", "bm9wZQ", "x" * 300):
        with pytest.raises(ValueError, match=r"."):
            Cursor.decode(bad)


async def test_bad_cursor_is_422(api: Api) -> None:
    r = await api.client.get(URL + "?before=garbage", headers=auth(READ))
    assert r.status_code == 422


# --- the publisher -------------------------------------------------------------------------


def item(expires_in: float, now: datetime | None = None) -> Outgoing:
    t = (now or datetime.now(UTC)) + timedelta(seconds=expires_in)
    return Outgoing("chargers/amtron-1/set/Pause", orjson.dumps({"Value": None}), "api:1", t)


async def test_publisher_publishes_qos1_not_retained() -> None:
    broker = FakeBroker()
    metrics = ApiMetrics(CollectorRegistry())
    pub = CommandPublisher(broker, 10, metrics)
    pub.submit(item(60))
    task = asyncio.create_task(pub.run())
    assert await pub.drain(5)
    task.cancel()
    assert broker.published == [("chargers/amtron-1/set/Pause", b'{"Value":null}', 1, False)]
    assert metrics.commands_published._value.get() == 1
    assert metrics.command_queue_depth._value.get() == 0


async def test_publisher_waits_for_the_broker_and_drops_what_expired_meanwhile() -> None:
    broker = FakeBroker(connected=False)
    metrics = ApiMetrics(CollectorRegistry())
    pub = CommandPublisher(broker, 10, metrics)
    pub.submit(item(0.2))  # expires while the broker is down
    pub.submit(item(60))
    task = asyncio.create_task(pub.run())
    await asyncio.sleep(0.4)
    assert broker.published == []
    broker.connected.set()
    assert await pub.drain(5)
    task.cancel()
    assert len(broker.published) == 1
    assert metrics.command_publish_failures.labels("expired")._value.get() == 1


async def test_publisher_drops_a_refused_command_and_goes_on() -> None:
    broker = FakeBroker(refuse=True)
    metrics = ApiMetrics(CollectorRegistry())
    pub = CommandPublisher(broker, 10, metrics)
    pub.submit(item(60))
    task = asyncio.create_task(pub.run())
    assert await pub.drain(5)
    task.cancel()
    assert metrics.command_publish_failures.labels("refused")._value.get() == 1


# --- settings ------------------------------------------------------------------------------


def test_with_mqtt_host_the_broker_block_is_required(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@127.0.0.1/db")
    monkeypatch.setenv("API_TOKENS", TOKENS)
    monkeypatch.setenv("MQTT_HOST", "broker.example")
    for name in ("MQTT_CA_FILE", "MQTT_CERTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "MQTT_CA_FILE" in err
    assert "MQTT_CERTS_DIR" in err


def test_the_service_publishes_as_api_unless_told_otherwise(tmp_path: Any) -> None:
    from chargelift_api.config import MqttSettings
    from chargelift_api.service import ApiService

    s = Settings(DATABASE_URL="postgresql://u:p@127.0.0.1:1/db", tokens=TOKENS, control_queue=7)
    mqtt = MqttSettings(host="127.0.0.1", ca_file=tmp_path / "ca.crt", certs_dir=tmp_path)
    service = ApiService(s, mqtt=mqtt, metrics=ApiMetrics(CollectorRegistry()))
    assert service.client is not None
    assert service.client.client_id == "api"
    assert service.commands is not None
    assert service.commands.capacity == 7
    other = ApiService(
        s,
        mqtt=mqtt.model_copy(update={"identity": "api-2"}),
        metrics=ApiMetrics(CollectorRegistry()),
    )
    assert other.client is not None
    assert other.client.client_id == "api-2"
    without = ApiService(s, metrics=ApiMetrics(CollectorRegistry()))
    assert (without.client, without.commands) == (None, None)
