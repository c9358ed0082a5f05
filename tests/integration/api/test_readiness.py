"""/readyz follows the database; /healthz does not; the API recovers by itself."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from chargelift_devstack.postgres import PostgresServer
from tests.conftest import scratch
from tests.integration.api.conftest import READ_TOKEN, start_api
from tests.support.db import fresh_database

pytestmark = pytest.mark.integration


def wait_for(url: str, status: int, timeout: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(url, timeout=5)
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_readyz_follows_the_database(own_postgres: PostgresServer, base_dir: Path) -> None:
    dsn = asyncio.run(fresh_database(own_postgres))
    api = start_api(dsn, scratch(base_dir, "api-ready"))
    try:
        assert wait_for(f"{api.url}/readyz", 200).status_code == 200
        own_postgres.kill()
        down = wait_for(f"{api.url}/readyz", 503)
        assert down.status_code == 503
        assert down.json()["status"] == "unavailable"
        assert httpx.get(f"{api.url}/healthz").status_code == 200
        # A data request while the database is down is a 5xx problem, never a hang.
        r = httpx.get(
            f"{api.url}/api/v1/chargers",
            headers={"Authorization": f"Bearer {READ_TOKEN}"},
            timeout=40,
        )
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        assert "postgresql://" not in r.text
        own_postgres.start()
        assert wait_for(f"{api.url}/readyz", 200).status_code == 200
        r = httpx.get(
            f"{api.url}/api/v1/chargers", headers={"Authorization": f"Bearer {READ_TOKEN}"}
        )
        assert (r.status_code, r.json()) == (200, [])
    finally:
        api.stop()
