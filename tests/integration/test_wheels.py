"""The services' wheels install and run outside the repository.

Wheels of every service package are built from copies of their sources, installed into
a fresh virtual environment in a temporary directory (third-party packages from the
hash-pinned docker/requirements-runtime.lock, as the images do; the wheels with
``--no-deps``), and then run with the temporary directory as working directory and a
clean environment: nothing may come from the checkout. What the services read besides
their code (the migrations, the broker's ACL rules) must be package data.

- ``chargelift-ingest migrate`` builds the schema in a new database;
- ``chargelift-api`` starts and answers ``/healthz``;
- the poller loads its sample configuration (services/poller/*.example);
- ``chargelift-certs dev-set`` writes an ACL headed by the services' rules;
- ``chargelift-ocpp register`` registers a profile-3 charge point (its certificate from
  the installed ``chargelift-certs``);
- no file of the installed packages lives under the repository.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import asyncpg
import httpx
import pytest

from chargelift_devstack.postgres import PostgresServer
from chargelift_devstack.procs import free_port
from tests.support.db import new_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "docker" / "requirements-runtime.lock"
#: The distributions under services/ (each is a wheel of its own).
SERVICES = (
    "contract",
    "runtime",
    "edge",
    "certs",
    "poller",
    "ingest",
    "api",
    "simulator",
    "ocpp",
    "bridge",
)
PACKAGES = tuple(f"chargelift_{s}" for s in SERVICES)
#: uv beside the test's interpreter (make venv installs it); it builds and installs
#: from its cache, so the test takes seconds, not minutes.
UV = Path(sys.executable).parent / "uv"


def _run(
    cmd: list[str], *, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment (outside the repository) with the services' wheels."""
    if not UV.exists():
        pytest.skip(f"no uv at {UV} (make venv installs it)")
    root = tmp_path_factory.mktemp("wheels")
    assert not root.resolve().is_relative_to(REPO)
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    python = str(venv / "bin" / "python")
    # What the images install (setuptools included: it builds the wheels below).
    _run([str(UV), "pip", "install", "-q", "--python", python, "--require-hashes", "-r",
          str(LOCK)], cwd=root, timeout=300)  # fmt: skip
    wheels = root / "dist"
    for service in SERVICES:
        # A copy: the build leaves build/ and *.egg-info behind, and only what the
        # package declares may reach the wheel.
        src = root / "src" / service
        shutil.copytree(
            REPO / "services" / service,
            src,
            ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__", "*.pyc"),
        )
        _run([str(UV), "build", "-q", "--wheel", "--no-build-isolation", "--python", python,
              "-o", str(wheels), str(src)], cwd=root)  # fmt: skip
    built = sorted(wheels.glob("*.whl"))
    assert len(built) == len(SERVICES), built
    _run([str(UV), "pip", "install", "-q", "--python", python, "--no-deps",
          *map(str, built)], cwd=root)  # fmt: skip
    # The lock covers what every wheel requires.
    _run([str(UV), "pip", "check", "--python", python], cwd=root)
    shutil.rmtree(root / "src")
    return venv


def clean_env(venv: Path, home: Path, **extra: str) -> dict[str, str]:
    """Only what a service needs: no PYTHONPATH, no VIRTUAL_ENV, no settings of ours."""
    return {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    }


async def _schema(dsn: str) -> tuple[str | None, int]:
    """The readings table's name (None without it) and the migrations recorded."""
    conn = await asyncpg.connect(dsn)
    try:
        table = await conn.fetchval("SELECT to_regclass('public.readings')::text")
        applied = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await conn.close()
    return table, int(applied)


def test_installed_packages_live_outside_the_repository(installed: Path, tmp_path: Path) -> None:
    probe = (
        "import importlib, json, sys\n"
        f"names = {list(PACKAGES)!r}\n"
        "from chargelift_ingest.migrate import MIGRATIONS\n"
        "from chargelift_certs.pki import SERVICES_ACL\n"
        "print(json.dumps({'modules': [importlib.import_module(n).__file__ for n in names],\n"
        "  'data': [str(MIGRATIONS), str(SERVICES_ACL)], 'path': sys.path}))\n"
    )
    out = _run([str(installed / "bin" / "python"), "-c", probe], cwd=tmp_path,
               env=clean_env(installed, tmp_path))  # fmt: skip
    found = json.loads(out.stdout)
    for path in [*found["modules"], *found["data"], *found["path"]]:
        if path:
            assert not Path(path).resolve().is_relative_to(REPO), path
    for path in [*found["modules"], *found["data"]]:
        assert Path(path).resolve().is_relative_to(installed.resolve()), path
    # no editable install, no .pth file pointing back into the checkout
    for pth in installed.glob("lib/python*/site-packages/*.pth"):
        assert str(REPO) not in pth.read_text(), pth


