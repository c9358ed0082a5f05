"""The fleet on its own clock, its lifecycle, and the command line as a process."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from chargelift_simulator import Fault, FaultKind, Fleet
from tests.integration.simulator.conftest import PIN, config, mhcp


async def test_the_ticker_moves_simulated_time_at_speed(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    path = tmp_path / "truth.jsonl"
    async with Fleet(config(count=1, auto_tick=True, speed=50.0, truth_log=path)) as fleet:
        charger = fleet.chargers[0]
        charger.plug()
        await asyncio.sleep(0.5)  # ~25 simulated seconds: handshake and ramp are over
        assert 15 < fleet.clock.elapsed < 60
        data = (await client.get(mhcp(charger))).json()
        assert (data["ChgState"], data["ActPwr"]) == ("Charging", 11040)
        await asyncio.sleep(0.3)
        assert len(path.read_text().splitlines()) == 1  # flushed while running


async def test_leaving_closes_every_connection_quietly(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    async with Fleet(config(count=2)) as fleet:
        await client.get(mhcp(fleet.chargers[0]))  # a keep-alive connection stays open
        assert fleet.chargers[0].server.connections == 1
        port = fleet.chargers[0].port
        fleet.chargers[1].set_fault(Fault(FaultKind.TIMEOUT))  # and one is held, unanswered
        held = asyncio.create_task(client.get(mhcp(fleet.chargers[1])))
        await asyncio.sleep(0.1)
        assert fleet.chargers[1].server.connections == 1
    assert fleet.chargers[0].server.connections == 0
    with pytest.raises(httpx.RemoteProtocolError):
        await held  # the simulator went away without an answer
    # CPython 3.11 logs "Exception in callback" for a connection task that ends cancelled.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return
    writer.close()  # pragma: no cover - somebody else took the port meanwhile


async def test_the_command_line_serves_logs_urls_and_stops_on_sigterm(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chargelift_simulator.main",
        "--count", "2", "--base-port", "0", "--control-port", "0", "--speed", "10",
        "--truth-log", str(truth),
        env={**os.environ, "SIMULATOR_PIN": PIN},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    output = b""
    try:
        async with asyncio.timeout(10):
            while b"control endpoint at" not in output:
                output += await proc.stderr.readline()
        urls = re.findall(rb"(amtron-\d): MHCP at (http://127\.0\.0\.1:\d+)/MHCP/1\.0", output)
        assert [u[0] for u in urls] == [b"amtron-1", b"amtron-2"]
        async with httpx.AsyncClient(timeout=2, trust_env=False) as client:
            r = await client.get(f"{urls[1][1].decode()}/MHCP/1.0/ChargeData?DevKey={PIN}")
            assert r.status_code == 200
            control = re.search(rb"control endpoint at (http://\S+)", output)
            assert control is not None
            listed = (await client.get(control[1].decode())).json()["chargers"]
            assert [c["id"] for c in listed] == ["amtron-1", "amtron-2"]
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
            output += out + err
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert PIN.encode() not in output
    assert b"stopped" in output
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    assert [r["charger"] for r in records] == ["amtron-2"]


async def test_the_command_line_refuses_to_start_without_a_pin(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIMULATOR_PIN"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chargelift_simulator.main", "--base-port", "0",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(10):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"no PIN" in err


async def test_a_port_in_use_fails_the_start_and_leaves_nothing_open(tmp_path: Path) -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    taken = blocker.sockets[0].getsockname()[1]
    try:
        # The second charger's port is taken; the first one had bound already.
        fleet = Fleet(config(count=2, base_port=taken - 1, truth_log=tmp_path / "t.jsonl"))
        with pytest.raises(OSError, match="address already in use"):
            async with fleet:
                pass  # pragma: no cover
        assert not any(c.server.listening for c in fleet.chargers)
    finally:
        blocker.close()
        await blocker.wait_closed()
