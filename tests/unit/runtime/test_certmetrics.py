"""The certificate-expiry collector reports what the files say, and survives bad files."""

from __future__ import annotations

import base64
import contextlib
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from chargelift_certs import pki
from chargelift_runtime.certmetrics import (
    CertificateExpiryCollector,
    certificate_files,
    read_crl_next_update,
    read_expiry,
)


def _not_after(path: Path) -> float:
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp()


def test_reads_not_after_and_subject_of_ca_broker_and_clients(tmp_path: Path) -> None:
    pki.create_ca(tmp_path, days=400)
    pki.issue_server(tmp_path)
    pki.issue_client(tmp_path, "amtron-1", days=30)

    files = certificate_files(tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in files]
    assert names == ["broker.crt", "ca.crt", "clients/amtron-1.crt"]
    assert not any(p.suffix == ".key" for p in files)

    [leaf] = read_expiry(tmp_path / "clients" / "amtron-1.crt")
    assert leaf.subject == "amtron-1"
    assert leaf.not_after == _not_after(tmp_path / "clients" / "amtron-1.crt")
    [ca] = read_expiry(tmp_path / "ca.crt")
    assert ca.not_after == _not_after(tmp_path / "ca.crt")
    assert ca.not_after > leaf.not_after


def test_collector_exports_each_file_and_counts_unreadable_ones(tmp_path: Path) -> None:
    pki.create_ca(tmp_path)
    pki.issue_client(tmp_path, "amtron-1")
    broken = tmp_path / "broken.crt"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    files = [tmp_path / "ca.crt", tmp_path / "clients" / "amtron-1.crt", broken, tmp_path / "gone"]

    registry = CollectorRegistry()
    registry.register(CertificateExpiryCollector(lambda: files))
    leaf = str(tmp_path / "clients" / "amtron-1.crt")
    value = registry.get_sample_value(
        "chargelift_certificate_expiry_timestamp_seconds", {"file": leaf, "subject": "amtron-1"}
    )
    assert value == _not_after(tmp_path / "clients" / "amtron-1.crt")
    assert registry.get_sample_value("chargelift_certificate_read_errors") == 2
    assert b"chargelift_certificate_expiry_timestamp_seconds{" in generate_latest(registry)


def test_a_renewed_file_is_seen_at_the_next_scrape(tmp_path: Path) -> None:
    pki.create_ca(tmp_path)
    pki.issue_client(tmp_path, "amtron-1", days=10)
    crt = tmp_path / "clients" / "amtron-1.crt"
    registry = CollectorRegistry()
    registry.register(CertificateExpiryCollector(lambda: [crt]))
    labels = {"file": str(crt), "subject": "amtron-1"}
    before = registry.get_sample_value("chargelift_certificate_expiry_timestamp_seconds", labels)
    pki.issue_client(tmp_path, "amtron-1", days=300, force=True)
    after = registry.get_sample_value("chargelift_certificate_expiry_timestamp_seconds", labels)
    assert before is not None
    assert after is not None
    assert after - before > 280 * 86400


def _crl_next_update(path: Path) -> float:
    crl = x509.load_pem_x509_crl(path.read_bytes())
    assert crl.next_update_utc is not None
    return crl.next_update_utc.timestamp()


def test_reads_the_crl_next_update_as_the_broker_sees_it(tmp_path: Path) -> None:
    pki.create_ca(tmp_path)
    pki.issue_client(tmp_path, "amtron-1")
    pki.revoke(tmp_path, "amtron-1")  # a CRL with an entry, not only an empty one
    crl = tmp_path / "crl.pem"
    assert read_crl_next_update(crl) == _crl_next_update(crl)
    assert read_crl_next_update(crl) - time.time() > 360 * 86400


def test_crl_metric_and_unreadable_crls(tmp_path: Path) -> None:
    pki.create_ca(tmp_path)
    crl = tmp_path / "crl.pem"
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN X509 CRL-----\nMAMCAQE=\n-----END X509 CRL-----\n")  # SEQ{INT 1}
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    registry = CollectorRegistry()
    registry.register(CertificateExpiryCollector(list, lambda: [crl, bad, not_pem, tmp_path / "x"]))
    value = registry.get_sample_value(
        "chargelift_crl_next_update_timestamp_seconds", {"file": str(crl)}
    )
    assert value == _crl_next_update(crl)
    assert registry.get_sample_value("chargelift_certificate_read_errors") == 3


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_in_a_crl_file_end_as_value_error(tmp_path_factory: Any, data: bytes) -> None:
    path = tmp_path_factory.mktemp("crl") / "crl.pem"
    body = base64.encodebytes(data)
    path.write_bytes(b"-----BEGIN X509 CRL-----\n" + body + b"-----END X509 CRL-----\n")
    with contextlib.suppress(ValueError):
        read_crl_next_update(path)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_in_a_certificate_file_end_as_value_error(
    tmp_path_factory: Any, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("crt") / "x.crt"
    body = base64.encodebytes(data)
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n")
    with contextlib.suppress(ValueError):
        read_expiry(path)


def test_the_first_certificate_of_a_bundle_counts_and_the_collector_loads_no_x509_package(
    tmp_path: Path,
) -> None:
    pki.create_ca(tmp_path)
    pki.issue_client(tmp_path, "amtron-1")
    bundle = tmp_path / "bundle.crt"
    leaf = tmp_path / "clients" / "amtron-1.crt"
    bundle.write_bytes(leaf.read_bytes() + (tmp_path / "ca.crt").read_bytes())
    [first] = read_expiry(bundle)
    assert (first.subject, first.not_after) == ("amtron-1", _not_after(leaf))

    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; "
        "from chargelift_runtime.certmetrics import read_expiry; "
        f"read_expiry(Path({str(leaf)!r})); print('cryptography' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert out.stdout.strip() == b"False"
