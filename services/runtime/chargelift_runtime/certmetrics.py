"""When the certificates a service can see expire, as a Prometheus metric.

An expired CA, broker or client certificate stops every connection that depends on it,
and nothing in the data flow warns before it happens. Each service therefore exports

    chargelift_certificate_expiry_timestamp_seconds{file="…", subject="…"}

(the certificate's notAfter, Unix seconds) for the certificate files it uses, read at
every scrape so that a renewed file is picked up without a restart. The broker's
certificate revocation list expires too, and an expired CRL makes the broker refuse
*every* client; a service that sees it exports

    chargelift_crl_next_update_timestamp_seconds{file="…"}

(the CRL's nextUpdate). Alerts compare both with ``time()`` (deploy/prometheus/alerts.yml).
A file that cannot be read or parsed is reported as ``chargelift_certificate_read_errors``
instead of failing the scrape.

Certificates and CRLs are parsed with ``cryptography`` (public API, the X.509 library
the certificate tooling and the services' edge-certificate readers use too); the first
certificate or CRL of a PEM file counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

EXPIRY_METRIC = "chargelift_certificate_expiry_timestamp_seconds"
ERRORS_METRIC = "chargelift_certificate_read_errors"
CRL_METRIC = "chargelift_crl_next_update_timestamp_seconds"


@dataclass(frozen=True, slots=True)
class CertExpiry:
    """One certificate of a PEM file: whose it is and when it stops being valid."""

    file: Path
    subject: str
    not_after: float


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None


def read_expiry(path: Path) -> list[CertExpiry]:
    """The (first) certificate in the PEM file at ``path``.

    Raises ValueError when the file is missing, unreadable or holds no certificate
    that can be decoded.
    """
    try:
        cert = x509.load_pem_x509_certificate(_read(path))
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        not_after = cert.not_valid_after_utc.timestamp()
    except ValueError as exc:
        raise ValueError(f"{path}: not a readable certificate ({exc})") from None
    subject = names[-1].value if names else ""
    return [
        CertExpiry(
            file=path,
            subject=subject if isinstance(subject, str) else subject.decode(errors="replace"),
            not_after=not_after,
        )
    ]


def certificate_files(certs_dir: Path | None, *extra: Path) -> list[Path]:
    """``extra`` plus every ``*.crt`` in ``certs_dir`` and its ``clients/`` (sorted, unique).

    Keys are never opened: only ``.crt`` files, which hold public data.
    """
    paths: dict[Path, None] = {p: None for p in extra}
    if certs_dir is not None:
        for folder in (certs_dir, certs_dir / "clients"):
            if folder.is_dir():
                for p in sorted(folder.glob("*.crt")):
                    paths.setdefault(p, None)
    return list(paths)


def read_crl_next_update(path: Path) -> float:
    """The nextUpdate (Unix seconds) of the PEM CRL at ``path``.

    Raises ValueError when the file is missing, unreadable, not a CRL or has no
    nextUpdate (a CRL without one never expires, which the broker's CRL check rejects).
    """
    try:
        crl = x509.load_pem_x509_crl(_read(path))
        next_update = crl.next_update_utc
    except ValueError as exc:
        raise ValueError(f"{path}: not a readable CRL ({exc})") from None
    if next_update is None:
        raise ValueError(f"{path}: the CRL has no nextUpdate")
    return next_update.timestamp()


class CertificateExpiryCollector(Collector):
    """A collector that reads the files from ``files()`` (certificates) and ``crls()``
    (revocation lists) at every scrape."""

    def __init__(
        self,
        files: Callable[[], Iterable[Path]],
        crls: Callable[[], Iterable[Path]] = tuple,
    ) -> None:
        self._files = files
        self._crls = crls

    def collect(self) -> Iterator[GaugeMetricFamily]:
        expiry = GaugeMetricFamily(
            EXPIRY_METRIC,
            "notAfter of a certificate this service uses (Unix time)",
            labels=["file", "subject"],
        )
        errors = 0
        for path in self._files():
            try:
                certs = read_expiry(path)
            except (OSError, ValueError):
                errors += 1
                continue
            for cert in certs:
                expiry.add_metric([str(cert.file), cert.subject], cert.not_after)
        yield expiry
        crl = GaugeMetricFamily(
            CRL_METRIC,
            "nextUpdate of the certificate revocation list the broker checks (Unix time): "
            "once past, the broker refuses every client",
            labels=["file"],
        )
        for path in self._crls():
            try:
                crl.add_metric([str(path)], read_crl_next_update(path))
            except ValueError:
                errors += 1
        yield crl
        yield GaugeMetricFamily(
            ERRORS_METRIC, "certificate files that could not be read at this scrape", errors
        )
