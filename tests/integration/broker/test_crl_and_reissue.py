"""Issue 14, findings 5 and 6 against a real Mosquitto.

5. An expired CRL makes the broker refuse every client. Its nextUpdate is a metric
   (ingest exports it; an alert rule watches it) and one command renews it.
6. Re-issuing a certificate with ``--force`` revokes the one it replaces, so no valid
   certificate is left that ``list`` does not show and nobody can revoke.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from chargelift_certs import pki
from chargelift_certs.main import main as certs_main
from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_devstack.procs import shared_dir
from chargelift_ingest.metrics import IngestMetrics
from chargelift_runtime.certmetrics import CRL_METRIC
from chargelift_runtime.mqtt import TlsFiles
from tests.conftest import scratch
from tests.integration.broker.test_mtls import first_attempt, refused_within
from tests.support.certs import TestCerts, make_certs

pytestmark = pytest.mark.integration


@pytest.fixture
def lone_certs(base_dir: Path) -> TestCerts:
    """A certificate directory of its own: this test breaks its CRL on purpose."""
    return make_certs(shared_dir(scratch(base_dir, "crl") / "certs"))


@pytest.fixture
def lone_broker(lone_certs: TestCerts, base_dir: Path) -> Iterator[MosquittoServer]:
    server = MosquittoServer(certs_dir=lone_certs.dir, run_dir=scratch(base_dir, "crl-broker"))
    server.start()
    yield server
    server.kill()


def _crl_metric(certs: TestCerts) -> float | None:
    metrics = IngestMetrics(CollectorRegistry())
    metrics.watch_certificates(certs.dir, certs.ca_file)
    return metrics.registry.get_sample_value(CRL_METRIC, {"file": str(certs.dir / "crl.pem")})


async def test_an_expired_crl_is_a_metric_and_one_command_renews_it(
    lone_certs: TestCerts, lone_broker: MosquittoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A CRL signed 400 days ago expired 35 days ago.
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    started = time.monotonic()
    with monkeypatch.context() as m:
        m.setattr(pki, "_now", lambda: long_ago)
        pki.refresh_crl(lone_certs.dir)
    lone_broker.reload()

    expired_at = _crl_metric(lone_certs)
    assert expired_at is not None, f"ingest does not export {CRL_METRIC}"
    assert expired_at < time.time() - 30 * 86400
    # What the alert is for: the broker now refuses even ingest.
    await refused_within(lone_broker, lone_certs.tls("ingest"), since=started)

    # The one command, then the reload every certificate change needs.
    assert certs_main(["--dir", str(lone_certs.dir), "crl"]) == 0
    lone_broker.reload()
    started = time.monotonic()
    while await first_attempt(lone_broker, lone_certs.tls("ingest")) is not None:
        assert time.monotonic() - started < 10, "still refused 10 s after the renewal"
        await asyncio.sleep(0.05)
    renewed = _crl_metric(lone_certs)
    assert renewed is not None
    assert renewed > time.time() + 360 * 86400


async def test_reissuing_with_force_revokes_the_replaced_certificate(
    broker: MosquittoServer, certs: TestCerts, tmp_path: Path
) -> None:
    pki.issue_client(certs.dir, "reissued-1", role="charger")
    broker.reload()
    # Somebody kept a copy of the first certificate (a stolen or recycled device).
    kept = tmp_path / "kept"
    (kept / "clients").mkdir(parents=True)
    for suffix in (".crt", ".key"):
        shutil.copy(certs.dir / "clients" / f"reissued-1{suffix}", kept / "clients")
    old_tls = TlsFiles.for_identity(certs.ca_file, kept, "reissued-1")
    assert await first_attempt(broker, old_tls) is None

    started = time.monotonic()
    assert certs_main(["--dir", str(certs.dir), "client", "reissued-1", "--force"]) == 0
    broker.reload()

    await refused_within(broker, old_tls, since=started)
    assert await first_attempt(broker, certs.tls("reissued-1")) is None
    states = sorted(c.status for c in pki.list_certs(certs.dir) if c.identity == "reissued-1")
    assert states == ["revoked", "valid"]
