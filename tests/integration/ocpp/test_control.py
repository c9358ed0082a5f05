"""Commands applied over OCPP (issue 17, must-show 5): a real Mosquitto, the gateway with
its edge identity, and a charge point from the ``ocpp`` package that answers the
gateway's calls. Commands are published by the ``api`` identity (a controller); the
ground truth is what reached the charge point (its frames, as on the wire)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import ChargePoint as ClientChargePoint
from ocpp.v16 import call, call_result
from ocpp.v16.enums import (
    Action,
    AvailabilityStatus,
    ChargingProfileStatus,
    ClearChargingProfileStatus,
    RemoteStartStopStatus,
)

from chargelift_contract.commands import (
    Command,
    CommandResult,
    Outcome,
    command_topic,
    decode_result,
    encode_command,
)
from chargelift_contract.envelope import decode, parse_time
from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_ocpp.chargepoint import on
from chargelift_ocpp.control import PAUSE_PROFILE_ID, PROFILE_ID
from chargelift_runtime.mqtt import Message, MqttClient
from chargelift_runtime.retry import Backoff
from chargelift_runtime.settings import MqttSettings
from chargelift_simulator.ocpp_fleet import OcppFleet, OcppFleetConfig
from tests.conftest import scratch
from tests.integration.ocpp.conftest import PASSWORD_2, Gateway, GatewayFactory
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration

#: A bound for a loaded machine, not a speed target.
WAIT = 30
EDGE = "ocpp-ctl-edge"
CP = "cp-pass"
CHARGERS = (CP, f"{CP}__2")


async def eventually(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


class Controller:
    """The ``api`` identity: publishes commands, collects results and the limit fields."""

    def __init__(self) -> None:
        self.client: MqttClient | None = None
        self.results: list[tuple[str, CommandResult]] = []
        self.fields: list[tuple[str, Any]] = []

    async def handle(self, message: Message) -> None:
        if "/result/" in message.topic:
            self.results.append((message.topic, decode_result(message.payload)))
        else:
            self.fields.append((message.topic, decode(message.payload).value))

    async def send(
        self, charger: str, command: Command, value: float | None = None, **kw: Any
    ) -> None:
        assert self.client is not None
        payload = encode_command(command, value, **kw)
        await self.client.publish(command_topic(charger, command), payload, qos=1)

    def of(self, command_id: str) -> list[CommandResult]:
        return [r for _, r in self.results if r.command_id == command_id]

    def outcome(self, command_id: str) -> Outcome | None:
        found = self.of(command_id)
        return found[-1].outcome if found else None

    async def wait(self, command_id: str, outcome: Outcome) -> CommandResult:
        await eventually(lambda: self.outcome(command_id) is outcome, f"{command_id} {outcome}")
        return self.of(command_id)[-1]


@asynccontextmanager
async def controller(broker: MosquittoServer, certs: TestCerts) -> AsyncIterator[Controller]:
    ctl = Controller()
    async with MqttClient(
        host=broker.host,
        port=broker.port,
        client_id="t17-ctl",
        tls=certs.tls("api"),
        subscriptions=("chargers/+/result/+", "chargers/+/CurrentLimit"),
        on_message=ctl.handle,
        backoff=Backoff(initial=0.2, maximum=1.0),
    ) as client:
        ctl.client = client
        async with asyncio.timeout(10):
            await client.wait_connected()
        yield ctl


class ChargePointSim(ClientChargePoint):  # type: ignore[misc]  # ocpp has no type hints
    """A charge point that records the gateway's calls as on the wire and answers them
    (``answer``), or never (``silent``)."""

    def __init__(self, cp_id: str, ws: Any) -> None:
        super().__init__(cp_id, ws, response_timeout=10)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answer = ChargingProfileStatus.accepted
        self.start_answer = RemoteStartStopStatus.accepted
        self.availability_answer = AvailabilityStatus.accepted
        self.silent = False

    async def route_message(self, raw_msg: str) -> None:
        frame = json.loads(raw_msg)
        if frame[0] == 2:
            self.calls.append((frame[2], frame[3]))
        await super().route_message(raw_msg)

    def of(self, action: str) -> list[dict[str, Any]]:
        return [payload for name, payload in self.calls if name == action]

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(self, **_: Any) -> call_result.SetChargingProfile:
        if self.silent:
            await asyncio.Event().wait()
        return call_result.SetChargingProfile(status=self.answer)

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, **_: Any) -> call_result.ClearChargingProfile:
        return call_result.ClearChargingProfile(status=ClearChargingProfileStatus.accepted)

    @on(Action.remote_stop_transaction)
    def on_remote_stop_transaction(self, **_: Any) -> call_result.RemoteStopTransaction:
        return call_result.RemoteStopTransaction(status=RemoteStartStopStatus.accepted)

    @on(Action.remote_start_transaction)
    async def on_remote_start_transaction(self, **_: Any) -> call_result.RemoteStartTransaction:
        if self.silent:
            await asyncio.Event().wait()
        return call_result.RemoteStartTransaction(status=self.start_answer)

    @on(Action.change_availability)
    async def on_change_availability(self, **_: Any) -> call_result.ChangeAvailability:
        if self.silent:
            await asyncio.Event().wait()
        return call_result.ChangeAvailability(status=self.availability_answer)


@asynccontextmanager
async def charge_point(gw: Gateway) -> AsyncIterator[ChargePointSim]:
    ws = await gw.connect(CP, password=PASSWORD_2)
    cp = ChargePointSim(CP, ws)
    task = asyncio.create_task(cp.start())
    try:
        assert gw.service.uplink is not None
        assert gw.service.uplink.control is not None
        control = gw.service.uplink.control
        await eventually(lambda: control.connection(CP) is not None, "the charge point attached")
        yield cp
    finally:
        await ws.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def setup(
    gateways: GatewayFactory, broker: MosquittoServer, certs: TestCerts, **overrides: Any
) -> AsyncIterator[tuple[Gateway, Controller]]:
    mqtt = MqttSettings(
        host=broker.host,
        port=broker.port,
        ca_file=certs.ca_file,
        certs_dir=certs.dir,
        identity=EDGE,
    )
    async with controller(broker, certs) as ctl:
        gw = await gateways.start(mqtt, mqtt_max_backoff=1.0, shutdown_grace=2.0, **overrides)
        uplink = gw.service.uplink
        assert uplink is not None
        assert uplink.client is not None
        client = uplink.client
        # Subscribed once connected: commands published from now on reach the gateway.
        await eventually(lambda: client.is_connected, "the gateway's edge connection")
        try:
            yield gw, ctl
        finally:
            await gw.stop()


@pytest.fixture
def broker(certs: TestCerts, base_dir: Path) -> Iterator[MosquittoServer]:
    """A broker of this test's own that knows the gateway's edge identity from its start
    (no SIGHUP: a reload just after the start can kill Mosquitto before its handlers)."""
    certs.issue_edge(EDGE, CHARGERS)
    server = MosquittoServer(certs_dir=certs.dir, run_dir=scratch(base_dir, "broker"))
    server.start()
    yield server
    server.kill()


def _profile(cp: ChargePointSim) -> dict[str, Any]:
    profiles = cp.of("SetChargingProfile")
    assert profiles, "no SetChargingProfile reached the charge point"
    return profiles[-1]


async def test_a_current_limit_reaches_the_charge_point_as_a_tx_default_profile_with_its_lease(
    gateways: GatewayFactory, broker: MosquittoServer, certs: TestCerts
) -> None:
    async with setup(gateways, broker, certs) as (gw, ctl), charge_point(gw) as cp:
        sent = datetime.now(UTC)
        await ctl.send(CP, Command.CURRENT_LIMIT, 10, command_id="lim-1", valid_for=300)
        result = await ctl.wait("lim-1", Outcome.APPLIED)
        assert len(cp.of("SetChargingProfile")) == 1
        payload = _profile(cp)
        assert payload["connectorId"] == 1
        profile = payload["csChargingProfiles"]
        assert profile["chargingProfileId"] == PROFILE_ID
        assert profile["chargingProfilePurpose"] == "TxDefaultProfile"
        assert profile["chargingSchedule"]["chargingRateUnit"] == "A"
        assert profile["chargingSchedule"]["chargingSchedulePeriod"] == [
            {"startPeriod": 0, "limit": 10.0}
        ]
        valid_to = parse_time(profile["validTo"])
        lease = timedelta(seconds=300)
        assert sent + lease - timedelta(seconds=1) <= valid_to <= datetime.now(UTC) + lease
        assert result.value == 10.0
        assert result.lease_end is not None
        assert abs((result.lease_end - valid_to).total_seconds()) < 1
        # The state field shows the limit in force.
        await eventually(
            lambda: (f"chargers/{CP}/CurrentLimit", 10.0) in ctl.fields, "CurrentLimit 10"
        )


async def test_the_same_command_id_twice_is_applied_once_and_answered_twice(
    gateways: GatewayFactory, broker: MosquittoServer, certs: TestCerts
) -> None:
    async with setup(gateways, broker, certs) as (gw, ctl), charge_point(gw) as cp:
        await ctl.send(CP, Command.CURRENT_LIMIT, 12, command_id="twice")
        await ctl.wait("twice", Outcome.APPLIED)
        await ctl.send(CP, Command.CURRENT_LIMIT, 12, command_id="twice")
        await eventually(lambda: len(ctl.of("twice")) == 2, "the result sent again")
        # A later command shows the gateway is past the repeat: still one profile of 12 A.
        await ctl.send(CP, Command.PAUSE, command_id="after-twice")
        await ctl.wait("after-twice", Outcome.APPLIED)
        limits = [p["csChargingProfiles"]["chargingSchedule"] for p in cp.of("SetChargingProfile")]
        assert [s["chargingSchedulePeriod"][0]["limit"] for s in limits] == [12.0, 0.0]
        assert all(r.outcome is Outcome.APPLIED for r in ctl.of("twice"))


async def test_an_expired_command_is_expired_and_never_sent(
    gateways: GatewayFactory, broker: MosquittoServer, certs: TestCerts
) -> None:
    async with setup(gateways, broker, certs) as (gw, ctl), charge_point(gw) as cp:
        now = datetime.now(UTC)
        await ctl.send(
            CP,
            Command.CURRENT_LIMIT,
            8,
            command_id="old",
            issued_at=now - timedelta(seconds=120),
            expires_at=now - timedelta(seconds=60),
        )
        await ctl.wait("old", Outcome.EXPIRED)
        await ctl.send(CP, Command.PAUSE, command_id="after-old")
        await ctl.wait("after-old", Outcome.APPLIED)
        assert [p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
                for p in cp.of("SetChargingProfile")] == [0.0]  # fmt: skip


async def test_a_command_for_a_charge_point_not_connected_waits_for_it_or_expires(
    gateways: GatewayFactory, broker: MosquittoServer, certs: TestCerts
) -> None:
    async with setup(gateways, broker, certs) as (gw, ctl):
        now = datetime.now(UTC)
        await ctl.send(
            CP, Command.CURRENT_LIMIT, 9, command_id="brief", expires_at=now + timedelta(seconds=2)
        )
        later = now + timedelta(seconds=60)
        await ctl.send(CP, Command.PAUSE, command_id="waits", expires_at=later)
        await ctl.wait("brief", Outcome.EXPIRED)
        assert ctl.outcome("waits") is None
        async with charge_point(gw) as cp:
            await ctl.wait("waits", Outcome.APPLIED)
            assert len(cp.of("SetChargingProfile")) == 1


async def test_a_charge_point_that_rejects_the_profile_gives_rejected(
    gateways: GatewayFactory, broker: MosquittoServer, certs: TestCerts
) -> None:
    async with setup(gateways, broker, certs) as (gw, ctl), charge_point(gw) as cp:
        cp.answer = ChargingProfileStatus.rejected
        await ctl.send(CP, Command.CURRENT_LIMIT, 16, command_id="no")
        result = await ctl.wait("no", Outcome.REJECTED)
        assert "Rejected" in result.reason
        assert result.value is None  # nothing in force


async def test_a_charge_point_that_never_answers_gives_failed(
    gateways: GatewayFactory, broker: MosquittoServer, certs: TestCerts
) -> None:
    async with (
        setup(gateways, broker, certs, response_timeout=1.0) as (gw, ctl),
        charge_point(gw) as cp,
    ):
        cp.silent = True
        await ctl.send(CP, Command.CURRENT_LIMIT, 16, command_id="silence")
        result = await ctl.wait("silence", Outcome.FAILED)
        assert "did not answer" in result.reason
        assert len(cp.of("SetChargingProfile")) == 1


async def test_stop_sends_remote_stop_with_the_running_transaction(
    gateways: GatewayFactory, broker: MosquittoServer, certs: TestCerts
) -> None:
    async with setup(gateways, broker, certs) as (gw, ctl), charge_point(gw) as cp:
        await ctl.send(f"{CP}__2", Command.STOP, command_id="stop-none")
        result = await ctl.wait("stop-none", Outcome.REJECTED)
        assert result.reason == "no transaction"
        started = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="card-1", meter_start=1000, timestamp="2026-12-02T10:00:00Z"
            )
        )
        await ctl.send(CP, Command.STOP, command_id="stop-1")
        await ctl.wait("stop-1", Outcome.APPLIED)
        assert cp.of("RemoteStopTransaction") == [{"transactionId": started.transaction_id}]


async def test_pause_is_a_zero_amp_profile_above_the_limit_and_resume_clears_only_it(
    gateways: GatewayFactory, broker: MosquittoServer, certs: TestCerts
) -> None:
    async with setup(gateways, broker, certs) as (gw, ctl), charge_point(gw) as cp:
        await ctl.send(CP, Command.CURRENT_LIMIT, 10, command_id="limit-0")
        await ctl.wait("limit-0", Outcome.APPLIED)
        limit = _profile(cp)["csChargingProfiles"]
        await ctl.send(CP, Command.PAUSE, command_id="pause-1")
        await ctl.wait("pause-1", Outcome.APPLIED)
        profile = _profile(cp)["csChargingProfiles"]
        assert profile["chargingProfileId"] == PAUSE_PROFILE_ID
        assert profile["chargingProfilePurpose"] == "TxDefaultProfile"
        assert profile["stackLevel"] > limit["stackLevel"]
        assert profile["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 0
        assert "validTo" not in profile
        await ctl.send(CP, Command.RESUME, command_id="resume-1")
        await ctl.wait("resume-1", Outcome.APPLIED)
        assert cp.of("ClearChargingProfile") == [{"id": PAUSE_PROFILE_ID, "connectorId": 1}]


async def test_a_lease_that_ends_is_reported_reverted_also_after_a_restart(
    gateways: GatewayFactory, broker: MosquittoServer, certs: TestCerts, tmp_path: Path
) -> None:
    async with setup(gateways, broker, certs) as (gw, ctl):
        async with charge_point(gw):
            await ctl.send(CP, Command.CURRENT_LIMIT, 11, command_id="lease", valid_for=5)
            await ctl.wait("lease", Outcome.APPLIED)
        await gw.stop()  # the lease is stored: a restarted gateway still reports its end
        gw2 = await gateways.start(
            MqttSettings(
                host=broker.host,
                port=broker.port,
                ca_file=certs.ca_file,
                certs_dir=certs.dir,
                identity=EDGE,
            ),
            mqtt_max_backoff=1.0,
            shutdown_grace=2.0,
        )
        try:
            result = await ctl.wait("lease", Outcome.REVERTED)
            assert result.value is None
            await eventually(
                lambda: ctl.fields[-1:] == [(f"chargers/{CP}/CurrentLimit", None)],
                "CurrentLimit null",
            )
            # The outbox delivers at least once (a row unacknowledged at the stop is sent
            # again): the same result, byte for byte. Distinct: applied, then reverted.
            distinct = sorted({(r.at, r.outcome) for r in ctl.of("lease")})
            assert [o for _, o in distinct] == [Outcome.APPLIED, Outcome.REVERTED]
        finally:
            await gw2.stop()


async def test_start_is_a_remote_start_with_the_gateway_s_id_tag_and_reports_the_answer(
    gateways: GatewayFactory, broker: MosquittoServer, certs: TestCerts
) -> None:
    async with (
        setup(gateways, broker, certs, remote_id_tag="site-app") as (gw, ctl),
        charge_point(gw) as cp,
    ):
        await ctl.send(CP, Command.START, command_id="start-1")
        result = await ctl.wait("start-1", Outcome.APPLIED)
        assert "Accepted by the charge point" in result.reason
        assert result.value is None
        assert cp.of("RemoteStartTransaction") == [{"idTag": "site-app", "connectorId": 1}]
        cp.start_answer = RemoteStartStopStatus.rejected
        await ctl.send(f"{CP}__2", Command.START, True, command_id="start-2")
        result = await ctl.wait("start-2", Outcome.REJECTED)
        assert result.reason == "RemoteStartTransaction: Rejected by the charge point"
        assert cp.of("RemoteStartTransaction")[1] == {"idTag": "site-app", "connectorId": 2}
        # Hostile: a value other than null or true is never sent.
        topic = command_topic(CP, Command.START)
        assert ctl.client is not None
        await ctl.client.publish(topic, b'{"Value": 16, "CommandId": "start-3"}', qos=1)
        result = await ctl.wait("start-3", Outcome.REJECTED)
        assert "null or true" in result.reason
        assert len(cp.of("RemoteStartTransaction")) == 2
        counted = gw.metrics()
        assert counted['ocpp_commands_total{command="Start",outcome="applied"}'] == 1
        assert counted['ocpp_commands_total{command="Start",outcome="rejected"}'] == 2


async def test_availability_is_change_availability_and_scheduled_is_applied_with_the_reason(
    gateways: GatewayFactory, broker: MosquittoServer, certs: TestCerts
) -> None:
    async with setup(gateways, broker, certs) as (gw, ctl), charge_point(gw) as cp:
        await ctl.send(CP, Command.INOPERATIVE, command_id="off-1")
        result = await ctl.wait("off-1", Outcome.APPLIED)
        assert result.reason == "ChangeAvailability Inoperative: Accepted"
        cp.availability_answer = AvailabilityStatus.scheduled
        await ctl.send(CP, Command.INOPERATIVE, command_id="off-2")
        result = await ctl.wait("off-2", Outcome.APPLIED)
        assert "takes effect when the running transaction ends" in result.reason
        cp.availability_answer = AvailabilityStatus.rejected
        await ctl.send(f"{CP}__2", Command.OPERATIVE, command_id="on-1")
        result = await ctl.wait("on-1", Outcome.REJECTED)
        assert result.reason == "ChangeAvailability Operative: Rejected by the charge point"
        assert cp.of("ChangeAvailability") == [
            {"connectorId": 1, "type": "Inoperative"},
            {"connectorId": 1, "type": "Inoperative"},
            {"connectorId": 2, "type": "Operative"},
        ]


async def test_start_and_availability_to_a_charge_point_that_never_answers_fail(
    gateways: GatewayFactory, broker: MosquittoServer, certs: TestCerts
) -> None:
    async with (
        setup(gateways, broker, certs, response_timeout=1.0) as (gw, ctl),
        charge_point(gw) as cp,
    ):
        cp.silent = True
        await ctl.send(CP, Command.START, command_id="start-silent")
        await ctl.send(CP, Command.INOPERATIVE, command_id="off-silent")
        for cid in ("start-silent", "off-silent"):
            result = await ctl.wait(cid, Outcome.FAILED)
            assert "did not answer" in result.reason
        # Each sent once, never again (the silent charge point's reader hangs in the
        # first handler, so it records only that one).
        assert len(cp.of("RemoteStartTransaction")) == 1


async def test_the_simulated_charge_point_starts_and_goes_out_of_service_on_command(
    gateways: GatewayFactory, broker: MosquittoServer, certs: TestCerts
) -> None:
    """End to end with the simulator's OCPP charge point and its physical model."""
    async with setup(gateways, broker, certs) as (gw, ctl):
        config = OcppFleetConfig(
            url=gw.tls_url,
            ids=(CP,),
            password=PASSWORD_2,
            ca_file=str(certs.ca_file),
            random_traffic=False,
            meter_interval_s=0,
            reconnect_min_s=0.05,
            reconnect_max_s=0.5,
            response_timeout_s=10.0,
        )
        transactions = gw.service.transactions
        assert transactions is not None
        async with OcppFleet(config) as fleet:
            sim = fleet.charge_points[0]
            await fleet.wait_online()
            await eventually(lambda: gw.service.uplink is not None
                             and gw.service.uplink.control is not None
                             and gw.service.uplink.control.connection(CP) is not None,
                             "the charge point attached")  # fmt: skip
            sim.model.plug()  # a car: the session starts by itself with the card's tag
            await eventually(lambda: len(transactions.running(CP)) == 1, "a transaction")
            # Inoperative while it runs: Scheduled, the session goes on.
            await ctl.send(CP, Command.INOPERATIVE, command_id="sim-off")
            result = await ctl.wait("sim-off", Outcome.APPLIED)
            assert "Scheduled" in result.reason
            assert sim.transaction is not None
            assert sim.available
            await ctl.send(CP, Command.STOP, command_id="sim-stop")
            await ctl.wait("sim-stop", Outcome.APPLIED)
            await eventually(lambda: not transactions.running(CP), "the transaction stopped")
            await eventually(lambda: sim.status == "Unavailable", "out of service")
            # Out of service: the charge point refuses a remote start (the car is there).
            await ctl.send(CP, Command.START, command_id="sim-start-refused")
            result = await ctl.wait("sim-start-refused", Outcome.REJECTED)
            assert "Rejected by the charge point" in result.reason
            await ctl.send(CP, Command.OPERATIVE, command_id="sim-on")
            result = await ctl.wait("sim-on", Outcome.APPLIED)
            assert result.reason == "ChangeAvailability Operative: Accepted"
            await ctl.send(CP, Command.START, command_id="sim-start")
            await ctl.wait("sim-start", Outcome.APPLIED)
            # The charge point started a transaction with the gateway's id tag.
            await eventually(lambda: len(transactions.running(CP)) == 1, "the remote start")
            [running] = transactions.running(CP)
            assert running.id_tag == "chargelift"
            assert sim.transaction is not None
            assert sim.transaction.id_tag == "chargelift"
            await eventually(lambda: sim.status == "Charging", "charging again")
            assert sim.call_errors == []
