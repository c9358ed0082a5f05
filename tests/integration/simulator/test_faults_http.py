"""Every fault kind, as an HTTP client (httpx, like the poller) meets it."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from chargelift_simulator import Fault, FaultKind, Fleet
from tests.integration.simulator.conftest import mhcp


async def healthy(fleet: Fleet, client: httpx.AsyncClient, index: int = 0) -> None:
    r = await client.get(mhcp(fleet.chargers[index]))
    assert r.status_code == 200
    assert "ChgState" in r.json()


async def test_latency_answers_correctly_after_the_delay(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    charger = fleet.chargers[0]
    charger.set_fault(Fault(FaultKind.LATENCY, latency_s=0.3))
    started = time.monotonic()
    r = await client.get(mhcp(charger))
    assert time.monotonic() - started >= 0.3
    assert r.json() == charger.model.charge_data()
    assert len(charger.truth) == 1  # a late answer is still an answer


async def test_latency_beyond_the_client_timeout_is_a_timeout_and_not_served(
    fleet: Fleet,
) -> None:
    charger = fleet.chargers[0]
    charger.set_fault(Fault(FaultKind.LATENCY, latency_s=0.4))
    async with httpx.AsyncClient(timeout=0.1, trust_env=False) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(mhcp(charger))
    await asyncio.sleep(0.5)
    assert charger.truth == []  # the client had gone: nothing was served


async def test_timeout_never_answers(fleet: Fleet) -> None:
    charger = fleet.chargers[0]
    charger.set_fault(Fault(FaultKind.TIMEOUT))
    async with httpx.AsyncClient(timeout=0.5, trust_env=False) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await client.get(mhcp(charger))
        assert time.monotonic() - started >= 0.5
        await healthy(fleet, client, 1)  # the neighbour is fine meanwhile
        charger.set_fault(Fault())
        await healthy(fleet, client)
    await asyncio.sleep(0.05)
    assert charger.server.connections == 0  # the held connection ended with the client


async def test_timeout_with_a_limit_closes_silently(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    charger = fleet.chargers[0]
    charger.set_fault(Fault(FaultKind.TIMEOUT, latency_s=0.2))
    with pytest.raises(httpx.RemoteProtocolError, match="disconnected without sending"):
        await client.get(mhcp(charger))


async def test_http500(fleet: Fleet, client: httpx.AsyncClient) -> None:
    charger = fleet.chargers[0]
    charger.set_fault(Fault(FaultKind.HTTP500))
    r = await client.get(mhcp(charger))
    assert r.status_code == 500
    assert r.reason_phrase == "Internal Server Error"
    r = await client.post(mhcp(charger), json={"Permanent": True, "RemoteCurr": 6})
    assert r.status_code == 500
    assert charger.model.settings.remote_curr == 16  # not processed
    assert charger.truth == []


async def test_malformed_is_200_with_a_body_that_is_not_json(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    charger = fleet.chargers[0]
    charger.set_fault(Fault(FaultKind.MALFORMED))
    r = await client.get(mhcp(charger))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        r.json()
    assert b"ChgState" in r.content  # looks almost right, which is the point
    assert charger.truth == []


async def test_truncated_sends_half_the_body_then_closes(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    charger = fleet.chargers[0]
    charger.set_fault(Fault(FaultKind.TRUNCATED))
    with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|complete message body"):
        await client.get(mhcp(charger))
    assert charger.truth == []
    charger.set_fault(Fault())
    await healthy(fleet, client)


async def test_extra_fields_are_valid_json_with_unknown_keys(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    charger = fleet.chargers[0]
    charger.set_fault(Fault(FaultKind.EXTRA_FIELDS))
    data = (await client.get(mhcp(charger))).json()
    expected = charger.model.charge_data()
    assert {k: data[k] for k in expected} == expected
    extra = {k: v for k, v in data.items() if k not in expected}
    assert {type(v) for v in extra.values()} == {str, float, list, dict, type(None)}
    info = (await client.get(mhcp(charger, "DevInfo"))).json()
    assert "FwBuild" in info
    assert "Hcc3" in info
    assert charger.truth == [data]  # the truth is what was served, extras included


async def test_reset_closes_the_socket_abruptly(fleet: Fleet, client: httpx.AsyncClient) -> None:
    charger = fleet.chargers[0]
    charger.set_fault(Fault(FaultKind.RESET))
    with pytest.raises(httpx.ReadError):  # ECONNRESET, not a clean "server disconnected"
        await client.get(mhcp(charger))
    charger.set_fault(Fault())
    await healthy(fleet, client)


async def test_reset_is_a_tcp_rst_on_the_wire(fleet: Fleet) -> None:
    charger = fleet.chargers[0]
    charger.set_fault(Fault(FaultKind.RESET))
    reader, writer = await asyncio.open_connection("127.0.0.1", charger.port)
    writer.write(b"GET /MHCP/1.0/ChargeData HTTP/1.1\r\n\r\n")
    with pytest.raises(ConnectionResetError):
        await reader.read(100)
    writer.close()


async def test_remaining_limits_a_fault_to_the_next_n_requests(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    charger = fleet.chargers[0]
    charger.set_fault(Fault(FaultKind.HTTP500, remaining=2))
    statuses = [(await client.get(mhcp(charger))).status_code for _ in range(4)]
    assert statuses == [500, 500, 200, 200]
    assert charger.fault == Fault()


@pytest.mark.parametrize("kind", [k for k in FaultKind if k is not FaultKind.NONE])
async def test_a_fault_touches_only_its_charger(
    fleet: Fleet, client: httpx.AsyncClient, kind: FaultKind
) -> None:
    fleet.chargers[0].set_fault(Fault(kind, latency_s=0.05))
    await healthy(fleet, client, 1)
    assert fleet.chargers[1].fault.kind is FaultKind.NONE
