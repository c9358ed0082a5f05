"""The OCPP side: handlers answer, the mapper gets the wire payload, readings reach the sink;
broken and unknown calls get the OCPP CALLERROR and nothing else is affected; transaction ids
are stable across replays and restarts."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import pytest
from ocpp.v16 import ChargePoint as ClientChargePoint
from ocpp.v16 import call
from websockets.asyncio.client import ClientConnection

from tests.integration.ocpp.conftest import PASSWORD_2, Gateway, GatewayFactory

pytestmark = pytest.mark.integration


@asynccontextmanager
async def ocpp_client(gw: Gateway, cp_id: str = "cp-pass") -> AsyncIterator[ClientChargePoint]:
    """A charge point from the ``ocpp`` package, connected with its password."""
    ws = await gw.connect(cp_id, password=PASSWORD_2)
    cp = ClientChargePoint(cp_id, ws, response_timeout=10)
    task = asyncio.create_task(cp.start())
    try:
        yield cp
    finally:
        await ws.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def raw_call(ws: ClientConnection, frame: str) -> list[Any]:
    await ws.send(frame)
    answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert isinstance(answer, list)
    return answer


START = {
    "connector_id": 1,
    "id_tag": "card-1",
    "meter_start": 1000,
    "timestamp": "2026-01-02T10:00:00Z",
}


async def test_every_handler_answers_and_hands_the_wire_payload_on(
    gateways: GatewayFactory,
) -> None:
    gw = await gateways.start(heartbeat_interval=42)
    async with ocpp_client(gw) as cp:
        boot = await cp.call(
            call.BootNotification(
                charge_point_model="M1", charge_point_vendor="V", firmware_version="1.2"
            )
        )
        assert boot.status == "Accepted"
        assert boot.interval == 42
        assert (await cp.call(call.Heartbeat())).current_time
        await cp.call(
            call.StatusNotification(connector_id=2, error_code="NoError", status="Charging")
        )
        await cp.call(
            call.MeterValues(
                connector_id=1,
                meter_value=[
                    {
                        "timestamp": "2026-01-02T10:00:10Z",
                        "sampledValue": [
                            {"value": "1234", "measurand": "Energy.Active.Import.Register"}
                        ],
                    }
                ],
            )
        )
        auth = await cp.call(call.Authorize(id_tag="anyone"))
        assert auth.id_tag_info["status"] == "Accepted"
    mapper = gw.mappers.made["cp-pass"]
    actions = [a for a, _, _ in mapper.calls]
    assert actions == ["BootNotification", "StatusNotification", "MeterValues", "Authorize"]
    # the payload as on the wire: camelCase keys, nested ones too
    assert mapper.calls[0][1] == {
        "chargePointModel": "M1",
        "chargePointVendor": "V",
        "firmwareVersion": "1.2",
    }
    assert mapper.calls[2][1]["meterValue"][0]["sampledValue"][0]["measurand"] == (
        "Energy.Active.Import.Register"
    )
    assert [(r.charger, r.field) for r in gw.sink.readings] == [
        ("cp-pass-1", "BootNotification"),
        ("cp-pass-2", "StatusNotification"),
        ("cp-pass-1", "MeterValues"),
        ("cp-pass-1", "Authorize"),
    ]
    assert gw.metrics()["ocpp_readings_total"] == 4


async def test_the_sink_is_told_when_each_message_was_read(gateways: GatewayFactory) -> None:
    """The start of ocpp_reading_publish_seconds: the moment the gateway read the call."""
    gw = await gateways.start()
    async with ocpp_client(gw) as cp:
        before = time.time()
        await cp.call(call.Authorize(id_tag="a"))
        between = time.time()
        await cp.call(call.Authorize(id_tag="b"))
        after = time.time()
    first, second = gw.sink.received
    assert first is not None
    assert second is not None
    assert before <= first <= between <= second <= after


async def test_authorize_with_an_id_tag_list(gateways: GatewayFactory) -> None:
    gw = await gateways.start(id_tags="card-1, card-2")
    async with ocpp_client(gw) as cp:
        assert (await cp.call(call.Authorize(id_tag="card-2"))).id_tag_info["status"] == "Accepted"
        assert (await cp.call(call.Authorize(id_tag="card-9"))).id_tag_info["status"] == "Invalid"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (
            '[2,"b1","BootNotification",{"chargePointVendor":5,"chargePointModel":"M"}]',
            "TypeConstraintViolation",
        ),
        ('[2,"b2","BootNotification",{"chargePointVendor":"V"}]', "ProtocolError"),
        (
            '[2,"b3","BootNotification",{"chargePointVendor":"V","chargePointModel":"M","x":1}]',
            "FormationViolation",
        ),
        ('[2,"b4","FlyToTheMoon",{}]', "NotImplemented"),
        ('[2,"b4","DataTransfer",{"vendorId":"x"}]', "NotSupported"),
        (
            '[2,"b5","BootNotification",{"chargePointVendor":"'
            + "v" * 5000
            + '","chargePointModel":"M"}]',
            "TypeConstraintViolation",
        ),
        ('[2,"b6",["BootNotification"],{}]', "FormationViolation"),
        (
            '[2,"b7","StartTransaction",{"connectorId":1,"idTag":"t","meterStart":1.5,"timestamp":"2026-01-01T00:00:00Z"}]',
            "TypeConstraintViolation",
        ),
    ],
)
async def test_a_broken_or_unknown_call_gets_the_ocpp_error_and_the_connection_carries_on(
    gateways: GatewayFactory, frame: str, code: str
) -> None:
    gw = await gateways.start()
    other_ws = await gw.connect("cp-two", password=PASSWORD_2)
    async with await gw.connect("cp-pass", password=PASSWORD_2) as ws:
        answer = await raw_call(ws, frame)
        assert answer[0] == 4
        assert answer[1] == json.loads(frame)[1]
        assert answer[2] == code
        assert len(json.dumps(answer)) < 1000  # the payload is not echoed back
        # the same connection carries on
        ok = await raw_call(ws, '[2,"h1","Heartbeat",{}]')
        assert ok[:2] == [3, "h1"]
    # and the other charge point was never affected
    ok = await raw_call(other_ws, '[2,"h2","Heartbeat",{}]')
    assert ok[:2] == [3, "h2"]
    await other_ws.close()
    assert gw.metrics()[f'ocpp_call_errors_total{{code="{code}"}}'] == 1
    assert gw.mappers.made.get("cp-pass") is None or not gw.mappers.made["cp-pass"].calls


async def test_a_frame_that_is_no_ocpp_message_is_counted_and_dropped(
    gateways: GatewayFactory,
) -> None:
    gw = await gateways.start()
    async with await gw.connect("cp-pass", password=PASSWORD_2) as ws:
        for junk in (
            "not json",
            "{}",
            "[2]",
            '[9,"x"]',
            '[2,{"a":1},"Heartbeat",{}]',
            '[2,"' + "u" * 40 + '","Heartbeat",{}]',
        ):
            await ws.send(junk)
        ok = await raw_call(ws, '[2,"h1","Heartbeat",{}]')
        assert ok[:2] == [3, "h1"]  # nothing was answered to the junk, the call is
    assert gw.metrics()["ocpp_unparseable_messages_total"] == 6


async def test_a_message_over_the_size_limit_closes_only_that_connection(
    gateways: GatewayFactory,
) -> None:
    gw = await gateways.start(max_message_bytes=4096)
    other = await gw.connect("cp-two", password=PASSWORD_2)
    big = await gw.connect("cp-pass", password=PASSWORD_2)
    await big.send('[2,"x","DataTransfer",{"vendorId":"' + "v" * 10000 + '"}]')
    await big.wait_closed()
    assert big.close_code == 1009  # message too big
    assert (await raw_call(other, '[2,"h","Heartbeat",{}]'))[:2] == [3, "h"]
    await other.close()


async def test_a_mapping_error_is_answered_and_counted(gateways: GatewayFactory) -> None:
    gw = await gateways.start()
    async with ocpp_client(gw) as cp:
        assert (await cp.call(call.Authorize(id_tag="nonsense"))).id_tag_info[
            "status"
        ] == "Accepted"
        # a bug of the mapper is no reason to make the charger resend for ever
        assert (await cp.call(call.Authorize(id_tag="crash"))).id_tag_info["status"] == "Accepted"
        assert (await cp.call(call.Heartbeat())).current_time
    assert gw.metrics()['ocpp_mapping_errors_total{action="Authorize"}'] == 2
    assert gw.sink.readings == []


async def test_a_failing_sink_answers_internal_error_so_the_charger_resends(
    gateways: GatewayFactory,
) -> None:
    gw = await gateways.start()
    gw.sink.fail = True
    async with await gw.connect("cp-pass", password=PASSWORD_2) as ws:
        answer = await raw_call(
            ws,
            '[2,"m1","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"2026-01-01T00:00:00Z","sampledValue":[{"value":"1"}]}]}]',
        )
        assert answer[:3] == [4, "m1", "InternalError"]
        gw.sink.fail = False
        answer = await raw_call(
            ws,
            '[2,"m2","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"2026-01-01T00:00:00Z","sampledValue":[{"value":"1"}]}]}]',
        )
        assert answer[:2] == [3, "m2"]
    assert len(gw.sink.readings) == 1


async def test_readings_for_an_unlisted_charger_are_dropped(gateways: GatewayFactory) -> None:
    from chargelift_ocpp.registry import (
        ChargePointEntry,
        hash_password,
        read_registry,
        write_registry,
    )

    gw = await gateways.start()
    entries = read_registry(gw.settings.charge_points)
    entries["cp-pass"] = ChargePointEntry("cp-pass", 2, hash_password(PASSWORD_2), ("cp-pass-1",))
    write_registry(gw.settings.charge_points, list(entries.values()))
    async with ocpp_client(gw) as cp:
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
        )
        await cp.call(
            call.StatusNotification(connector_id=2, error_code="NoError", status="Available")
        )
    assert [r.charger for r in gw.sink.readings] == ["cp-pass-1"]
    assert gw.metrics()["ocpp_readings_refused_total"] == 1


async def test_the_same_start_transaction_gets_the_same_id_also_after_a_restart(
    gateways: GatewayFactory,
) -> None:
    gw = await gateways.start()
    async with ocpp_client(gw) as cp:
        first = await cp.call(call.StartTransaction(**START))
        again = await cp.call(call.StartTransaction(**START))
        other = await cp.call(
            call.StartTransaction(**{**START, "timestamp": "2026-01-02T11:00:00Z"})
        )
    assert first.transaction_id == again.transaction_id
    assert other.transaction_id != first.transaction_id
    assert first.id_tag_info["status"] == "Accepted"
    m = gw.metrics()
    assert m['ocpp_transactions_total{outcome="started"}'] == 2
    assert m['ocpp_transactions_total{outcome="replayed"}'] == 1
    # the mapper is told the id each time (it decides what a replay maps to)
    starts = [c for c in gw.mappers.made["cp-pass"].calls if c[0] == "StartTransaction"]
    assert [tx for _, _, tx in starts] == [first.transaction_id] * 2 + [other.transaction_id]
    await gw.stop()

    gw2 = await gateways.start()
    async with ocpp_client(gw2) as cp:
        replayed = await cp.call(call.StartTransaction(**START))
        new = await cp.call(call.StartTransaction(**{**START, "connector_id": 2}))
    assert replayed.transaction_id == first.transaction_id
    assert new.transaction_id not in (first.transaction_id, other.transaction_id)
    # The restarted gateway's fresh mapper was told the transactions still running, so
    # their meter values and stops still give the session's energy.
    restored = gw2.mappers.made["cp-pass"].restored
    assert [r[0] for r in restored] == [first.transaction_id, other.transaction_id]
    assert restored[0][1:4] == (START["connector_id"], START["meter_start"], START["id_tag"])


async def test_stop_transaction_is_accepted_for_unknown_and_stopped_transactions(
    gateways: GatewayFactory,
) -> None:
    gw = await gateways.start()
    async with ocpp_client(gw) as cp:
        unknown = await cp.call(
            call.StopTransaction(
                meter_stop=5,
                timestamp="2026-01-02T12:00:00Z",
                transaction_id=987654,
                id_tag="card-1",
            )
        )
        assert unknown.id_tag_info["status"] == "Accepted"
        started = await cp.call(call.StartTransaction(**START))
        stop = call.StopTransaction(
            meter_stop=5000, timestamp="2026-01-02T12:00:00Z", transaction_id=started.transaction_id
        )
        await cp.call(stop)
        await cp.call(stop)  # replayed: answered again, and mapped again (the same readings)
    m = gw.metrics()
    assert m['ocpp_transactions_total{outcome="unknown"}'] == 1
    assert m['ocpp_transactions_total{outcome="stopped"}'] == 1
    assert m['ocpp_transactions_total{outcome="already_stopped"}'] == 1
    stops = [c for c in gw.mappers.made["cp-pass"].calls if c[0] == "StopTransaction"]
    # The unknown one, the real stop and its replay: the gateway may have died between
    # the store's commit and the outbox's, so a replay delivers the readings again.
    assert len(stops) == 3
    assert stops[1][1] == stops[2][1]


async def test_a_transaction_id_of_another_charge_point_is_unknown(
    gateways: GatewayFactory,
) -> None:
    gw = await gateways.start()
    async with ocpp_client(gw, "cp-pass") as cp:
        started = await cp.call(call.StartTransaction(**START))
    async with ocpp_client(gw, "cp-two") as cp:
        await cp.call(
            call.StopTransaction(
                meter_stop=1,
                timestamp="2026-01-02T12:00:00Z",
                transaction_id=started.transaction_id,
            )
        )
    assert gw.metrics()['ocpp_transactions_total{outcome="unknown"}'] == 1


async def test_calls_are_answered_while_the_default_thread_pool_is_taken(
    gateways: GatewayFactory,
) -> None:
    """The schema validation of a call runs on the event loop (docs/benchmarks.md,
    "OCPP"): a charge point's MeterValues is answered even while every thread of the
    default pool, which anything in the process may use, is busy."""
    gw = await gateways.start()
    loop = asyncio.get_running_loop()
    release = threading.Event()
    loop.set_default_executor(ThreadPoolExecutor(1))
    taken = loop.run_in_executor(None, release.wait, 30)
    try:
        async with await gw.connect("cp-pass", password=PASSWORD_2) as ws:
            meter = {
                "connectorId": 1,
                "meterValue": [
                    {
                        "timestamp": "2026-01-02T10:00:00Z",
                        "sampledValue": [{"value": "1234", "measurand": "Power.Active.Import"}],
                    }
                ],
            }
            answer = await raw_call(ws, json.dumps([2, "mv-1", "MeterValues", meter]))
            assert answer == [3, "mv-1", {}]
            broken = await raw_call(ws, '[2,"mv-2","MeterValues",{"connectorId":"one"}]')
            assert broken[:3] == [4, "mv-2", "TypeConstraintViolation"]
    finally:
        release.set()
        await taken
    assert gw.metrics()['ocpp_messages_total{action="MeterValues"}'] == 1
