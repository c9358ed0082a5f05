"""``chargelift-simulator-ocpp``'s command line and the fleet configuration it builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargelift_simulator.ocpp_config import parse_args
from chargelift_simulator.ocpp_cp import OcppFaults, ocpp_time, parse_time
from chargelift_simulator.ocpp_fleet import OcppFleet, OcppFleetConfig

SECRET = "ocpp-password-not-to-print"


def test_one_charge_point_by_id_with_a_password() -> None:
    fleet = parse_args(
        ["--url", "wss://cs.example:9443/ocpp", "--id", "wb-1", "--password", SECRET]
    )
    config = fleet.fleet
    assert config.charge_point_ids() == ["wb-1"]
    assert config.password_for("wb-1") == SECRET
    assert config.meter_interval_s == 10.0
    assert config.faults == OcppFaults()
    assert SECRET not in repr(config)


def test_many_charge_points_and_every_fault(tmp_path: Path) -> None:
    argv = [
        "--url", "ws://127.0.0.1:9000/ocpp", "--count", "1000", "--prefix", "bench-",
        "--interval", "10", "--stagger", "5", "--fault-skew", "-30", "--fault-silent",
        "--fault-offline", "60", "--fault-offline-after", "120", "--fault-duplicate",
        "--fault-register-drop", "--fault-schema", "300", "--no-random-traffic",
        "--cert-file", "c.pem", "--key-file", "k.pem", "--ca-file", "ca.pem",
    ]  # fmt: skip
    config = parse_args(argv).fleet
    ids = config.charge_point_ids()
    assert (len(ids), ids[0], ids[-1]) == (1000, "bench-1", "bench-1000")
    assert config.password is None
    assert config.faults == OcppFaults(
        clock_skew_s=-30,
        ignore_calls=True,
        duplicate_on_replay=True,
        register_drop_in_tx=True,
        offline_after_s=120,
        offline_for_s=60,
        schema_violation_every_s=300,
    )
    assert (config.cert_file, config.key_file, config.ca_file) == ("c.pem", "k.pem", "ca.pem")


def test_a_password_file_per_charge_point(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("# comment\ncp-1=first-password-0001\ncp-2=second-password-002\n")
    argv = ["--url", "ws://127.0.0.1:1/o", "--count", "2", "--prefix", "cp-"]
    config = parse_args([*argv, "--password-file", str(path)]).fleet
    assert config.password_for("cp-2") == "second-password-002"


@pytest.mark.parametrize(
    "argv",
    [
        ["--url", "http://127.0.0.1/ocpp"],
        ["--url", "ws://x/o", "--id", "Bad Id"],
        ["--url", "ws://x/o", "--count", "0"],
        ["--url", "ws://x/o", "--cert-file", "c.pem"],
        ["--url", "ws://x/o", "--id-tag", "x" * 21],
        ["--url", "ws://x/o", "--interval", "nan"],
        ["--url", "ws://x/o", "--password", ""],
        ["--url", "ws://x/o", "--password", SECRET, "--password-file", "/nonexistent"],
    ],
)
def test_refusals_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert SECRET not in capsys.readouterr().err


def test_a_missing_password_in_the_mapping_is_refused() -> None:
    with pytest.raises(ValueError, match="no password for cp-2"):
        OcppFleetConfig(url="ws://x/o", count=2, prefix="cp-", password={"cp-1": SECRET})


def test_timestamps_round_trip() -> None:
    assert ocpp_time(0) == "1970-01-01T00:00:00.000Z"
    assert parse_time("1970-01-01T00:00:10Z") == 10
    assert parse_time("not a time") is None
    assert parse_time(12) is None
    assert parse_time("x" * 1000) is None


async def test_the_register_counts_every_session_and_never_goes_back() -> None:
    config = OcppFleetConfig(
        url="ws://127.0.0.1:1/o", random_traffic=False, auto_tick=False, meter_interval_s=0
    )
    fleet = OcppFleet(config)  # never entered: no connection, only the model
    cp = fleet.charge_points[0]
    start = cp.register_wh
    for _ in range(2):
        cp.model.plug()
        fleet.step(600)
        assert cp.transaction is not None
        cp.model.unplug()
        fleet.step(1)
        assert cp.transaction is None
    first, second = cp.transactions
    assert first.meter_start == int(start)
    assert second.meter_start > first.meter_start
    # Offline (never connected): the transaction messages wait, with provisional ids.
    actions = [o.action for o in cp.backlog]
    assert actions == ["StartTransaction", "MeterValues", "MeterValues", "StopTransaction"] * 2
    assert [o.tx.local_id for o in cp.backlog if o.tx is not None][::4] == [-1, -2]
    stop = cp.backlog[3].payload
    begin = cp.backlog[1].payload["meterValue"][0]["sampledValue"][0]
    end = cp.backlog[2].payload["meterValue"][0]["sampledValue"][0]
    assert int(end["value"]) - int(begin["value"]) == stop["meterStop"] - first.meter_start > 0
