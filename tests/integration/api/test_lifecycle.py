"""The API's lifecycle: SIGTERM or SIGINT drains and exits 0; a failed start exits 3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from chargelift_devstack.procs import free_port
from tests.conftest import scratch
from tests.integration.api.conftest import READ_TOKEN, start_api

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_api_cleanly(
    scenario_db: str, base_dir: Path, sig: signal.Signals
) -> None:
    api = start_api(scenario_db, scratch(base_dir, f"api-{sig.name}"))
    try:
        headers = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert httpx.get(f"{api.url}/api/v1/chargers", headers=headers).status_code == 200
        api.proc.send_signal(sig)
        assert api.proc.wait(10) == 0
        log = api.log.read_text()
        assert "Finished server process" in log  # uvicorn shut down, lifespan included
        assert "Traceback" not in log
    finally:
        api.stop()


def test_a_database_that_does_not_answer_at_start_is_exit_status_3(base_dir: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql://u:hunter2@127.0.0.1:{free_port()}/db",
        "API_PORT": str(free_port()),
    }
    env["API_TOKENS"] = "x:read:" + "0" * 64
    proc = subprocess.run(
        [sys.executable, "-m", "chargelift_api.main"],
        env=env,
        capture_output=True,
        timeout=60,
        cwd=scratch(base_dir, "api-no-db"),
    )
    assert proc.returncode == 3, proc.stderr.decode()
    assert b"hunter2" not in proc.stderr + proc.stdout
