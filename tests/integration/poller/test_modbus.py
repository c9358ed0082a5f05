"""Issue 18: the real poller reads the simulator's Modbus TCP servers (HCC3 and Bender
maps) beside an MHCP charger and publishes to a real Mosquitto, with the right units."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chargelift_contract import CATALOGUE, field_topic
from chargelift_devstack.mosquitto import MosquittoServer
from tests.integration.poller.support import (
    PIN,
    charger_config,
    eventually,
    metric,
    running_poller,
    settings,
    subscriber,
)
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration


@pytest.fixture
async def mixed_fleet() -> AsyncIterator[Any]:
    """amtron-1 MHCP only, amtron-2 also HCC3 Modbus, amtron-3 also Bender Modbus."""
    from chargelift_simulator import Fleet, FleetConfig

    config = FleetConfig(
        count=3,
        pin=PIN,
        seed=1,
        random_traffic=False,
        modbus={"amtron-2": ("hcc3",), "amtron-3": ("bender",)},
    )
    async with Fleet(config) as fleet:
        yield fleet


def chargers(fleet: Any) -> list[Any]:
    mhcp, hcc3, bender = fleet.chargers
    modbus = {"request_interval": 0.02}
    return [
        charger_config(mhcp.id, mhcp.url, interval=0.25, timeout=0.5),
        replace(
            charger_config(hcc3.id, hcc3.modbus_url("hcc3"), interval=0.25, timeout=0.5),
            driver="hcc3",
            pin=None,
            options=modbus,
        ),
        replace(
            charger_config(bender.id, bender.modbus_url("bender"), interval=0.25, timeout=0.5),
            driver="bender",
            pin=None,
            options=modbus,
        ),
    ]


async def test_modbus_values_arrive_with_right_units_and_a_fault_stays_with_its_charger(
    own_broker: MosquittoServer, certs: TestCerts, mixed_fleet: Any, tmp_path: Path
) -> None:
    from chargelift_simulator import Fault, FaultKind

    mhcp, hcc3, bender = mixed_fleet.chargers
    ids = [c.id for c in mixed_fleet.chargers]
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite", max_backoff=0.5)
    async with (
        subscriber(own_broker, certs, client_id="t-modbus") as inbox,
        running_poller(s, chargers(mixed_fleet)) as poller,
    ):
        await eventually(
            lambda: all(metric(poller, "poller_charger_up", charger=i) == 1 for i in ids),
            10,
            "every charger online",
        )
        for charger in mixed_fleet.chargers:
            charger.plug()  # handshake 3 s, then the power ramps up to 11 kW in ~4.4 s

        def values(charger: str, field: str) -> list[Any]:
            topic = field_topic(charger, field)
            return [m.envelope().value for m in inbox.messages if m.topic == topic]

        def steady() -> bool:
            return all(
                11_040 in values(c.id, "PowerOutput") for c in (hcc3, bender)
            ) and 16.0 in values(bender.id, "OutputCurrentL1")

        await inbox.wait_for(steady, 20, "both Modbus chargers at 11 kW")

        # HCC3: the lifetime meter is above 65,535 (word order) and in Wh.
        energy = values(hcc3.id, "TotalEnergyConsumption")
        assert energy, "no TotalEnergyConsumption from the HCC3 charger"
        assert all(100_000 <= e <= hcc3.model.meter_wh + 1 for e in energy), energy
        assert values(hcc3.id, "OperationState")[-1] == "charging"
        assert values(hcc3.id, "ConnectedVehicle")[-1] is True
        assert values(hcc3.id, "SerialNumber")[-1] == str(hcc3.model.settings.serial)

        # Bender: currents in A from mA, fractional during the ramp; 230 V; the meter.
        currents = values(bender.id, "OutputCurrentL1")
        assert max(currents) == 16.0  # A, not 16000 (mA)
        assert any(c != int(c) for c in currents), f"no fractional current seen: {currents}"
        assert values(bender.id, "VoltageL1")[-1] == 230
        assert all(e >= 100_000 for e in values(bender.id, "TotalEnergyConsumption"))
        assert values(bender.id, "IdTag"), "the session's id tag"
        soc = values(bender.id, "StateOfCharge")
        assert soc
        assert all(0 < v <= 100 for v in soc)
        for charger in (hcc3, bender):
            for m in inbox.messages:
                if m.charger == charger.id and m.field is not None:
                    CATALOGUE[m.field].check(m.envelope().value)

        # A Modbus exception code: that charger down, counted, then up; others untouched.
        ok_before = {
            c.id: metric(poller, "poller_polls_ok_total", charger=c.id) for c in (mhcp, hcc3)
        }
        bender.set_fault(Fault(FaultKind.EXCEPTION))
        await eventually(
            lambda: metric(poller, "poller_charger_up", charger=bender.id) == 0,
            6,
            "the Bender charger down",
        )
        await asyncio.sleep(0.6)
        assert metric(poller, "poller_polls_failed_total", charger=bender.id, error="device") > 0
        for other in (mhcp, hcc3):
            assert metric(poller, "poller_charger_up", charger=other.id) == 1
            assert (
                metric(poller, "poller_polls_ok_total", charger=other.id) >= ok_before[other.id] + 2
            )
        bender.set_fault(Fault(FaultKind.NONE))
        await eventually(
            lambda: metric(poller, "poller_charger_up", charger=bender.id) == 1,
            6,
            "the Bender charger up again",
        )
    # One connection per device, kept open: an exception response leaves it in step.
    assert hcc3.modbus["hcc3"].connections == 1
    assert bender.modbus["bender"].connections == 1
    # The poller closed both at shutdown (Closeable drivers).
    await eventually(
        lambda: (
            hcc3.modbus["hcc3"].open_connections + bender.modbus["bender"].open_connections == 0
        ),
        5,
        "the Modbus connections closed",
    )


#: Fault kind -> the error classes it may be counted as (None: the charger stays up).
MODBUS_FAULTS: list[tuple[str, tuple[str, ...] | None, float]] = [
    ("LATENCY", None, 0.1),
    ("EXCEPTION", ("device",), 0.0),
    ("HTTP500", ("device",), 0.0),
    ("MALFORMED", ("timeout",), 0.0),  # garbage: pymodbus waits for a frame that never comes
    # pymodbus notices a closed connection only when the request's timeout ends; the
    # poll's own timeout (the same length) often ends first.
    ("TRUNCATED", ("connection", "timeout"), 0.0),
    ("RESET", ("connection", "timeout"), 0.0),
    ("TIMEOUT", ("timeout",), 0.0),
]
ERRORS = ("timeout", "connection", "http", "device", "protocol", "driver_fault", "auth", "config")


async def test_each_modbus_fault_marks_only_that_charger_down_then_up(
    own_broker: MosquittoServer, certs: TestCerts, mixed_fleet: Any, tmp_path: Path
) -> None:
    from chargelift_simulator import Fault, FaultKind

    mhcp, hcc3, bender = mixed_fleet.chargers
    ids = [c.id for c in mixed_fleet.chargers]
    others = (mhcp, bender)
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite", max_backoff=0.5)

    def failed(charger: str) -> dict[str, float]:
        return {
            e: metric(poller, "poller_polls_failed_total", charger=charger, error=e) for e in ERRORS
        }

    async with running_poller(s, chargers(mixed_fleet)) as poller:
        await eventually(
            lambda: all(metric(poller, "poller_charger_up", charger=i) == 1 for i in ids),
            10,
            "every charger online",
        )
        for kind, errors, latency in MODBUS_FAULTS:
            before = failed(hcc3.id)
            ok_before = {
                o.id: metric(poller, "poller_polls_ok_total", charger=o.id) for o in others
            }
            hcc3.set_fault(Fault(getattr(FaultKind, kind), latency_s=latency))
            if errors is None:
                await asyncio.sleep(1.0)
                assert metric(poller, "poller_charger_up", charger=hcc3.id) == 1, kind
            else:
                await eventually(
                    lambda: metric(poller, "poller_charger_up", charger=hcc3.id) == 0,
                    6,
                    f"{hcc3.id} down on {kind}",
                )
                await asyncio.sleep(0.6)
            for o in others:
                assert metric(poller, "poller_charger_up", charger=o.id) == 1, (kind, o.id)
                assert metric(poller, "poller_polls_ok_total", charger=o.id) >= ok_before[o.id] + 2
            hcc3.set_fault(Fault(FaultKind.NONE))
            await eventually(
                lambda: metric(poller, "poller_charger_up", charger=hcc3.id) == 1,
                6,
                f"{hcc3.id} up after {kind}",
            )
            delta = {e: n - before[e] for e, n in failed(hcc3.id).items()}
            if errors is None:
                assert not any(delta.values()), (kind, delta)
                continue
            assert sum(delta[e] for e in errors) > 0, (kind, delta)
            assert not any(n for e, n in delta.items() if e not in errors), (kind, delta)
        for o in others:
            assert not any(failed(o.id).values()), o.id
