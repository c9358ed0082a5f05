"""``/docs`` and ``/redoc`` render in a real browser that can reach nothing but the API.

Issue 12: on a network without the internet both pages stayed blank, because FastAPI
loads Swagger UI and ReDoc from a CDN. Headless Chromium opens each page with every
host but 127.0.0.1 unresolvable and a proxy on a dead loopback port for anything else,
and the rendered DOM must show every operation of the schema.

Chromium comes from ``make system-deps`` (scripts/system-deps.sh). Outside CI a
machine without it skips with a hint; in CI (``CI=true``) a missing browser fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chargelift_devstack.postgres import PostgresServer
from chargelift_devstack.procs import free_port
from tests.conftest import scratch
from tests.integration.api.conftest import LiveApi, start_api
from tests.support.db import fresh_database

pytestmark = pytest.mark.integration

OFFLINE_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Every host name but the API's address is unresolvable...
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-bypass-list=127.0.0.1",
]


def chromium() -> str:
    """The browser, or a skip with a hint (a failure in CI, which must have it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is not None:
        return found
    message = "chromium is not installed: `make system-deps` (as root) installs it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def docs_api(postgres: PostgresServer, base_dir: Path) -> Iterator[LiveApi]:
    """The API over an empty database: the pages need the schema only."""
    dsn = asyncio.run(fresh_database(postgres, "docs"))
    api = start_api(dsn, scratch(base_dir, "docs-api"))
    yield api
    api.stop()


def render(url: str, profile: Path) -> str:
    """The DOM of ``url`` after its scripts ran, as offline Chromium renders it."""
    dead_proxy = f"--proxy-server=http://127.0.0.1:{free_port()}"  # ...and the rest goes nowhere
    result = subprocess.run(
        [
            chromium(),
            *OFFLINE_FLAGS,
            dead_proxy,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result.stdout.decode()


def operations(api: LiveApi) -> list[tuple[str, str]]:
    """(path, summary) of every operation in the API's schema."""
    schema = httpx.get(f"{api.url}/openapi.json", timeout=10).json()
    return [(path, op["summary"]) for path, ops in schema["paths"].items() for op in ops.values()]


def test_swagger_ui_renders_every_operation_offline(docs_api: LiveApi, base_dir: Path) -> None:
    dom = render(f"{docs_api.url}/docs", scratch(base_dir, "chromium"))
    ops = operations(docs_api)
    assert len(ops) >= 8
    # Swagger UI writes each operation's path into a data-path attribute, its summary
    # into the operation's description span.
    missing = [path for path, _ in ops if f'data-path="{path}"' not in dom]
    assert not missing, f"operations not rendered: {missing}\n{dom[:3000]}"
    for _, summary in ops:
        assert f">{summary}<" in dom, summary


def test_redoc_renders_every_operation_offline(docs_api: LiveApi, base_dir: Path) -> None:
    dom = render(f"{docs_api.url}/redoc", scratch(base_dir, "chromium"))
    missing = [summary for _, summary in operations(docs_api) if f">{summary}<" not in dom]
    assert not missing, f"operations not rendered: {missing}\n{dom[:3000]}"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_pages_name_no_other_host(docs_api: LiveApi, page: str) -> None:
    html = httpx.get(f"{docs_api.url}{page}", timeout=10).text
    assert "http://" not in html
    assert "https://" not in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        r = httpx.get(f"{docs_api.url}/docs-assets/{asset}", timeout=10)
        assert r.status_code == 200, asset
        assert len(r.content) > 1000, asset
