"""The real docker-compose.yml, built and run here with stand-in base images.

``make test-compose`` (CI runs it after ``make test``). The override file
tests/compose/compose.standins.yml only swaps images; services, health checks,
dependencies, volumes and the Dockerfiles are the ones a user runs. The host reaches the
stack only through the ports compose publishes, bound to 127.0.0.1 here.

1. data from the simulated chargers reaches the API, through the mutual-TLS broker; so
   does the simulated OCPP charge point's, through the OCPP gateway's container, and the
   spare charge point connects on the gateway's published port with its password;
   Prometheus (the ``monitoring`` profile, deploy/prometheus) scrapes every service and
   evaluates every alert rule, none firing;
2. restarting the ingest container loses nothing (exact count of a numbered series);
3. ``down`` then ``up`` keeps the data (database, broker's retained values, outbox);
4. scripts/backup.sh, then ``down --volumes`` and no .env (a new VM), scripts/restore.sh
   and ``up``: the data, the CA (a certificate issued before the backup still logs in)
   and the .env (mode 600) are back;
5. retiring a device as docs/security.md says deletes its retained values (no dead
   letter in ingest) and keeps its history;
6. a user's first hour, in a copy of the repository with a .env made from .env.example:
   the first API token made with the command .env.example gives (API_TOKENS still
   empty) is accepted; then the upgrade as deploy/systemd/chargelift-stack.service's
   ExecReload (= docs/deploy.md) does it, after a code change: the new code answers
   (the versions in /healthz), a new migration is applied, the data is kept.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from websockets.typing import Subprotocol

from chargelift_contract import Envelope, decode, encode
from chargelift_runtime.mqtt import Message, MqttClient, TlsFiles
from tests.compose import engine

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1800)]

# SIM_COUNT=4 (not the default 3): the simulator, its certificates and the poller follow it.
CHARGERS = ("amtron-1", "amtron-2", "amtron-3", "amtron-4")
PROBE = "probe-1"  # a charger identity of the test's own, publishing from the host
T = TypeVar("T")
ALERTS = engine.REPO / "deploy" / "prometheus" / "alerts.yml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """One compose project of the real docker-compose.yml, on loopback ports."""

    project: str
    workdir: Path
    mqtt_port: int = field(default_factory=_free_port)
    api_port: int = field(default_factory=_free_port)
    prometheus_port: int = field(default_factory=_free_port)
    ocpp_port: int = field(default_factory=_free_port)
    #: The spare OCPP charge point's password (OCPP_PASSWORD in .env).
    ocpp_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: The checkout compose runs in (a copy, for a test that changes the code).
    checkout: Path = engine.REPO
    profiles: tuple[str, ...] = ("sim", "monitoring")
    #: CHARGELIFT_TAG of the images, when this project must not share the caller's.
    tag: str | None = None

    @property
    def env_file(self) -> Path:
        if self.checkout != engine.REPO:
            return self.checkout / ".env"  # where a user keeps it
        return self.workdir / "compose.env"

    def loopback_settings(self) -> dict[str, str]:
        return {
            "MQTT_BIND": "127.0.0.1",
            "MQTT_PORT": str(self.mqtt_port),
            "API_BIND": "127.0.0.1",
            "API_PORT": str(self.api_port),
            "PROMETHEUS_BIND": "127.0.0.1",
            "PROMETHEUS_PORT": str(self.prometheus_port),
            "OCPP_BIND": "127.0.0.1",
            "OCPP_PORT": str(self.ocpp_port),
        }

    @property
    def certs(self) -> Path:
        return self.workdir / "certs"

    def write_env(self) -> None:
        import hashlib

        digest = hashlib.sha256(self.token.encode()).hexdigest()
        lines = {
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "INGEST_DB_PASSWORD": secrets.token_hex(16),
            "READER_PASSWORD": secrets.token_hex(16),
            "API_DB_PASSWORD": secrets.token_hex(16),
            "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(16),
            "API_TOKENS": f"compose-test:read:{digest}",
            **self.loopback_settings(),
            "SIM_COUNT": str(len(CHARGERS)),
            "OCPP_PASSWORD": self.ocpp_password,
            "SIM_SPEED": "5",
        }
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        self.env_file.chmod(0o600)

    def compose_command(self) -> list[str]:
        """The compose command line of this project (what a user types as `docker compose`)."""
        return [
            str(engine.compose_binary()),
            "--project-name", self.project,
            "--project-directory", str(self.checkout),
            "--env-file", str(self.env_file),
            "-f", str(self.checkout / "docker-compose.yml"),
            "-f", str(engine.HERE / "compose.standins.yml"),
            *(arg for profile in self.profiles for arg in ("--profile", profile)),
        ]  # fmt: skip

    def compose_env(self) -> dict[str, str] | None:
        return None if self.tag is None else {**os.environ, "CHARGELIFT_TAG": self.tag}

    def compose(
        self, *args: str, timeout: float = 900, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return engine.run(
            *self.compose_command(), *args, timeout=timeout, check=check, env=self.compose_env()
        )

    def as_user_types(self, command: str, **placeholders: str) -> list[str]:
        """A documented ``docker compose …`` command line, as this project's compose."""
        for name, value in placeholders.items():
            command = command.replace(f"<{name}>", value)
        words = shlex.split(command)
        prefix = words.index("compose")
        assert words[prefix - 1].endswith("docker"), command
        return words[prefix + 1 :]

    def copy_client_certs(self, *identities: str) -> None:
        """Copy identities' files out of the project's certs volume (for host clients)."""
        self.certs.mkdir(exist_ok=True)
        (self.certs / "clients").mkdir(exist_ok=True)
        names = " ".join(f"clients/{i}.crt clients/{i}.key" for i in identities)
        archive = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "--user", "0:0",
             "-v", f"{self.project}_certs:/certs:ro", "--entrypoint", "sh",
             engine.STANDINS["python"], "-c", f"cd /certs && tar -c ca.crt {names}"],
            capture_output=True, check=True, timeout=120,
        )  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(self.certs)], input=archive.stdout, check=True)

    def tls(self, identity: str) -> TlsFiles:
        return TlsFiles.for_identity(self.certs / "ca.crt", self.certs, identity)

    def api(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        return httpx.get(
            f"http://127.0.0.1:{self.api_port}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("compose")
    engine.ensure_engine(workdir)
    engine.ensure_standins()
    s = Stack(project=f"chargelift-test-{os.getpid()}", workdir=workdir)
    s.write_env()
    try:
        started = time.monotonic()
        s.compose("build")
        print(f"compose build: {time.monotonic() - started:.1f} s")
        s.compose("run", "--rm", "certs")  # the first start's certificates, then the probe's
        s.compose("run", "--rm", "certs", "client", PROBE)
        started = time.monotonic()
        s.compose("up", "--detach", "--wait", "--wait-timeout", "300")
        print(f"compose up --wait: {time.monotonic() - started:.1f} s")
        s.copy_client_certs("monitor", PROBE)
        yield s
    finally:
        logs = s.compose("logs", "--no-color", "--tail", "200", timeout=120)
        (workdir / "compose.log").write_text(logs.stdout + logs.stderr)
        s.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=300)


def _wait(
    what: str, check: Callable[[], T | None], timeout: float = 120.0, every: float = 1.0
) -> T:
    """Call ``check`` until it returns something truthy; fail naming ``what``.

    A check may ``assert`` what it waits for: the last failed assertion is in the message.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            got = check()
        except (httpx.HTTPError, OSError, AssertionError) as exc:
            last = exc
        else:
            if got:
                return got
            last = got
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def _readings(stack: Stack, charger: str, fld: str, since: datetime) -> list[object]:
    r = stack.api(
        f"/api/v1/chargers/{charger}/readings",
        {
            "field": fld,
            "from": since.isoformat(),
            "to": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
        },
    )
    if r.status_code == 404:
        return []
    r.raise_for_status()
    return [p["value"] for p in r.json()["points"]]


async def _publish_series(stack: Stack, fld: str, values: range, t0: datetime) -> None:
    """Publish numbered readings as the probe charger, each acknowledged (QoS 1)."""
    async with MqttClient(
        host="127.0.0.1",
        port=stack.mqtt_port,
        client_id=f"{PROBE}-{secrets.token_hex(3)}",
        tls=stack.tls(PROBE),
    ) as client:
        async with asyncio.timeout(30):
            await client.wait_connected()
        for v in values:
            env = Envelope(sampling_time=t0 + timedelta(milliseconds=v), value=float(v))
            await client.publish(f"chargers/{PROBE}/{fld}", encode(env), retain=True)


def _monitor(
    stack: Stack, topic_filter: str, on_message: Callable[[Message], Awaitable[None]]
) -> MqttClient:
    """A read-only client (the monitor identity) subscribed to ``topic_filter``."""
    return MqttClient(
        host="127.0.0.1",
        port=stack.mqtt_port,
        client_id=f"monitor-{secrets.token_hex(3)}",
        tls=stack.tls("monitor"),
        subscriptions=[topic_filter],
        on_message=on_message,
    )


async def _retained(stack: Stack, topic: str) -> Envelope:
    got: asyncio.Queue[Message] = asyncio.Queue()

    async def on_message(msg: Message) -> None:
        await got.put(msg)

    async with _monitor(stack, topic, on_message):
        async with asyncio.timeout(30):
            msg = await got.get()
    assert msg.retain
    return decode(msg.payload)


def _talk_tls_without_a_certificate(stack: Stack) -> None:
    ctx = ssl.create_default_context(cafile=str(stack.certs / "ca.crt"))
    with (
        socket.create_connection(("127.0.0.1", stack.mqtt_port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"\x10\x00")  # with TLS 1.3 the refusal arrives on the first I/O
        tls.recv(1)


def test_each_service_has_least_privilege(stack: Stack) -> None:
    """Issue 14, finding 13: the CA key is only where certificates are issued, and each
    service logs in to the database with a role of its own (not the superuser)."""
    for service in (
        "mosquitto",
        "ingest",
        "poller",
        "simulator",
        "api",
        "ocpp",
        "simulator-ocpp",
        "bridge",
    ):
        seen = stack.compose(
            "exec", "-T", service, "sh", "-c",
            "test ! -e /certs/ca.key && test ! -e /ca/ca.key && echo no-ca-key",
            check=False,
        )  # fmt: skip
        assert seen.stdout.strip() == "no-ca-key", f"{service} can read the CA key"
    key = stack.compose("run", "--rm", "--no-deps", "--entrypoint", "sh", "certs", "-c",
                        "stat -c '%a %u' /ca/ca.key")  # fmt: skip
    assert key.stdout.split()[-2:] == ["600", "0"], key.stdout

    def logins() -> set[str] | None:
        out = stack.compose(
            "exec", "-T", "timescale", "psql", "-U", "chargelift", "-d", "chargelift", "-qAt",
            "-c", "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = 'chargelift'"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        ).stdout.split()  # fmt: skip
        return set(out) if {"chargelift_ingest", "chargelift_api"} <= set(out) else None

    # ingest and the API (their pools) are connected; nobody else but this psql
    assert _wait("ingest and the API logged in", logins) == {
        "chargelift_ingest",
        "chargelift_api",
    }


def test_simulated_chargers_reach_the_api_through_mutual_tls(stack: Stack) -> None:
    started = time.monotonic()

    def all_live() -> bool:
        rows = stack.api("/api/v1/chargers").json()
        live = {c["id"] for c in rows if c["availability"] == "online" and c["operation_state"]}
        return set(CHARGERS) <= live

    _wait("the simulated chargers in /api/v1/chargers", all_live, timeout=120)
    print(f"live values in the API {time.monotonic() - started:.1f} s after `up --wait`")
    detail = stack.api("/api/v1/chargers/amtron-1").json()
    assert {"OperationState", "PowerOutput", "SessionEnergy"} <= {
        f["field"] for f in detail["fields"]
    }

    # The broker publishes only mutual TLS: a client without a certificate is refused...
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _talk_tls_without_a_certificate(stack)
    # ...and with one, a reader sees the poller's retained, contract-valid envelopes.
    env = asyncio.run(_retained(stack, "chargers/amtron-1/OperationState"))
    assert env.value in {"unknown", "off", "idle", "charging", "scheduled_downtime",
                         "unscheduled_downtime"}  # fmt: skip


OCPP_SIM = "ocpp-sim-1"  # the sim profile's simulated OCPP charge point (one connector)
OCPP_SPARE = "ocpp-spare"  # the spare charge point the certs service registers


def test_the_simulated_ocpp_charge_point_reaches_the_api_through_the_gateway(
    stack: Stack,
) -> None:
    """Issue 17: the gateway's container takes the simulated charge point's wss://
    connection (profile 2, the sim profile's registration) and its readings reach the API
    through the broker, published as the gateway's edge identity."""
    wanted = {"ChargerVendor", "SerialNumber", "OperationState", "TotalEnergyConsumption"}

    def fields() -> dict[str, object]:
        r = stack.api(f"/api/v1/chargers/{OCPP_SIM}")
        assert r.status_code == 200, r.status_code
        got = {f["field"]: f["value"] for f in r.json()["fields"]}
        assert wanted <= set(got), sorted(got)
        return got

    got = _wait(f"{OCPP_SIM}'s fields in the API", fields, timeout=120)
    assert got["ChargerVendor"] == "chargelift"
    assert isinstance(got["TotalEnergyConsumption"], int | float)
    assert got["TotalEnergyConsumption"] > 0


async def _ocpp_handshake(stack: Stack, charge_point: str, password: str) -> str | None:
    """An OCPP 1.6 handshake (profile 2) on the gateway's published port; its subprotocol."""
    from websockets.asyncio.client import connect

    ctx = ssl.create_default_context(cafile=str(stack.certs / "ca.crt"))
    basic = base64.b64encode(f"{charge_point}:{password}".encode()).decode()
    async with connect(
        f"wss://127.0.0.1:{stack.ocpp_port}/ocpp/{charge_point}",
        ssl=ctx,
        subprotocols=[Subprotocol("ocpp1.6")],
        additional_headers={"Authorization": f"Basic {basic}"},
        open_timeout=10,
    ) as ws:
        return ws.subprotocol


def test_the_spare_ocpp_charge_point_connects_through_the_published_port(stack: Stack) -> None:
    """docs/ocpp.md "Running it": the spare charge point, with OCPP_PASSWORD of .env, is
    accepted on the published port (wss://, the broker's certificate, chargelift's CA);
    a wrong password is refused at the handshake."""
    from websockets.exceptions import InvalidStatus

    assert asyncio.run(_ocpp_handshake(stack, OCPP_SPARE, stack.ocpp_password)) == "ocpp1.6"
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(_ocpp_handshake(stack, OCPP_SPARE, stack.ocpp_password + "x"))
    assert refused.value.response.status_code == 401


def _prometheus(stack: Stack, path: str, **params: str) -> Any:
    r = httpx.get(f"http://127.0.0.1:{stack.prometheus_port}/api/v1/{path}", params=params,
                  timeout=10)  # fmt: skip
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]


def test_prometheus_scrapes_every_service_and_evaluates_every_rule(stack: Stack) -> None:
    """The ``monitoring`` profile as shipped: deploy/prometheus mounted into Prometheus."""

    def targets_up() -> dict[str, str]:
        active = _prometheus(stack, "targets", state="active")["activeTargets"]
        health = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in active}
        assert health, "no targets"
        assert {h for h, _ in health.values()} == {"up"}, health
        return {job: h for job, (h, _) in health.items()}

    health = _wait("every scrape target up", targets_up, timeout=120)
    assert set(health) == {
        "chargelift-ingest",
        "chargelift-api",
        "chargelift-poller",
        "chargelift-ocpp",
        "chargelift-bridge",
    }

    # The chargers are up, and the certificates' expiry is exported by ingest and poller.
    def chargers_up() -> dict[str, str]:
        found = _prometheus(stack, "query", query="poller_charger_up")["result"]
        up = {r["metric"]["charger"]: r["value"][1] for r in found}
        assert all(up.get(c) == "1" for c in CHARGERS), up
        return up

    _wait("poller_charger_up 1 for the simulated chargers", chargers_up, timeout=60)
    expiry = _prometheus(stack, "query", query="chargelift_certificate_expiry_timestamp_seconds")
    jobs = {r["metric"]["job"] for r in expiry["result"]}
    assert jobs == {"chargelift-ingest", "chargelift-poller"}
    assert min(float(r["value"][1]) for r in expiry["result"]) > time.time() + 30 * 86400

    # Every alert rule of alerts.yml is loaded, evaluates without error, and none fires.
    shipped = set(re.findall(r"^\s*- alert: (\w+)$", ALERTS.read_text(), re.M))

    def rules_evaluated() -> list[dict[str, Any]]:
        rules = [r for g in _prometheus(stack, "rules")["groups"] for r in g["rules"]]
        assert rules, "no rules loaded"
        fresh = [r["name"] for r in rules if r["lastEvaluation"].startswith("0001-")]
        assert not fresh, f"not evaluated yet: {fresh}"
        return rules

    rules = _wait("every alert rule evaluated", rules_evaluated, timeout=60)
    assert {r["name"] for r in rules} == shipped
    assert {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"} == {}
    assert [r["name"] for r in rules if r["state"] == "firing"] == []


def test_restarting_the_ingest_container_loses_nothing(stack: Stack) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    asyncio.run(_publish_series(stack, "PowerOutput", range(0, 200), t0))
    stop = stack.compose("stop", "ingest", timeout=120)
    assert stop.returncode == 0
    # Published while ingest is down: Mosquitto queues them in ingest's persistent session.
    asyncio.run(_publish_series(stack, "PowerOutput", range(200, 400), t0))
    stack.compose("start", "ingest", timeout=120)
    # And a restart while messages are flowing.
    restart = subprocess.Popen(
        [*stack.compose_command(), "restart", "ingest"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    asyncio.run(_publish_series(stack, "PowerOutput", range(400, 600), t0))
    assert restart.wait(timeout=120) == 0

    def stored() -> list[object] | None:
        values = _readings(stack, PROBE, "PowerOutput", t0 - timedelta(seconds=1))
        return values if len(values) >= 600 else None

    _wait("600 probe readings in the API", stored, timeout=120)
    values = _readings(stack, PROBE, "PowerOutput", t0 - timedelta(seconds=1))
    assert values == [float(v) for v in range(600)]  # all, once each, in order


def test_down_then_up_keeps_the_data(stack: Stack) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    asyncio.run(_publish_series(stack, "EnergyPrice", range(50), t0))
    _wait(
        "50 EnergyPrice readings",
        lambda: len(_readings(stack, PROBE, "EnergyPrice", t0 - timedelta(seconds=1))) == 50,
    )
    before = {c["id"]: c for c in stack.api("/api/v1/chargers").json()}

    stack.compose("down", "--timeout", "30", timeout=300)  # keeps the named volumes
    stack.compose("up", "--detach", "--wait", "--wait-timeout", "300")

    assert _readings(stack, PROBE, "EnergyPrice", t0 - timedelta(seconds=1)) == [
        float(v) for v in range(50)
    ]
    after = {c["id"]: c for c in stack.api("/api/v1/chargers").json()}
    assert set(before) <= set(after)
    for cid, c in before.items():
        assert after[cid]["first_seen"] == c["first_seen"]
    # The broker's persistence volume: the retained value (the shadow) is still there.
    env = asyncio.run(_retained(stack, f"chargers/{PROBE}/EnergyPrice"))
    assert env.value == 49.0
    # And the stack runs on: new readings are stored, the poller's chargers are online.
    asyncio.run(_publish_series(stack, "EnergyPrice", range(50, 51), t0))
    _wait(
        "a reading published after `up`",
        lambda: len(_readings(stack, PROBE, "EnergyPrice", t0 - timedelta(seconds=1))) == 51,
    )

    def online() -> bool:
        rows = stack.api("/api/v1/chargers").json()
        return set(CHARGERS) <= {c["id"] for c in rows if c["availability"] == "online"}

    _wait("the simulated chargers online again after `up`", online)


def test_backup_then_restore_into_empty_volumes(stack: Stack) -> None:
    """scripts/backup.sh, `down --volumes` (a new VM), scripts/restore.sh, `up`."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    asyncio.run(_publish_series(stack, "MaximumOutputCurrent", range(30), t0))
    since = t0 - timedelta(seconds=1)
    _wait(
        "30 readings before the backup",
        lambda: len(_readings(stack, PROBE, "MaximumOutputCurrent", since)) == 30,
    )
    before = {c["id"]: c["first_seen"] for c in stack.api("/api/v1/chargers").json()}
    # A charger registered with the OCPP gateway as docs/ocpp.md says (through certs).
    registered = stack.compose(
        *stack.as_user_types(
            "docker compose run --rm certs ocpp register <id> --url wss://<name>:9000/ocpp",
            id="garage-ocpp-1",
            name="127.0.0.1",
        )
    ).stdout
    found = re.search(r"Password \(AuthorizationKey\): (\S+)", registered)
    assert found, registered
    backup = stack.workdir / "backup"
    env = {
        **os.environ,
        "COMPOSE": " ".join(stack.compose_command()),
        "ENV_FILE": str(stack.env_file),
    }
    subprocess.run(
        [engine.REPO / "scripts" / "backup.sh", backup], env=env, check=True, timeout=300
    )
    assert {p.name for p in backup.iterdir()} == {
        "chargelift.dump", "certs.tar", "ca.tar", "ocpp.tar", "env", "SHA256SUMS"
    }  # fmt: skip
    # The secrets a restore needs, readable by their owner only.
    assert (backup / "env").read_text() == stack.env_file.read_text()
    assert (backup / "env").stat().st_mode & 0o777 == 0o600
    settings = stack.env_file.read_text()

    stack.compose("down", "--volumes", "--timeout", "30", timeout=300)  # everything gone
    stack.env_file.unlink()  # a new VM: no .env either
    subprocess.run(
        [engine.REPO / "scripts" / "restore.sh", backup], env=env, check=True, timeout=600
    )
    assert stack.env_file.read_text() == settings
    assert stack.env_file.stat().st_mode & 0o777 == 0o600
    stack.compose("up", "--detach", "--wait", "--wait-timeout", "300")

    assert _readings(stack, PROBE, "MaximumOutputCurrent", since) == [float(v) for v in range(30)]
    after = {c["id"]: c["first_seen"] for c in stack.api("/api/v1/chargers").json()}
    assert {k: after.get(k) for k in before} == before
    # The CA came back too: the probe's certificate, issued before the backup, still
    # logs in, and what it publishes is stored.
    asyncio.run(_publish_series(stack, "MaximumOutputCurrent", range(30, 31), t0))
    _wait(
        "a reading published after the restore",
        lambda: len(_readings(stack, PROBE, "MaximumOutputCurrent", since)) == 31,
    )
    # The OCPP gateway's registry came back (ocpp.tar): the charger keeps its password.
    assert asyncio.run(_ocpp_handshake(stack, "garage-ocpp-1", found.group(1))) == "ocpp1.6"
    # The CA's key came back into its own volume (ca.tar): certificates can be issued.
    stack.compose("run", "--rm", "certs", "client", "after-restore-1")


async def _retained_topics(stack: Stack, topic_filter: str, listen: float = 3.0) -> list[str]:
    """The topics under ``topic_filter`` with a retained value (what a new reader gets)."""
    got: list[str] = []

    async def on_message(msg: Message) -> None:
        if msg.retain:
            got.append(msg.topic)

    async with _monitor(stack, topic_filter, on_message) as client:
        async with asyncio.timeout(30):
            await client.wait_connected()
        await asyncio.sleep(listen)
    return sorted(got)


def test_retiring_a_device_deletes_its_retained_values_and_keeps_its_history(
    stack: Stack,
) -> None:
    """docs/security.md, "Retiring a device", with the command it gives for compose."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=4)
    asyncio.run(_publish_series(stack, "OutputCurrent", range(5), t0))
    since = t0 - timedelta(seconds=1)
    _wait("5 readings", lambda: len(_readings(stack, PROBE, "OutputCurrent", since)) == 5)
    shadow = asyncio.run(_retained_topics(stack, f"chargers/{PROBE}/#"))
    assert f"chargers/{PROBE}/OutputCurrent" in shadow

    certs = "/mosquitto/certs"
    clear = stack.compose(
        "exec", "-T", "mosquitto", "mosquitto_sub", "-h", "localhost", "-p", "8883",
        "--cafile", f"{certs}/ca.crt",
        "--cert", f"{certs}/clients/{PROBE}.crt", "--key", f"{certs}/clients/{PROBE}.key",
        "-t", f"chargers/{PROBE}/#", "--retained-only", "--remove-retained", "-W", "3", "-v",
        check=False,
    )  # fmt: skip
    # -W ends it after 3 s (exit status 27); each value it deleted is printed.
    assert clear.returncode in (0, 27), clear.stderr
    assert sorted(line.split()[0] for line in clear.stdout.splitlines()) == shadow

    assert asyncio.run(_retained_topics(stack, f"chargers/{PROBE}/#")) == []
    # Ingest took the zero-length messages as deletions: no dead letter, history kept.
    dead = stack.compose(
        "exec", "-T", "timescale", "psql", "-U", "chargelift", "-d", "chargelift", "-tAc",
        "SELECT count(*) FROM dead_letters",
    )  # fmt: skip
    assert dead.stdout.strip() == "0"
    assert _readings(stack, PROBE, "OutputCurrent", since) == [float(v) for v in range(5)]


def test_a_revocation_takes_effect_on_its_own(stack: Stack) -> None:
    """Issue 14, finding 8: `certs revoke` alone (no reload by hand) closes the identity's
    open connection and refuses new ones within 5 s; a reading identity is covered too.
    (docker/entrypoints/mosquitto-watch.sh restarts the broker on a new CRL.)"""
    stack.compose("run", "--rm", "certs", "client", "dash-1", "--role", "monitor")
    stack.copy_client_certs("dash-1")
    tls = stack.tls("dash-1")

    async def revoke_while_connected() -> tuple[float, float]:
        got: asyncio.Queue[Message] = asyncio.Queue()

        async def on_message(msg: Message) -> None:
            got.put_nowait(msg)

        async with MqttClient(
            host="127.0.0.1",
            port=stack.mqtt_port,
            client_id="dash-1",
            tls=tls,
            subscriptions=["chargers/#"],
            on_message=on_message,
        ) as dash:
            async with asyncio.timeout(60):  # the new ACL entry is picked up on its own
                await got.get()
            typed = time.monotonic()
            await asyncio.to_thread(stack.compose, "run", "--rm", "certs", "revoke", "dash-1")
            revoked = time.monotonic()
            print(f"compose: `certs revoke` itself took {revoked - typed:.2f} s")
            async with asyncio.timeout(30):
                await dash.wait_disconnected()
            cut = time.monotonic() - revoked
        while True:
            async with MqttClient(
                host="127.0.0.1", port=stack.mqtt_port, client_id="dash-1", tls=tls
            ) as again:
                await asyncio.sleep(1.0)
                if not again.is_connected and again.last_error is not None:
                    return cut, time.monotonic() - revoked
            assert time.monotonic() - revoked < 30, "the revoked identity still connects"

    cut, refused = asyncio.run(revoke_while_connected())
    print(f"compose: revoke -> disconnected {cut:.2f} s, -> refused {refused:.2f} s")
    assert cut < 5.0
    assert refused < 5.0 + 1.0  # the probe itself waits 1 s
    # The broker restart closed everybody's connection: the pipeline carries on.
    t0 = datetime.now(UTC).replace(microsecond=0)
    asyncio.run(_publish_series(stack, "PowerOutput", range(42, 43), t0))
    _wait(
        "a reading stored after the restart",
        lambda: _readings(stack, PROBE, "PowerOutput", t0 - timedelta(seconds=1)) == [42.0],
    )


# --- 6. a user's first hour: the first token, then an upgrade ---------------------------

UNIT = "deploy/systemd/chargelift-stack.service"
SECRETS = (
    "POSTGRES_PASSWORD",
    "INGEST_DB_PASSWORD",
    "READER_PASSWORD",
    "API_DB_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)
#: Not in a fresh clone: the developer's state at the top, caches anywhere.
LOCAL_STATE = {".git", ".venv", ".venv-compose", ".env", "backups", ".dev", "certs"}
CACHES = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}


def _copy_checkout(dest: Path) -> None:
    """The repository as a user's checkout would hold it (the test changes its code)."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = Path(folder) == engine.REPO
        return {
            n for n in names if n in CACHES or n.endswith(".egg-info") or (top and n in LOCAL_STATE)
        }

    shutil.copytree(engine.REPO, dest, ignore=ignore, symlinks=True)


def _set_env(path: Path, **values: str) -> None:
    """Set variables in a .env as a user edits it: in place, else appended."""
    lines = path.read_text().splitlines()
    for key, value in values.items():
        at = [i for i, line in enumerate(lines) if re.match(rf"#?{key}=", line)]
        if at:
            lines[at[0]] = f"{key}={value}"
        else:
            lines.append(f"{key}={value}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A new checkout, a .env from .env.example, the first token as it says, ``up``.

    .env.example: "copy this file to .env and fill in every REQUIRED value"; the secrets
    are filled in, API_TOKENS is left empty until the documented command has made the
    first token. Its own image tag: the test rebuilds these images from changed code.
    """
    workdir = tmp_path_factory.mktemp("fresh")
    engine.ensure_engine(workdir)
    engine.ensure_standins()
    checkout = workdir / "chargelift"
    _copy_checkout(checkout)
    s = Stack(
        project=f"chargelift-fresh-{os.getpid()}",
        workdir=workdir,
        checkout=checkout,
        profiles=(),
        # A tag of this run's own: images left by an earlier run (the upgrade test rebuilds
        # them from changed code) must never stand in for a fresh machine's first build.
        tag=f"{os.environ.get('CHARGELIFT_TAG', 'local')}-fresh-{os.getpid()}",
        token="",
    )
    shutil.copy(checkout / ".env.example", s.env_file)
    s.env_file.chmod(0o600)
    _set_env(
        s.env_file,
        **{k: secrets.token_hex(16) for k in SECRETS},
        **s.loopback_settings(),
    )
    try:
        # The first token, with the command .env.example gives.
        documented = re.search(r"`(docker compose run [^`]*hash-token <name>)`",
                               (checkout / ".env.example").read_text())  # fmt: skip
        assert documented, ".env.example no longer says how to make a token"
        made = s.compose(*s.as_user_types(documented.group(1), name="owner"), check=False)
        assert made.returncode == 0, f"{documented.group(1)} failed:\n{made.stderr[-2000:]}"
        token = re.search(r"^token[^:]*: (\S+)$", made.stdout, re.M)
        entry = re.search(r"^API_TOKENS entry: (owner:read:\S+)$", made.stdout, re.M)
        assert token, made.stdout
        assert entry, made.stdout
        s.token = token.group(1)
        _set_env(s.env_file, API_TOKENS=entry.group(1))
        # The probe's certificate, for the host's test client (docs/deploy.md, "a new
        # edge device"): the first start's certificates, then the probe's.
        s.compose("run", "--rm", "certs")
        s.compose("run", "--rm", "certs", "client", PROBE)

        started = time.monotonic()
        s.compose("up", "--detach", "--wait", "--wait-timeout", "300")
        print(f"fresh checkout: build + up --wait: {time.monotonic() - started:.1f} s")
        s.copy_client_certs(PROBE)
        yield s
    finally:
        logs = s.compose("logs", "--no-color", "--tail", "200", timeout=120, check=False)
        (workdir / "compose.log").write_text(logs.stdout + logs.stderr)
        s.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=300,
                  check=False)  # fmt: skip
        for service in ("certs", "ingest", "api", "simulator", "poller"):
            engine.run("docker", "image", "rm", "-f", f"chargelift/{service}:{s.tag}",
                       timeout=120, check=False)  # fmt: skip


def test_the_first_token_made_as_documented_is_accepted(fresh: Stack) -> None:
    assert fresh.api("/api/v1/chargers").status_code == 200
    anonymous = httpx.get(f"http://127.0.0.1:{fresh.api_port}/api/v1/chargers", timeout=10)
    assert anonymous.status_code == 401


def _versions(stack: Stack) -> tuple[str, str]:
    """The versions /healthz of the API and of ingest name."""
    api = httpx.get(f"http://127.0.0.1:{stack.api_port}/healthz", timeout=10).json()
    ingest = stack.compose(
        "exec", "-T", "ingest", "python3", "-c",
        "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9102/healthz').read().decode())",
    )  # fmt: skip
    return api["version"], json.loads(ingest.stdout)["version"]


def _reload_command() -> str:
    """What `systemctl reload chargelift-stack` runs (docs/deploy.md, section Upgrades)."""
    [command] = [
        line.split("=", 1)[1]
        for line in (engine.REPO / UNIT).read_text().splitlines()
        if line.startswith("ExecReload=")
    ]
    return command


def test_upgrade_as_documented_runs_the_new_code_and_keeps_the_data(fresh: Stack) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    asyncio.run(_publish_series(fresh, "PowerOutput", range(20), t0))
    since = t0 - timedelta(seconds=1)
    _wait("20 readings before the upgrade",
          lambda: len(_readings(fresh, PROBE, "PowerOutput", since)) == 20)  # fmt: skip
    old = _versions(fresh)
    assert old[0] == old[1]

    # The new version (what `git pull` brings): other code, one more migration.
    new = f"{old[0]}+upgraded{secrets.token_hex(2)}"
    for service in ("api", "ingest"):
        pyproject = fresh.checkout / "services" / service / "pyproject.toml"
        text = pyproject.read_text()
        assert f'version = "{old[0]}"' in text
        pyproject.write_text(text.replace(f'version = "{old[0]}"', f'version = "{new}"', 1))
    migrations = fresh.checkout / "services" / "ingest" / "chargelift_ingest" / "migrations"
    (migrations / "9999_upgrade_test.sql").write_text("CREATE TABLE upgrade_test (id integer);\n")

    reload = _reload_command()
    started = time.monotonic()
    fresh.compose(*fresh.as_user_types(reload))
    print(f"upgrade ({reload}): {time.monotonic() - started:.1f} s")

    _wait("the new API answering", lambda: _versions(fresh)[0] == new, timeout=60)
    assert _versions(fresh) == (new, new), "the upgrade left old code running"
    applied = fresh.compose(
        "exec", "-T", "timescale", "psql", "-U", "chargelift", "-d", "chargelift", "-tAc",
        "SELECT name FROM schema_migrations WHERE version = 9999",
    )  # fmt: skip
    assert applied.stdout.strip() == "9999_upgrade_test.sql"
    # The data stayed, and the new ingest stores what comes after the upgrade.
    assert _readings(fresh, PROBE, "PowerOutput", since) == [float(v) for v in range(20)]
    asyncio.run(_publish_series(fresh, "PowerOutput", range(20, 21), t0))
    _wait("a reading published after the upgrade",
          lambda: len(_readings(fresh, PROBE, "PowerOutput", since)) == 21)  # fmt: skip
