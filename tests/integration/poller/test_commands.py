"""Issue 16, the edge half: the poller applies commands (real Mosquitto, the simulator).

Commands are published by the ``api`` service identity, a ``controller`` (a charger
identity may not publish them: the broker refuses it). Ground truth is the simulated
box itself: its limit in force and the writes it accepted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chargelift_contract import field_topic
from chargelift_contract.commands import (
    Command,
    CommandResult,
    Outcome,
    command_topic,
    decode_result,
    encode_command,
)
from chargelift_contract.envelope import format_time
from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_poller.config import ChargerConfig, ControlConfig, MqttIdentity
from chargelift_runtime.mqtt import Message, MqttClient, PublishRefusedError
from chargelift_runtime.retry import Backoff
from chargelift_simulator import FaultKind
from chargelift_simulator.faults import Fault
from chargelift_simulator.model import Command as SimCommand
from tests.integration.poller.support import (
    PIN,
    PollerProcess,
    charger_config,
    eventually,
    running_poller,
    settings,
    subscriber,
)
from tests.support.certs import TestCerts

#: How long a result may take on a loaded machine (a bound, not a speed target).
WAIT = 30

pytestmark = pytest.mark.integration


class Controller:
    """The ``api`` identity: publishes commands, collects results."""

    def __init__(self, client: MqttClient) -> None:
        self.client = client
        self.results: list[tuple[str, CommandResult]] = []

    async def handle(self, message: Message) -> None:
        self.results.append((message.topic, decode_result(message.payload)))

    async def send(
        self, charger: str, command: Command, value: float | None = None, **kw: Any
    ) -> None:
        payload = encode_command(command, value, **kw)
        await self.client.publish(command_topic(charger, command), payload, qos=1)

    def of(self, command_id: str) -> list[CommandResult]:
        return [r for _, r in self.results if r.command_id == command_id]

    def outcome(self, command_id: str) -> Outcome | None:
        found = self.of(command_id)
        return found[-1].outcome if found else None


@asynccontextmanager
async def controller(
    broker: MosquittoServer, certs: TestCerts, name: str
) -> AsyncIterator[Controller]:
    ctl: Controller | None = None

    async def handle(message: Message) -> None:
        assert ctl is not None
        await ctl.handle(message)

    async with MqttClient(
        host=broker.host,
        port=broker.port,
        client_id=name,
        tls=certs.tls("api"),
        subscriptions=("chargers/+/result/+",),
        on_message=handle,
        backoff=Backoff(initial=0.2, maximum=1.0),
    ) as client:
        ctl = Controller(client)
        async with asyncio.timeout(10):
            await client.wait_connected()
        yield ctl


def controlled(config: ChargerConfig, **control: Any) -> ChargerConfig:
    return dataclasses.replace(config, control=ControlConfig(**control))


async def up(poller: Any, charger: str) -> None:
    await eventually(
        lambda: poller.registry.get_sample_value("poller_charger_up", {"charger": charger}) == 1,
        10,
        f"{charger} to be up",
    )
    # Subscribed before "connected": commands published from now on reach the poller.
    await eventually(
        lambda: all(c.is_connected for c in poller.clients), WAIT, "the poller's connections"
    )


async def test_a_limit_is_written_confirmed_applied_and_shown_in_the_state(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    box = fleet.chargers[0]
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite")
    chargers = [controlled(charger_config(box.id, box.url, interval=0.5), min_write_interval=0.5)]
    async with (
        subscriber(own_broker, certs, client_id="t16-state") as state,
        controller(own_broker, certs, "t16-ctl-1") as ctl,
        running_poller(s, chargers) as poller,
    ):
        await up(poller, box.id)
        assert box.info()["current_limit"] == 16.0
        await ctl.send(box.id, Command.CURRENT_LIMIT, 10, command_id="limit-10")
        await eventually(lambda: ctl.outcome("limit-10") is not None, WAIT, "a result")
        (result,) = ctl.of("limit-10")
        assert (result.outcome, result.reason, result.value) == (Outcome.APPLIED, "confirmed", 10)
        info = box.info()
        assert (info["current_limit"], info["remote_current"], info["writes"]) == (10.0, 10, 1)
        assert info["permanent_writes"] == 0  # not saved to flash unless asked
        limit_topic = field_topic(box.id, "CurrentLimit")

        def shown() -> bool:
            latest = state.latest(limit_topic)
            return latest is not None and latest.envelope().value == 10

        await eventually(shown, 5, "CurrentLimit 10 in the state")
        latest_max = state.latest(field_topic(box.id, "MaximumOutputCurrent"))
        assert latest_max is not None
        # Pause, resume and stop go through the same path.
        box.model.command(SimCommand.START)  # the car is plugged in: start its session now
        assert box.state == "Charging"
        await ctl.send(box.id, Command.PAUSE, command_id="pause-1")
        await eventually(lambda: ctl.outcome("pause-1") is not None, WAIT, "the pause's result")
        assert ctl.outcome("pause-1") is Outcome.APPLIED
        assert box.state == "Paused"
        await ctl.send(box.id, Command.RESUME, command_id="resume-1")
        await eventually(lambda: ctl.outcome("resume-1") is not None, WAIT, "the resume's result")
        assert ctl.outcome("resume-1") is Outcome.APPLIED
        assert box.state != "Paused"
        assert (
            poller.registry.get_sample_value(
                "poller_commands_total", {"command": "CurrentLimit", "outcome": "applied"}
            )
            == 1
        )


async def test_an_expired_command_is_never_applied(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    box = fleet.chargers[0]
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite")
    async with (
        controller(own_broker, certs, "t16-ctl-2") as ctl,
        running_poller(s, [charger_config(box.id, box.url)]) as poller,
    ):
        await up(poller, box.id)
        issued = datetime.now(UTC) - timedelta(seconds=30)
        await ctl.send(
            box.id, Command.CURRENT_LIMIT, 8, command_id="late-1",
            issued_at=issued, expires_at=issued + timedelta(seconds=10),
        )  # fmt: skip
        await eventually(lambda: ctl.outcome("late-1") is not None, WAIT, "a result")
        assert ctl.outcome("late-1") is Outcome.EXPIRED
        await asyncio.sleep(1.0)
        assert box.info()["writes"] == 0
        assert box.info()["current_limit"] == 16.0


async def test_the_same_command_id_sent_twice_is_applied_once(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    box = fleet.chargers[0]
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite")
    chargers = [controlled(charger_config(box.id, box.url), min_write_interval=0.2)]
    async with (
        controller(own_broker, certs, "t16-ctl-3") as ctl,
        running_poller(s, chargers) as poller,
    ):
        await up(poller, box.id)
        box.model.command(SimCommand.START)
        await ctl.send(box.id, Command.CURRENT_LIMIT, 12, command_id="twice-1")
        await eventually(lambda: ctl.outcome("twice-1") is not None, WAIT, "a result")
        # The same id again (even with another value: the id is what counts), and a
        # command without an id sent twice byte for byte (its id is derived from them).
        await ctl.send(box.id, Command.CURRENT_LIMIT, 9, command_id="twice-1")
        payload = encode_command(Command.PAUSE, issued_at=datetime.now(UTC))
        topic = command_topic(box.id, Command.PAUSE)
        await ctl.client.publish(topic, payload, qos=1)
        await eventually(lambda: box.state == "Paused", WAIT, "the pause")
        await ctl.client.publish(topic, payload, qos=1)
        await eventually(lambda: len(ctl.of("twice-1")) >= 2, WAIT, "the repeated result")
        await asyncio.sleep(1.0)
        assert {r.outcome for r in ctl.of("twice-1")} == {Outcome.APPLIED}
        assert box.info()["remote_current"] == 12
        assert box.info()["writes"] == 2  # one limit, one pause
        derived = [r for _, r in ctl.results if r.command_id.startswith("sha256:")]
        assert {r.outcome for r in derived} == {Outcome.APPLIED}


async def test_out_of_range_limits_an_offline_charger_and_what_mhcp_cannot_do_are_rejected(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    box, dead = fleet.chargers[0], fleet.chargers[1]
    dead.set_fault(Fault(FaultKind.HTTP500))
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite")
    chargers = [
        controlled(charger_config(box.id, box.url), max_current=13),
        charger_config(dead.id, dead.url),
    ]
    async with (
        controller(own_broker, certs, "t16-ctl-4") as ctl,
        running_poller(s, chargers) as poller,
    ):
        await up(poller, box.id)
        await eventually(
            lambda: bool(poller.registry.get_sample_value(
                "poller_polls_failed_total", {"charger": dead.id, "error": "http"})),
            10, "the dead charger's failed poll",
        )  # fmt: skip
        await ctl.send(box.id, Command.CURRENT_LIMIT, 5, command_id="low-1")
        await ctl.send(box.id, Command.CURRENT_LIMIT, 14, command_id="high-1")
        await ctl.send(dead.id, Command.CURRENT_LIMIT, 10, command_id="dead-1")
        await ctl.send(dead.id, Command.STOP, command_id="dead-2")
        # MHCP cannot start a session or change the availability: refused, never sent.
        await ctl.send(box.id, Command.START, command_id="start-1")
        await ctl.send(box.id, Command.INOPERATIVE, True, command_id="inop-1")
        await ctl.send(box.id, Command.OPERATIVE, command_id="op-1")
        ids = ("low-1", "high-1", "dead-1", "dead-2", "start-1", "inop-1", "op-1")
        await eventually(lambda: all(ctl.outcome(i) for i in ids), WAIT, "seven results")
        assert {i: ctl.outcome(i) for i in ids} == dict.fromkeys(ids, Outcome.REJECTED)
        assert "below the charger's minimum of 6 A" in ctl.of("low-1")[0].reason
        assert "above the charger's maximum of 13 A" in ctl.of("high-1")[0].reason
        assert ctl.of("dead-1")[0].reason == "charger offline"
        assert ctl.of("dead-2")[0].reason == "charger offline"
        assert ctl.of("start-1")[0].reason == "the mhcp driver cannot start a session"
        assert ctl.of("inop-1")[0].reason == "the mhcp driver cannot make a charger inoperative"
        assert ctl.of("op-1")[0].reason == "the mhcp driver cannot make a charger operative"
        rejected = poller.registry.get_sample_value(
            "poller_commands_total", {"command": "Start", "outcome": "rejected"}
        )
        assert rejected == 1
        await asyncio.sleep(1.0)
        assert (box.info()["writes"], dead.info()["writes"]) == (0, 0)


async def test_a_lease_reverts_to_the_default_unless_renewed(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    box = fleet.chargers[0]
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite")
    chargers = [
        controlled(charger_config(box.id, box.url), default_current=14, min_write_interval=0.2)
    ]
    async with (
        subscriber(own_broker, certs, client_id="t16-lease") as state,
        controller(own_broker, certs, "t16-ctl-5") as ctl,
        running_poller(s, chargers) as poller,
    ):
        await up(poller, box.id)
        await ctl.send(box.id, Command.CURRENT_LIMIT, 8, command_id="lease-1", valid_for=6)
        await eventually(lambda: ctl.outcome("lease-1") is not None, WAIT, "the first result")
        first = ctl.of("lease-1")[0]
        assert first.outcome is Outcome.APPLIED
        assert first.lease_end is not None
        await asyncio.sleep(3.0)
        # Renewed before the end: the new value holds past the first lease's end.
        await ctl.send(box.id, Command.CURRENT_LIMIT, 9, command_id="lease-2", valid_for=6)
        await eventually(lambda: ctl.outcome("lease-2") is not None, WAIT, "the renewal's result")
        renewed = ctl.of("lease-2")[0]
        assert renewed.outcome is Outcome.APPLIED
        assert renewed.lease_end is not None
        assert renewed.lease_end > first.lease_end
        lease_topic = field_topic(box.id, "CurrentLimitLeaseEnd")
        await eventually(
            lambda: (m := state.latest(lease_topic)) is not None and m.envelope().value
            == format_time(renewed.lease_end),
            5, "the lease's end in the state",
        )  # fmt: skip
        await asyncio.sleep(max(0.0, (first.lease_end - datetime.now(UTC)).total_seconds()) + 1)
        assert box.info()["current_limit"] == 9.0
        assert Outcome.REVERTED not in {r.outcome for r in ctl.of("lease-1")}
        # Not renewed again: back to the default, reported for the lease's command.
        await eventually(lambda: ctl.outcome("lease-2") is Outcome.REVERTED, WAIT, "the revert")
        reverted = ctl.of("lease-2")[-1]
        assert reverted.value == 14
        assert reverted.at >= renewed.lease_end
        assert box.info()["current_limit"] == 14.0
        await eventually(
            lambda: (m := state.latest(field_topic(box.id, "CurrentLimit"))) is not None
            and m.envelope().value is None,
            5, "CurrentLimit null in the state",
        )  # fmt: skip


async def test_a_burst_of_100_limits_is_coalesced_bounded_last_wins_each_answered(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    box = fleet.chargers[0]
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite")
    chargers = [controlled(charger_config(box.id, box.url), min_write_interval=1.0)]
    async with (
        controller(own_broker, certs, "t16-ctl-6") as ctl,
        running_poller(s, chargers) as poller,
    ):
        await up(poller, box.id)
        loop = asyncio.get_running_loop()
        started = loop.time()
        values = [6 + (i % 10) for i in range(99)] + [7]
        for i, value in enumerate(values):
            await ctl.send(box.id, Command.CURRENT_LIMIT, value, command_id=f"burst-{i}")
        sent_in = loop.time() - started
        ids = [f"burst-{i}" for i in range(100)]
        await eventually(lambda: all(ctl.outcome(i) for i in ids), 30, "100 results")
        outcomes = {i: ctl.outcome(i) for i in ids}
        assert outcomes["burst-99"] is Outcome.APPLIED
        assert box.info()["current_limit"] == 7.0
        superseded = [i for i in ids if outcomes[i] is Outcome.REJECTED]
        assert all(ctl.of(i)[0].reason.startswith("superseded by burst-") for i in superseded)
        assert set(outcomes.values()) <= {Outcome.APPLIED, Outcome.REJECTED}
        # One write per min_write_interval at most while the burst lasted, plus the first.
        writes = box.info()["writes"]
        print(f"burst: 100 limits sent in {sent_in:.2f} s, {writes} writes, "
              f"{len(superseded)} superseded")  # fmt: skip
        assert writes <= 2 + int(sent_in / 1.0)
        assert writes <= 10


def _stage(outbox: Path, command_id: str) -> str | None:
    db = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT stage FROM commands WHERE command_id = ?", (command_id,)
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()
    return None if row is None else str(row[0])


async def test_a_command_received_before_a_sigkill_is_applied_once_after_the_restart(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    box = fleet.chargers[0]
    outbox = tmp_path / "outbox.sqlite"
    config = tmp_path / "chargers.toml"
    config.write_text(
        "\n".join([
            "[[chargers]]", f'id = "{box.id}"', 'driver = "mhcp"', f'url = "{box.url}"',
            'pin_env = "T16_PIN"', "interval = 0.5", "timeout = 1.0",
            "min_write_interval = 600",  # the second command waits, "received"
            "",
        ])
    )  # fmt: skip
    env = {
        "POLLER_CONFIG": str(config),
        "POLLER_OUTBOX": str(outbox),
        "MQTT_HOST": own_broker.host,
        "MQTT_PORT": str(own_broker.port),
        "MQTT_CA_FILE": str(certs.ca_file),
        "MQTT_CERTS_DIR": str(certs.dir),
        "POLLER_MQTT_MAX_BACKOFF": "1",
        "T16_PIN": PIN,
    }
    poller = PollerProcess(env, tmp_path / "poller.log")
    async with controller(own_broker, certs, "t16-ctl-7") as ctl:
        await poller.start()
        try:
            await eventually(poller.ready, 15, "the poller to connect")
            await asyncio.sleep(1.5)  # polled at least once
            await ctl.send(box.id, Command.CURRENT_LIMIT, 11, command_id="first")
            await eventually(lambda: ctl.outcome("first") is not None, WAIT, "the first result")
            assert ctl.outcome("first") is Outcome.APPLIED
            await ctl.send(box.id, Command.CURRENT_LIMIT, 8, command_id="second")
            await eventually(lambda: _stage(outbox, "second") == "received", WAIT, "second stored")
            await asyncio.sleep(0.5)
            assert _stage(outbox, "second") == "received"
            await poller.kill()  # SIGKILL
        finally:
            if poller.proc is not None and poller.proc.returncode is None:
                await poller.kill()
        assert box.info()["writes"] == 1
        assert ctl.outcome("second") is None
        restarted = PollerProcess(env, tmp_path / "poller.log")
        await restarted.start()
        try:
            await eventually(lambda: ctl.outcome("second") is not None, 20, "the second result")
            assert ctl.outcome("second") is Outcome.APPLIED
            await asyncio.sleep(1.0)
            assert box.info()["writes"] == 2
            assert box.info()["current_limit"] == 8.0
            assert len(ctl.of("second")) == 1
        finally:
            assert await restarted.stop() == 0
        assert PIN not in restarted.text()


async def test_the_edge_identity_receives_its_chargers_commands_and_answers_them(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    edge = "edge-cmd"
    ids = sorted(c.id for c in fleet.chargers)
    certs.issue_edge(edge, tuple(ids))
    own_broker.reload()
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite")
    chargers = [charger_config(c.id, c.url) for c in fleet.chargers]
    async with (
        controller(own_broker, certs, "t16-ctl-8") as ctl,
        running_poller(s, chargers, MqttIdentity("edge", edge)) as poller,
    ):
        assert len(poller.clients) == 1
        for c in fleet.chargers:
            await up(poller, c.id)
        for n, c in enumerate(fleet.chargers):
            await ctl.send(c.id, Command.CURRENT_LIMIT, 7 + n, command_id=f"edge-{c.id}")
        await eventually(
            lambda: all(ctl.outcome(f"edge-{i}") for i in ids), WAIT, "every charger's result"
        )
        for n, c in enumerate(fleet.chargers):
            assert ctl.outcome(f"edge-{c.id}") is Outcome.APPLIED
            assert c.info()["current_limit"] == 7.0 + n
        topics = {t for t, _ in ctl.results}
        assert topics == {f"chargers/{i}/result/CurrentLimit" for i in ids}


async def test_a_charger_identity_cannot_command_itself_or_another_charger(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    box = fleet.chargers[0]
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite")
    async with running_poller(s, [charger_config(box.id, box.url)]) as poller:
        await up(poller, box.id)
        for target in (box.id, fleet.chargers[1].id):
            async with MqttClient(
                host=own_broker.host,
                port=own_broker.port,
                client_id=f"t16-rogue-{target}",
                tls=certs.tls(fleet.chargers[1].id),  # a charger's own certificate
                backoff=Backoff(initial=5.0, maximum=5.0),
            ) as rogue:
                async with asyncio.timeout(10):
                    await rogue.wait_connected()
                payload = encode_command(Command.STOP, command_id=f"rogue-{target}")
                with pytest.raises(PublishRefusedError) as refused:
                    await rogue.publish(command_topic(target, Command.STOP), payload, qos=1)
                assert refused.value.reason_code == 0x87
        await asyncio.sleep(1.0)
        assert box.info()["writes"] == 0
        assert fleet.chargers[1].info()["writes"] == 0


async def test_a_command_that_expired_while_the_poller_was_away_is_never_applied(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    box = fleet.chargers[0]
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite")
    chargers = [charger_config(box.id, box.url)]
    async with controller(own_broker, certs, "t16-ctl-9") as ctl:
        async with running_poller(s, chargers) as poller:
            await up(poller, box.id)  # its session (and subscription) exists now
        # The poller is away: the broker keeps the commands for its session.
        now = datetime.now(UTC)
        await ctl.send(
            box.id, Command.CURRENT_LIMIT, 8, command_id="away-short",
            issued_at=now, expires_at=now + timedelta(seconds=2),
        )  # fmt: skip
        await ctl.send(box.id, Command.CURRENT_LIMIT, 9, command_id="away-long")
        await asyncio.sleep(3.0)
        async with running_poller(s, chargers) as poller:
            ids = ("away-short", "away-long")
            await eventually(lambda: all(ctl.outcome(i) for i in ids), 15, "both results")
            assert ctl.outcome("away-short") is Outcome.EXPIRED
            assert ctl.outcome("away-long") is Outcome.APPLIED
        assert box.info()["writes"] == 1
        assert box.info()["current_limit"] == 9.0
