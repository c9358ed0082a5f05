"""The certificate-expiry collector reports what the files say, and survives bad files."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from prometheus_client import CollectorRegistry, generate_latest

from chargelift_certs import pki
from chargelift_contract.certmetrics import (
    CertificateExpiryCollector,
    certificate_files,
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
