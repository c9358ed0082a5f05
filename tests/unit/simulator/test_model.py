"""Physics and state machine of one simulated AMTRON, on the manual clock."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

import pytest

from chargelift_simulator import ChgState, Command, DevMode, Fleet, FleetConfig
from chargelift_simulator.model import HANDSHAKE_S, RAMP_UP_W_PER_S, Session
from tests.unit.simulator.conftest import WINTER_NOON, charging, manual_fleet

FULL_11KW = 16 * 3 * 230  # 11 040 W


def test_a_plugged_car_goes_standby_connect_then_charging_and_ramps_up() -> None:
    fleet = manual_fleet()
    model = fleet.chargers[0].model
    assert model.state is ChgState.IDLE
    assert model.charge_data()["HCCP"] == "A11"

    assert model.plug()
    assert not model.plug()  # one car at a time
    data = model.charge_data()
    assert (data["ChgState"], data["HCCP"], data["ActPwr"]) == ("StandbyConnect", "B11", 0)

    fleet.step(HANDSHAKE_S)
    assert model.charge_data()["ChgState"] == "Charging"
    fleet.step(1)
    assert model.charge_data()["ActPwr"] == RAMP_UP_W_PER_S  # ramping, not a jump
    fleet.step(5)
    data = model.charge_data()
    assert (data["ChgState"], data["HCCP"]) == ("Charging", "C21")
    assert data["ActPwr"] == FULL_11KW
    assert data["ActCurr"] == 16
    assert isinstance(data["ActCurr"], int)


def test_without_auto_charge_the_box_waits_for_start_and_keeps_the_uid() -> None:
    fleet = manual_fleet()
    model = fleet.chargers[0].model
    model.set_auto_charge(False)
    model.plug()
    fleet.step(60)
    assert model.state is ChgState.STANDBY_AUTHORIZE
    assert model.charge_data()["ChgNrg"] > 0  # still the previous session's value
    assert not model.command(Command.CONTINUE)  # nothing to continue: ignored
    assert model.command(Command.START, "00000000")
    assert model.charge_data()["ChgState"] == "Charging"
    data = model.charge_data()
    assert (data["Uid"], data["ChgNrg"], data["ChgDuration"]) == ("00000000", 0, 0)


def test_chg_nrg_integrates_power_in_wh_and_chg_duration_counts_seconds() -> None:
    fleet = manual_fleet()
    model = charging(fleet)
    before = model.charge_data()
    fleet.step(3600)
    after = model.charge_data()
    assert after["ChgNrg"] - before["ChgNrg"] in (FULL_11KW - 1, FULL_11KW)  # int Wh, floored
    assert after["ChgDuration"] - before["ChgDuration"] == 3600
    assert isinstance(after["ChgNrg"], int)
    # The ramp at the start cost a few Wh against a square 11 kW profile.
    ramp_s = FULL_11KW / RAMP_UP_W_PER_S
    expected = FULL_11KW * (3600 + 10 - ramp_s / 2) / 3600
    assert after["ChgNrg"] == pytest.approx(expected, abs=2)


def test_chg_nrg_holds_after_the_session_and_restarts_at_a_new_one() -> None:
    fleet = manual_fleet()
    ended: list[Session] = []
    model = charging(fleet)
    fleet.step(1800)
    model.on_session_end = lambda _model, session: ended.append(session)
    assert model.unplug()
    held = model.charge_data()
    assert held["ChgState"] == "Idle"
    assert held["ActPwr"] == 0
    assert held["ChgNrg"] > 5000
    fleet.step(7200)  # hours idle: the last session's values stay
    idle = model.charge_data()
    assert (idle["ChgNrg"], idle["ChgDuration"]) == (held["ChgNrg"], held["ChgDuration"])
    assert len(ended) == 1
    assert ended[0].energy_wh == held["ChgNrg"]
    assert ended[0].reason == "unplug"
    assert ended[0].end - ended[0].start == pytest.approx(1800 + 10, abs=0.01)

    model.plug()
    fleet.step(HANDSHAKE_S - 1)  # StandbyConnect: still the old values
    assert model.charge_data()["ChgNrg"] == held["ChgNrg"]
    fleet.step(1)  # the new session begins
    assert (model.charge_data()["ChgNrg"], model.charge_data()["ChgDuration"]) == (0, 0)
    fleet.step(60)
    assert 0 < model.charge_data()["ChgNrg"] < 200


def test_pause_continue_terminate() -> None:
    fleet = manual_fleet()
    model = charging(fleet)
    assert model.command(Command.PAUSE)
    paused = model.charge_data()
    assert (paused["ChgState"], paused["ActPwr"], paused["HCCP"]) == ("Paused", 0, "B11")
    fleet.step(600)
    assert model.charge_data()["ChgNrg"] == paused["ChgNrg"]
    assert model.charge_data()["ChgDuration"] == paused["ChgDuration"]  # counts charging only
    assert model.command(Command.CONTINUE)
    fleet.step(10)
    assert model.charge_data()["ActPwr"] == FULL_11KW
    assert model.command(Command.TERMINATE)
    done = model.charge_data()
    assert (done["ChgState"], done["ActPwr"]) == ("Terminated", 0)
    assert model.sessions[-1].reason == "terminate"
    fleet.step(600)
    assert model.charge_data()["ChgNrg"] == done["ChgNrg"]
    assert not model.command(Command.TERMINATE)  # nothing left to terminate
    # Start again while still plugged in: a new session.
    assert model.command(Command.START)
    assert model.charge_data()["ChgNrg"] == 0


def test_remote_curr_sets_the_power_clamped_to_max_curr_wb_and_below_6_a_pauses() -> None:
    fleet = manual_fleet()
    model = charging(fleet)
    model.set_remote_current(8)
    fleet.step(1)
    assert FULL_11KW / 2 < model.power_w < FULL_11KW  # follows within seconds, not at once
    fleet.step(2)
    assert model.charge_data()["ActPwr"] == 8 * 3 * 230
    assert model.charge_data()["RemoteCurr"] == 8

    model.set_remote_current(32)  # more than the box allows
    fleet.step(10)
    assert model.charge_data()["ActPwr"] == FULL_11KW

    model.set_remote_current(5)  # below the IEC 61851 minimum: no charging
    data = model.charge_data()
    assert (data["ChgState"], data["ActPwr"], data["HCCP"]) == ("Paused", 0, "B11")
    model.set_remote_current(10)
    fleet.step(10)
    assert model.state is ChgState.CHARGING
    assert model.charge_data()["ActPwr"] == 10 * 3 * 230


def test_phases_come_from_the_configuration() -> None:
    fleet = manual_fleet(phases=1, max_current=32)
    model = charging(fleet)
    assert model.charge_data()["ActPwr"] == 32 * 230
    assert model.dev_info()["Phases"] == 1


def test_time_mode_takes_the_limit_of_the_tariff_in_force() -> None:
    fleet = manual_fleet(start=datetime(2026, 1, 12, 21, 59))
    model = charging(fleet)
    model.set_dev_mode(DevMode.TIME)
    fleet.step(10)
    assert model.charge_data()["Tariff"] == "T1"
    assert model.charge_data()["ActPwr"] == 10 * 3 * 230  # MaxCurrT1
    fleet.step(60)
    assert model.charge_data()["Tariff"] == "T2"
    assert model.charge_data()["ActPwr"] == 16 * 3 * 230  # MaxCurrT2
    assert model.dev_info()["DevMode"] == "Time"


@pytest.mark.parametrize(
    ("begin_t1", "begin_t2", "local", "tariff"),
    [
        ((6, 0), (22, 0), (5, 59), "T2"),
        ((6, 0), (22, 0), (6, 0), "T1"),
        ((6, 0), (22, 0), (21, 59), "T1"),
        ((6, 0), (22, 0), (22, 0), "T2"),
        ((6, 0), (22, 0), (0, 0), "T2"),
        ((4, 30), (22, 0), (4, 29), "T2"),  # the real sample's window
        ((4, 30), (22, 0), (4, 30), "T1"),
        ((22, 0), (6, 0), (23, 0), "T1"),  # T1 window across midnight
        ((22, 0), (6, 0), (12, 0), "T2"),
        ((6, 0), (6, 0), (3, 0), "T1"),  # no T2 window at all
    ],
)
def test_tariff_by_local_time_of_day(
    begin_t1: tuple[int, int], begin_t2: tuple[int, int], local: tuple[int, int], tariff: str
) -> None:
    fleet = manual_fleet(start=datetime(2026, 7, 1, *local))  # summer time, too
    settings = fleet.chargers[0].model.settings
    settings.begin_h_t1, settings.begin_m_t1 = begin_t1
    settings.begin_h_t2, settings.begin_m_t2 = begin_t2
    data = fleet.chargers[0].model.charge_data()
    assert data["Tariff"] == tariff
    assert data["Price"] == (320 if tariff == "T1" else 210)  # 0.1 ct/kWh
    assert (data["BeginH_T1"], data["BeginM_T1"]) == begin_t1
    assert (data["TBeginH_T1"], data["TBeginM_T1"]) == begin_t1


def test_tariff_and_price_switch_as_the_day_goes_by() -> None:
    fleet = manual_fleet(start=datetime(2026, 1, 12, 21, 0))
    model = fleet.chargers[0].model
    seen = []
    for _ in range(12):
        data = model.charge_data()
        seen.append((fleet.sim_time.hour, data["Tariff"], data["Price"]))
        fleet.step(3600)
    assert seen[0] == (21, "T1", 320)
    assert seen[1] == (22, "T2", 210)
    assert seen[8] == (5, "T2", 210)
    assert seen[9] == (6, "T1", 320)
    assert all(p == (320 if t == "T1" else 210) for _, t, p in seen)


def test_power_tapers_near_full_and_a_full_car_terminates_the_session() -> None:
    fleet = manual_fleet()
    model = charging(fleet, soc=0.7, capacity_wh=40_000)
    vehicle = model.vehicle
    assert vehicle is not None
    powers = []
    while model.state is ChgState.CHARGING:
        fleet.step(60)
        powers.append(model.power_w)
        assert len(powers) < 600
    assert powers[0] == FULL_11KW
    assert powers[-1] < FULL_11KW / 3  # tapered
    assert all(a >= b for a, b in itertools.pairwise(powers))
    data = model.charge_data()
    assert (data["ChgState"], data["ActPwr"], data["HCCP"]) == ("Terminated", 0, "B11")
    assert vehicle.soc == 1.0
    assert model.sessions[-1].reason == "full"
    assert data["ChgNrg"] == pytest.approx(0.3 * 40_000, abs=2)
    assert model.vehicle is vehicle  # it stays plugged in until it leaves
    assert not model.command(Command.START)  # a full car takes nothing


def test_a_car_pauses_by_itself_and_resumes() -> None:
    fleet = manual_fleet()
    model = charging(fleet)
    vehicle = model.vehicle
    assert vehicle is not None
    vehicle.pause_at_soc, vehicle.pause_s = vehicle.soc + 0.0001, 120  # 20 Wh on
    fleet.step(60)
    data = model.charge_data()
    assert (data["ChgState"], data["HCCP"], data["ActPwr"]) == ("Paused", "B21", 0)
    fleet.step(125)
    assert model.state is ChgState.CHARGING


def test_cars_come_and_go_at_random_and_every_session_is_reported() -> None:
    fleet = Fleet(FleetConfig(count=4, seed=7, start=WINTER_NOON, auto_tick=False))
    states: set[str] = set()
    for _ in range(3 * 24 * 60):  # three days, sampled each simulated minute
        fleet.step(60)
        states.update(c.state for c in fleet.chargers)
    assert {"Idle", "Charging", "Terminated", "StandbyConnect"} <= states
    for charger in fleet.chargers:
        sessions = charger.sessions
        assert len(sessions) >= 3
        assert {s.reason for s in sessions} <= {"full", "unplug"}
        assert all(s.end >= s.start and s.energy_wh >= 0 for s in sessions)
        assert all(a.end <= b.start for a, b in itertools.pairwise(sessions))


def test_rem_time_counts_down_minutes_from_the_plug_in() -> None:
    fleet = manual_fleet()
    model = fleet.chargers[0].model
    assert model.charge_data()["RemTime"] == 1440
    model.plug()
    fleet.step(30 * 60)
    assert model.charge_data()["RemTime"] == 1410


def test_dev_info_reports_time_zone_and_summer_time() -> None:
    winter = manual_fleet().chargers[0].model.dev_info()
    summer = manual_fleet(start=datetime(2026, 7, 1, 12, 0)).chargers[0].model.dev_info()
    assert (winter["Tz"], winter["Summer"]) == (60, False)
    assert (summer["Tz"], summer["Summer"]) == (120, True)
    assert winter["LocTime"] == int(datetime(2026, 1, 12, 11, 0, tzinfo=UTC).timestamp())
    assert winter["Hcc3"] == "HCC3 V1.13"
    assert winter["DevMode"] == "Remote"
    assert (winter["MaxCurrWb"], winter["MaxPwr"], winter["Phases"]) == (16, 11040, 3)


def test_one_seed_one_history_and_another_seed_another() -> None:
    def history(seed: int) -> list[dict[str, object]]:
        fleet = Fleet(FleetConfig(count=2, seed=seed, start=WINTER_NOON, auto_tick=False))
        out = []
        for _ in range(24 * 12):
            fleet.step(300)
            out += [c.model.charge_data() for c in fleet.chargers]
        return out

    first = history(3)
    assert history(3) == first
    assert history(4) != first
    assert any(d["ChgState"] == "Charging" for d in first)


def test_adding_chargers_does_not_change_the_existing_ones() -> None:
    def first_charger(count: int) -> list[dict[str, object]]:
        fleet = Fleet(FleetConfig(count=count, seed=2, start=WINTER_NOON, auto_tick=False))
        out = []
        for _ in range(100):
            fleet.step(600)
            out.append(fleet.chargers[0].model.charge_data())
        return out

    assert first_charger(1) == first_charger(5)


def test_served_objects_have_the_real_keys_and_types() -> None:
    model = charging(manual_fleet())
    data = model.charge_data()
    assert list(data) == [
        "ChgState", "Tariff", "Price", "Uid", "ChgDuration", "ChgNrg", "NrgDemand", "Solar",
        "EmTime", "RemTime", "ActPwr", "ActCurr", "MaxCurrT1", "BeginH_T1", "BeginM_T1",
        "PriceT1", "MaxCurrT2", "BeginH_T2", "BeginM_T2", "PriceT2", "RemoteCurr",
        "SolarPrice", "ExcessNrg", "TMaxCurrT1", "TBeginH_T1", "TBeginM_T1", "TPriceT1",
        "TMaxCurrT2", "TBeginH_T2", "TBeginM_T2", "TPriceT2", "TRemoteCurr", "TSolarPrice",
        "TExcessNrg", "HCCP",
    ]  # fmt: skip
    for key, value in data.items():
        if key in ("ChgState", "Tariff", "Uid", "HCCP"):
            assert isinstance(value, str), key
        elif key in ("ExcessNrg", "TExcessNrg"):
            assert isinstance(value, bool), key
        else:
            assert type(value) is int, key
    for key, value in data.items():
        if key.startswith("T") and key not in ("Tariff",):
            assert value == data[key[1:]], key
    info = model.dev_info()
    assert set(info) == {
        "DevName", "LocTime", "Summer", "Tz", "ItemNo", "Sn", "Hcc3", "Hmi", "Rfid", "Wifi",
        "FixedVehCosts", "OldVehCosts", "Color", "DevMode", "ChgState", "WifiOn", "AutoChg",
        "ChgContinue", "Err", "Battery", "Phases", "Cable", "Auth", "DsoEnabled", "EmEnabled",
        "MaxCurr", "MaxPwr", "MaxCurrWb",
    }  # fmt: skip
    assert info["ChgState"] == data["ChgState"]


def test_step_rejects_negative_and_non_finite_seconds() -> None:
    fleet = manual_fleet()
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="cannot step"):
            fleet.step(bad)
