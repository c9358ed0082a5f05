"""Validation of the MHCP POST bodies (what the box answers 400 to)."""

from __future__ import annotations

import pytest

from chargelift_simulator import Command, DevMode
from chargelift_simulator.mhcp import (
    ChargeDataPost,
    DevInfoPost,
    InvalidBodyError,
    parse_charge_data_post,
    parse_dev_info_post,
)


def test_the_documented_charge_data_bodies_parse() -> None:
    # lephisto/amtron docs/api/ChargeData/post.md, the "set current" example.
    body = b'{"Permanent": true, "RemoteCurr": 6, "AutoChg": null, "ChgState": null, "Uid": null}'
    assert parse_charge_data_post(body) == ChargeDataPost(permanent=True, remote_curr=6)
    # The ioBroker adapter sends only the field it changes.
    start = b'{"Permanent": true, "ChgState": "Start", "Uid": "00000000"}'
    assert parse_charge_data_post(start) == ChargeDataPost(
        permanent=True, chg_state=Command.START, uid="00000000"
    )
    temporary = b'{"Permanent": false, "AutoChg": false, "RemoteCurr": 10.5}'
    assert parse_charge_data_post(temporary) == ChargeDataPost(
        permanent=False, remote_curr=10.5, auto_chg=False
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"Permanent=true",
        b"[]",
        b"{}",  # Permanent is the one field that may not be left out
        b'{"Permanent": null}',
        b'{"Permanent": "true"}',
        b'{"Permanent": true, "RemoteCurr": "16"}',
        b'{"Permanent": true, "RemoteCurr": true}',
        b'{"Permanent": true, "RemoteCurr": -1}',
        b'{"Permanent": true, "RemoteCurr": 81}',
        b'{"Permanent": true, "AutoChg": 1}',
        b'{"Permanent": true, "ChgState": "Stop"}',
        b'{"Permanent": true, "ChgState": "start"}',
        b'{"Permanent": true, "Uid": 0}',
        b'{"Permanent": true, "RemoteCurrent": 16}',  # a typo must not pass silently
    ],
)
def test_bad_charge_data_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidBodyError):
        parse_charge_data_post(body)


def test_dev_info_bodies() -> None:
    # nilshendrich/amtron docs/api/DevInfo/post.md sample: only DevMode set.
    sample = (
        b'{"DevName": null, "LocTime": null, "Summer": null, "Tz": null, "FixedVehCosts": null,'
        b' "OldVehCosts": null, "Battery": null, "DevMode": "Remote"}'
    )
    assert parse_dev_info_post(sample) == DevInfoPost(dev_mode=DevMode.REMOTE)
    assert parse_dev_info_post(b'{"DevName": "Garage", "Battery": 64000, "Tz": 60}') == (
        DevInfoPost(dev_name="Garage", battery_wh=64000)
    )
    for bad in (
        b'{"DevMode": "Manual"}',
        b'{"Battery": -1}',
        b'{"Battery": 1.5}',
        b'{"DevName": ""}',
        b'{"Summer": 1}',
        b'{"Tz": "60"}',
        b'{"LocTime": []}',
        b'{"Colour": 1}',
    ):
        with pytest.raises(InvalidBodyError):
            parse_dev_info_post(bad)


def test_accepted_writes_are_counted_and_the_limit_shown_to_the_control_endpoint() -> None:
    from chargelift_simulator.wire import Request
    from tests.unit.simulator.conftest import manual_fleet

    fleet = manual_fleet()
    box = fleet.chargers[0]
    pin = fleet.config.pin
    assert isinstance(pin, str)

    def post(path: str, body: bytes, key: str = pin) -> int:
        request = Request("POST", path, {"DevKey": key}, "HTTP/1.1", {}, body, True)
        return box._route(request)[0]

    assert (box.info()["writes"], box.info()["current_limit"]) == (0, 16.0)
    assert post("/MHCP/1.0/DevInfo", b'{"Permanent": true, "DevMode": "Time"}') == 200
    assert post("/MHCP/1.0/ChargeData", b'{"Permanent": false, "RemoteCurr": 9}') == 200
    assert box.info()["dev_mode"] == "Time"
    assert post("/MHCP/1.0/DevInfo", b'{"DevMode": "Remote"}') == 200
    assert post("/MHCP/1.0/ChargeData", b'{"RemoteCurr": 9}') == 400  # no Permanent
    assert post("/MHCP/1.0/ChargeData", b'{"Permanent": false, "RemoteCurr": 9}', "x") == 401
    info = box.info()
    assert (info["dev_mode"], info["remote_current"], info["current_limit"]) == ("Remote", 9, 9.0)
    assert (info["writes"], info["permanent_writes"]) == (3, 1)