def test_ingest_migrates_a_new_database(
    installed: Path, tmp_path: Path, postgres: PostgresServer
) -> None:
    dsn = asyncio.run(new_database(postgres, "wheels"))
    env = clean_env(installed, tmp_path, DATABASE_URL=dsn)
    out = _run(["chargelift-ingest", "migrate"], cwd=tmp_path, env=env)
    assert "migrations applied: 0001_core.sql" in out.stdout
    table, applied = asyncio.run(_schema(dsn))
    assert table == "readings"
    shipped = installed.glob("lib/python*/site-packages/chargelift_ingest/migrations/0*.sql")
    assert applied == len(list(shipped)) > 0


def test_api_starts_and_answers_healthz(
    installed: Path, tmp_path: Path, postgres: PostgresServer
) -> None:
    dsn = asyncio.run(new_database(postgres, "wheels"))
    env = clean_env(installed, tmp_path, DATABASE_URL=dsn)
    _run(["chargelift-ingest", "migrate"], cwd=tmp_path, env=env)
    token = _run(["chargelift-api", "hash-token", "x"], cwd=tmp_path, env=env).stdout
    entry = token.split("API_TOKENS entry: ", 1)[1].strip()
    port = free_port()
    env |= {"API_TOKENS": entry, "API_PORT": str(port)}
    log = (tmp_path / "api.log").open("wb")
    api = subprocess.Popen(
        ["chargelift-api"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert api.poll() is None, (tmp_path / "api.log").read_text()
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (tmp_path / "api.log").read_text()
                time.sleep(0.2)
        assert reply.status_code == 200, reply.text
    finally:
        api.terminate()
        api.wait(timeout=10)
        log.close()


def test_poller_loads_its_sample_configuration(installed: Path, tmp_path: Path) -> None:
    shutil.copy(REPO / "services" / "poller" / "chargers.toml.example", tmp_path / "chargers.toml")
    sample = (REPO / "services" / "poller" / "poller.env.example").read_text()
    settings = dict(
        line.split("=", 1)
        for line in sample.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    assert "POLLER_CONFIG" in settings
    probe = (
        "from pathlib import Path\n"
        "from chargelift_poller.config import MqttSettings, Settings, load_config\n"
        "from chargelift_runtime.settings import load_settings\n"
        "s, m = load_settings(Settings, MqttSettings)\n"
        "c = load_config(Path(s.config))\n"
        "print(' '.join(ch.id for ch in c.chargers))\n"
    )
    env = clean_env(installed, tmp_path, **settings)
    out = _run([str(installed / "bin" / "python"), "-c", probe], cwd=tmp_path, env=env)
    assert out.stdout.split() == ["amtron-1", "amtron-2"]


def test_certs_writes_the_acl_from_package_data(installed: Path, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    env = clean_env(installed, tmp_path)
    _run(["chargelift-certs", "--dir", str(certs), "dev-set"], cwd=tmp_path, env=env)
    acl = (certs / "mosquitto.acl").read_text()
    shipped = next(installed.glob("lib/python*/site-packages/chargelift_certs/acl.services"))
    assert shipped.read_text().rstrip() in acl
    assert "user api\n" in acl
    assert "user amtron-1\ntopic readwrite chargers/amtron-1/+\n" in acl


def test_ocpp_registers_a_charge_point_with_a_certificate(installed: Path, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    env = clean_env(installed, tmp_path)
    _run(["chargelift-certs", "--dir", str(certs), "init"], cwd=tmp_path, env=env)
    out = _run(
        ["chargelift-ocpp", "register", "garage-3", "--profile", "3",
         "--registry", "cp.toml", "--certs-dir", str(certs)],
        cwd=tmp_path,
        env=env,
    ).stdout  # fmt: skip
    assert "garage-3.crt" in out
    assert (certs / "clients" / "garage-3.crt").exists()
    assert "[charge_points.garage-3]" in (tmp_path / "cp.toml").read_text()
