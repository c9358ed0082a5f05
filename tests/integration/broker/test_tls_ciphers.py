"""Issue 14 (low): the broker accepts TLS 1.2 only with AEAD cipher suites; the
project's own clients offer nothing else. TLS 1.3 keeps its (all-AEAD) defaults."""

from __future__ import annotations

import socket
import ssl

import pytest

from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_runtime.mqtt import TlsFiles
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration

# CBC with SHA-1 or SHA-2 MACs: what `ciphers` must keep the broker from agreeing to.
CBC_SUITES = (
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
)
AEAD_SUITES = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
)


def tls12_context(tls: TlsFiles, ciphers: str) -> ssl.SSLContext:
    """A TLS 1.2-only client context offering exactly ``ciphers``."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(f"{ciphers}:@SECLEVEL=0")  # SECLEVEL 0: let the client offer SHA-1
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return ctx


def handshake(broker: MosquittoServer, ctx: ssl.SSLContext) -> tuple[str, str]:
    """The negotiated (version, cipher) of a TLS handshake with the broker."""
    with (
        socket.create_connection((broker.host, broker.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=broker.host) as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        return str(tls.version()), cipher[0]


@pytest.mark.parametrize("suite", CBC_SUITES)
def test_tls12_cbc_suites_are_refused(
    broker: MosquittoServer, certs: TestCerts, suite: str
) -> None:
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(broker, tls12_context(certs.tls("charger-a"), suite))


@pytest.mark.parametrize("suite", AEAD_SUITES)
def test_tls12_aead_suites_are_accepted(
    broker: MosquittoServer, certs: TestCerts, suite: str
) -> None:
    assert handshake(broker, tls12_context(certs.tls("charger-a"), suite)) == ("TLSv1.2", suite)


def test_tls13_keeps_its_defaults(broker: MosquittoServer, certs: TestCerts) -> None:
    ctx = certs.tls("charger-a").context()
    version, cipher = handshake(broker, ctx)
    assert version == "TLSv1.3"
    assert cipher.startswith("TLS_")  # TLS 1.3 suites: all AEAD


def test_our_clients_offer_only_aead_suites_with_tls12(certs: TestCerts) -> None:
    ctx = certs.tls("charger-a").context()
    tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12, "no TLS 1.2 suite left"
    assert all(c["aead"] for c in tls12), [c["name"] for c in tls12 if not c["aead"]]


def test_our_clients_connect_with_tls12_only(broker: MosquittoServer, certs: TestCerts) -> None:
    ctx = certs.tls("charger-a").context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    version, cipher = handshake(broker, ctx)
    assert version == "TLSv1.2"
    assert cipher in AEAD_SUITES
