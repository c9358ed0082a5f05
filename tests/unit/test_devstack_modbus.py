"""``make dev DEV_MODBUS=1``: a mixed site (chargelift_devstack.Stack, ``modbus=True``).

The chargers file the devstack writes for the poller and the simulator's arguments must
agree: charger 2 read as an HCC3 and charger 3 as a Bender, on the ports where the
simulator serves those maps; the default stays all MHCP.
"""

from __future__ import annotations

from pathlib import Path

from chargelift_devstack.main import Ports, Stack
from chargelift_poller.config import load_config
from chargelift_simulator.config import parse_args

PIN = {"AMTRON_PIN": "1234"}


def stack(tmp_path: Path, chargers: int, *, modbus: bool) -> Stack:
    return Stack(
        certs_dir=tmp_path / "certs",
        chargers=chargers,
        speed=1,
        run_dir=tmp_path,
        ports=Ports(simulator=31000, modbus=31200),
        modbus=modbus,
    )


def simulator_ports(s: Stack) -> dict[str, dict[str, int]]:
    """Charger id -> map -> port, as the simulator would bind them from the devstack's args."""
    argv = ["--count", str(s.chargers), "--base-port", str(s.ports.simulator), "--pin", "1"]
    fleet = parse_args([*argv, *s.modbus_simulator_args()], {}).fleet
    ids = [f"amtron-{i}" for i in range(1, s.chargers + 1)]
    return {
        c: dict(zip(fleet.modbus_maps(c), fleet.modbus_ports(i, c), strict=True))
        for i, c in enumerate(ids)
        if fleet.modbus_maps(c)
    }


def test_the_default_site_is_all_mhcp(tmp_path: Path) -> None:
    s = stack(tmp_path, 3, modbus=False)
    chargers = load_config(s.poller_config("AMTRON_PIN"), PIN).chargers
    assert [c.driver for c in chargers] == ["mhcp"] * 3
    assert s.modbus_simulator_args() == []


def test_a_mixed_site_reads_charger_2_as_hcc3_and_3_as_bender_where_the_simulator_serves(
    tmp_path: Path,
) -> None:
    s = stack(tmp_path, 3, modbus=True)
    chargers = {c.id: c for c in load_config(s.poller_config("AMTRON_PIN"), PIN).chargers}
    assert {i: c.driver for i, c in chargers.items()} == {
        "amtron-1": "mhcp",
        "amtron-2": "hcc3",
        "amtron-3": "bender",
    }
    assert chargers["amtron-1"].url == "http://127.0.0.1:31000"
    served = simulator_ports(s)
    assert served == {"amtron-2": {"hcc3": 31202}, "amtron-3": {"bender": 31205}}
    assert chargers["amtron-2"].url == "tcp://127.0.0.1:31202"
    assert chargers["amtron-3"].url == "tcp://127.0.0.1:31205"
    # the Bender map does not tell the maximum: the simulator's 16 A, for commands
    assert chargers["amtron-3"].control.max_current == 16.0


def test_a_small_mixed_site_uses_the_chargers_it_has(tmp_path: Path) -> None:
    s = stack(tmp_path, 2, modbus=True)
    chargers = load_config(s.poller_config("AMTRON_PIN"), PIN).chargers
    assert [c.driver for c in chargers] == ["mhcp", "hcc3"]
    assert simulator_ports(s) == {"amtron-2": {"hcc3": 31202}}
