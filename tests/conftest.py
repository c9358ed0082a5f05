"""Session fixtures: a real Mosquitto and a real PostgreSQL on loopback, started here.

Servers are started once per test session (tests that stop, kill or restart a server
ask for their own instance: ``own_broker``, ``own_postgres``) and always stopped at
the end, also when a test fails or the run is interrupted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_devstack.postgres import PostgresServer
from chargelift_devstack.procs import shared_dir
from tests.support.certs import TestCerts

# fsync off is safe for these tests: they kill processes, never the machine, and a
# killed process's writes are in the kernel's page cache already.
PG_TEST_SETTINGS = {"fsync": "off", "full_page_writes": "off", "max_connections": "200"}


@pytest.fixture(scope="session")
def base_dir() -> Iterator[Path]:
    """A scratch directory that the servers' own accounts can reach (they drop root)."""
    path = shared_dir(Path(tempfile.mkdtemp(prefix="chargelift-test-")))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def scratch(base_dir: Path, prefix: str) -> Path:
    """A fresh directory under ``base_dir`` (pytest's tmp_path is private to root)."""
    return shared_dir(Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=base_dir)))


@pytest.fixture(scope="session")
def certs(base_dir: Path) -> TestCerts:
    from tests.support.certs import make_certs

    return make_certs(shared_dir(base_dir / "certs"))


@pytest.fixture(scope="session")
def broker(certs: TestCerts, base_dir: Path) -> Iterator[MosquittoServer]:
    """The shared broker. Do not stop or kill it: use ``own_broker`` for that."""
    server = MosquittoServer(certs_dir=certs.dir, run_dir=base_dir / "mosquitto")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_broker(certs: TestCerts, base_dir: Path) -> Iterator[MosquittoServer]:
    """A broker for this test alone: stop, kill and restart it at will."""
    run_dir = scratch(base_dir, "broker")
    server = MosquittoServer(certs_dir=certs.dir, run_dir=run_dir)
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def postgres(base_dir: Path) -> Iterator[PostgresServer]:
    """The shared PostgreSQL. Do not stop or kill it: use ``own_postgres`` for that."""
    server = PostgresServer(run_dir=base_dir / "postgres", settings=PG_TEST_SETTINGS)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_postgres(base_dir: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL for this test alone: stop, kill and restart it at will."""
    run_dir = scratch(base_dir, "postgres")
    server = PostgresServer(run_dir=run_dir, settings=PG_TEST_SETTINGS)
    server.start()
    yield server
    server.kill()


# Hypothesis profiles: `make fuzz` selects "fuzz" (HYPOTHESIS_PROFILE=fuzz), which raises
# the example budget of the tests that size themselves from it (the MHCP fuzz tests:
# >= 100,000 examples); tests with their own max_examples keep it.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("fuzz", max_examples=10_000, deadline=None)
_hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
