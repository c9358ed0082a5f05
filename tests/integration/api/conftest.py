"""Fixtures for the API: a database holding the scenario (written by the real ingest
writer) and the API as a real uvicorn process on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chargelift_api.auth import hash_token
from chargelift_devstack.postgres import PostgresServer
from chargelift_devstack.procs import free_port
from tests.conftest import scratch
from tests.integration.api import scenario
from tests.support.db import fresh_database

READ_TOKEN = "it-read-" + uuid.uuid4().hex
ADMIN_TOKEN = "it-admin-" + uuid.uuid4().hex
MAX_POINTS = 500


@pytest.fixture(scope="module")
def scenario_db(postgres: PostgresServer) -> str:
    """The scenario of ``scenario.py``, stored by ingest's validation and writer."""
    dsn = asyncio.run(fresh_database(postgres, "api"))
    stored = scenario.load(dsn)
    assert stored > 1000
    return dsn


@dataclass
class LiveApi:
    """A running ``chargelift-api`` process."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_api(dsn: str, run_dir: Path, **env: str) -> LiveApi:
    """Start the API with ``dsn`` (through its console entry point) and wait until it is up."""
    port = free_port()
    log = run_dir / f"api-{port}.log"
    environ = {
        **os.environ,
        "DATABASE_URL": dsn,
        "API_TOKENS": f"it:read:{hash_token(READ_TOKEN)},ops:admin:{hash_token(ADMIN_TOKEN)}",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "API_MAX_POINTS": str(MAX_POINTS),
        "API_TIMEZONE": "Europe/Berlin",
        "API_POOL_MIN": "1",
        "API_POOL_MAX": "4",
        **env,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chargelift_api.main"],
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = LiveApi(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{api.url}/healthz", timeout=0.5).status_code == 200:
                return api
        except httpx.TransportError:
            time.sleep(0.1)
    api.stop()
    raise TimeoutError(f"the API did not come up:\n{log.read_text()}")


@pytest.fixture(scope="module")
def live_api(scenario_db: str, base_dir: Path) -> Iterator[LiveApi]:
    """The API over the scenario database, for the whole module."""
    api = start_api(scenario_db, scratch(base_dir, "api"))
    yield api
    api.stop()


@pytest.fixture
async def client(live_api: LiveApi) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client with a read token."""
    async with httpx.AsyncClient(
        base_url=live_api.url,
        headers={"Authorization": f"Bearer {READ_TOKEN}"},
        timeout=10.0,
        trust_env=False,
    ) as c:
        yield c
