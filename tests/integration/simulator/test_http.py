"""MHCP over real HTTP against a live fleet: keys, statuses, effects of POSTs."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from chargelift_simulator import Fleet, FleetConfig
from tests.integration.simulator.conftest import PIN, config, mhcp


async def test_get_charge_data_and_dev_info(fleet: Fleet, client: httpx.AsyncClient) -> None:
    charger = fleet.chargers[0]
    r = await client.get(mhcp(charger), headers={"Accept": "application/json"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    data = r.json()
    assert data == charger.model.charge_data()
    assert (data["ChgState"], data["HCCP"]) == ("Idle", "A11")
    r = await client.get(mhcp(charger, "DevInfo"))
    assert r.status_code == 200
    assert r.json()["DevName"] == charger.id
    assert r.json()["Hcc3"] == "HCC3 V1.13"


async def test_json_whatever_accept_says(fleet: Fleet, client: httpx.AsyncClient) -> None:
    r = await client.get(mhcp(fleet.chargers[0]), headers={"Accept": "text/html"})
    assert r.status_code == 200
    assert r.json()["ChgState"] == "Idle"


@pytest.mark.parametrize("endpoint", ["ChargeData", "DevInfo"])
@pytest.mark.parametrize("pin", [None, "", "wrong", PIN + "x", PIN.upper()])
async def test_get_with_a_wrong_or_missing_key_is_403(
    fleet: Fleet, client: httpx.AsyncClient, endpoint: str, pin: str | None
) -> None:
    r = await client.get(mhcp(fleet.chargers[0], endpoint, pin))
    assert r.status_code == 403
    assert r.content == b""
    assert fleet.chargers[0].truth == []


@pytest.mark.parametrize("endpoint", ["ChargeData", "DevInfo"])
async def test_post_with_a_wrong_key_is_401_and_changes_nothing(
    fleet: Fleet, client: httpx.AsyncClient, endpoint: str
) -> None:
    charger = fleet.chargers[0]
    body: dict[str, object] = (
        {"Permanent": True, "RemoteCurr": 6} if endpoint == "ChargeData" else {"DevMode": "Time"}
    )
    for pin in ("wrong", None):
        r = await client.post(mhcp(charger, endpoint, pin), json=body)
        assert r.status_code == 401
    assert charger.model.settings.remote_curr == 16
    assert charger.model.settings.dev_mode == "Remote"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b'{"RemoteCurr": 6}',
        b'{"Permanent": true, "RemoteCurr": "6"}',
        b'{"Permanent": true, "ChgState": "Stop"}',
        b'{"Permanent": true, "Bogus": 1}',
    ],
)
async def test_a_bad_post_body_is_400(
    fleet: Fleet, client: httpx.AsyncClient, content: bytes
) -> None:
    r = await client.post(mhcp(fleet.chargers[0]), content=content)
    assert r.status_code == 400


async def test_post_remote_curr_changes_the_power(fleet: Fleet, client: httpx.AsyncClient) -> None:
    charger = fleet.chargers[0]
    charger.plug()
    fleet.step(15)
    assert (await client.get(mhcp(charger))).json()["ActPwr"] == 11040
    r = await client.post(
        mhcp(charger),
        json={"Permanent": True, "RemoteCurr": 8, "AutoChg": None, "ChgState": None, "Uid": None},
    )
    assert (r.status_code, r.content) == (200, b"")
    fleet.step(5)
    data = (await client.get(mhcp(charger))).json()
    assert (data["RemoteCurr"], data["TRemoteCurr"], data["ActPwr"]) == (8, 8, 8 * 3 * 230)
    r = await client.post(mhcp(charger), json={"Permanent": False, "RemoteCurr": 0})
    assert r.status_code == 200
    data = (await client.get(mhcp(charger))).json()
    assert (data["ChgState"], data["ActPwr"]) == ("Paused", 0)
    assert fleet.chargers[1].state == "Idle"  # the neighbour is its own box


async def test_post_chg_state_commands(fleet: Fleet, client: httpx.AsyncClient) -> None:
    charger = fleet.chargers[0]
    r = await client.post(mhcp(charger), json={"Permanent": True, "AutoChg": False})
    assert r.status_code == 200
    assert (await client.get(mhcp(charger, "DevInfo"))).json()["AutoChg"] is False
    charger.plug()
    fleet.step(10)
    assert charger.state == "StandbyAuthorize"

    async def command(state: str, **extra: object) -> str:
        r = await client.post(mhcp(charger), json={"Permanent": True, "ChgState": state, **extra})
        assert r.status_code == 200
        fleet.step(1)
        return str((await client.get(mhcp(charger))).json()["ChgState"])

    assert await command("Start", Uid="00000000") == "Charging"
    assert (await client.get(mhcp(charger))).json()["Uid"] == "00000000"
    assert await command("Pause") == "Paused"
    assert await command("Continue") == "Charging"
    assert await command("Terminate") == "Terminated"
    assert await command("Continue") == "Terminated"  # ignored, still 200
    assert charger.sessions[-1].reason == "terminate"


async def test_post_dev_info_switches_the_mode(fleet: Fleet, client: httpx.AsyncClient) -> None:
    charger = fleet.chargers[0]
    r = await client.post(mhcp(charger, "DevInfo"), json={"DevMode": "Time", "DevName": "Garage"})
    assert r.status_code == 200
    info = (await client.get(mhcp(charger, "DevInfo"))).json()
    assert (info["DevMode"], info["DevName"]) == ("Time", "Garage")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/MHCP/1.0/Statistics/Day", 404),
        ("GET", "/", 404),
        ("DELETE", "/MHCP/1.0/ChargeData", 405),
        ("PUT", "/MHCP/1.0/DevInfo", 405),
    ],
)
async def test_other_paths_and_methods(
    fleet: Fleet, client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    r = await client.request(method, f"{fleet.chargers[0].url}{path}?DevKey={PIN}")
    assert r.status_code == status


async def raw(port: int, data: bytes, wait: float = 1.0) -> tuple[bytes, bool]:
    """Send bytes, read until the server closes or ``wait`` s pass: (bytes, closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        got = b""
        try:
            async with asyncio.timeout(wait):
                while chunk := await reader.read(65536):
                    got += chunk
            return got, True
        except TimeoutError:
            return got, False
    finally:
        writer.close()
        await writer.wait_closed()


async def test_keep_alive_serves_many_requests_on_one_connection(fleet: Fleet) -> None:
    get = f"GET /MHCP/1.0/ChargeData?DevKey={PIN} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    got, closed = await raw(fleet.chargers[0].port, get * 3, wait=0.3)  # pipelined, even
    assert got.count(b"HTTP/1.1 200 OK") == 3
    assert not closed


async def test_connection_close_and_http_1_0_are_honoured(fleet: Fleet) -> None:
    port = fleet.chargers[0].port
    close = f"GET /MHCP/1.0/ChargeData?DevKey={PIN} HTTP/1.1\r\nConnection: close\r\n\r\n"
    got, closed = await raw(port, close.encode() * 2)
    assert got.count(b"HTTP/1.1 200 OK") == 1  # the second request is never read
    assert b"Connection: close\r\n" in got
    assert closed
    got, closed = await raw(port, f"GET /MHCP/1.0/DevInfo?DevKey={PIN} HTTP/1.0\r\n\r\n".encode())
    assert got.startswith(b"HTTP/1.1 200 OK")
    assert closed


async def test_garbage_gets_400_and_a_closed_connection(fleet: Fleet) -> None:
    got, closed = await raw(fleet.chargers[0].port, b"HELLO\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400 Bad Request")
    assert closed


async def test_idle_keep_alive_connections_are_closed() -> None:
    async with Fleet(config(count=1, idle_timeout=0.2)) as fleet:
        got, closed = await raw(fleet.chargers[0].port, b"")
        assert (got, closed) == (b"", True)


async def test_fixed_ports_count_up_from_the_base_port() -> None:
    for _ in range(5):  # other tests may take a port in between: retry elsewhere
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        base = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        if base > 65000:
            continue
        cfg: FleetConfig = config(count=3, base_port=base, control_port=None)
        try:
            async with Fleet(cfg) as fleet:
                assert [c.port for c in fleet.chargers] == [base, base + 1, base + 2]
                assert fleet.chargers[2].url == f"http://127.0.0.1:{base + 2}"
                assert fleet.control_port is None
                return
        except OSError:
            continue
    pytest.fail("no three free consecutive ports found")
