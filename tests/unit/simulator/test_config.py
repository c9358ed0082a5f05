"""The command line: PIN sources, defaults, refusals (never echoing a PIN)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from chargelift_simulator import FleetConfig
from chargelift_simulator.config import ENV_PIN, parse_args

SECRET = "8642-do-not-print"


def test_defaults_and_the_pin_from_the_environment() -> None:
    settings = parse_args([], {ENV_PIN: SECRET})
    fleet = settings.fleet
    assert (fleet.count, fleet.base_port, fleet.prefix) == (3, 25000, "amtron-")
    assert fleet.host == "127.0.0.1"
    assert fleet.pin == SECRET
    assert fleet.control_port is None
    assert fleet.truth_memory == 0  # the CLI keeps its truth on disk only
    assert SECRET not in repr(fleet)


def test_all_options(tmp_path: Path) -> None:
    argv = [
        "--count", "1000", "--base-port", "30000", "--control-port", "25099", "--pin", SECRET,
        "--seed", "9", "--speed", "60", "--truth-log", str(tmp_path / "t.jsonl"),
        "--prefix", "box-", "--host", "0.0.0.0", "--start", "2026-01-12T21:59:00+01:00",
        "--tz", "UTC", "--phases", "1", "--max-current", "32", "--tick-hz", "5",
        "--no-random-traffic",
    ]  # fmt: skip
    fleet = parse_args(argv, {ENV_PIN: "ignored"}).fleet
    assert fleet == FleetConfig(
        count=1000,
        base_port=30000,
        host="0.0.0.0",
        pin=SECRET,
        seed=9,
        speed=60.0,
        start=datetime.fromisoformat("2026-01-12T21:59:00+01:00"),
        truth_log=tmp_path / "t.jsonl",
        prefix="box-",
        control_port=25099,
        tz="UTC",
        phases=1,
        max_current=32,
        tick_hz=5.0,
        truth_memory=0,
        random_traffic=False,
    )


def test_a_pin_file_holds_one_pin_or_one_per_charger(tmp_path: Path) -> None:
    one = tmp_path / "pin"
    one.write_text(f"# the APP-Pin\n\n  {SECRET}  \n")
    assert parse_args(["--pin-file", str(one)], {}).fleet.pin == SECRET
    many = tmp_path / "pins"
    many.write_text("amtron-1 = 1111\namtron-2=2222\n")
    fleet = parse_args(["--pin-file", str(many), "--count", "2"], {}).fleet
    assert [fleet.pin_for(i) for i in fleet.ids()] == ["1111", "2222"]


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "no PIN"),
        (["--pin", SECRET, "--pin-file", "x"], {}, "not allowed with"),
        (["--pin-file", "/nonexistent/pin"], {}, "cannot read the PIN file"),
        (["--pin", SECRET, "--count", "0"], {}, "count must be at least 1"),
        (["--pin", SECRET, "--base-port", "65535", "--count", "2"], {}, "do not exist"),
        (["--pin", SECRET, "--prefix", "Amtron-"], {}, "use 1-64 of a-z, 0-9"),
        (["--pin", SECRET, "--start", "tomorrow"], {}, "not an ISO 8601 time"),
        (["--pin", SECRET, "--speed", "-1"], {}, "speed must be"),
    ],
)
def test_refusals_say_why_and_never_show_the_pin(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_args(argv, env)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert SECRET not in err


def test_a_per_charger_pin_file_must_cover_every_charger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pins = tmp_path / "pins"
    pins.write_text("amtron-1=1111\n")
    with pytest.raises(SystemExit):
        parse_args(["--pin-file", str(pins), "--count", "2"], {})
    assert "no PIN for amtron-2" in capsys.readouterr().err


def test_modbus_maps_for_every_charger_or_per_charger() -> None:
    from chargelift_simulator.config import parse_args

    env = {"SIMULATOR_PIN": "1234"}
    every = parse_args(["--modbus", "hcc3,bender"], env).fleet
    assert every.modbus_maps("amtron-3") == ("hcc3", "bender")
    assert every.modbus_ports(2, "amtron-3") == [25204, 25205]
    mixed = parse_args(
        ["--modbus-for", "amtron-2=hcc3", "--modbus-for", "amtron-3=bender"], env
    ).fleet
    assert [mixed.modbus_maps(i) for i in mixed.ids()] == [(), ("hcc3",), ("bender",)]
    assert parse_args([], env).fleet.modbus_maps("amtron-1") == ()


@pytest.mark.parametrize(
    "argv",
    [["--modbus", "sunspec"], ["--modbus-for", "amtron-9=hcc3"], ["--modbus-for", "hcc3"]],
)
def test_bad_modbus_options_are_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from chargelift_simulator.config import parse_args

    with pytest.raises(SystemExit):
        parse_args(argv, {"SIMULATOR_PIN": "1234"})
    assert "modbus" in capsys.readouterr().err.lower()
