"""Issue 18 must-show 5: control through Modbus (real Mosquitto, the simulator's Modbus
servers). Ground truth is the simulated box: its limit in force and its state."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chargelift_contract.commands import Command, Outcome
from chargelift_devstack.mosquitto import MosquittoServer
from tests.integration.poller.support import (
    PIN,
    charger_config,
    eventually,
    running_poller,
    settings,
)
from tests.integration.poller.test_commands import WAIT, controlled, controller, up
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration


@pytest.fixture
async def modbus_box(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, str]]:
    """amtron-1 serving the map ``request.param`` (and MHCP, unused), charging."""
    from chargelift_simulator import Fleet, FleetConfig

    name: str = request.param
    config = FleetConfig(count=1, pin=PIN, random_traffic=False, modbus=(name,))
    async with Fleet(config) as fleet:
        box = fleet.chargers[0]
        box.plug()
        yield box, name


@pytest.mark.parametrize("modbus_box", ["hcc3", "bender"], indirect=True)
async def test_limit_pause_resume_and_lease_revert_through_modbus(
    own_broker: MosquittoServer, certs: TestCerts, modbus_box: tuple[Any, str], tmp_path: Path
) -> None:
    box, name = modbus_box
    config = dataclasses.replace(
        charger_config(box.id, box.modbus_url(name), interval=0.25, timeout=1.0),
        driver=name,
        pin=None,
        options={"request_interval": 0.02},
    )
    chargers = [controlled(config, max_current=16, default_current=14, min_write_interval=0.2)]
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite")
    async with (
        controller(own_broker, certs, f"t18-ctl-{name}") as ctl,
        running_poller(s, chargers) as poller,
    ):
        await up(poller, box.id)
        await eventually(lambda: box.state == "Charging", 10, "the session to start")
        assert box.model.limit_a() == 16.0

        await ctl.send(box.id, Command.CURRENT_LIMIT, 10, command_id="limit-10")
        await eventually(lambda: ctl.outcome("limit-10") is not None, WAIT, "a result")
        (result,) = ctl.of("limit-10")
        assert (result.outcome, result.reason) == (Outcome.APPLIED, "confirmed")
        assert box.model.limit_a() == 10.0
        assert box.info()["writes"] >= 1

        await ctl.send(box.id, Command.PAUSE, command_id="pause-1")
        await eventually(lambda: ctl.outcome("pause-1") is not None, WAIT, "the pause's result")
        assert ctl.outcome("pause-1") is Outcome.APPLIED, ctl.of("pause-1")
        assert box.state == "Paused"

        await ctl.send(box.id, Command.RESUME, command_id="resume-1")
        await eventually(lambda: ctl.outcome("resume-1") is not None, WAIT, "the resume's result")
        assert ctl.outcome("resume-1") is Outcome.APPLIED, ctl.of("resume-1")
        await eventually(lambda: box.state == "Charging", 5, "charging again")
        assert box.model.limit_a() == 10.0  # the limit in force before the pause

        await ctl.send(box.id, Command.CURRENT_LIMIT, 8, command_id="lease-1", valid_for=5)
        await eventually(lambda: ctl.outcome("lease-1") is not None, WAIT, "the lease's result")
        assert ctl.outcome("lease-1") is Outcome.APPLIED
        assert box.model.limit_a() == 8.0
        await eventually(lambda: ctl.outcome("lease-1") is Outcome.REVERTED, WAIT, "the revert")
        assert ctl.of("lease-1")[-1].value == 14
        assert box.model.limit_a() == 14.0
