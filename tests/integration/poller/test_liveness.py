"""Issue 13: a poller stuck in place is reported unhealthy and ends itself (exit 70), so
that its supervisor (systemd ``Restart=always``, compose ``restart: unless-stopped``)
starts a fresh one; the outbox keeps every sample across that restart."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from chargelift_devstack.mosquitto import MosquittoServer
from tests.integration.poller.support import PIN, PollerProcess, eventually, write_config
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration

EXIT_STUCK = 70


def _env(broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path) -> dict[str, str]:
    config = write_config(
        tmp_path / "chargers.toml", [(c.id, c.url, "TEST_PIN") for c in fleet.chargers], 0.2
    )
    return {
        "POLLER_CONFIG": str(config),
        "POLLER_OUTBOX": str(tmp_path / "outbox.sqlite"),
        "MQTT_HOST": broker.host,
        "MQTT_PORT": str(broker.port),
        "MQTT_CA_FILE": str(certs.ca_file),
        "MQTT_CERTS_DIR": str(certs.dir),
        "POLLER_MQTT_MAX_BACKOFF": "1",
        "POLLER_LIVENESS": "3",
        "POLLER_WATCHDOG_EXIT": "3",
        "TEST_PIN": PIN,
    }


async def _health(proc: PollerProcess) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
        r = await http.get(f"http://127.0.0.1:{proc.metrics_port}/healthz")
        return r.status_code, r.json()


async def test_a_poller_frozen_longer_than_the_window_exits_on_resume(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    proc = PollerProcess(_env(own_broker, certs, fleet, tmp_path), tmp_path / "poller.log")
    await proc.start()
    await eventually(proc.ready, 15, "the poller to connect")
    assert (await _health(proc))[0] == 200
    assert proc.proc is not None
    try:
        proc.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(5)
        with pytest.raises(httpx.TimeoutException):  # frozen: no answer at all
            await _health(proc)
        proc.proc.send_signal(signal.SIGCONT)
        async with asyncio.timeout(15):
            code = await proc.proc.wait()
        assert code == EXIT_STUCK, proc.text()[-2000:]
        assert "frozen for" in proc.text()
    finally:
        if proc.proc.returncode is None:
            await proc.kill()


async def test_publishes_never_acknowledged_turn_healthz_bad_then_the_poller_exits(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    proc = PollerProcess(_env(own_broker, certs, fleet, tmp_path), tmp_path / "poller.log")
    await proc.start()
    await eventually(proc.ready, 15, "the poller to connect")
    assert own_broker.proc is not None
    loop = asyncio.get_running_loop()
    try:
        # The broker frozen: connections stay up (keep-alive 30 s), PUBACKs never come.
        own_broker.proc.send_signal(signal.SIGSTOP)
        frozen_at = loop.time()
        status: int = 200
        doc: dict[str, Any] = {}
        while status == 200 and loop.time() - frozen_at < 20:
            await asyncio.sleep(0.5)
            status, doc = await _health(proc)
        assert status == 503, doc
        assert doc["status"] == "stuck"
        assert "without progress" in doc["problem"]
        assert proc.proc is not None
        async with asyncio.timeout(20):
            code = await proc.proc.wait()
        print(f"healthz 503 and exit {code} {loop.time() - frozen_at:.1f} s after the freeze")
        assert code == EXIT_STUCK
        assert "is stuck" in proc.text()
    finally:
        own_broker.proc.send_signal(signal.SIGCONT)
        if proc.proc is not None and proc.proc.returncode is None:
            await proc.kill()
