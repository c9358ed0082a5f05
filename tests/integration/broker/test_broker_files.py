"""The broker reads copies of its files (``run_dir/tls``), so that the account it drops to
(as root: ``mosquitto``) can read them wherever the certificate directory is, e.g. a clone
under /root (tests/fresh shows that end to end). The copies must follow certs/."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from chargelift_certs import pki
from chargelift_devstack.mosquitto import BROKER_FILES, MosquittoServer
from chargelift_runtime.mqtt import TlsFiles
from tests.integration.broker.test_mtls import client, first_attempt
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration


def test_the_broker_reads_copies_and_leaves_the_certificate_directory_alone(
    own_broker: MosquittoServer, certs: TestCerts
) -> None:
    for name in BROKER_FILES:
        assert (own_broker.tls_dir / name).read_bytes() == (certs.dir / name).read_bytes()
    assert not (own_broker.tls_dir / "ca.key").exists(), "the CA key stays where it is"
    # The key in certs/ keeps the owner chargelift-certs gave it (it used to be chowned).
    assert (certs.dir / "broker.key").stat().st_uid == os.geteuid()
    assert own_broker.refresh() is None, "nothing changed: no reload"


async def test_make_dev_takes_a_revocation_without_a_reload_step(
    own_broker: MosquittoServer, certs: TestCerts
) -> None:
    tls = certs.issue_charger("refresh-me")
    assert own_broker.refresh() == "reloaded"  # the new ACL entry, copied and SIGHUPed
    async with client(own_broker, tls, "refresh-me") as c:
        await c.publish("chargers/refresh-me/PowerOutput", b"{}")
    pki.revoke(certs.dir, "refresh-me")
    # What chargelift-devstack does every second while make dev runs.
    assert own_broker.refresh() == "restarted"  # a new CRL
    crt = next((certs.dir / "clients" / "revoked").glob("refresh-me-*.crt"))
    revoked = TlsFiles(certs.ca_file, crt, crt.with_suffix(".key"))
    started = time.monotonic()
    while await first_attempt(own_broker, revoked) is None:
        assert time.monotonic() - started < 10, "the refreshed CRL did not take effect in 10 s"
        await asyncio.sleep(0.05)
